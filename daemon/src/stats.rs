//! Bucket request totals written at exit (`--stats-file`), so a local run can
//! report how many bucket requests each job cost.

use std::path::Path;
use std::sync::atomic::Ordering;

use locus_protocol::Bucket;

pub fn write(path: &Path, bucket: &Bucket, jobs: u64) -> anyhow::Result<()> {
    let c = bucket.counts();
    let value = serde_json::json!({
        "gets": c.gets.load(Ordering::Relaxed),
        "puts": c.puts.load(Ordering::Relaxed),
        "lists": c.lists.load(Ordering::Relaxed),
        "bytes_read": c.bytes_read.load(Ordering::Relaxed),
        "errors": c.errors.load(Ordering::Relaxed),
        "jobs": jobs,
    });
    std::fs::write(path, serde_json::to_vec_pretty(&value)?)?;
    Ok(())
}
