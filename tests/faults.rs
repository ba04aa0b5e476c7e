//! With 5 % of all storage requests failing (in every daemon, through the
//! fault-injecting store behind `LOCUS_FAULT_RATE`), the local smoke still
//! completes and trains to exactly the same eval losses.

mod common;

fn eval_losses(stdout: &str) -> String {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("eval loss by step: "))
        .unwrap_or_else(|| panic!("no loss line in:\n{stdout}"))
        .to_string()
}

#[test]
fn smoke_survives_five_percent_storage_errors_with_the_same_result() {
    let args = [
        "local-smoke",
        "--steps",
        "3",
        "--miners",
        "4",
        "--seed",
        "4242",
    ];
    let calm = common::locus().args(args).output().expect("smoke");
    assert!(calm.status.success(), "undisturbed smoke failed");
    let faulty = common::locus()
        .args(args)
        .env("LOCUS_FAULT_RATE", "0.05")
        .output()
        .expect("smoke");
    let stdout = String::from_utf8_lossy(&faulty.stdout);
    assert!(
        faulty.status.success(),
        "smoke under 5% faults failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&faulty.stderr)
    );
    assert_eq!(
        eval_losses(&stdout),
        eval_losses(&String::from_utf8_lossy(&calm.stdout))
    );
}
