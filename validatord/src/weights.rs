//! Pushing a completed window's scores to Subtensor.
//!
//! Scores are per hotkey; the chain wants u16 weights per uid. Hotkeys not
//! registered on the subnet get nothing (logged by the chain adapter). In
//! dry-run mode (the default) the exact signed extrinsic is built and
//! recorded, and nothing is submitted. Either way the result is written to
//! the bucket as a validator-signed `ChainWeights` object.

use locus_chain::{Chain, Mode, Outcome, ValidatorSigner};
use locus_protocol::pb;
use locus_protocol::time::unix_ms;
use locus_protocol::{Bucket, Keypair};
use tracing::{info, warn};

/// Where and how to set weights.
pub struct ChainTarget {
    pub endpoint: String,
    pub netuid: u16,
    pub signer: ValidatorSigner,
    pub mode: Mode,
}

/// Maps `window`'s scores to uids, sets (or dry-runs) weights and records
/// the outcome in the bucket.
pub async fn push(
    target: &ChainTarget,
    window: &pb::ScoreWindow,
    bucket: &Bucket,
    key: &Keypair,
) -> anyhow::Result<()> {
    let chain = Chain::connect(&target.endpoint).await?;
    let metagraph = chain.metagraph(target.netuid).await?;
    let scores: Vec<([u8; 32], f64)> = window
        .scores
        .iter()
        .filter_map(|s| {
            <[u8; 32]>::try_from(s.hotkey.as_slice())
                .ok()
                .map(|h| (h, s.score))
        })
        .collect();
    let (by_uid, unregistered) = metagraph.scores_by_uid(&scores);
    let mut record = pb::ChainWeights {
        window_id: window.window_id.clone(),
        netuid: target.netuid as u32,
        unix_ms: unix_ms(),
        unregistered: unregistered.iter().map(|h| h.to_vec()).collect(),
        dry_run: target.mode == Mode::DryRun,
        ..Default::default()
    };
    match chain
        .set_weights(&target.signer, target.netuid, &by_uid, target.mode)
        .await
    {
        Ok(report) => {
            println!(
                "weights for window {} on netuid {}:\n{}",
                window.window_id,
                target.netuid,
                report.table()
            );
            record.uids = report.uids.iter().map(|&u| u as u32).collect();
            record.weights = report.weights.iter().map(|&w| w as u32).collect();
            record.hotkeys = report
                .uids
                .iter()
                .map(|&uid| {
                    metagraph
                        .hotkey(uid)
                        .map(|h| h.to_vec())
                        .unwrap_or_default()
                })
                .collect();
            record.version_key = report.version_key;
            record.extrinsic = report.extrinsic.clone();
            record.block_hash = report.block_hash.clone().unwrap_or_default();
            match &report.outcome {
                Outcome::DryRun => {
                    info!(window = %window.window_id, uids = report.uids.len(), "weights dry run: extrinsic built and signed, not submitted")
                }
                Outcome::Included { finalized } => {
                    info!(window = %window.window_id, block = %record.block_hash, finalized, "weights set on chain")
                }
                Outcome::RateLimited {
                    next_block,
                    current_block,
                } => {
                    record.error =
                        format!("rate limited until block {next_block} (now {current_block})");
                    warn!(window = %window.window_id, next_block, "weights not set: {}", record.error);
                }
                Outcome::ChainError { name } => {
                    record.error = name.clone();
                    warn!(window = %window.window_id, error = %name, "chain refused the weights");
                }
                Outcome::Rejected { reason } => {
                    record.error = reason.clone();
                    warn!(window = %window.window_id, %reason, "transaction pool refused the weights");
                }
            }
        }
        Err(e) => {
            record.error = e.to_string();
            warn!(window = %window.window_id, error = %e, "cannot set weights");
        }
    }
    let object = bucket.layout().chain_weights(&window.window_id);
    bucket.put(&object, &record, key).await?;
    Ok(())
}
