//! `locus`: operator commands that are not daemons: key generation and the
//! local smoke run of all three daemons.

mod audit;
mod export;
mod ledger;
mod smoke;
mod subnet;
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
    /// Write a new ED25519 hotkey (mode 0600) into a Bittensor wallet, or
    /// restore one from its recovery phrase; print its SS58 address.
    Keygen(KeygenArgs),
    /// Run orchestrator, miners and validator as separate processes on a
    /// temporary local bucket and print the resulting scores and weights.
    LocalSmoke(smoke::SmokeArgs),
    /// Write a run's trained model (its final parameters, verified against
    /// the owner's run state) as a safetensors file.
    Export(export::ExportArgs),
    /// Train a workload in this process alone, without a bucket: the
    /// reference a distributed run ends equal to, and its speed baseline.
    Train(train::TrainArgs),
    /// Per hotkey, each run's score window: jobs, verdicts, compute units
    /// and weights (with uid and u16 weight on chain), checked against the
    /// validator's signed verdicts. A table, or JSON with `--json`.
    Ledger(ledger::LedgerArgs),
    /// Serve the live discovery UI (read-only) over a bucket: workers, runs,
    /// receipts, verdicts and scores, traceable to each receipt.
    DiscoveryUi(DiscoveryUiArgs),
}

#[derive(clap::Args, Debug)]
struct KeygenArgs {
    /// Write the key to this file instead of the wallet's hotkey file
    /// (`--wallet.*`). Neither is ever overwritten.
    #[arg(long, env = "LOCUS_OUT")]
    out: Option<PathBuf>,
    #[command(flatten)]
    wallet: locus_daemon::args::WalletArgs,
    /// Restore the key from its BIP39 recovery phrase (from `locus keygen`
    /// or btcli), read from standard input, instead of making a new one.
    #[arg(long, env = "LOCUS_REGEN")]
    regen: bool,
}

#[derive(clap::Args, Debug)]
struct DiscoveryUiArgs {
    #[command(flatten)]
    subnet: subnet::SubnetArgs,
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

fn main() -> std::process::ExitCode {
    locus_daemon::exit::report(run())
}

fn run() -> anyhow::Result<()> {
    let cli: Cli = locus_daemon::config::parse_checked(|cli: &Cli| match &cli.command {
        Command::LocalSmoke(args) => smoke::check(args),
        _ => Ok(()),
    });
    match cli.command {
        Command::Keygen(args) => keygen(args),
        Command::DiscoveryUi(args) => {
            let runtime = tokio::runtime::Runtime::new()?;
            runtime.block_on(discovery_ui(args))
        }
        Command::Train(args) => train::run(args),
        Command::Ledger(args) => {
            let runtime = tokio::runtime::Runtime::new()?;
            runtime.block_on(ledger::run(args))
        }
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

/// The SS58 address goes to standard output (for scripts); the recovery
/// phrase and what was written go to standard error, shown this once.
fn keygen(args: KeygenArgs) -> anyhow::Result<()> {
    let path = args.wallet.key_path(args.out.as_deref())?;
    if path.exists() {
        anyhow::bail!(
            "{} already exists; a key file is never overwritten (move it away first)",
            path.display()
        );
    }
    let (key, phrase) = if args.regen {
        let phrase = read_phrase()?;
        (Keypair::from_phrase(&phrase, "")?, None)
    } else {
        let (key, phrase) = Keypair::generate_with_phrase();
        (key, Some(phrase))
    };
    key.write_key_file(&path)
        .with_context(|| format!("writing {}", path.display()))?;
    eprintln!(
        "wrote ED25519 hotkey {} to {}",
        key.hotkey(),
        path.display()
    );
    if let Some(phrase) = phrase {
        eprintln!(
            "\nRecovery phrase (shown only now: write it down and keep it offline; it \
             restores this hotkey with `locus keygen --regen` or `btcli wallet \
             regen_hotkey`):\n\n    {phrase}\n"
        );
    }
    println!("{}", key.hotkey());
    Ok(())
}

/// The recovery phrase from standard input (one line), prompting when it is
/// a terminal.
fn read_phrase() -> anyhow::Result<String> {
    use std::io::{BufRead as _, IsTerminal as _};
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!("recovery phrase (12 to 24 words): ");
    }
    let mut line = String::new();
    stdin
        .lock()
        .read_line(&mut line)
        .context("reading the recovery phrase from standard input")?;
    if line.trim().is_empty() {
        anyhow::bail!("no recovery phrase on standard input");
    }
    Ok(line)
}

async fn discovery_ui(args: DiscoveryUiArgs) -> anyhow::Result<()> {
    let subnet::Subnet {
        bucket,
        shown,
        owner,
    } = args.subnet.open().await?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let addr = std::net::SocketAddr::new(args.bind, args.port);
    let bound = locus_discovery::serve_ui(bucket, owner, addr, async {
        let _ = stopped.await;
    })
    .await?;
    let url = format!("http://{bound}/");
    println!(
        "discovery UI on {url} (bucket {shown}, netuid {}, owner {owner}); SIGTERM or \
         Ctrl-C stops it",
        args.subnet.netuid
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
