//! `orchestratord`: the owner's run orchestrator. See `--help`.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use locus_daemon::{Shutdown, limits, logging, stats, telemetry};
use locus_protocol::paths::validate_id;
use locus_protocol::{Bucket, Hotkey};
use orchestratord::driver::{Orchestrator, Settings};

/// Splits a training run into signed jobs in the shared bucket, assigns them
/// to live miners, accepts results, reassigns expired leases, and resumes
/// from the bucket after a restart.
#[derive(Parser, Debug)]
#[command(name = "orchestratord", version)]
struct Args {
    /// Bucket: a local directory, file:// URL or s3://NAME, shared with
    /// miners and validators.
    /// On S3 the variables S3_ENDPOINT (or S3_ENDPOINT_URL), S3_REGION,
    /// S3_PATH_STYLE, S3_ANONYMOUS, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY
    /// and AWS_SESSION_TOKEN (the AWS keys also as `NAME_FILE`) configure the
    /// client.
    #[arg(long, env = "LOCUS_BUCKET")]
    bucket: String,
    /// Subnet id; selects the `v1/netuid=N/` part of the bucket.
    #[arg(long, env = "LOCUS_NETUID", default_value_t = 3)]
    netuid: u16,
    /// The owner's ED25519 key file (see `locus keygen`). Signs every
    /// manifest. Without it, the wallet's hotkey (`--wallet.*`).
    #[arg(long, env = "LOCUS_OWNER_KEY")]
    owner_key: Option<PathBuf>,
    #[command(flatten)]
    wallet: locus_daemon::args::WalletArgs,
    /// Run id: [A-Za-z0-9._-], at most 64 characters. An existing run resumes.
    #[arg(long, env = "LOCUS_RUN_ID")]
    run_id: String,
    /// Training steps (each a DAG of jobs ending in an eval); at least 1.
    #[arg(long, env = "LOCUS_STEPS", default_value_t = 5, value_parser = limits::steps())]
    steps: u32,
    #[command(flatten)]
    workload: orchestratord::workload::WorkloadArgs,
    /// Validator hotkeys (SS58) whose verdicts count for this run. Repeatable,
    /// or comma-separated.
    #[arg(
        long = "validator",
        env = "LOCUS_VALIDATOR",
        value_name = "SS58",
        value_delimiter = ','
    )]
    validators: Vec<Hotkey>,
    /// Registered miner hotkeys (SS58) that get standing heartbeat grants on
    /// an S3 bucket. Repeatable, or comma-separated.
    #[arg(
        long = "miner",
        value_name = "SS58",
        env = "LOCUS_MINER",
        value_delimiter = ','
    )]
    miners: Vec<Hotkey>,
    /// Heartbeat URLs granted per miner (its worker indices 0..N); at least 1.
    #[arg(
        long,
        env = "LOCUS_MAX_WORKERS_PER_MINER",
        default_value_t = 16,
        value_parser = limits::at_least(1u32, "a miner with no heartbeat grant cannot get work on S3")
    )]
    max_workers_per_miner: u32,
    /// Live workers to wait for before handing out the first job.
    #[arg(long, env = "LOCUS_MIN_WORKERS", default_value_t = 1)]
    min_workers: usize,
    /// Seconds a miner has to finish an assigned job before it is reassigned;
    /// at least 2.
    #[arg(
        long,
        env = "LOCUS_LEASE_SECS",
        default_value_t = limits::DEFAULT_LEASE_SECS,
        value_parser = limits::lease_secs()
    )]
    lease_secs: u64,
    /// A worker whose last heartbeat is older than this is not given work;
    /// at least 2, and best at least twice the miners' `--heartbeat-secs`.
    #[arg(
        long,
        env = "LOCUS_HEARTBEAT_TTL_SECS",
        default_value_t = 15,
        value_parser = limits::at_least(limits::MIN_HEARTBEAT_TTL_SECS, TTL_WHY)
    )]
    heartbeat_ttl_secs: u64,
    /// Most jobs queued on one worker at a time; at least 1.
    #[arg(
        long,
        env = "LOCUS_MAX_INFLIGHT_PER_WORKER",
        default_value_t = 2,
        value_parser = limits::at_least(1usize, "with 0 no job is ever assigned")
    )]
    max_inflight_per_worker: usize,
    /// Fastest bucket poll, in milliseconds (backs off to 2 s when idle);
    /// 1 to 2000.
    #[arg(
        long,
        env = "LOCUS_POLL_MS",
        default_value_t = 100,
        value_parser = limits::between(limits::MIN_POLL_MS, limits::MAX_POLL_MS, "")
    )]
    poll_ms: u64,
    /// Keep running after the run completes (default: exit 0).
    #[arg(long, env = "LOCUS_KEEP_RUNNING")]
    keep_running: bool,
    #[command(flatten)]
    ops: locus_daemon::args::OpsArgs,
}

