//! The discovery UI's JSON API and the incremental reader, against a real
//! bucket directory written with the protocol API.

use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::common::*;
use locus_discovery::{DiscoveryIndex, IndexConfig};
use locus_protocol::pb::VerdictOutcome;
use serde_json::Value;

fn strs<'a>(v: &'a Value, field: &str) -> Vec<&'a str> {
    v.as_array()
        .expect("array")
        .iter()
        .filter_map(|x| x[field].as_str())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_shows_workers_receipts_scores_and_rejections() {
    let f = Fixture::new().await;
    let (addr, stop) = start_ui(&f, Duration::from_millis(100)).await;

    // Workers: three genuine heartbeats, the forged one is not a worker.
    let workers = get_json(addr, "/api/workers").await;
    let list = workers.as_array().expect("workers");
    assert_eq!(list.len(), 3, "{workers:#}");
    let m0 = list
        .iter()
        .find(|w| w["hotkey"] == f.miner(0))
        .expect("miner 0 worker");
    assert_eq!(m0["current_job"], "s00002-forward");
    assert_eq!(m0["jobs_done"], 7);
    assert_eq!(m0["signature"], "verified");
    assert!(m0["age_ms"].as_u64().expect("age") < 60_000);
    assert!(
        list.iter()
            .any(|w| w["hotkey"] == f.miner(1) && w["worker"] == 1 && w["device"] == "cuda:1")
    );

    // Runs: progress through the DAG and the eval loss.
    let runs = get_json(addr, "/api/runs").await;
    let run = &runs[0];
    assert_eq!(run["run_id"], RUN);
    assert_eq!(run["jobs_published"], 10);
    assert_eq!(run["receipts"], 10);
    assert_eq!(run["verdicts"], 10);
    assert_eq!(run["failed"], 1);
    assert_eq!(run["completed_steps"], 2);
    assert_eq!(run["state_signature"], "verified");
    assert_eq!(run["eval_loss"].as_array().expect("loss").len(), 3);
    assert_eq!(run["step_progress"][1]["jobs"], 5);
    // Jobs by pipeline stage (all stage 0 here): each job once, its
    // receipts and verdicts.
    assert_eq!(run["stage_progress"].as_array().expect("stages").len(), 1);
    assert_eq!(run["stage_progress"][0]["jobs"], 10);
    assert_eq!(run["stage_progress"][0]["receipts"], 10);
    assert_eq!(run["stage_progress"][0]["verdicts"], 10);

    // Receipts with their verdicts; the filter by hotkey.
    let receipts = get_json(addr, "/api/receipts").await;
    assert_eq!(receipts.as_array().expect("receipts").len(), 10);
    let failed = receipts
        .as_array()
        .expect("receipts")
        .iter()
        .find(|r| r["key"] == f.failed_receipt_key.as_str())
        .expect("failed receipt listed");
    assert_eq!(failed["verdict"]["outcome"], "failed");
    assert!(
        failed["verdict"]["reason"]
            .as_str()
            .expect("reason")
            .contains("digest differs")
    );
    assert_eq!(failed["verdict"]["validator"], f.validator.hotkey().ss58());
    let of_m1 = get_json(addr, &format!("/api/receipts?hotkey={}", f.miner(1))).await;
    assert_eq!(of_m1.as_array().expect("receipts").len(), 4);
    assert!(strs(&of_m1, "hotkey").iter().all(|h| *h == f.miner(1)));

    // Scores: the validator's window (not the outsider's newer one) with chain weights.
    let scores = get_json(addr, "/api/scores").await;
    assert_eq!(scores["window_id"], RUN);
    assert_eq!(scores["validator"], f.validator.hotkey().ss58());
    let rows = scores["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 2);
    let r0 = rows
        .iter()
        .find(|r| r["hotkey"] == f.miner(0))
        .expect("miner 0 score");
    assert_eq!(r0["weight"], 1.0);
    assert_eq!(r0["uid"], 3);
    assert_eq!(r0["chain_weight"], 65535);
    assert_eq!(scores["weights"]["dry_run"], true);

    // Traceability: what made miner 0's score.
    let detail = get_json(addr, &format!("/api/hotkey/{}", f.miner(0))).await;
    assert_eq!(detail["window_id"], RUN);
    assert_eq!(detail["totals"]["receipts"], 6);
    assert_eq!(detail["totals"]["failed"], 1);
    assert_eq!(
        detail["failures"][0]["receipt_key"],
        f.failed_receipt_key.as_str()
    );
    assert!(detail["totals"]["verified_cu"].as_u64().expect("cu") > 0);
    assert!(detail["totals"]["unsampled_cu"].as_u64().expect("cu") > 0);
    assert_eq!(detail["score"]["hotkey"], f.miner(0));
    assert_eq!(detail["workers"].as_array().expect("workers").len(), 1);

    // Rejected: garbage, wrong signers, each with a reason.
    let rejected = get_json(addr, "/api/rejected").await;
    let reason_of = |key: &str| -> String {
        rejected
            .as_array()
            .expect("rejected")
            .iter()
            .find(|r| r["key"] == key)
            .unwrap_or_else(|| panic!("{key} not rejected: {rejected:#}"))["reason"]
            .as_str()
            .expect("reason")
            .to_string()
    };
    assert!(reason_of(&f.garbage_key).contains("not a signed envelope"));
    let forged = reason_of(&f.forged_receipt_key);
    assert!(
        forged.contains("signed by") && forged.contains(&f.miner(1)),
        "{forged}"
    );
    assert!(reason_of(&f.forged_heartbeat_key).contains(&format!("expected {}", f.miner(1))));
    assert!(reason_of(&f.forged_score_key).contains("not a validator"));
    assert_eq!(
        rejected.as_array().expect("rejected").len(),
        4,
        "{rejected:#}"
    );

    // The overview the page polls carries all of it, and the page itself is served.
    let overview = get_json(addr, "/api/overview").await;
    assert_eq!(overview["owner"], f.owner_hotkey().ss58());
    assert_eq!(overview["netuid"], NETUID);
    assert_eq!(overview["receipts_total"], 10);
    assert_eq!(overview["rejected_total"], 4);
    let (status, content_type, page) = http_get(addr, "/").await;
    assert_eq!(status, 200);
    assert!(content_type.starts_with("text/html"), "{content_type}");
    assert!(
        page.contains("console-errors") && !page.contains("http://") && !page.contains("https://")
    );
    let (status, _, _) = http_get(addr, "/api/nope").await;
    assert_eq!(status, 404);

    // The UI's own metrics include its bucket traffic.
    let (status, _, text) = http_get(addr, "/metrics").await;
    assert_eq!(status, 200);
    let samples = check_prometheus_text(&text);
    assert!(
        samples
            .iter()
            .any(|(n, l, v)| n == "bucket_requests_total" && l == "op=\"get\"" && *v > 0.0)
    );
    assert!(
        samples
            .iter()
            .any(|(n, _, v)| n == "discovery_refresh_seconds_count" && *v >= 1.0)
    );
    assert!(
        samples
            .iter()
            .all(|(n, l, v)| !(n == "bucket_requests_total" && l == "op=\"put\"") || *v == 0.0),
        "the UI never writes"
    );

    let _ = stop.send(());
}

/// A run that rewound and then stopped moving says so (status `stalled`,
/// with why, and each rewind with its step, hotkey and reason); a worker
/// whose heartbeat is old leaves the active list and is only counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_and_rewound_runs_and_gone_workers_are_shown_as_such() {
    let mut f = Fixture::new().await;
    f.add_stalled_rewound_run("stuck").await;
    f.old_heartbeat(0, 9, 10 * 60_000).await;
    // An eval job runs every stage: it counts under none of them.
    f.add_job(0, "s00000-eval", 0, 1, Some(VerdictOutcome::Unsampled))
        .await;
    let (addr, stop) = start_ui(&f, Duration::from_millis(100)).await;
    let overview = get_json(addr, "/api/overview").await;
    let runs = overview["runs"].as_array().expect("runs");
    let run = |id: &str| {
        runs.iter()
            .find(|r| r["run_id"] == id)
            .unwrap_or_else(|| panic!("run {id} in {runs:#?}"))
    };
    assert_eq!(run(RUN)["status"], "running");
    assert_eq!(run(RUN)["jobs_published"], 11);
    assert_eq!(run(RUN)["stage_progress"][0]["jobs"], 10);
    assert_eq!(run(RUN)["stage_progress"][0]["receipts"], 10);
    assert_eq!(run(RUN)["rewinds"].as_array().expect("rewinds").len(), 0);
    let stuck = run("stuck");
    assert_eq!(stuck["status"], "stalled");
    assert!(
        stuck["stalled_because"]
            .as_str()
            .expect("why")
            .contains("nothing written for"),
        "{stuck:#}"
    );
    assert_eq!(stuck["rewinds"][0]["from_step"], 1);
    assert_eq!(stuck["rewinds"][0]["hotkey"], f.miner(1));
    assert!(stuck["finished_unix_ms"].is_null());
    let workers = overview["workers"].as_array().expect("workers");
    assert!(workers.iter().all(|w| w["worker"] != 9), "{workers:#?}");
    assert_eq!(overview["workers_gone"], 1);
    stop.send(()).ok();
}

