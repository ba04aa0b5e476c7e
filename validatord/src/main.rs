//! `validatord`: the owner's validator. See `--help`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args as ClapArgs, Parser, Subcommand};
use locus_daemon::args::DeviceArgs;
use locus_daemon::{Shutdown, limits, logging, stats, telemetry};
use locus_protocol::{Bucket, Hotkey};
use locus_workloads::Device;
use validatord::audit::AuditSettings;
use validatord::auditor::{Auditor, AuditorConfig};
use validatord::driver::{Settings, Validator};

/// Samples miners' receipts unpredictably, replays sampled jobs on Burn,
/// writes signed verdicts and per-window scores, and sets the weights on
/// chain (a signed dry run unless `--set-weights`).
#[derive(Parser, Debug)]
#[command(name = "validatord", version)]
struct Args {
    /// Bucket: a local directory, file:// URL or s3://NAME, shared with
    /// owner and miners.
    /// On S3 the variables S3_ENDPOINT (or S3_ENDPOINT_URL), S3_REGION,
    /// S3_PATH_STYLE, S3_ANONYMOUS, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY
    /// and AWS_SESSION_TOKEN (the AWS keys also as `NAME_FILE`) configure the
    /// client.
    #[arg(long, env = "LOCUS_BUCKET")]
    bucket: String,
    /// Subnet id; selects the `v1/netuid=N/` part of the bucket.
    #[arg(long, env = "LOCUS_NETUID", default_value_t = 3)]
    netuid: u16,
    /// This validator's ED25519 key file. Signs verdicts and scores; its
    /// secret also drives sampling, so miners cannot predict it. Without
    /// it, the wallet's hotkey (`--wallet.*`), which must then be ED25519.
    #[arg(long, env = "LOCUS_KEY")]
    key: Option<PathBuf>,
    /// The subnet owner's hotkey (SS58): manifests and assignments must be signed by it.
    #[arg(long, env = "LOCUS_OWNER")]
    owner: Hotkey,
    /// Fraction of receipts replayed, in [0, 1].
    #[arg(long, env = "LOCUS_SAMPLE_RATE", default_value_t = 0.25, value_parser = limits::fraction)]
    sample_rate: f64,
    /// Replays a hotkey must pass in a run before it is only sampled: until
    /// then every receipt it writes is replayed (0 turns probation off).
    #[arg(long, env = "LOCUS_PROBATION_REPLAYS", default_value_t = 3)]
    probation_replays: u32,
    /// Replay device (`cpu`, or `cuda:N` in a build with `--features cuda`).
    #[arg(long, env = "LOCUS_DEVICE", default_value = "cpu")]
    device: Device,
    /// Fastest bucket poll in milliseconds (backs off to 2 s when idle);
    /// 1 to 2000.
    #[arg(
        long,
        env = "LOCUS_POLL_MS",
        default_value_t = 100,
        value_parser = limits::between(limits::MIN_POLL_MS, limits::MAX_POLL_MS, "")
    )]
    poll_ms: u64,
    /// Subtensor network to set weights on when a window completes:
    /// `finney`, `test`, `local` or a ws:// / wss:// URL (btcli's
    /// `--subtensor.network`). Without it or `--chain-endpoint`, weights are
    /// only written to the bucket (the score window).
    #[arg(
        long,
        visible_aliases = ["subtensor.network", "subtensor"],
        env = "BT_SUBTENSOR_NETWORK"
    )]
    network: Option<String>,
    /// The Subtensor node's ws:// or wss:// URL, over the network's own
    /// (btcli's `--subtensor.chain_endpoint`).
    #[arg(
        long,
        visible_aliases = ["subtensor.chain_endpoint", "subtensor.chain-endpoint"],
        env = "BT_SUBTENSOR_CHAIN_ENDPOINT"
    )]
    chain_endpoint: Option<String>,
    /// Actually submit `set_weights` (default: dry run — build and sign the
    /// exact extrinsic, record it in the bucket, submit nothing).
    #[arg(long, env = "LOCUS_SET_WEIGHTS")]
    set_weights: bool,
    /// Seconds to wait for the Subtensor node to take a connection before
    /// the weight push gives up and retries later (at least 1).
    #[arg(
        long,
        env = "LOCUS_SUBTENSOR_CONNECT_TIMEOUT_SECS",
        default_value_t = 30,
        value_parser = limits::at_least(1u64, "")
    )]
    subtensor_connect_timeout_secs: u64,
    /// Seconds to wait for each chain call of a weight push (reading the
    /// metagraph; setting weights, in submit mode until the extrinsic is in
    /// a block) before it gives up and retries later (at least 1).
    #[arg(
        long,
        env = "LOCUS_SUBTENSOR_CALL_TIMEOUT_SECS",
        default_value_t = 60,
        value_parser = limits::at_least(1u64, "")
    )]
    subtensor_call_timeout_secs: u64,
    /// The wallet whose hotkey (sr25519 or ed25519) signs weights on chain,
    /// and signs verdicts when `--key` is not given.
    #[command(flatten)]
    wallet: locus_daemon::args::WalletArgs,
    /// Exit once this run is complete and its scores are final.
    #[arg(long, env = "LOCUS_EXIT_AFTER_RUN", value_name = "RUN_ID")]
    exit_after_run: Option<String>,
    /// Auditors' ED25519 hotkeys (SS58, comma-separated): sampled replays
    /// of non-critical jobs go to them in turn, and their results count
    /// only as far as this validator checks them. Empty: replay everything
    /// here.
    #[arg(long, env = "LOCUS_AUDITORS", value_delimiter = ',')]
    auditors: Vec<Hotkey>,
    /// Fraction of auditors' passing results this validator replays again
    /// (a secret draw); failing results are always replayed again. In
    /// [0, 1].
    #[arg(long, env = "LOCUS_AUDIT_RECHECK_RATE", default_value_t = 0.1, value_parser = limits::fraction)]
    audit_recheck_rate: f64,
    /// Seconds an auditor has to answer before this validator replays the
    /// receipt itself (at least 1).
    #[arg(
        long,
        env = "LOCUS_AUDIT_TIMEOUT_SECS",
        default_value_t = 60,
        value_parser = limits::at_least(1u64, "")
    )]
    audit_timeout_secs: u64,
    #[command(flatten)]
    ops: locus_daemon::args::OpsArgs,
    #[command(subcommand)]
    mode: Option<Mode>,
}

