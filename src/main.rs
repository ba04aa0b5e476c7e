//! `locus`: operator commands that are not daemons: key generation and the
//! local smoke run of all three daemons.

mod audit;
mod export;
mod smoke;
mod train;

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use locus_protocol::Keypair;

/// Locus: a bucket-native distributed training runtime for a Bittensor subnet.
#[derive(Parser, Debug)]
#[command(name = "locus", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Write a new ED25519 key file (mode 0600) and print its SS58 address.
    Keygen {
        /// Where to write the key; refuses to overwrite.
        #[arg(long, env = "LOCUS_OUT")]
        out: PathBuf,
    },
    /// Run orchestrator, miners and validator as separate processes on a
    /// temporary local bucket and print the resulting scores and weights.
    LocalSmoke(smoke::SmokeArgs),
    /// Write a run's trained model (its final parameters, verified against
    /// the owner's run state) as a safetensors file.
    Export(export::ExportArgs),
    /// Train a workload in this process alone, without a bucket: the
    /// reference a distributed run ends equal to, and its speed baseline.
    Train(train::TrainArgs),
    /// Serve the live discovery UI (read-only) over a bucket: workers, runs,
    /// receipts, verdicts and scores, traceable to each receipt.
    DiscoveryUi(DiscoveryUiArgs),
}

#[derive(clap::Args, Debug)]
struct DiscoveryUiArgs {
    /// Bucket: a local directory, file:// URL or s3://NAME (S3 settings from
    /// S3_ENDPOINT or S3_ENDPOINT_URL, S3_REGION, S3_PATH_STYLE, S3_ANONYMOUS
    /// and AWS_*).
    #[arg(long, env = "LOCUS_BUCKET")]
    bucket: String,
    /// Subnet id.
    #[arg(long, env = "LOCUS_NETUID", default_value_t = 3)]
    netuid: u16,
    /// The subnet owner's hotkey (SS58): runs, jobs and assignments must be signed by it.
    #[arg(long, env = "LOCUS_OWNER")]
    owner: locus_protocol::Hotkey,
    /// Port to listen on.
    #[arg(long, env = "LOCUS_PORT", default_value_t = 8765)]
    port: u16,
    /// Address to bind (keep loopback and tunnel in, or put a proxy in front).
    #[arg(long, env = "LOCUS_BIND", default_value = "127.0.0.1")]
    bind: std::net::IpAddr,
    /// Open the UI in the default browser.
    #[arg(long, env = "LOCUS_OPEN_BROWSER")]
    open_browser: bool,
}

fn main() -> anyhow::Result<()> {
    let cli: Cli = locus_daemon::config::parse_checked(|cli: &Cli| match &cli.command {
        Command::LocalSmoke(args) => smoke::check(args),
        _ => Ok(()),
    });
    match cli.command {
        Command::Keygen { out } => {
            let key = Keypair::generate();
            key.write_key_file(&out)
                .with_context(|| format!("writing {}", out.display()))?;
            println!("{}", key.hotkey());
            Ok(())
        }
        Command::DiscoveryUi(args) => {
            let runtime = tokio::runtime::Runtime::new()?;
            runtime.block_on(discovery_ui(args))
        }
        Command::Train(args) => train::run(args),
        Command::Export(args) => {
            let runtime = tokio::runtime::Runtime::new()?;
            runtime.block_on(export::run(args))
        }
        Command::LocalSmoke(args) => {
            let runtime = tokio::runtime::Runtime::new()?;
            let code = runtime.block_on(smoke::run(args))?;
            std::process::exit(code);
        }
    }
}

async fn discovery_ui(args: DiscoveryUiArgs) -> anyhow::Result<()> {
    let bucket = locus_protocol::Bucket::open(&args.bucket, args.netuid)?;
    bucket.check_access().await?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let addr = std::net::SocketAddr::new(args.bind, args.port);
    let bound = locus_discovery::serve_ui(bucket, args.owner, addr, async {
        let _ = stopped.await;
    })
    .await?;
    let url = format!("http://{bound}/");
    println!(
        "discovery UI on {url} (bucket {}, netuid {}); SIGTERM or Ctrl-C stops it",
        args.bucket, args.netuid
    );
    if args.open_browser
        && let Err(e) = locus_discovery::ui::open_in_browser(&url)
    {
        eprintln!("cannot open a browser: {e}");
    }
    locus_daemon::Shutdown::install()?.wait().await;
    let _ = stop.send(());
    Ok(())
}
