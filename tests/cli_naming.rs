//! One naming scheme for operators: every flag of every binary can also be
//! set by the environment variable `LOCUS_<FLAG>` (upper case, `-` and `.`
//! as `_`), and `--help` says so; the flags btcli also has take btcli's
//! `BT_*` variable instead. Read from each binary's real `--help`.

mod common;

use std::process::Command;

/// Flags named after btcli's, with the variables the Bittensor SDK reads.
const BITTENSOR_FLAGS: &[(&str, &str)] = &[
    ("--wallet-name", "BT_WALLET_NAME"),
    ("--wallet-hotkey", "BT_WALLET_HOTKEY"),
    ("--wallet-path", "BT_WALLET_PATH"),
    ("--network", "BT_SUBTENSOR_NETWORK"),
    ("--chain-endpoint", "BT_SUBTENSOR_CHAIN_ENDPOINT"),
];

/// The flags of one `--help` text whose block lacks `[env: LOCUS_<FLAG>=`
/// (or the `BT_*` variable of a btcli flag).
fn flags_without_their_variable(help: &str) -> Vec<String> {
    let mut missing = Vec::new();
    let mut current: Option<(String, String)> = None;
    let mut check = |flag: &str, block: &str| {
        if flag == "--help" || flag == "--version" {
            return;
        }
        let want = match BITTENSOR_FLAGS.iter().find(|(f, _)| *f == flag) {
            Some((_, var)) => format!("[env: {var}="),
            None => format!(
                "[env: LOCUS_{}=",
                flag.trim_start_matches("--")
                    .to_uppercase()
                    .replace(['-', '.'], "_")
            ),
        };
        if !block.contains(&want) {
            missing.push(flag.to_string());
        }
    };
    for line in help.lines() {
        let trimmed = line.trim_start();
        let option = trimmed
            .strip_prefix("--")
            .or_else(|| trimmed.get(4..).and_then(|rest| rest.strip_prefix("--")))
            .filter(|_| line.starts_with("  "));
        if let Some(rest) = option {
            if let Some((flag, block)) = current.take() {
                check(&flag, &block);
            }
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '.')
                .collect();
            current = Some((format!("--{name}"), line.to_string()));
        } else if let Some((_, block)) = current.as_mut() {
            block.push('\n');
            block.push_str(line);
        }
    }
    if let Some((flag, block)) = current {
        check(&flag, &block);
    }
    missing
}

#[test]
fn every_flag_has_its_locus_variable() {
    let bins = common::bin_dir();
    let mut helps: Vec<(String, Command)> = ["orchestratord", "minerd", "validatord"]
        .into_iter()
        .map(|bin| {
            let mut command = Command::new(bins.join(bin));
            command.arg("--help");
            (bin.to_string(), command)
        })
        .collect();
    for sub in [
        "keygen",
        "local-smoke",
        "export",
        "train",
        "discovery-ui",
        "ledger",
    ] {
        let mut command = common::locus();
        command.args([sub, "--help"]);
        helps.push((format!("locus {sub}"), command));
    }
    let mut wrong = Vec::new();
    let mut flags_seen = 0;
    for (name, mut command) in helps {
        let out = command.output().expect("running --help");
        assert!(out.status.success(), "{name} --help failed");
        let help = String::from_utf8_lossy(&out.stdout);
        flags_seen += help.matches("\n      --").count() + help.matches("\n  -").count();
        for flag in flags_without_their_variable(&help) {
            wrong.push(format!("{name} {flag}"));
        }
    }
    assert!(
        flags_seen > 60,
        "only {flags_seen} flags found: is the help format parsed?"
    );
    assert!(
        wrong.is_empty(),
        "flags without their LOCUS_<FLAG> variable: {wrong:#?}"
    );
}

#[test]
fn the_parser_finds_a_flag_without_its_variable() {
    let help = "Options:\n      --bucket <BUCKET>\n          Bucket\n          \n          [env: LOCUS_BUCKET=]\n\n      --port <PORT>\n          Port\n          \n          [env: LOCUS_UI_PORT=]\n\n  -k, --open-browser\n          Open it\n\n  -h, --help\n          Print help\n";
    assert_eq!(
        flags_without_their_variable(help),
        vec!["--port".to_string(), "--open-browser".to_string()]
    );
}
