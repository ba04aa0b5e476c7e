//! The online part: connecting, reading the metagraph, building and submitting weights.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::StreamExt as _;
use subxt::backend::CombinedBackend;
use subxt::config::polkadot::PolkadotExtrinsicParamsBuilder;
use subxt::config::substrate::SpecVersionForRange;
use subxt::error::{DispatchError, TransactionEventsError};
use subxt::tx::TransactionStatus;
use subxt::utils::AccountId32;
use subxt::{Metadata, OfflineClient, OnlineClient, OnlineClientAtBlock, PolkadotConfig};

use codec::Encode;

use crate::signer::ValidatorSigner;
use crate::subtensor;
use crate::subtensor::runtime_types::bounded_collections::bounded_vec::BoundedVec;
use crate::timelock::{self, RevealSchedule, WeightsTlockPayload};
use crate::weights::{normalize_max_u16, rate_limited_until};
use crate::{ChainError, METADATA};

/// How many blocks a signed extrinsic stays valid (its mortality).
const MORTALITY_BLOCKS: u64 = 64;

/// The chain's bound on a `commit_timelocked_weights` commit (`MAX_CRV3_COMMIT_SIZE_BYTES`).
pub const MAX_COMMIT_BYTES: usize = 5000;

/// Seconds since the Unix epoch: when a commit is made decides its drand round.
pub type UnixClock = Arc<dyn Fn() -> f64 + Send + Sync>;

fn system_clock() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// A Subtensor node endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Network {
    Url(String),
}

impl Network {
    /// `finney`, `test`, `local` (as bittensor-cli's `--subtensor.network`) or a
    /// `ws://` / `wss://` URL.
    pub fn parse(endpoint: &str) -> Result<Self, ChainError> {
        let endpoint = endpoint.trim();
        let url = match endpoint {
            "finney" => "wss://entrypoint-finney.opentensor.ai:443",
            "test" => "wss://test.finney.opentensor.ai:443",
            "local" => "ws://127.0.0.1:9944",
            other if other.starts_with("ws://") || other.starts_with("wss://") => other,
            other => return Err(ChainError::InvalidEndpoint(other.to_string())),
        };
        if url.len() <= "wss://".len() {
            return Err(ChainError::InvalidEndpoint(endpoint.to_string()));
        }
        Ok(Network::Url(url.to_string()))
    }

    pub fn url(&self) -> &str {
        match self {
            Network::Url(url) => url,
        }
    }
}

/// Whether [`Chain::set_weights`] only signs, or also submits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Build and sign the exact extrinsic, submit nothing.
    #[default]
    DryRun,
    /// Submit and wait until the extrinsic is in a block.
    Submit,
}

/// What happened to a set-weights request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Signed only (dry run); nothing was sent.
    DryRun,
    /// In a block without error; `finalized` when that block was already final.
    Included { finalized: bool },
    /// The subnet's rate limit forbids setting weights before block `next_block`; nothing
    /// was submitted.
    RateLimited { next_block: u64, current_block: u64 },
    /// In a block, but the call failed with this dispatch error (e.g. `SettingWeightsTooFast`).
    ChainError { name: String },
    /// The transaction pool dropped or refused the transaction before inclusion.
    Rejected { reason: String },
}

/// The result of [`Chain::set_weights`].
#[derive(Debug, Clone)]
pub struct WeightsReport {
    pub netuid: u16,
    /// Sorted uids with a non-zero weight.
    pub uids: Vec<u16>,
    /// Max-normalized weights, same order as `uids` (the top uid has 65535).
    pub weights: Vec<u16>,
    /// `WeightsVersionKey` of the subnet, read from chain.
    pub version_key: u64,
    /// The signed extrinsic's SCALE bytes (empty when rate limited in submit mode).
    pub extrinsic: Vec<u8>,
    pub dry_run: bool,
    /// Block the extrinsic was included in (`0x…`), when submitted.
    pub block_hash: Option<String>,
    /// Block the request was prepared at.
    pub at_block: u64,
    pub outcome: Outcome,
    /// Whether the subnet has commit-reveal on: the extrinsic is then a
    /// `commit_timelocked_weights` whose weights open at `reveal_round`.
    pub commit_reveal: bool,
    /// The drand quicknet round the committed weights are sealed to.
    pub reveal_round: Option<u64>,
}

