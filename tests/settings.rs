//! Settings that make a run impossible stop each daemon, and `locus
//! local-smoke`, at start-up (exit status 2) with the setting, where its
//! value came from and the allowed range named, before anything touches a
//! bucket.

mod common;

use std::process::{Command, Output, Stdio};

use common::{bin_dir, locus};

const OWNER: &str = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY";

fn run(mut command: Command) -> (i32, String) {
    let out: Output = command
        .stdin(Stdio::null())
        .output()
        .expect("running the binary");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.code().unwrap_or(-1), stderr)
}

fn daemon(bin: &str, args: &[&str]) -> Command {
    let mut command = Command::new(bin_dir().join(bin));
    // Nothing here may reach a bucket: the paths do not exist.
    command
        .args(["--bucket=/nonexistent/locus-bucket"])
        .args(args);
    for var in [
        "LOCUS_CONFIG",
        "LOCUS_POLL_MS",
        "LOCUS_STEPS",
        "LOCUS_DEVICES",
    ] {
        command.env_remove(var);
    }
    command
}

fn refused(command: Command, expected: &[&str]) {
    let shown = format!("{command:?}");
    let (code, stderr) = run(command);
    assert_eq!(code, 2, "{shown} should be refused:\n{stderr}");
    for text in expected {
        assert!(stderr.contains(text), "{shown}: no {text:?} in:\n{stderr}");
    }
}

#[test]
fn daemons_refuse_impossible_settings_at_start_up() {
    let orchestrator = ["--owner-key=/nonexistent/owner.json", "--run-id=r"];
    let miner = [
        "--hotkey-file=/nonexistent/miner.json",
        &format!("--owner={OWNER}"),
    ]
    .map(|s| s.to_string());
    let miner: Vec<&str> = miner.iter().map(String::as_str).collect();
    let validator = [
        "--key=/nonexistent/validator.json",
        &format!("--owner={OWNER}"),
    ]
    .map(|s| s.to_string());
    let validator: Vec<&str> = validator.iter().map(String::as_str).collect();
    let with = |base: &[&str], extra: &[&'static str]| -> Vec<String> {
        base.iter().chain(extra).map(|s| s.to_string()).collect()
    };
    let cases: Vec<(&str, Vec<String>, Vec<&str>)> = vec![
        (
            "orchestratord",
            with(&orchestrator, &["--steps=0"]),
            vec!["'0' for '--steps <STEPS>': must be at least 1"],
        ),
        (
            "orchestratord",
            with(&orchestrator, &["--lease-secs", "0"]),
            vec!["'--lease-secs <LEASE_SECS>': must be at least 2"],
        ),
        (
            "orchestratord",
            with(&orchestrator, &["--heartbeat-ttl-secs=1"]),
            vec!["'--heartbeat-ttl-secs <HEARTBEAT_TTL_SECS>': must be at least 2"],
        ),
        (
            "orchestratord",
            with(&orchestrator, &["--max-inflight-per-worker=0"]),
            vec!["must be at least 1"],
        ),
        (
            "orchestratord",
            with(&orchestrator, &["--micro-batches=65"]),
            vec!["'--micro-batches <MICRO_BATCHES>': must be between 1 and 64"],
        ),
        (
            "minerd",
            with(&miner, &["--workers=0"]),
            vec!["'--workers <WORKERS>': must be at least 1"],
        ),
        (
            "minerd",
            with(&miner, &["--devices=cpu,cuda:1"]),
            vec![
                "--devices (LOCUS_DEVICES, config key `devices`) = cuda:1: this binary was \
                 built without the `cuda` feature",
                "cargo build --release -p minerd --features cuda",
            ],
        ),
        (
            "minerd",
            with(&miner, &["--heartbeat-secs=0"]),
            vec!["must be at least 1"],
        ),
        (
            "minerd",
            with(&miner, &["--poll-ms=0"]),
            vec!["'--poll-ms <POLL_MS>': must be between 1 and 1000"],
        ),
        (
            "minerd",
            with(&miner, &["--workers=4", "--metrics-addr=127.0.0.1:65533"]),
            vec![
                "--metrics-addr (LOCUS_METRICS_ADDR, config key `metrics_addr`) = 127.0.0.1:65533",
                "use a port of at most 65531",
            ],
        ),
        (
            "validatord",
            with(&validator, &["--sample-rate=1.5"]),
            vec!["'--sample-rate <SAMPLE_RATE>': must be between 0 and 1"],
        ),
        (
            "validatord",
            with(&validator, &["--device=cuda:0"]),
            vec![
                "--device (LOCUS_DEVICE, config key `device`) = cuda:0: this binary was built \
                 without the `cuda` feature",
                "cargo build --release -p validatord --features cuda",
            ],
        ),
    ];
    for (bin, args, expected) in cases {
        refused(
            daemon(bin, &args.iter().map(String::as_str).collect::<Vec<_>>()),
            &expected,
        );
    }

    // From the environment: the variable is named.
    let mut command = daemon("validatord", &validator);
    command.env("LOCUS_POLL_MS", "0");
    refused(
        command,
        &[
            "\"0\" in environment variable LOCUS_POLL_MS (for --poll-ms): must be between 1 and 2000",
        ],
    );
    // From a configuration file: the key and the file are named.
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("miner.toml");
    std::fs::write(&config, "heartbeat_secs = 0\n").expect("config");
    let mut args = miner.clone();
    let flag = format!("--config={}", config.display());
    args.push(&flag);
    refused(
        daemon("minerd", &args),
        &[
            &format!("key `heartbeat_secs` in {}", config.display()),
            "must be at least 1",
        ],
    );
}