#[tokio::test]
async fn unchanged_bucket_costs_lists_only_and_new_objects_are_read_once() {
    let mut f = Fixture::new().await;
    let bucket =
        locus_protocol::Bucket::open(f.dir.path().to_str().expect("path"), NETUID).expect("bucket");
    let mut index = DiscoveryIndex::new(bucket.clone(), f.owner_hotkey(), IndexConfig::default());
    let first = index.refresh().await.expect("refresh");
    let c = bucket.counts();
    let gets = || c.gets.load(Ordering::Relaxed);
    let lists = || c.lists.load(Ordering::Relaxed);
    // 1 run manifest + 1 state + 10 jobs + 11 receipt keys (1 garbage... all GET) + 10 assignments
    // + 10 verdicts + 4 heartbeats + 2 score windows + 1 weights.
    let after_first = (gets(), lists());
    assert_eq!(first.fetched, after_first.0, "every GET is reported");
    assert!(first.changed);
    assert_eq!(c.puts.load(Ordering::Relaxed), 0, "the index never writes");

    // Nothing changed: no GET, a fixed number of LISTs.
    let second = index.refresh().await.expect("refresh");
    assert!(!second.changed);
    assert_eq!(
        gets(),
        after_first.0,
        "an unchanged bucket must not be re-read"
    );
    let lists_per_refresh = lists() - after_first.1;
    // run dirs, run files, jobs, receipts, verdicts, heartbeats, scores,
    // weights, dropped auditors
    assert_eq!(lists_per_refresh, 9);
    eprintln!(
        "first refresh: {} gets, {} lists; unchanged refresh: 0 gets, {lists_per_refresh} lists",
        after_first.0, after_first.1
    );

    // A new receipt with its verdict: one job, one assignment, one receipt, one verdict.
    let before = gets();
    f.add_job(2, "s00002-forward", 0, 1, Some(VerdictOutcome::Verified))
        .await;
    let third = index.refresh().await.expect("refresh");
    assert!(third.changed);
    assert_eq!(gets() - before, 4);

    // A receipt that sorts before keys already seen (jobs of a step finish in
    // any order) is still found, without re-reading anything else.
    let before = gets();
    f.add_job(2, "s00002-aaa-late", 1, 1, None).await;
    index.refresh().await.expect("refresh");
    assert_eq!(gets() - before, 3);

    // A rewritten heartbeat is read again; nothing else is.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let before = gets();
    f.heartbeat(0, 0, "s00002-reduce", 8).await;
    index.refresh().await.expect("refresh");
    assert_eq!(gets() - before, 1);

    let snapshot = index.snapshot();
    assert_eq!(snapshot.receipts.len(), f.receipts);
    let w = snapshot
        .workers
        .iter()
        .find(|w| w.hotkey == f.miner(0))
        .expect("worker");
    assert_eq!(w.current_job, "s00002-reduce");
    assert_eq!(w.jobs_done, 8);
    let late = snapshot
        .receipts
        .iter()
        .find(|r| r.job_id == "s00002-aaa-late")
        .expect("late receipt");
    assert!(late.verdict.is_none());
    assert_eq!(snapshot.rejected.len(), 4);
}

