//! Bucket request totals, CPU time and peak memory written at exit
//! (`--stats-file`), so a local run can report how many bucket requests and
//! CPU seconds each job cost, and how much memory each daemon held.

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
        "cpu_ms": cpu_ms(),
        "peak_rss_kb": usage().map_or(0, |u| u.ru_maxrss.max(0) as u64),
    });
    std::fs::write(path, serde_json::to_vec_pretty(&value)?)?;
    Ok(())
}

/// CPU time (user and system, all threads) this process used so far.
pub fn cpu_ms() -> u64 {
    let Some(usage) = usage() else { return 0 };
    let ms = |t: libc::timeval| t.tv_sec as u64 * 1000 + t.tv_usec as u64 / 1000;
    ms(usage.ru_utime) + ms(usage.ru_stime)
}

/// This process's resource usage (its peak resident set, `ru_maxrss`, is
/// in KiB on Linux).
fn usage() -> Option<libc::rusage> {
    // SAFETY: getrusage only writes the struct it is given.
    unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        (libc::getrusage(libc::RUSAGE_SELF, &mut usage) == 0).then_some(usage)
    }
}
