//! Which subnet a read-only command looks at: its bucket and the owner
//! hotkey whose signatures it trusts. Shared by `discovery-ui`, `export` and
//! `ledger`, so each takes the reference's short form (`--netuid 3` with the
//! S3 environment) as well as explicit `--bucket` and `--owner`.

use std::time::Duration;

use anyhow::bail;
use clap::Args;
use locus_protocol::{Bucket, Hotkey};

/// How long the chain may take to say who owns the subnet.
const CHAIN_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Args, Debug)]
pub struct SubnetArgs {
    /// Bucket: a local directory, file:// URL or s3://NAME (S3 settings from
    /// S3_ENDPOINT or S3_ENDPOINT_URL, S3_REGION, S3_PATH_STYLE, S3_ANONYMOUS
    /// and AWS_*). Without it, the S3 bucket named by S3_BUCKET.
    #[arg(long, env = "LOCUS_BUCKET")]
    pub bucket: Option<String>,
    /// Subnet id.
    #[arg(long, env = "LOCUS_NETUID", default_value_t = 3)]
    pub netuid: u16,
    /// The subnet owner's hotkey (SS58): runs, jobs and assignments must be
    /// signed by it. Without it, the subnet's owner hotkey on `--network`.
    #[arg(long, env = "LOCUS_OWNER")]
    pub owner: Option<Hotkey>,
    /// Subtensor network the owner hotkey is read from when `--owner` is
    /// not given: `finney`, `test`, `local` or a ws:// / wss:// URL.
    #[arg(
        long,
        visible_aliases = ["subtensor.network"],
        env = "BT_SUBTENSOR_NETWORK",
        default_value = "finney"
    )]
    pub network: String,
    /// The Subtensor node's ws:// or wss:// URL, over the network's own.
    #[arg(
        long,
        visible_aliases = ["subtensor.chain_endpoint", "subtensor.chain-endpoint"],
        env = "BT_SUBTENSOR_CHAIN_ENDPOINT"
    )]
    pub chain_endpoint: Option<String>,
}

/// An opened subnet bucket and the owner it trusts.
pub struct Subnet {
    pub bucket: Bucket,
    /// The bucket as given (or `s3://` for S3_BUCKET), for messages.
    pub shown: String,
    pub owner: Hotkey,
}

impl SubnetArgs {
    /// Opens the bucket (checking it can be read) and finds the owner.
    pub async fn open(&self) -> anyhow::Result<Subnet> {
        let shown = match &self.bucket {
            Some(bucket) => bucket.clone(),
            None if std::env::var_os("S3_BUCKET").is_some_and(|b| !b.is_empty()) => "s3://".into(),
            None => bail!(
                "no bucket: give --bucket (a directory or s3://NAME) or set S3_BUCKET \
                 with the rest of the S3 environment"
            ),
        };
        let owner = match self.owner {
            Some(owner) => owner,
            None => self.chain_owner().await?,
        };
        let bucket = Bucket::open(&shown, self.netuid)?;
        bucket.check_access().await?;
        Ok(Subnet {
            bucket,
            shown,
            owner,
        })
    }

    /// The owner hotkey the chain has for `--netuid`, or an error that says
    /// how to do without the chain.
    async fn chain_owner(&self) -> anyhow::Result<Hotkey> {
        let endpoint = self.chain_endpoint.as_deref().unwrap_or(&self.network);
        let netuid = self.netuid;
        let read = async {
            let chain = locus_chain::Chain::connect(endpoint).await?;
            chain.subnet_owner_hotkey(netuid).await
        };
        let way_out = "give --owner SS58 (the subnet owner's hotkey) to run without the chain";
        let owner = match tokio::time::timeout(CHAIN_TIMEOUT, read).await {
            Ok(Ok(owner)) => owner,
            Ok(Err(e)) => bail!(
                "cannot read the owner hotkey of subnet {netuid} from {endpoint}: {e}; {way_out}"
            ),
            Err(_) => bail!(
                "no answer from {endpoint} within {}s reading the owner hotkey of subnet \
                 {netuid}; {way_out}",
                CHAIN_TIMEOUT.as_secs()
            ),
        };
        let owner = Hotkey::from_bytes(&owner)?;
        eprintln!("owner of subnet {netuid} on {endpoint}: {owner}");
        Ok(owner)
    }
}
