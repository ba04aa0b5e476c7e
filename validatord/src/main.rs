//! `validatord`: the owner's validator. See `--help`.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use locus_daemon::{Shutdown, limits, logging, stats, telemetry};
use locus_protocol::{Bucket, Hotkey};
use locus_workloads::Device;
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
    #[command(flatten)]
    ops: locus_daemon::args::OpsArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Args = locus_daemon::config::parse_checked(|args: &Args| {
        args.device.check_available().map_err(|why| {
            limits::Setting::new("device", "LOCUS_DEVICE").invalid(&args.device, why)
        })
    });
    logging::init(args.ops.json_logs);
    let key = args.wallet.load(args.key.as_deref(), "--key")?;
    let bucket = Bucket::open(&args.bucket, args.netuid)?;
    bucket.check_access().await?;
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
    };
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
