//! Command-line arguments every daemon takes the same way.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Observability flags: logs, metrics and request statistics.
#[derive(clap::Args, Debug, Clone)]
pub struct OpsArgs {
    /// Serve Prometheus `/metrics` and `/healthz` on this HOST:PORT (the
    /// example configs use 127.0.0.1:9101 for the orchestrator and
    /// 127.0.0.1:9102 for the validator).
    #[arg(long, env = "LOCUS_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,
    /// Write bucket request totals to this JSON file at exit.
    #[arg(long, env = "LOCUS_STATS_FILE")]
    pub stats_file: Option<PathBuf>,
    /// Log JSON lines instead of text.
    #[arg(long, env = "LOCUS_JSON_LOGS")]
    pub json_logs: bool,
}

/// A Bittensor wallet's hotkey, named the way btcli names it. A daemon's
/// key is its key-file flag when given, else this wallet's hotkey file
/// (`PATH/NAME/hotkeys/HOTKEY`), so a host set up with btcli needs no flag.
#[derive(clap::Args, Debug, Clone)]
pub struct WalletArgs {
    /// Bittensor wallet name (btcli's `--wallet.name`).
    #[arg(
        long = "wallet-name",
        visible_alias = "wallet.name",
        env = "BT_WALLET_NAME",
        default_value = "default"
    )]
    pub wallet_name: String,
    /// Hotkey name inside the wallet (btcli's `--wallet.hotkey`).
    #[arg(
        long = "wallet-hotkey",
        visible_alias = "wallet.hotkey",
        env = "BT_WALLET_HOTKEY",
        default_value = "default"
    )]
    pub wallet_hotkey: String,
    /// Wallets directory (btcli's `--wallet.path`).
    #[arg(
        long = "wallet-path",
        visible_alias = "wallet.path",
        env = "BT_WALLET_PATH",
        default_value = locus_protocol::wallet::DEFAULT_WALLETS_DIR
    )]
    pub wallet_path: String,
}

impl WalletArgs {
    /// The wallet's hotkey file.
    pub fn hotkey_file(&self) -> Result<PathBuf, locus_protocol::keys::KeyError> {
        locus_protocol::wallet::hotkey_file(
            &self.wallet_path,
            &self.wallet_name,
            &self.wallet_hotkey,
        )
    }

    /// `key_file` if given, else the wallet's hotkey file.
    pub fn key_path(
        &self,
        key_file: Option<&std::path::Path>,
    ) -> Result<PathBuf, locus_protocol::keys::KeyError> {
        match key_file {
            Some(path) => Ok(path.to_path_buf()),
            None => self.hotkey_file(),
        }
    }

    /// Loads the ED25519 key from `key_file` (the daemon's key-file flag,
    /// named `flag` in errors) or else from the wallet.
    pub fn load(
        &self,
        key_file: Option<&std::path::Path>,
        flag: &str,
    ) -> anyhow::Result<locus_protocol::Keypair> {
        use anyhow::Context as _;
        let path = self.key_path(key_file)?;
        let key = locus_protocol::Keypair::load(&path);
        match key_file {
            Some(_) => key.with_context(|| format!("loading the key given by {flag}")),
            None => key.with_context(|| {
                format!(
                    "loading the hotkey of wallet {:?}, hotkey {:?} (give {flag} FILE, or \
                     --wallet.name/--wallet.hotkey/--wallet.path for another wallet)",
                    self.wallet_name, self.wallet_hotkey
                )
            }),
        }
    }
}