#[derive(Subcommand, Debug)]
enum Mode {
    /// Run as an auditor for a validator (on the owner's GPU hosts): a
    /// supervisor forks one worker per device that replays the receipts the
    /// validator sends it and signs what it finds. `--key` or the wallet is
    /// the auditor's own key; `--owner`, `--bucket`, `--netuid` and
    /// `--poll-ms` apply, the validator's other flags do not. On S3 an
    /// auditor needs read-only credentials only: it writes through the
    /// validator's grants.
    Auditor(AuditorArgs),
}

#[derive(ClapArgs, Debug)]
struct AuditorArgs {
    /// The validator whose audit jobs to take (SS58).
    #[arg(long, env = "LOCUS_VALIDATOR")]
    validator: Hotkey,
    #[command(flatten)]
    devices: DeviceArgs,
    /// Worker processes of this auditor, which split its jobs (set by the
    /// supervisor for its workers).
    #[arg(long, hide = true, default_value_t = 1)]
    shards: u64,
    /// Test-only: answer the opposite of what the replay found.
    #[cfg(feature = "fault-injection")]
    #[arg(long, env = "LOCUS_LIE")]
    lie: bool,
    #[command(subcommand)]
    worker: Option<AuditorWorker>,
}

#[derive(Subcommand, Debug)]
enum AuditorWorker {
    /// One auditor worker process (started by the supervisor).
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

impl AuditorArgs {
    fn lie(&self) -> bool {
        #[cfg(feature = "fault-injection")]
        return self.lie;
        #[cfg(not(feature = "fault-injection"))]
        false
    }