impl WeightsReport {
    /// A `uid weight` table, one line a uid.
    pub fn table(&self) -> String {
        let mut out = String::from("  uid  weight\n");
        for (uid, weight) in self.uids.iter().zip(&self.weights) {
            out.push_str(&format!("{uid:>5}  {weight:>6}\n"));
        }
        out
    }
}

/// A subnet's registered neurons.
#[derive(Debug, Clone, Default)]
pub struct Metagraph {
    pub netuid: u16,
    /// `SubnetworkN`: number of uids in use.
    pub n: u16,
    /// Block the metagraph was read at.
    pub block: u64,
    /// hotkey (account id) → uid.
    pub uids: BTreeMap<[u8; 32], u16>,
    /// `ValidatorPermit`, indexed by uid (empty when the chain has none for the subnet).
    pub validator_permit: Vec<bool>,
}

impl Metagraph {
    pub fn uid(&self, hotkey: &[u8; 32]) -> Option<u16> {
        self.uids.get(hotkey).copied()
    }

    pub fn hotkey(&self, uid: u16) -> Option<[u8; 32]> {
        self.uids
            .iter()
            .find(|&(_, &u)| u == uid)
            .map(|(hotkey, _)| *hotkey)
    }

    pub fn has_validator_permit(&self, uid: u16) -> bool {
        self.validator_permit
            .get(usize::from(uid))
            .copied()
            .unwrap_or(false)
    }

    /// Maps per-hotkey scores to per-uid scores. Hotkeys not registered on the subnet get
    /// no weight; each is logged (SS58) and returned in the second list.
    pub fn scores_by_uid(&self, scores: &[([u8; 32], f64)]) -> (Vec<(u16, f64)>, Vec<[u8; 32]>) {
        let mut by_uid = Vec::with_capacity(scores.len());
        let mut unregistered = Vec::new();
        for (hotkey, score) in scores {
            match self.uid(hotkey) {
                Some(uid) => by_uid.push((uid, *score)),
                None => {
                    tracing::warn!(
                        hotkey = %locus_protocol::keys::ss58_encode(hotkey),
                        netuid = self.netuid,
                        "hotkey is not registered on the subnet; it gets no weight"
                    );
                    unregistered.push(*hotkey);
                }
            }
        }
        (by_uid, unregistered)
    }
}

/// `set_weights` arguments decoded from an extrinsic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedSetWeights {
    pub pallet: String,
    pub call: String,
    /// Signer account, when the extrinsic is signed.
    pub signer: Option<[u8; 32]>,
    pub netuid: u16,
    pub dests: Vec<u16>,
    pub weights: Vec<u16>,
    pub version_key: u64,
}

impl std::fmt::Display for DecodedSetWeights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let signer = self
            .signer
            .map(|account| locus_protocol::keys::ss58_encode(&account))
            .unwrap_or_else(|| "<unsigned>".into());
        write!(
            f,
            "{}::{}(netuid: {}, dests: {:?}, weights: {:?}, version_key: {}) signed by {}",
            self.pallet, self.call, self.netuid, self.dests, self.weights, self.version_key, signer
        )
    }
}

fn rpc<E: std::fmt::Display>(context: &str, e: E) -> ChainError {
    ChainError::Rpc {
        context: context.to_string(),
        reason: e.to_string(),
    }
}

/// An offline client over the bundled metadata (any block number maps to it). Useful to
/// compute storage keys or to decode extrinsics without a node.
pub fn bundled_offline_client() -> Result<OfflineClient<PolkadotConfig>, ChainError> {
    let metadata =
        Metadata::decode_from(METADATA).map_err(|e| ChainError::Decode(e.to_string()))?;
    // The spec version only selects which metadata to use; any value works offline.
    let config = PolkadotConfig::builder()
        .use_historic_types(false)
        .set_metadata_for_spec_versions([(0, std::sync::Arc::new(metadata))])
        .set_spec_version_for_block_ranges([SpecVersionForRange {
            block_range: 0..u64::MAX,
            spec_version: 0,
            transaction_version: 0,
        }])
        .build();
    Ok(OfflineClient::new_with_config(config))
}

/// A signed extrinsic's call, decoded against the bundled metadata.
struct DecodedExtrinsic<Fields> {
    pallet: String,
    call: String,
    signer: Option<[u8; 32]>,
    fields: Fields,
}

