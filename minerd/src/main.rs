//! `minerd`: the miner daemon. See `--help`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use locus_daemon::args::DeviceArgs;
use locus_daemon::limits::{self, Setting, SettingError};
use locus_daemon::{Shutdown, logging, stats, telemetry};
use locus_protocol::{Bucket, Hotkey, Keypair};
use locus_workloads::Device;
use minerd::adversary::Adversary;
#[cfg(feature = "fault-injection")]
use minerd::faults::FaultMode;
use minerd::worker::{Worker, WorkerConfig};

/// Runs Locus jobs for one hotkey: a supervisor forks one worker process per
/// GPU (or `--workers N` CPU workers) and restarts workers that die. Workers
/// execute the jobs the owner assigns to this hotkey, after verifying the
/// owner's signatures, and write signed receipts.
#[derive(Parser, Debug)]
#[command(name = "minerd", version)]
struct Cli {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    devices: DeviceArgs,
    /// Serve Prometheus `/metrics` and `/healthz` on this address; worker
    /// `i` serves its own `/metrics` and `/healthz` on the port after it plus
    /// `i` (so the port must leave room for every worker). The supervisor's
    /// `/healthz` answers 503, naming the workers, while a worker is down or
    /// crash-looping.
    #[arg(long, env = "LOCUS_METRICS_ADDR")]
    metrics_addr: Option<std::net::SocketAddr>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// One worker process (started by the supervisor).
    #[command(hide = true)]
    Worker {
        #[arg(long)]
        index: u32,
        #[arg(long)]
        device: Device,
        #[arg(long)]
        metrics_addr: Option<std::net::SocketAddr>,
    },
}

/// Arguments every worker shares with the supervisor.
#[derive(Args, Debug, Clone)]
struct Common {
    /// Bucket: a local directory, file:// URL or s3://NAME, shared with the
    /// owner. On S3 a miner reads with S3_ENDPOINT (or S3_ENDPOINT_URL),
    /// S3_REGION, S3_PATH_STYLE and read-only AWS_* keys (or S3_ANONYMOUS),
    /// and writes only through the owner's grants.
    #[arg(long, env = "LOCUS_BUCKET")]
    bucket: String,
    /// Subnet id; selects the `v1/netuid=N/` part of the bucket.
    #[arg(long, env = "LOCUS_NETUID", default_value_t = 3)]
    netuid: u16,
    /// This miner's ED25519 hotkey file (Bittensor wallet hotkey JSON or
    /// `locus keygen`); without it, the wallet's hotkey (`--wallet.*`).
    #[arg(long, env = "LOCUS_HOTKEY_FILE")]
    hotkey_file: Option<PathBuf>,
    #[command(flatten)]
    wallet: locus_daemon::args::WalletArgs,
    /// The subnet owner's hotkey (SS58): only manifests it signed are executed.
    #[arg(long, env = "LOCUS_OWNER")]
    owner: Hotkey,
    /// Fastest assignment poll in milliseconds (backs off to 1 s when idle);
    /// 1 to 1000.
    #[arg(
        long,
        env = "LOCUS_POLL_MS",
        default_value_t = 100,
        value_parser = limits::between(limits::MIN_POLL_MS, limits::MAX_MINER_POLL_MS, "")
    )]
    poll_ms: u64,
    /// Seconds between heartbeats; at least 1, and best at most half the
    /// owner's `--heartbeat-ttl-secs` (15 by default).
    #[arg(
        long,
        env = "LOCUS_HEARTBEAT_SECS",
        default_value_t = 5,
        value_parser = limits::at_least(1u64, "0 would write heartbeats without pause")
    )]
    heartbeat_secs: u64,
    /// Write bucket request totals to this JSON file at exit (workers add `.wN`).
    #[arg(long, env = "LOCUS_STATS_FILE")]
    stats_file: Option<PathBuf>,
    /// Log JSON lines instead of text.
    #[arg(long, env = "LOCUS_JSON_LOGS")]
    json_logs: bool,
    /// Test-only: misbehave on purpose (see docs/security.md for the modes).
    #[cfg(feature = "fault-injection")]
    #[arg(long, env = "LOCUS_FAULT_MODE", value_parser = FaultMode::value_parser())]
    fault_mode: Option<FaultMode>,
}

impl Common {
    /// The same arguments as a command line, for the worker processes.
    fn to_args(&self) -> Vec<String> {
        let mut args = vec![
            format!("--bucket={}", self.bucket),
            format!("--netuid={}", self.netuid),
            format!("--owner={}", self.owner),
            format!("--poll-ms={}", self.poll_ms),
            format!("--heartbeat-secs={}", self.heartbeat_secs),
        ];
        // Workers load the key the supervisor found, wherever it came from.
        if let Some(path) = &self.hotkey_file {
            args.push(format!("--hotkey-file={}", path.display()));
        }
        if let Some(path) = &self.stats_file {
            args.push(format!("--stats-file={}", path.display()));
        }
        if self.json_logs {
            args.push("--json-logs".into());
        }
        #[cfg(feature = "fault-injection")]
        if let Some(fault) = self.fault_mode {
            args.push(format!("--fault-mode={fault}"));
        }
        args
    }

