//! Command-line arguments every daemon takes the same way.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Observability flags: logs, metrics and request statistics.
#[derive(clap::Args, Debug, Clone)]
pub struct OpsArgs {
    /// Serve Prometheus `/metrics` and `/healthz` on this address (e.g. 127.0.0.1:9101).
    #[arg(long, env = "LOCUS_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,
    /// Write bucket request totals to this JSON file at exit.
    #[arg(long, env = "LOCUS_STATS_FILE")]
    pub stats_file: Option<PathBuf>,
    /// Log JSON lines instead of text.
    #[arg(long, env = "LOCUS_JSON_LOGS")]
    pub json_logs: bool,
}
