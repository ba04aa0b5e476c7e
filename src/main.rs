//! `locus`: operator commands that are not daemons: key generation and the
//! local smoke run of all three daemons.

mod smoke;

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
        #[arg(long)]
        out: PathBuf,
    },
    /// Run orchestrator, miners and validator as separate processes on a
    /// temporary local bucket and print the resulting scores and weights.
    LocalSmoke(smoke::SmokeArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Keygen { out } => {
            let key = Keypair::generate();
            key.write_key_file(&out)
                .with_context(|| format!("writing {}", out.display()))?;
            println!("{}", key.hotkey());
            Ok(())
        }
        Command::LocalSmoke(args) => {
            let runtime = tokio::runtime::Runtime::new()?;
            let code = runtime.block_on(smoke::run(args))?;
            std::process::exit(code);
        }
    }
}
