//! `locus ledger` over a real local smoke: every miner's line, checked
//! against the validator's verdicts, as JSON and as a table.

mod common;

#[test]
fn ledger_of_a_smoke_run_agrees_with_its_verdicts() {
    let work = common::kept_smoke();
    let owner = common::smoke_key(work.path(), "owner");
    let ledger = |extra: &[&str]| {
        let mut command = common::locus();
        command
            .args(["ledger", "--netuid", "3", "--owner", &owner, "--bucket"])
            .arg(work.path().join("bucket"))
            .args(extra);
        common::stdout_of(command, "locus ledger")
    };
    let doc: serde_json::Value = serde_json::from_str(&ledger(&["--json"])).expect("json");
    let run = &doc["runs"][0];
    assert_eq!(run["run_id"], "smoke");
    assert_eq!(run["final"], true);
    let hotkeys = run["hotkeys"].as_array().expect("hotkeys");
    assert_eq!(hotkeys.len(), 3, "{run}");
    let jobs: u64 = hotkeys.iter().map(|h| h["jobs"].as_u64().unwrap()).sum();
    assert_eq!(jobs, run["receipts"].as_u64().unwrap());
    let weights: f64 = hotkeys.iter().map(|h| h["weight"].as_f64().unwrap()).sum();
    assert!((weights - 1.0).abs() < 1e-9, "weights sum to {weights}");
    for hotkey in hotkeys {
        assert_eq!(hotkey["check"], "ok", "{hotkey}");
        assert!(hotkey["weight"].as_f64().unwrap() > 0.0, "{hotkey}");
    }
    let table = ledger(&["--run-id", "smoke"]);
    assert!(table.starts_with("run smoke: window final"), "{table}");
    for hotkey in hotkeys {
        let ss58 = hotkey["hotkey"].as_str().unwrap();
        assert!(table.contains(ss58), "{ss58} missing:\n{table}");
    }
    // A run that is not in the bucket is an error when asked for by name.
    let out = common::locus()
        .args(["ledger", "--owner", &owner, "--run-id", "nope", "--bucket"])
        .arg(work.path().join("bucket"))
        .output()
        .expect("locus ledger");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("run manifest"));
}