/// What a heartbeat TTL under [`limits::MIN_HEARTBEAT_TTL_SECS`] breaks.
const TTL_WHY: &str = "heartbeats are re-read every 2 s, so with less every worker looks dead";

#[tokio::main]
async fn main() -> std::process::ExitCode {
    locus_daemon::exit::report(run().await)
}

async fn run() -> anyhow::Result<()> {
    let args: Args = locus_daemon::config::parse();
    logging::init(args.ops.json_logs);
    validate_id("run id", &args.run_id).map_err(anyhow::Error::msg)?;
    let owner = args.wallet.load(args.owner_key.as_deref(), "--owner-key")?;
    let bucket = Bucket::open(&args.bucket, args.netuid)?;
    bucket.check_access().await?;
    if bucket.is_remote() && !bucket.can_presign() {
        anyhow::bail!(
            "the orchestrator needs write credentials for {} (it presigns miners' grants)",
            args.bucket
        );
    }
    tracing::info!(
        bucket = %args.bucket, netuid = args.netuid, run = %args.run_id, steps = args.steps,
        owner = %owner.hotkey(), validators = args.validators.len(), lease_secs = args.lease_secs,
        "orchestratord starting"
    );
    let workload = args.workload.build()?;
    tracing::info!(workload = workload.name(), "workload ready");
    let settings = Settings {
        netuid: args.netuid,
        run_id: args.run_id,
        steps: args.steps,
        workload,
        validators: args.validators,
        lease: Duration::from_secs(args.lease_secs),
        heartbeat_ttl: Duration::from_secs(args.heartbeat_ttl_secs),
        poll_min: Duration::from_millis(args.poll_ms),
        poll_max: Duration::from_secs(2),
        max_inflight_per_worker: args.max_inflight_per_worker,
        exit_when_done: !args.keep_running,
        miners: args.miners,
        max_workers_per_miner: args.max_workers_per_miner,
        min_workers: args.min_workers,
        clock: locus_protocol::time::Clock::system(),
    };
    let shutdown = Shutdown::install()?;
    let metrics = locus_observe::Metrics::new();
    telemetry::serve(args.ops.metrics_addr, &metrics, &bucket, &shutdown).await?;
    // Start-up reads the run back from the bucket; a passing storage error
    // there is retried rather than fatal.
    let mut owner = Some(owner);
    let mut tries = 0;
    let mut orchestrator = loop {
        let key = match owner.take() {
            Some(key) => key,
            None => args.wallet.load(args.owner_key.as_deref(), "--owner-key")?,
        };
        match Orchestrator::start(bucket.clone(), key, settings.clone()).await {
            Ok(orchestrator) => break orchestrator,
            Err(e) if tries < 5 && is_storage_error(&e) => {
                tries += 1;
                tracing::warn!(error = %e, "start-up read failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => return Err(e),
        }
    };
    orchestrator.set_metrics(&metrics);
    let result = orchestrator.run(&shutdown).await;
    if let Some(path) = &args.ops.stats_file {
        stats::write(path, &bucket, orchestrator.jobs_accepted)?;
    }
    result
}

fn is_storage_error(e: &anyhow::Error) -> bool {
    e.downcast_ref::<locus_protocol::BucketError>()
        .is_some_and(locus_protocol::BucketError::is_transient)
}
