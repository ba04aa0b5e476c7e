//! Command-line arguments every daemon takes the same way.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::limits::{Setting, SettingError, check_worker_ports};

/// Which devices a supervisor forks its workers on: miners and auditors
/// choose them the same way.
#[derive(clap::Args, Debug, Clone)]
pub struct DeviceArgs {
    /// CPU workers to run when no device list is given and no GPU is found;
    /// at least 1.
    #[arg(long, env = "LOCUS_WORKERS", default_value_t = 1, value_parser = crate::limits::workers())]
    pub workers: u32,
    /// Devices, one worker each (e.g. `cuda:0,cuda:1` or `cpu,cpu`). Default:
    /// every visible GPU in a CUDA build, else `--workers` CPU workers.
    /// `cuda:N` needs a build with `--features cuda`.
    #[arg(long, env = "LOCUS_DEVICES", value_delimiter = ',')]
    pub devices: Vec<locus_workloads::Device>,
}

impl DeviceArgs {
    /// One device per worker: the `--devices` list, else every visible GPU
    /// in a CUDA build, else `--workers` CPU workers.
    pub fn resolve(&self) -> Vec<locus_workloads::Device> {
        locus_workloads::Device::for_workers(&self.devices, self.workers)
    }

    /// Start-up check of what parsing cannot see: every listed device is one
    /// this build and host can use, and the metrics port leaves room for a
    /// port per worker.
    pub fn check(&self, metrics_addr: Option<SocketAddr>) -> Result<(), SettingError> {
        let devices = Setting::new("devices", "LOCUS_DEVICES");
        for device in &self.devices {
            device
                .check_available()
                .map_err(|why| devices.invalid(device, why))?;
        }
        if let Some(addr) = metrics_addr {
            let setting = Setting::new("metrics-addr", "LOCUS_METRICS_ADDR");
            check_worker_ports(setting, addr, self.resolve().len())?;
        }
        Ok(())
    }
}

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
