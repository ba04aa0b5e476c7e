//! The incremental reader on a large bucket: the first refresh reads each
//! object once, later refreshes of an unchanged bucket read nothing.
//! `LOCUS_SCALE_RECEIPTS=10000` runs it at the size the UI is built for;
//! the default keeps the suite fast.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::common::*;
use locus_discovery::{DiscoveryIndex, IndexConfig};
use locus_protocol::pb::VerdictOutcome;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bucket_is_read_once() {
    let n: usize = std::env::var("LOCUS_SCALE_RECEIPTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let mut f = Fixture::new().await;
    let started = Instant::now();
    for i in 0..n {
        let step = 2 + (i / 50) as u32;
        let job = format!("s{step:05}-inner-m{:02}-r{:02}", (i % 50) / 10, i % 10);
        let outcome = if i % 4 == 0 {
            VerdictOutcome::Verified
        } else {
            VerdictOutcome::Unsampled
        };
        f.add_job(step, &job, i % 2, 1, Some(outcome)).await;
    }
    eprintln!(
        "wrote {n} jobs, assignments, receipts and verdicts in {:?}",
        started.elapsed()
    );

    let bucket =
        locus_protocol::Bucket::open(f.dir.path().to_str().expect("path"), NETUID).expect("bucket");
    let c = bucket.counts();
    let mut index = DiscoveryIndex::new(bucket.clone(), f.owner_hotkey(), IndexConfig::default());
    let t = Instant::now();
    index.refresh().await.expect("refresh");
    let first = t.elapsed();
    let gets = c.gets.load(Ordering::Relaxed);
    let lists = c.lists.load(Ordering::Relaxed);
    // Fixture objects (51) plus four per added job, each read exactly once.
    assert_eq!(gets, 51 + 4 * n as u64);

    let t = Instant::now();
    let snapshot = index.snapshot();
    let build = t.elapsed();
    assert_eq!(snapshot.receipts.len(), 10 + n);

    let t = Instant::now();
    let report = index.refresh().await.expect("refresh");
    let second = t.elapsed();
    assert!(!report.changed);
    assert_eq!(
        c.gets.load(Ordering::Relaxed),
        gets,
        "unchanged bucket re-read"
    );
    let lists_per_refresh = c.lists.load(Ordering::Relaxed) - lists;
    assert_eq!(lists_per_refresh, 9);
    eprintln!(
        "{n} receipts: first refresh {first:?} ({gets} gets, {lists} lists), snapshot {build:?}, \
         unchanged refresh {second:?} (0 gets, {lists_per_refresh} lists)"
    );
    assert!(second < Duration::from_secs(5));
}