#[tokio::test]
async fn a_full_relist_catches_receipts_far_behind_the_cursor() {
    let mut f = Fixture::new().await;
    let bucket =
        locus_protocol::Bucket::open(f.dir.path().to_str().expect("path"), NETUID).expect("bucket");
    let config = IndexConfig {
        rewind_keys: 0,
        full_relist_every: Duration::from_millis(300),
        ..IndexConfig::default()
    };
    let mut index = DiscoveryIndex::new(bucket, f.owner_hotkey(), config);
    index.refresh().await.expect("refresh");
    // Step 0 is long past; a straggler lands there.
    f.add_job(0, "s00000-aaa-straggler", 1, 1, None).await;
    let quick = index.refresh().await.expect("refresh");
    assert!(!quick.full_relist);
    assert!(
        !index
            .snapshot()
            .receipts
            .iter()
            .any(|r| r.job_id == "s00000-aaa-straggler")
    );
    tokio::time::sleep(Duration::from_millis(350)).await;
    let full = index.refresh().await.expect("refresh");
    assert!(full.full_relist);
    assert!(
        index
            .snapshot()
            .receipts
            .iter()
            .any(|r| r.job_id == "s00000-aaa-straggler")
    );
}

#[tokio::test]
async fn any_store_is_read_incrementally_from_its_listing_metadata() {
    let f = Fixture::new().await;
    // A bucket whose URL is not a local directory, as with a remote bucket:
    // its listings' metadata alone tells the index what changed.
    let store = object_store::local::LocalFileSystem::new_with_prefix(f.dir.path()).expect("store");
    let bucket = locus_protocol::Bucket::from_store(
        std::sync::Arc::new(store),
        "remote-test://bucket",
        NETUID,
    );
    let mut index = DiscoveryIndex::new(bucket.clone(), f.owner_hotkey(), IndexConfig::default());
    index.refresh().await.expect("refresh");
    let c = bucket.counts();
    let gets = c.gets.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(50)).await;
    index.refresh().await.expect("refresh");
    assert_eq!(
        c.gets.load(Ordering::Relaxed),
        gets,
        "unchanged objects re-read"
    );
    // A rewritten heartbeat is read again; nothing else is.
    f.heartbeat(1, 0, "s00001-outer", 9).await;
    index.refresh().await.expect("refresh");
    assert_eq!(c.gets.load(Ordering::Relaxed) - gets, 1);
    let snapshot = index.snapshot();
    assert_eq!(snapshot.workers.len(), 3);
    assert_eq!(snapshot.receipts.len(), 10);
    assert_eq!(snapshot.rejected.len(), 4);
    let w = snapshot
        .workers
        .iter()
        .find(|w| w.hotkey == f.miner(1) && w.worker == 0)
        .expect("worker");
    assert_eq!(w.jobs_done, 9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auditors_are_shown_with_their_verdicts_and_who_dropped_them() {
    use locus_protocol::{Expect, Keypair, pb};
    let mut f = Fixture::new().await;
    let (honest, liar, stranger) = (
        Keypair::generate().hotkey(),
        Keypair::generate().hotkey(),
        Keypair::generate().hotkey(),
    );
    // A verdict that rests on the honest auditor's replay.
    let receipt_key = f.add_job(3, "s00003-inner-m00-r00", 0, 1, None).await;
    let receipt = f
        .bucket
        .get::<pb::Receipt>(&receipt_key, Expect::AnySigner)
        .await
        .expect("receipt");
    let layout = f.bucket.layout().clone();
    let verdict = pb::Verdict {
        run_id: RUN.into(),
        job_id: "s00003-inner-m00-r00".into(),
        attempt: 1,
        hotkey: receipt.hotkey.clone(),
        receipt_key: receipt_key.clone(),
        receipt_digest: receipt.digest().to_vec(),
        outcome: VerdictOutcome::Verified as i32,
        reason: "sampled; replayed by auditor".into(),
        compute_units: 1000,
        step: 3,
        auditor: honest.to_bytes().to_vec(),
        ..Default::default()
    };
    f.bucket
        .create(
            &layout.verdict(RUN, 3, "s00003-inner-m00-r00", 1),
            &verdict,
            &f.validator,
        )
        .await
        .expect("verdict");
    // The run's validator dropped the liar; an outsider's record about
    // the stranger is not a validator's word.
    let dropped = |auditor: &locus_protocol::Hotkey| pb::AuditorDropped {
        auditor: auditor.to_bytes().to_vec(),
        reason: "said failed, the validator's replay found passed".into(),
        unix_ms: now_ms(),
    };
    f.bucket
        .put(
            &layout.auditor_dropped(&liar),
            &dropped(&liar),
            &f.validator,
        )
        .await
        .expect("dropped record");
    f.bucket
        .put(
            &layout.auditor_dropped(&stranger),
            &dropped(&stranger),
            &f.outsider,
        )
        .await
        .expect("forged record");
    let (addr, stop) = start_ui(&f, Duration::from_millis(100)).await;
    let auditors = get_json(addr, "/api/auditors").await;
    let list = auditors.as_array().expect("auditors");
    assert_eq!(list.len(), 2, "{auditors:#}");
    let shown = |h: &locus_protocol::Hotkey| {
        list.iter()
            .find(|a| a["hotkey"] == h.ss58())
            .unwrap_or_else(|| panic!("{h} not shown: {auditors:#}"))
    };
    assert_eq!(shown(&honest)["verdicts"], 1);
    assert_eq!(shown(&honest)["dropped"], Value::Null);
    assert_eq!(shown(&liar)["verdicts"], 0);
    assert!(
        shown(&liar)["dropped"]
            .as_str()
            .is_some_and(|r| r.starts_with("said failed")),
        "{auditors:#}"
    );
    assert_eq!(shown(&liar)["dropped_by"], f.validator.hotkey().ss58());
    let overview = get_json(addr, "/api/overview").await;
    assert_eq!(overview["auditors"], auditors);
    let rejected = get_json(addr, "/api/rejected").await;
    assert!(
        strs(&rejected, "key").contains(&layout.auditor_dropped(&stranger).as_str()),
        "{rejected:#}"
    );
    stop.send(()).ok();
}