    /// The misbehaviour asked for, for the log (only test builds have one).
    fn fault(&self) -> Option<&'static str> {
        #[cfg(feature = "fault-injection")]
        return self.fault_mode.map(|f| f.name());
        #[cfg(not(feature = "fault-injection"))]
        None
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    locus_daemon::exit::report(run().await)
}

async fn run() -> anyhow::Result<()> {
    let mut cli: Cli = locus_daemon::config::parse_checked(check);
    logging::init(cli.common.json_logs);
    let common = &mut cli.common;
    let key = common
        .wallet
        .load(common.hotkey_file.as_deref(), "--hotkey-file")?;
    common.hotkey_file = Some(common.wallet.key_path(common.hotkey_file.as_deref())?);
    // The supervisor checks the bucket once before it starts any worker;
    // each worker's first request finds out soon enough if that changed.
    if cli.command.is_none() {
        Bucket::open(&cli.common.bucket, cli.common.netuid)?
            .check_access()
            .await?;
    }
    let shutdown = Shutdown::install()?;
    match cli.command {
        Some(Command::Worker {
            index,
            device,
            metrics_addr,
        }) => run_worker(cli.common, key, index, device, metrics_addr, &shutdown).await,
        None => {
            let devices = devices(&cli);
            tracing::info!(
                hotkey = %key.hotkey(), owner = %cli.common.owner, bucket = %cli.common.bucket,
                netuid = cli.common.netuid, devices = ?devices.iter().map(ToString::to_string).collect::<Vec<_>>(),
                fault = ?cli.common.fault(), "minerd starting"
            );
            let metrics = locus_observe::Metrics::new();
            let bucket = Bucket::open(&cli.common.bucket, cli.common.netuid)?;
            telemetry::serve(cli.metrics_addr, &metrics, &bucket, &shutdown).await?;
            let restarts = minerd::supervisor::supervise(
                devices,
                cli.common.to_args(),
                cli.metrics_addr,
                &metrics,
                &shutdown,
            )
            .await?;
            tracing::info!(restarts, "minerd stopped");
            Ok(())
        }
    }
}

fn devices(cli: &Cli) -> Vec<Device> {
    cli.devices.resolve()
}

/// Start-up checks of what parsing cannot see (each flag's own range is
/// checked while parsing): devices this build and host can use, and a
/// metrics port for every worker.
fn check(cli: &Cli) -> Result<(), SettingError> {
    let usable = |setting: Setting, device: &Device| {
        device
            .check_available()
            .map_err(|why| setting.invalid(device, why))
    };
    if let Some(Command::Worker { device, .. }) = &cli.command {
        return usable(Setting::flag("device"), device);
    }
    cli.devices.check(cli.metrics_addr)
}

async fn run_worker(
    common: Common,
    key: Keypair,
    index: u32,
    device: Device,
    metrics_addr: Option<std::net::SocketAddr>,
    shutdown: &Shutdown,
) -> anyhow::Result<()> {
    minerd::supervisor::stop_with_supervisor();
    let bucket = Bucket::open(&common.bucket, common.netuid)?;
    let metrics = locus_observe::Metrics::new();
    // A worker whose metrics cannot be served does not start: it would work
    // unseen. It exits, the supervisor retries it with back-off (the port
    // may be held by its previous instance, still exiting) and its /healthz
    // names it meanwhile.
    if let Err(e) = telemetry::serve(metrics_addr, &metrics, &bucket, shutdown).await {
        let addr = metrics_addr.map(|a| a.to_string()).unwrap_or_default();
        tracing::error!(
            worker = index, %addr, error = %e,
            "worker cannot serve its /metrics on {addr} (the supervisor's --metrics-addr port + 1 + \
             worker index): free that port or choose another --metrics-addr; the worker does not \
             run without its metrics"
        );
        return Err(e.context(format!("worker {index}: serving /metrics on {addr}")));
    }
    let cfg = WorkerConfig {
        index,
        device,
        owner: common.owner,
        poll_min: Duration::from_millis(common.poll_ms),
        poll_max: Duration::from_secs(1),
        heartbeat_every: Duration::from_secs(common.heartbeat_secs),
        clock: locus_protocol::time::Clock::system(),
    };
    #[cfg(feature = "fault-injection")]
    if let Some(mode) = common.fault_mode {
        let attacker = minerd::attacker::Attacker::new(mode);
        let worker = Worker::with_adversary(bucket.clone(), key, cfg, attacker);
        return work(worker, &bucket, &metrics, &common, index, shutdown).await;
    }
    let worker = Worker::new(bucket.clone(), key, cfg);
    work(worker, &bucket, &metrics, &common, index, shutdown).await
}

/// Runs `worker` until shutdown, then writes its request totals.
async fn work<A: Adversary>(
    mut worker: Worker<A>,
    bucket: &Bucket,
    metrics: &locus_observe::Metrics,
    common: &Common,
    index: u32,
    shutdown: &Shutdown,
) -> anyhow::Result<()> {
    worker.set_metrics(metrics);
    let result = worker.run(shutdown).await;
    if let Some(path) = &common.stats_file {
        let path = PathBuf::from(format!("{}.w{index}", path.display()));
        stats::write(&path, bucket, worker.jobs_done())?;
    }
    result
}