    fn devices(&self) -> Vec<Device> {
        self.devices.resolve()
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    locus_daemon::exit::report(run().await)
}

async fn run() -> anyhow::Result<()> {
    let args: Args = locus_daemon::config::parse_checked(check);
    logging::init(args.ops.json_logs);
    let key = args.wallet.load(args.key.as_deref(), "--key")?;
    let bucket = Bucket::open(&args.bucket, args.netuid)?;
    bucket.check_access().await?;
    if let Some(Mode::Auditor(auditor)) = &args.mode {
        return run_auditor(&args, auditor, key, bucket).await;
    }
    tracing::info!(
        bucket = %args.bucket, netuid = args.netuid, validator = %key.hotkey(), owner = %args.owner,
        sample_rate = args.sample_rate, device = %args.device, "validatord starting"
    );
    let settings = Settings {
        sample_rate: args.sample_rate,
        probation_replays: args.probation_replays,
        poll_min: Duration::from_millis(args.poll_ms),
        poll_max: Duration::from_secs(2),
        device: args.device,
        exit_after_run: args.exit_after_run,
        chain: match args.chain_endpoint.as_ref().or(args.network.as_ref()) {
            None => None,
            Some(endpoint) => {
                let signer =
                    locus_chain::ValidatorSigner::from_wallet_file(args.wallet.hotkey_file()?)?;
                let policy = validatord::weights::PushPolicy {
                    connect_timeout: Duration::from_secs(args.subtensor_connect_timeout_secs),
                    call_timeout: Duration::from_secs(args.subtensor_call_timeout_secs),
                    ..Default::default()
                };
                tracing::info!(
                    subtensor = %endpoint, signer = %signer.ss58(), dry_run = !args.set_weights,
                    connect_timeout_secs = args.subtensor_connect_timeout_secs,
                    call_timeout_secs = args.subtensor_call_timeout_secs,
                    "weights go to chain"
                );
                Some(validatord::weights::ChainTarget {
                    endpoint: endpoint.clone(),
                    netuid: args.netuid,
                    signer,
                    mode: if args.set_weights {
                        locus_chain::Mode::Submit
                    } else {
                        locus_chain::Mode::DryRun
                    },
                    policy,
                })
            }
        },
        audit: AuditSettings {
            auditors: args.auditors.clone(),
            recheck_rate: args.audit_recheck_rate,
            timeout: Duration::from_secs(args.audit_timeout_secs),
        },
        clock: locus_protocol::time::Clock::system(),
        checkpoint_every: validatord::driver::CHECKPOINT_EVERY,
    };
    if !settings.audit.auditors.is_empty() {
        tracing::info!(
            auditors = ?settings.audit.auditors.iter().map(ToString::to_string).collect::<Vec<_>>(),
            recheck_rate = settings.audit.recheck_rate, timeout_secs = args.audit_timeout_secs,
            "sampled replays go to auditors"
        );
    }
    let shutdown = Shutdown::install()?;
    let metrics = locus_observe::Metrics::new();
    telemetry::serve(args.ops.metrics_addr, &metrics, &bucket, &shutdown).await?;
    let mut validator = Validator::new(bucket.clone(), args.owner, key, settings);
    validator.set_metrics(&metrics);
    let result = validator.run(&shutdown).await;
    if let Some(path) = &args.ops.stats_file {
        stats::write(path, &bucket, validator.receipts_judged)?;
    }
    result
}

/// Start-up checks of what parsing cannot see: devices this build and host
/// can use.
fn check(args: &Args) -> Result<(), limits::SettingError> {
    let usable = |setting: limits::Setting, device: &Device| {
        device
            .check_available()
            .map_err(|why| setting.invalid(device, why))
    };
    match &args.mode {
        None => usable(limits::Setting::new("device", "LOCUS_DEVICE"), &args.device),
        Some(Mode::Auditor(auditor)) => {
            if let Some(AuditorWorker::Worker { device, .. }) = &auditor.worker {
                return usable(limits::Setting::flag("device"), device);
            }
            auditor.devices.check(args.ops.metrics_addr)
        }
    }
}

/// Auditor mode: the supervisor forks one worker per device; a worker
/// takes the validator's audit jobs.
async fn run_auditor(
    args: &Args,
    auditor: &AuditorArgs,
    key: locus_protocol::Keypair,
    bucket: Bucket,
) -> anyhow::Result<()> {
    let shutdown = Shutdown::install()?;
    match &auditor.worker {
        Some(AuditorWorker::Worker {
            index,
            device,
            metrics_addr,
        }) => {
            locus_daemon::supervisor::stop_with_supervisor();
            let metrics = locus_observe::Metrics::new();
            telemetry::serve(*metrics_addr, &metrics, &bucket, &shutdown).await?;
            let cfg = AuditorConfig {
                validator: auditor.validator,
                owner: args.owner,
                device: device.clone(),
                poll_min: Duration::from_millis(args.poll_ms),
                poll_max: Duration::from_secs(1),
                shard: (u64::from(*index), auditor.shards),
                lie: auditor.lie(),
                clock: locus_protocol::time::Clock::system(),
            };
            tracing::info!(worker = index, auditor = %key.hotkey(), "auditor worker starting");
            let mut worker = Auditor::new(bucket.clone(), key, cfg);
            let result = worker.run(&shutdown).await;
            if let Some(path) = &args.ops.stats_file {
                let path = PathBuf::from(format!("{}.w{index}", path.display()));
                stats::write(&path, &bucket, worker.audits_done)?;
            }
            result
        }
        None => {
            let devices = auditor.devices();
            tracing::info!(
                auditor = %key.hotkey(), validator = %auditor.validator, bucket = %args.bucket,
                devices = ?devices.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "validatord auditor starting"
            );
            let metrics = locus_observe::Metrics::new();
            telemetry::serve(args.ops.metrics_addr, &metrics, &bucket, &shutdown).await?;
            let key_file = args.wallet.key_path(args.key.as_deref())?;
            let mut worker_args = vec![
                format!("--bucket={}", args.bucket),
                format!("--netuid={}", args.netuid),
                format!("--owner={}", args.owner),
                format!("--key={}", key_file.display()),
                format!("--poll-ms={}", args.poll_ms),
            ];
            if args.ops.json_logs {
                worker_args.push("--json-logs".into());
            }
            if let Some(path) = &args.ops.stats_file {
                worker_args.push(format!("--stats-file={}", path.display()));
            }
            worker_args.push("auditor".into());
            worker_args.push(format!("--validator={}", auditor.validator));
            worker_args.push(format!("--shards={}", devices.len()));
            if auditor.lie() {
                worker_args.push("--lie".into());
            }
            let restarts = locus_daemon::supervisor::supervise(
                devices,
                worker_args,
                args.ops.metrics_addr,
                &metrics,
                &shutdown,
            )
            .await?;
            tracing::info!(restarts, "auditor stopped");
            Ok(())
        }
    }
}