/// Decodes `extrinsic` and its call's fields as `Fields` (`what` names the call in errors).
fn decode_extrinsic<Fields>(
    extrinsic: &[u8],
    what: &str,
) -> Result<DecodedExtrinsic<Fields>, ChainError>
where
    Fields: subxt::extrinsics::DecodeAsExtrinsic,
{
    let client = bundled_offline_client()?;
    let at = client
        .at_block(0u64)
        .map_err(|e| ChainError::Decode(e.to_string()))?;
    let extrinsics =
        futures::executor::block_on(at.extrinsics().from_bytes(vec![extrinsic.to_vec()]));
    let ext = extrinsics
        .iter()
        .next()
        .ok_or_else(|| ChainError::Decode("no extrinsic".into()))?
        .map_err(|e| ChainError::Decode(e.to_string()))?;
    let pallet = ext.pallet_name().to_string();
    let call = ext.call_name().to_string();
    let signer = match ext.address_bytes() {
        // MultiAddress::Id: variant 0 then the 32-byte account.
        Some([0, rest @ ..]) if rest.len() == 32 => {
            let mut account = [0u8; 32];
            account.copy_from_slice(rest);
            Some(account)
        }
        Some(_) => return Err(ChainError::Decode("unexpected signer address form".into())),
        None => None,
    };
    let fields = ext
        .decode_call_data_fields_as::<Fields>()
        .ok_or_else(|| {
            ChainError::Decode(format!("{pallet}::{call} is not SubtensorModule::{what}"))
        })?
        .map_err(|e| ChainError::Decode(format!("{what} arguments: {e}")))?;
    Ok(DecodedExtrinsic {
        pallet,
        call,
        signer,
        fields,
    })
}

/// Decodes a `SubtensorModule::set_weights` extrinsic against the bundled metadata.
pub fn decode_set_weights(extrinsic: &[u8]) -> Result<DecodedSetWeights, ChainError> {
    let decoded = decode_extrinsic::<subtensor::subtensor_module::calls::SetWeights>(
        extrinsic,
        "set_weights",
    )?;
    Ok(DecodedSetWeights {
        pallet: decoded.pallet,
        call: decoded.call,
        signer: decoded.signer,
        netuid: decoded.fields.netuid,
        dests: decoded.fields.dests,
        weights: decoded.fields.weights,
        version_key: decoded.fields.version_key,
    })
}

/// `commit_timelocked_weights` arguments decoded from an extrinsic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedCommit {
    /// Signer account, when the extrinsic is signed.
    pub signer: Option<[u8; 32]>,
    pub netuid: u16,
    /// The sealed [`timelock::WeightsTlockPayload`].
    pub commit: Vec<u8>,
    pub reveal_round: u64,
    pub commit_reveal_version: u16,
}

/// Decodes a `SubtensorModule::commit_timelocked_weights` extrinsic against the bundled
/// metadata.
pub fn decode_commit_timelocked_weights(extrinsic: &[u8]) -> Result<DecodedCommit, ChainError> {
    let decoded = decode_extrinsic::<subtensor::subtensor_module::calls::CommitTimelockedWeights>(
        extrinsic,
        "commit_timelocked_weights",
    )?;
    Ok(DecodedCommit {
        signer: decoded.signer,
        netuid: decoded.fields.netuid,
        commit: decoded.fields.commit.0,
        reveal_round: decoded.fields.reveal_round,
        commit_reveal_version: decoded.fields.commit_reveal_version,
    })
}

/// A connection to a Subtensor node.
#[derive(Clone)]
pub struct Chain {
    client: OnlineClient<PolkadotConfig>,
    url: String,
    clock: UnixClock,
}

impl std::fmt::Debug for Chain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chain").field("url", &self.url).finish()
    }
}

