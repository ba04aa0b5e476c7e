//! The page in a real browser: headless Chromium loads the discovery UI,
//! saves a screenshot and dumps the DOM after the page's JS has polled the
//! API. Install Chromium with `discovery/tests/install-chromium.sh`; the test
//! skips (saying so) only when no Chromium binary can be found.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::common::*;
use locus_discovery::testkit::{HEADLESS_ARGS, INSTALL_HINT, find_chromium};

fn artifacts_dir() -> PathBuf {
    let dir = match std::env::var_os("LOCUS_TEST_ARTIFACTS") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_TARGET_TMPDIR")).join("discovery-artifacts"),
    };
    std::fs::create_dir_all(&dir).expect("artifacts dir");
    dir
}

async fn chromium(bin: &Path, profile: &Path, args: &[String]) -> (bool, String, String) {
    let mut cmd = tokio::process::Command::new(bin);
    cmd.args(HEADLESS_ARGS)
        .arg("--hide-scrollbars")
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .expect("chromium took over 60 s")
        .expect("run chromium");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_renders_workers_receipts_and_scores_in_chromium() {
    let Some(bin) = find_chromium() else {
        eprintln!("SKIPPED: no Chromium found; {INSTALL_HINT}");
        return;
    };
    let f = Fixture::new().await;
    f.add_stalled_rewound_run("stuck").await;
    let (addr, tx) = start_ui(&f, Duration::from_millis(200)).await;

    let artifacts = artifacts_dir();
    let profile = tempfile::tempdir().expect("profile dir");
    let url = format!("http://{addr}/#hotkey={}", f.miner(0));
    // The overview, and the page with one hotkey's detail open.
    for (file, page) in [
        ("discovery-ui.png", format!("http://{addr}/")),
        ("discovery-ui-hotkey.png", url.clone()),
    ] {
        let shot = artifacts.join(file);
        let _ = std::fs::remove_file(&shot);
        let (ok, _, stderr) = chromium(
            &bin,
            profile.path(),
            &[
                format!("--screenshot={}", shot.display()),
                "--window-size=1280,900".into(),
                "--virtual-time-budget=5000".into(),
                page,
            ],
        )
        .await;
        assert!(ok, "chromium --screenshot failed: {stderr}");
        let png = std::fs::read(&shot).expect("screenshot written");
        assert!(
            png.starts_with(b"\x89PNG") && png.len() > 10_000,
            "screenshot is not a real PNG"
        );
        eprintln!("screenshot: {}", shot.display());
    }

    let (ok, dom, stderr) = chromium(
        &bin,
        profile.path(),
        &[
            "--virtual-time-budget=5000".into(),
            "--dump-dom".into(),
            url,
        ],
    )
    .await;
    assert!(ok, "chromium --dump-dom failed: {stderr}");
    std::fs::write(artifacts.join("discovery-ui.html"), &dom).expect("write DOM");

    assert!(
        dom.contains(r#"<div id="console-errors"></div>"#),
        "page reported JS errors:\n{}",
        dom.split(r#"id="console-errors">"#)
            .nth(1)
            .unwrap_or("")
            .split("</div>")
            .next()
            .unwrap_or("")
    );
    let section = |id: &str| -> &str {
        let at = dom
            .find(&format!(r#" id="{id}""#))
            .unwrap_or_else(|| panic!("section {id} missing"));
        let start = dom[..at]
            .rfind("<section")
            .unwrap_or_else(|| panic!("{id} is not a section"));
        let rest = &dom[start..];
        &rest[..rest.find("</section>").unwrap_or(rest.len())]
    };
    for (i, _) in f.miners.iter().enumerate() {
        let ss58 = f.miner(i);
        assert!(
            section("workers-section").contains(&ss58),
            "worker {ss58} not rendered"
        );
        assert!(
            section("scores-section").contains(&ss58),
            "score of {ss58} not rendered"
        );
        assert!(
            section("receipts-section").contains(&ss58),
            "receipts of {ss58} not rendered"
        );
    }
    assert!(section("scores-section").contains(r#"id="score-table""#));
    assert!(
        section("runs-section").contains("<svg"),
        "eval loss plot missing"
    );
    let runs = section("runs-section");
    assert!(runs.contains(RUN));
    // Both losses on labelled axes; the stalled, rewound run says so.
    for text in [
        "loss-eval",
        "loss-train",
        "loss (nats)",
        ">step<",
        ">stalled<",
        "nothing written for",
        "rewind 1",
        "recomputed from step 1",
        "replay differs at element 3",
        ">running<",
    ] {
        assert!(runs.contains(text), "{text:?} not in the runs section");
    }
    let rejected = section("rejected-section");
    assert!(rejected.contains(&f.garbage_key) && rejected.contains("not a signed envelope"));
    // The fixture has no auditor: the table says so instead of staying at
    // "loading…".
    assert!(
        section("auditors-section").contains("no auditor has replayed"),
        "auditors section not rendered"
    );
    // The hotkey from the URL opened its detail panel, failures included.
    let detail = section("detail");
    assert!(detail.contains("wide shown"), "detail panel not shown");
    assert!(
        detail.contains("digest differs"),
        "failure reason not in the detail panel"
    );
    assert!(
        dom.contains("live · updated"),
        "status line never went live"
    );

    // A receipt's drill-down: what it commits to, and its verdict with the
    // proof of the sampling draw.
    let (ok, receipt_dom, stderr) = chromium(
        &bin,
        profile.path(),
        &[
            "--virtual-time-budget=5000".into(),
            "--dump-dom".into(),
            format!("http://{addr}/#receipt={}", f.failed_receipt_key),
        ],
    )
    .await;
    assert!(ok, "chromium --dump-dom failed: {stderr}");
    let at = receipt_dom
        .find(r#"id="receipt-detail""#)
        .expect("receipt panel");
    let start = receipt_dom[..at].rfind("<section").expect("its section");
    let panel = &receipt_dom[start..at + receipt_dom[at..].find("</section>").expect("end")];
    assert!(panel.contains("wide shown"), "receipt panel not shown");
    for text in [
        f.failed_receipt_key.as_str(),
        "receipt digest (BLAKE3)",
        "output digest",
        "sample proof (signature)",
        "(this receipt)",
        "failed: ",
    ] {
        assert!(panel.contains(text), "{text:?} not in the receipt panel");
    }
    let _ = tx.send(());
}