#[test]
fn local_smoke_refuses_what_its_daemons_would() {
    let smoke = |args: &[&str]| {
        let mut command = locus();
        command.arg("local-smoke").args(args);
        command
    };
    refused(
        smoke(&["--steps", "0"]),
        &["'0' for '--steps <STEPS>': must be at least 1 (a run without steps never completes)"],
    );
    refused(
        smoke(&["--lease-secs", "1"]),
        &["'--lease-secs <LEASE_SECS>': must be at least 2"],
    );
    refused(
        smoke(&["--workers-per-miner", "0"]),
        &["must be at least 1 (a miner without workers does no work)"],
    );
    refused(smoke(&["--sample-rate", "2"]), &["must be between 0 and 1"]);
}

#[cfg(feature = "fault-injection")]
#[test]
fn local_smoke_refuses_attacks_it_cannot_catch() {
    let smoke = |args: &[&str]| {
        let mut command = locus();
        command.arg("local-smoke").args(args);
        command
    };
    refused(
        smoke(&["--bad-miner-index", "0", "--fault-mode", "bogus"]),
        &["invalid value 'bogus'", "possible values: partial_corrupt"],
    );
    refused(
        smoke(&[
            "--miners",
            "2",
            "--bad-miner-index",
            "2",
            "--fault-mode",
            "copy",
        ]),
        &["--bad-miner-index (config key `bad_miner_index`) = 2: out of range for 2 miners"],
    );
    // The invitation of docs/security.md without enough steps: the corrupt
    // inner outputs are never replayed, so the smoke says what to add.
    let taint = [
        "--miners",
        "4",
        "--fault-mode",
        "taint",
        "--sample-rate",
        "0",
        "--probation-replays",
        "0",
        "--bad-miner-index",
        "0",
    ];
    refused(
        smoke(&taint),
        &[
            "--fault-mode taint cannot be caught in this run",
            "Use --steps 3 or more (got --steps 1)",
        ],
    );
    let mut two = taint.to_vec();
    two.extend(["--steps", "2"]);
    refused(smoke(&two), &["Use --steps 3 or more (got --steps 2)"]);
    let replay_old = [
        "--fault-mode",
        "replay_old",
        "--sample-rate",
        "0",
        "--probation-replays",
        "0",
        "--bad-miner-index",
        "0",
    ];
    refused(
        smoke(&replay_old),
        &["Use --steps 2 or more (got --steps 1)"],
    );
}