impl Chain {
    /// Connects to `endpoint` (see [`Network::parse`]).
    pub async fn connect(endpoint: &str) -> Result<Chain, ChainError> {
        let network = Network::parse(endpoint)?;
        let url = network.url().to_string();
        let config = PolkadotConfig::builder().use_historic_types(false).build();
        let failed = |reason: String| ChainError::Connect {
            url: url.clone(),
            reason,
        };
        let rpc = subxt_rpcs::RpcClient::from_insecure_url(&url)
            .await
            .map_err(|e| failed(e.to_string()))?;
        let (backend, mut driver) = CombinedBackend::builder()
            .build(rpc)
            .await
            .map_err(|e| failed(e.to_string()))?;
        // The backend's subscriptions make progress only while its driver
        // is polled, until the connection closes.
        tokio::spawn(async move {
            while let Some(next) = driver.next().await {
                if let Err(e) = next {
                    tracing::debug!(error = %e, "chain backend");
                }
            }
        });
        let client = OnlineClient::from_backend_with_config(config, Arc::new(backend))
            .await
            .map_err(|e| failed(e.to_string()))?;
        Ok(Chain {
            client,
            url,
            clock: Arc::new(system_clock),
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Replaces the clock that dates commits (tests pin it to a round they can open).
    pub fn with_clock(mut self, clock: UnixClock) -> Self {
        self.clock = clock;
        self
    }

    async fn at_current_block(&self) -> Result<OnlineClientAtBlock<PolkadotConfig>, ChainError> {
        self.client
            .at_current_block()
            .await
            .map_err(|e| rpc("reading the current block", e))
    }

    /// Reads the hotkey → uid map of `netuid`.
    pub async fn metagraph(&self, netuid: u16) -> Result<Metagraph, ChainError> {
        let at = self.at_current_block().await?;
        read_metagraph(&at, netuid).await
    }

    /// The hotkey the subnet's owner registered (`SubnetOwnerHotkey`): the
    /// key that signs the subnet's runs, for readers that were not told it.
    pub async fn subnet_owner_hotkey(&self, netuid: u16) -> Result<[u8; 32], ChainError> {
        let at = self.at_current_block().await?;
        let api = subtensor::storage().subtensor_module();
        let storage = at.storage();
        let added = fetch_or_default(
            &storage,
            api.networks_added(),
            (netuid,),
            "reading NetworksAdded",
        )
        .await?;
        if !added {
            return Err(ChainError::SubnetNotFound(netuid));
        }
        let owner = fetch_or_default(
            &storage,
            api.subnet_owner_hotkey(),
            (netuid,),
            "reading SubnetOwnerHotkey",
        )
        .await?;
        if owner.0 == [0u8; 32] {
            return Err(ChainError::NoOwnerHotkey(netuid));
        }
        Ok(owner.0)
    }

    /// Sets weights from `(uid, score)` pairs: normalizes, checks the rate limit, signs, and
    /// (in [`Mode::Submit`]) submits and waits for inclusion.
    pub async fn set_weights(
        &self,
        signer: &ValidatorSigner,
        netuid: u16,
        weights: &[(u16, f64)],
        mode: Mode,
    ) -> Result<WeightsReport, ChainError> {
        let (uids, normalized) = normalize_max_u16(weights)?;
        let at = self.at_current_block().await?;
        let block = at.block_number();
        let api = subtensor::storage().subtensor_module();
        let storage = at.storage();

        if !fetch_or_default(
            &storage,
            api.networks_added(),
            (netuid,),
            "reading NetworksAdded",
        )
        .await?
        {
            return Err(ChainError::SubnetNotFound(netuid));
        }
        let commit_reveal = fetch_or_default(
            &storage,
            api.commit_reveal_weights_enabled(),
            (netuid,),
            "reading CommitRevealWeightsEnabled",
        )
        .await?;
        let n = fetch_or_default(
            &storage,
            api.subnetwork_n(),
            (netuid,),
            "reading SubnetworkN",
        )
        .await?;
        if let Some(&uid) = uids.iter().find(|&&uid| uid >= n) {
            return Err(ChainError::UnknownUid { netuid, uid, n });
        }
        let version_key = fetch_or_default(
            &storage,
            api.weights_version_key(),
            (netuid,),
            "reading WeightsVersionKey",
        )
        .await?;

        let own_uid: Option<u16> = storage
            .try_fetch(api.uids(), (netuid, AccountId32(signer.account_id())))
            .await
            .map_err(|e| rpc("reading the validator's uid", e))?
            .map(|v| v.decode())
            .transpose()
            .map_err(|e| rpc("decoding the validator's uid", e))?;

        let mut report = WeightsReport {
            netuid,
            uids,
            weights: normalized,
            version_key,
            extrinsic: Vec::new(),
            dry_run: mode == Mode::DryRun,
            block_hash: None,
            at_block: block,
            outcome: Outcome::DryRun,
            commit_reveal,
            reveal_round: None,
        };

        let mut rate_limited = None;
        match own_uid {
            None if mode == Mode::Submit => {
                return Err(ChainError::NotRegistered {
                    ss58: signer.ss58(),
                    netuid,
                });
            }
            None => tracing::warn!(
                hotkey = %signer.ss58(),
                netuid,
                "dry run: the validator hotkey is not registered on this subnet; the chain would refuse these weights"
            ),
            Some(uid) => {
                let rate_limit = fetch_or_default(
                    &storage,
                    api.weights_set_rate_limit(),
                    (netuid,),
                    "reading WeightsSetRateLimit",
                )
                .await?;
                let last_update: Vec<u64> =
                    fetch_or_default(&storage, api.last_update(), (netuid,), "reading LastUpdate")
                        .await?;
                let last = last_update.get(usize::from(uid)).copied().unwrap_or(0);
                rate_limited = rate_limited_until(last, rate_limit, block);
            }
        }
        if let Some(next_block) = rate_limited {
            tracing::info!(
                netuid,
                next_block,
                current_block = block,
                "rate limited: weights not set"
            );
            report.outcome = Outcome::RateLimited {
                next_block,
                current_block: block,
            };
            if mode == Mode::Submit {
                return Ok(report);
            }
        }

        let params = PolkadotExtrinsicParamsBuilder::new()
            .mortal(MORTALITY_BLOCKS)
            .build();
        let signed = if commit_reveal {
            let sealed = self.seal(&at, signer, netuid, &report).await?;
            tracing::info!(
                netuid,
                reveal_round = sealed.reveal_round,
                commit_bytes = sealed.commit.len(),
                "commit-reveal subnet: weights sealed to a drand round"
            );
            report.reveal_round = Some(sealed.reveal_round);
            let call = subtensor::transactions()
                .subtensor_module()
                .commit_timelocked_weights(
                    netuid,
                    BoundedVec(sealed.commit),
                    sealed.reveal_round,
                    sealed.version,
                );
            at.transactions().create_signed(&call, signer, params).await
        } else {
            let call = subtensor::transactions().subtensor_module().set_weights(
                netuid,
                report.uids.clone(),
                report.weights.clone(),
                version_key,
            );
            at.transactions().create_signed(&call, signer, params).await
        }
        .map_err(|e| ChainError::Extrinsic(e.to_string()))?;
        report.extrinsic = signed.encoded().to_vec();
        if mode == Mode::DryRun {
            return Ok(report);
        }

        let mut progress = signed
            .submit_and_watch()
            .await
            .map_err(|e| ChainError::Submit(e.to_string()))?;
        loop {
            let status = match progress.next().await {
                Some(status) => status.map_err(|e| rpc("watching the extrinsic", e))?,
                None => {
                    report.outcome = Outcome::Rejected {
                        reason: "the node closed the transaction watch before inclusion".into(),
                    };
                    return Ok(report);
                }
            };
            let (in_block, finalized) = match status {
                TransactionStatus::InBestBlock(b) => (b, false),
                TransactionStatus::InFinalizedBlock(b) => (b, true),
                TransactionStatus::Invalid { message } => {
                    report.outcome = Outcome::Rejected {
                        reason: format!("invalid: {message}"),
                    };
                    return Ok(report);
                }
                TransactionStatus::Dropped { message } => {
                    report.outcome = Outcome::Rejected {
                        reason: format!("dropped: {message}"),
                    };
                    return Ok(report);
                }
                TransactionStatus::Error { message } => {
                    report.outcome = Outcome::Rejected {
                        reason: format!("error: {message}"),
                    };
                    return Ok(report);
                }
                _ => continue,
            };
            report.block_hash = Some(format!("{:?}", in_block.block_hash()));
            report.outcome = match in_block.wait_for_success().await {
                Ok(_) => Outcome::Included { finalized },
                Err(TransactionEventsError::ExtrinsicFailed(error)) => Outcome::ChainError {
                    name: dispatch_error_name(&error),
                },
                Err(e) => return Err(rpc("reading the extrinsic's events", e)),
            };
            return Ok(report);
        }
    }

    /// Encrypts the report's weights to the drand round in which the chain will reveal
    /// them, from the subnet's `Tempo`, `RevealPeriodEpochs` and the runtime's block time.
    async fn seal(
        &self,
        at: &OnlineClientAtBlock<PolkadotConfig>,
        signer: &ValidatorSigner,
        netuid: u16,
        report: &WeightsReport,
    ) -> Result<Sealed, ChainError> {
        let api = subtensor::storage().subtensor_module();
        let storage = at.storage();
        let version = fetch_or_default(
            &storage,
            api.commit_reveal_weights_version(),
            (),
            "reading CommitRevealWeightsVersion",
        )
        .await?;
        let tempo = fetch_or_default(&storage, api.tempo(), (netuid,), "reading Tempo").await?;
        let reveal_period_epochs = fetch_or_default(
            &storage,
            api.reveal_period_epochs(),
            (netuid,),
            "reading RevealPeriodEpochs",
        )
        .await?;
        let slot_ms = at
            .constants()
            .entry(subtensor::constants().aura().slot_duration())
            .map_err(|e| rpc("reading Aura::SlotDuration", e))?;
        let schedule = RevealSchedule {
            netuid,
            tempo: u64::from(tempo),
            reveal_period_epochs,
            current_block: report.at_block,
            block_time_secs: slot_ms as f64 / 1000.0,
        };
        let reveal_round = schedule.reveal_round((self.clock)());
        let payload = WeightsTlockPayload {
            hotkey: signer.account_id().to_vec(),
            uids: report.uids.clone(),
            values: report.weights.clone(),
            version_key: report.version_key,
        };
        let commit = timelock::encrypt(&payload.encode(), reveal_round)?;
        if commit.len() > MAX_COMMIT_BYTES {
            return Err(ChainError::CommitTooLarge {
                bytes: commit.len(),
                max: MAX_COMMIT_BYTES,
            });
        }
        Ok(Sealed {
            commit,
            reveal_round,
            version,
        })
    }
}

/// Weights sealed for `commit_timelocked_weights`.
struct Sealed {
    commit: Vec<u8>,
    reveal_round: u64,
    version: u16,
}

/// `SettingWeightsTooFast` for a module error, else the dispatch error's own text.
fn dispatch_error_name(error: &DispatchError) -> String {
    match error {
        DispatchError::Module(module) => match module.details() {
            Ok(details) => details.variant.name.clone(),
            Err(_) => module.details_string(),
        },
        other => other.to_string(),
    }
}

async fn fetch_or_default<Addr>(
    storage: &subxt::storage::StorageClient<
        '_,
        PolkadotConfig,
        subxt::client::OnlineClientAtBlockImpl<PolkadotConfig>,
    >,
    addr: Addr,
    keys: Addr::KeyParts,
    context: &str,
) -> Result<Addr::Value, ChainError>
where
    Addr: subxt::storage::Address,
{
    storage
        .fetch(addr, keys)
        .await
        .map_err(|e| rpc(context, e))?
        .decode()
        .map_err(|e| rpc(context, e))
}

async fn read_metagraph(
    at: &OnlineClientAtBlock<PolkadotConfig>,
    netuid: u16,
) -> Result<Metagraph, ChainError> {
    let api = subtensor::storage().subtensor_module();
    let storage = at.storage();
    if !fetch_or_default(
        &storage,
        api.networks_added(),
        (netuid,),
        "reading NetworksAdded",
    )
    .await?
    {
        return Err(ChainError::SubnetNotFound(netuid));
    }
    let n = fetch_or_default(
        &storage,
        api.subnetwork_n(),
        (netuid,),
        "reading SubnetworkN",
    )
    .await?;
    let validator_permit = fetch_or_default(
        &storage,
        api.validator_permit(),
        (netuid,),
        "reading ValidatorPermit",
    )
    .await?;
    let mut uids = BTreeMap::new();
    let mut entries = storage
        .iter(api.keys(), (netuid,))
        .await
        .map_err(|e| rpc("listing Keys", e))?;
    while let Some(entry) = entries.next().await {
        let entry = entry.map_err(|e| rpc("listing Keys", e))?;
        let (_, uid) = entry
            .key()
            .map_err(|e| rpc("decoding a Keys key", e))?
            .decode()
            .map_err(|e| rpc("decoding a Keys key", e))?;
        let hotkey: AccountId32 = entry
            .value()
            .decode()
            .map_err(|e| rpc("decoding a Keys value", e))?;
        uids.insert(hotkey.0, uid);
    }
    Ok(Metagraph {
        netuid,
        n,
        block: at.block_number(),
        uids,
        validator_permit,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_shorthands_and_urls() {
        assert_eq!(
            Network::parse("finney").expect("finney").url(),
            "wss://entrypoint-finney.opentensor.ai:443"
        );
        assert_eq!(
            Network::parse("test").expect("test").url(),
            "wss://test.finney.opentensor.ai:443"
        );
        assert_eq!(
            Network::parse("local").expect("local").url(),
            "ws://127.0.0.1:9944"
        );
        assert_eq!(
            Network::parse("ws://10.0.0.5:9944").expect("url").url(),
            "ws://10.0.0.5:9944"
        );
        for bad in ["", "mainnet", "http://127.0.0.1:9944", "ws://"] {
            assert!(
                matches!(Network::parse(bad), Err(ChainError::InvalidEndpoint(_))),
                "{bad:?} accepted"
            );
        }
    }

    /// Builds a signed `set_weights` fully offline for a known key, decodes it back against
    /// the bundled metadata, and checks the signature over the signer payload.
    fn offline_roundtrip(signer: &ValidatorSigner) {
        use subxt::config::substrate::{SubstrateConfig, SubstrateExtrinsicParamsBuilder};
        let metadata = Metadata::decode_from(METADATA).expect("metadata");
        let config = SubstrateConfig::builder()
            .set_genesis_hash(subxt::utils::H256([0x42; 32]))
            .set_metadata_for_spec_versions([(381, std::sync::Arc::new(metadata))])
            .set_spec_version_for_block_ranges([SpecVersionForRange {
                block_range: 0..u64::MAX,
                spec_version: 381,
                transaction_version: 1,
            }])
            .build();
        let client = OfflineClient::new_with_config(config);
        let at = client.at_block(100u64).expect("offline at block");
        let call = subtensor::transactions().subtensor_module().set_weights(
            7,
            vec![0, 5, 9],
            vec![65535, 1000, 7],
            123,
        );
        let params = SubstrateExtrinsicParamsBuilder::new().nonce(3).build();
        let mut signable = at
            .transactions()
            .create_v4_signable_offline(&call, params)
            .expect("signable");
        let payload = signable.signer_payload().expect("payload");
        let signed = signable.sign(signer).expect("sign");
        let bytes = signed.encoded().to_vec();
        let decoded = decode_set_weights(&bytes).expect("decodes");
        assert_eq!(decoded.pallet, "SubtensorModule");
        assert_eq!(decoded.call, "set_weights");
        assert_eq!(decoded.signer, Some(signer.account_id()));
        assert_eq!(decoded.netuid, 7);
        assert_eq!(decoded.dests, vec![0, 5, 9]);
        assert_eq!(decoded.weights, vec![65535, 1000, 7]);
        assert_eq!(decoded.version_key, 123);
        // Layout: compact length, 0x84 (v4 signed), MultiAddress::Id, MultiSignature.
        let body = &bytes[2..];
        assert_eq!(body[0], 0x84);
        assert_eq!(&body[2..34], &signer.account_id());
        let signature: [u8; 64] = body[35..99].try_into().expect("64 bytes");
        // Payloads over 256 bytes are signed by their blake2 hash; this one is shorter.
        assert!(payload.len() <= 256);
        match signer.crypto_type() {
            crate::CryptoType::Sr25519 => {
                assert_eq!(body[34], 1, "MultiSignature::Sr25519");
                assert!(subxt_signer::sr25519::verify(
                    &subxt_signer::sr25519::Signature(signature),
                    &payload,
                    &subxt_signer::sr25519::PublicKey(signer.account_id()),
                ));
            }
            crate::CryptoType::Ed25519 => {
                assert_eq!(body[34], 0, "MultiSignature::Ed25519");
                let key = ed25519_dalek::VerifyingKey::from_bytes(&signer.account_id())
                    .expect("ed25519 public key");
                key.verify_strict(&payload, &ed25519_dalek::Signature::from_bytes(&signature))
                    .expect("valid ed25519 signature");
            }
        }
    }

    #[test]
    fn offline_extrinsic_roundtrip_sr25519() {
        offline_roundtrip(&ValidatorSigner::sr25519_from_seed([1; 32]).expect("key"));
    }

    #[test]
    fn offline_extrinsic_roundtrip_ed25519() {
        offline_roundtrip(&ValidatorSigner::ed25519_from_seed([2; 32]));
    }

    #[test]
    fn decode_rejects_garbage() {
        assert!(matches!(
            decode_set_weights(&[1, 2, 3]),
            Err(ChainError::Decode(_))
        ));
    }
}
