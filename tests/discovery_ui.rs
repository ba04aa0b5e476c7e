//! The discovery UI over a real local smoke: `locus discovery-ui` serves the
//! smoke's bucket and headless Chromium renders every miner, the receipts
//! and the score table, with no script errors. Saves a screenshot.

mod common;

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};

use locus_discovery::testkit::{HEADLESS_ARGS, INSTALL_HINT, find_chromium};

fn headless(bin: &std::path::Path, profile: &std::path::Path, args: &[String]) -> String {
    let mut command = Command::new(bin);
    command
        .args(HEADLESS_ARGS)
        .args(["--virtual-time-budget=6000", "--window-size=1400,1000"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args);
    common::stdout_of(command, "chromium")
}

#[test]
fn ui_renders_a_real_smoke_run_in_chromium() {
    let Some(browser) = find_chromium() else {
        panic!("no Chromium found: {INSTALL_HINT}");
    };
    let work = common::kept_smoke();
    let key_of = |name: &str| common::smoke_key(work.path(), name);
    let mut ui = common::locus()
        .args(["discovery-ui", "--port", "0", "--netuid", "3", "--bucket"])
        .arg(work.path().join("bucket"))
        .arg(format!("--owner={}", key_of("owner")))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("discovery-ui");
    let mut line = String::new();
    BufReader::new(ui.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("first line");
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no URL in {line:?}"))
        .to_string();
    // Wait for the index to hold the run's last receipt and its score
    // window (a fixed pause was too short on a loaded machine).
    let addr: std::net::SocketAddr = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .unwrap_or_else(|e| panic!("no address in {url}: {e}"));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let indexed = |path: &str, want: &str| {
            common::http_get(addr, path)
                .is_some_and(|(status, body)| status == 200 && body.contains(want))
        };
        if indexed("/api/receipts", "s00001-eval") && indexed("/api/scores", "window_id") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the UI did not index the smoke's receipts and scores in 60 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let profile = work.path().join("chromium-profile");
    let dom = headless(&browser, &profile, &["--dump-dom".into(), url.clone()]);
    let artifacts = std::env::var("LOCUS_TEST_ARTIFACTS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| std::env::temp_dir().join("locus-test-artifacts"));
    std::fs::create_dir_all(&artifacts).expect("artifacts dir");
    let shot = artifacts.join("discovery-ui-smoke.png");
    headless(
        &browser,
        &profile,
        &[format!("--screenshot={}", shot.display()), url],
    );
    let _ = ui.kill();
    let _ = ui.wait();
    for i in 0..3 {
        let miner = key_of(&format!("miner{i}"));
        assert!(dom.contains(&miner), "miner {i} ({miner}) not rendered");
    }
    assert!(dom.contains("score-table"), "no score table rendered");
    assert!(dom.contains("s00001-eval"), "receipts not rendered");
    assert!(
        dom.contains(r#"<div id="console-errors"></div>"#),
        "page reported script errors"
    );
    assert!(shot.exists(), "screenshot missing");
    println!("screenshot: {}", shot.display());
}

/// The reference's own command line, `locus discovery-ui --netuid 3 --port
/// 8765`: the bucket comes from S3_BUCKET and the owner from the chain. With
/// no chain to ask (a closed loopback port) or no bucket, it stops and says
/// what to give instead.
#[test]
fn discovery_ui_without_bucket_or_owner_says_what_to_give() {
    let run = |s3_bucket: Option<&str>| {
        let mut command = common::locus();
        command
            .args(["discovery-ui", "--netuid", "3", "--port", "0"])
            .args(["--chain-endpoint", "ws://127.0.0.1:9"])
            .env_remove("LOCUS_BUCKET")
            .env_remove("LOCUS_OWNER")
            .env_remove("S3_BUCKET");
        if let Some(bucket) = s3_bucket {
            command.env("S3_BUCKET", bucket);
        }
        let out = command.output().expect("locus discovery-ui");
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let no_chain = run(Some("locus"));
    assert!(
        no_chain.contains("owner hotkey of subnet 3 from ws://127.0.0.1:9")
            && no_chain.contains("give --owner SS58"),
        "{no_chain}"
    );
    let no_bucket = run(None);
    assert!(
        no_bucket.contains("give --bucket") && no_bucket.contains("S3_BUCKET"),
        "{no_bucket}"
    );
}
