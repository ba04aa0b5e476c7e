//! `locus ledger`: per hotkey, what each run's score window credits (jobs,
//! verdicts, compute units, weight, and the uid and u16 weight that went to
//! chain), read from signed objects only: the owner's run manifest names the
//! validators, a validator's score window and chain weights give the
//! figures, and every verdict that validator signed for the run is counted
//! again to check the window against them.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use anyhow::Context as _;
use clap::Args;
use locus_protocol::pb::{self, VerdictOutcome};
use locus_protocol::{Expect, Hotkey};

use crate::subnet::{Subnet, SubnetArgs};

#[derive(Args, Debug)]
pub struct LedgerArgs {
    #[command(flatten)]
    pub subnet: SubnetArgs,
    /// Only this run (default: every run in the bucket).
    #[arg(long, env = "LOCUS_RUN_ID")]
    pub run_id: Option<String>,
    /// Print JSON instead of tables.
    #[arg(long, env = "LOCUS_JSON")]
    pub json: bool,
}

/// Verdict counts of one hotkey.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Count {
    pub verified: u64,
    pub unsampled: u64,
    pub failed: u64,
    pub late: u64,
    pub verified_cu: u64,
    pub unsampled_cu: u64,
}

impl Count {
    fn of_window(score: &pb::HotkeyScore) -> Count {
        Count {
            verified: score.verified,
            unsampled: score.unsampled,
            failed: score.failed,
            late: score.late,
            verified_cu: score.verified_cu,
            unsampled_cu: score.unsampled_cu,
        }
    }

    fn add(&mut self, verdict: &pb::Verdict) {
        let cu = verdict.compute_units;
        match VerdictOutcome::try_from(verdict.outcome).unwrap_or_default() {
            VerdictOutcome::Verified => {
                self.verified += 1;
                self.verified_cu += cu;
            }
            VerdictOutcome::Unsampled => {
                self.unsampled += 1;
                self.unsampled_cu += cu;
            }
            VerdictOutcome::Failed => self.failed += 1,
            VerdictOutcome::Late => self.late += 1,
            VerdictOutcome::Unspecified => {}
        }
    }
}

/// Whether a window's figures are what its validator's verdicts say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    Agrees,
    /// The window is still open: verdicts written since may not be in it.
    Pending,
    /// A final window that its own verdicts contradict.
    Differs,
}

impl Check {
    fn name(self) -> &'static str {
        match self {
            Check::Agrees => "ok",
            Check::Pending => "pending",
            Check::Differs => "DIFFERS",
        }
    }
}

/// One hotkey in one run's window.
#[derive(Debug)]
pub struct Line {
    pub ss58: String,
    /// The window's score for the hotkey (absent: only in verdicts).
    pub window: Option<pb::HotkeyScore>,
    pub recount: Count,
    pub check: Check,
    pub uid: Option<u32>,
    /// The u16 weight set (or dry-run built) on chain.
    pub chain_weight: Option<u32>,
}

/// One run's ledger.
#[derive(Debug)]
pub struct RunLedger {
    pub run_id: String,
    pub validator: Option<String>,
    pub complete: bool,
    pub unix_ms: u64,
    pub receipts: u64,
    pub verdicts: usize,
    pub chain: Option<pb::ChainWeights>,
    pub lines: Vec<Line>,
}

/// Builds a run's ledger from its window (with the validator that signed
/// it), its chain weights and the verdicts that validator signed.
pub fn build(
    run_id: &str,
    window: Option<(Hotkey, pb::ScoreWindow)>,
    chain: Option<pb::ChainWeights>,
    verdicts: &[pb::Verdict],
) -> RunLedger {
    let mut recount: BTreeMap<String, Count> = BTreeMap::new();
    for verdict in verdicts {
        let ss58 = match Hotkey::from_bytes(&verdict.hotkey) {
            Ok(hotkey) => hotkey.ss58(),
            Err(_) => continue,
        };
        recount.entry(ss58).or_default().add(verdict);
    }
    let (validator, window) = match window {
        Some((signer, window)) => (Some(signer.ss58()), Some(window)),
        None => (None, None),
    };
    let complete = window.as_ref().is_some_and(|w| w.complete);
    let mut on_chain: BTreeMap<Vec<u8>, (u32, u32)> = BTreeMap::new();
    if let Some(chain) = &chain {
        for ((hotkey, uid), weight) in chain.hotkeys.iter().zip(&chain.uids).zip(&chain.weights) {
            on_chain.insert(hotkey.clone(), (*uid, *weight));
        }
    }
    let mut scores: BTreeMap<String, pb::HotkeyScore> = window
        .iter()
        .flat_map(|w| w.scores.iter())
        .map(|s| (s.ss58.clone(), s.clone()))
        .collect();
    let mut hotkeys: Vec<String> = scores.keys().chain(recount.keys()).cloned().collect();
    hotkeys.sort();
    hotkeys.dedup();
    let mut lines: Vec<Line> = hotkeys
        .into_iter()
        .map(|ss58| {
            let score = scores.remove(&ss58);
            let counted = recount.get(&ss58).copied().unwrap_or_default();
            let agrees = score
                .as_ref()
                .is_some_and(|s| Count::of_window(s) == counted);
            let check = match (agrees, complete) {
                (true, _) => Check::Agrees,
                (false, false) => Check::Pending,
                (false, true) => Check::Differs,
            };
            let chain_entry = score
                .as_ref()
                .and_then(|s| on_chain.get(&s.hotkey))
                .copied();
            Line {
                ss58,
                window: score,
                recount: counted,
                check,
                uid: chain_entry.map(|(uid, _)| uid),
                chain_weight: chain_entry.map(|(_, weight)| weight),
            }
        })
        .collect();
    lines.sort_by(|a, b| {
        let weight = |l: &Line| l.window.as_ref().map_or(0.0, |s| s.weight);
        weight(b).total_cmp(&weight(a)).then(a.ss58.cmp(&b.ss58))
    });
    RunLedger {
        run_id: run_id.to_string(),
        validator,
        complete,
        unix_ms: window.as_ref().map_or(0, |w| w.unix_ms),
        receipts: window.as_ref().map_or(0, |w| w.receipts),
        verdicts: verdicts.len(),
        chain,
        lines,
    }
}

/// The ledger as an aligned text table with a heading line.
pub fn table(ledger: &RunLedger) -> String {
    let mut out = String::new();
    let state = match (&ledger.validator, ledger.complete) {
        (None, _) => "no score window yet".to_string(),
        (Some(v), true) => format!("window final, signed by validator {v}"),
        (Some(v), false) => format!("window provisional (still open), signed by validator {v}"),
    };
    let chain = match &ledger.chain {
        None => "no chain weights".to_string(),
        Some(c) if !c.error.is_empty() => format!("chain weights refused: {}", c.error),
        Some(c) if c.dry_run => format!("chain weights built as a dry run (netuid {})", c.netuid),
        Some(c) if c.reveal_round != 0 => format!(
            "chain weights committed on netuid {} in block {}, revealed at drand round {}",
            c.netuid, c.block_hash, c.reveal_round
        ),
        Some(c) => format!(
            "chain weights set on netuid {} in block {}",
            c.netuid, c.block_hash
        ),
    };
    let _ = writeln!(
        out,
        "run {}: {state}; {} receipts, {} verdicts; {chain}",
        ledger.run_id, ledger.receipts, ledger.verdicts
    );
    let _ = writeln!(
        out,
        "{:<48} {:>5} {:>8} {:>9} {:>6} {:>4} {:>8} {:>10} {:>10} {:>8} {:>5} {:>6}  check",
        "hotkey",
        "jobs",
        "verified",
        "unsampled",
        "failed",
        "late",
        "rejected",
        "CU ver",
        "CU unsamp",
        "weight",
        "uid",
        "u16"
    );
    for line in &ledger.lines {
        let w = line.window.clone().unwrap_or_default();
        let opt = |v: Option<u32>| v.map_or("-".to_string(), |v| v.to_string());
        let _ = writeln!(
            out,
            "{:<48} {:>5} {:>8} {:>9} {:>6} {:>4} {:>8} {:>10} {:>10} {:>8.4} {:>5} {:>6}  {}",
            line.ss58,
            w.receipts,
            w.verified,
            w.unsampled,
            w.failed,
            w.late,
            w.rejected,
            w.verified_cu,
            w.unsampled_cu,
            w.weight,
            opt(line.uid),
            opt(line.chain_weight),
            line.check.name()
        );
    }
    out
}

/// The ledgers as one JSON document.
pub fn json(ledgers: &[RunLedger]) -> serde_json::Value {
    let runs: Vec<serde_json::Value> = ledgers
        .iter()
        .map(|l| {
            let hotkeys: Vec<serde_json::Value> = l
                .lines
                .iter()
                .map(|line| {
                    let w = line.window.clone().unwrap_or_default();
                    serde_json::json!({
                        "hotkey": line.ss58,
                        "in_window": line.window.is_some(),
                        "jobs": w.receipts,
                        "verified": w.verified,
                        "unsampled": w.unsampled,
                        "failed": w.failed,
                        "late": w.late,
                        "rejected": w.rejected,
                        "verified_cu": w.verified_cu,
                        "unsampled_cu": w.unsampled_cu,
                        "score": w.score,
                        "weight": w.weight,
                        "reason": w.reason,
                        "uid": line.uid,
                        "chain_weight_u16": line.chain_weight,
                        "check": line.check.name(),
                        "recount": {
                            "verified": line.recount.verified,
                            "unsampled": line.recount.unsampled,
                            "failed": line.recount.failed,
                            "late": line.recount.late,
                            "verified_cu": line.recount.verified_cu,
                            "unsampled_cu": line.recount.unsampled_cu,
                        },
                    })
                })
                .collect();
            serde_json::json!({
                "run_id": l.run_id,
                "validator": l.validator,
                "final": l.complete,
                "window_unix_ms": l.unix_ms,
                "receipts": l.receipts,
                "verdicts": l.verdicts,
                "chain": l.chain.as_ref().map(|c| serde_json::json!({
                    "netuid": c.netuid,
                    "dry_run": c.dry_run,
                    "block_hash": c.block_hash,
                    "error": c.error,
                    "version_key": c.version_key,
                })),
                "hotkeys": hotkeys,
            })
        })
        .collect();
    serde_json::json!({ "runs": runs })
}

pub async fn run(args: LedgerArgs) -> anyhow::Result<()> {
    let subnet = args.subnet.open().await?;
    let runs = match &args.run_id {
        Some(run) => vec![run.clone()],
        None => subnet
            .bucket
            .list_dirs(&subnet.bucket.layout().runs())
            .await
            .context("listing runs")?,
    };
    let mut ledgers = Vec::new();
    for run in &runs {
        match read_run(&subnet, run).await {
            Ok(ledger) => ledgers.push(ledger),
            // One bad run does not hide the others, unless it was asked for.
            Err(e) if args.run_id.is_none() => eprintln!("run {run}: skipped: {e:#}"),
            Err(e) => return Err(e),
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&json(&ledgers))?);
    } else if ledgers.is_empty() {
        println!("no runs in {}", subnet.shown);
    } else {
        for ledger in &ledgers {
            println!("{}", table(ledger));
        }
    }
    Ok(())
}

/// Reads one run's signed objects and builds its ledger.
async fn read_run(subnet: &Subnet, run: &str) -> anyhow::Result<RunLedger> {
    let bucket = &subnet.bucket;
    let layout = bucket.layout();
    let manifest = bucket
        .get::<pb::RunManifest>(&layout.run_manifest(run), Expect::Signer(&subnet.owner))
        .await
        .context("reading the run manifest")?
        .into_inner();
    let validators: Vec<Hotkey> = manifest
        .validators
        .iter()
        .map(|v| Hotkey::from_bytes(v))
        .collect::<Result<_, _>>()
        .context("a validator key in the run manifest")?;
    let window = bucket
        .get_opt::<pb::ScoreWindow>(&layout.score_window(run), Expect::OneOf(&validators))
        .await
        .context("reading the score window")?
        .map(|w| (*w.signer(), w.into_inner()));
    let Some(signer) = window.as_ref().map(|(signer, _)| *signer) else {
        return Ok(build(run, None, None, &[]));
    };
    let chain = bucket
        .get_opt::<pb::ChainWeights>(&layout.chain_weights(run), Expect::Signer(&signer))
        .await
        .context("reading the chain weights")?
        .map(|c| c.into_inner());
    let keys = bucket
        .list(&layout.verdicts(run), None)
        .await
        .context("listing verdicts")?;
    if keys.len() > 1000 {
        eprintln!("run {run}: reading {} verdicts", keys.len());
    }
    let mut verdicts = Vec::with_capacity(keys.len());
    for key in &keys {
        match bucket
            .get::<pb::Verdict>(key, Expect::Signer(&signer))
            .await
        {
            Ok(verdict) => verdicts.push(verdict.into_inner()),
            // Not this validator's: no part of its window.
            Err(e) if !e.is_transient() => {}
            Err(e) => return Err(e).context("reading a verdict"),
        }
    }
    Ok(build(run, window, chain, &verdicts))
}

#[cfg(test)]
mod tests {
    use super::*;
    use locus_protocol::Keypair;

    fn verdict(hotkey: &Hotkey, outcome: VerdictOutcome, cu: u64) -> pb::Verdict {
        pb::Verdict {
            hotkey: hotkey.to_bytes().to_vec(),
            outcome: outcome as i32,
            compute_units: cu,
            ..Default::default()
        }
    }

    fn score(hotkey: &Hotkey, count: Count, weight: f64) -> pb::HotkeyScore {
        pb::HotkeyScore {
            hotkey: hotkey.to_bytes().to_vec(),
            ss58: hotkey.ss58(),
            receipts: count.verified + count.unsampled + count.failed + count.late,
            verified: count.verified,
            unsampled: count.unsampled,
            failed: count.failed,
            late: count.late,
            verified_cu: count.verified_cu,
            unsampled_cu: count.unsampled_cu,
            weight,
            ..Default::default()
        }
    }

    #[test]
    fn a_window_is_checked_against_its_verdicts() {
        let validator = Keypair::generate().hotkey();
        let (a, b) = (Keypair::generate().hotkey(), Keypair::generate().hotkey());
        let verdicts = vec![
            verdict(&a, VerdictOutcome::Verified, 10),
            verdict(&a, VerdictOutcome::Unsampled, 30),
            verdict(&b, VerdictOutcome::Late, 5),
            verdict(&b, VerdictOutcome::Unsampled, 20),
        ];
        let honest_a = Count {
            verified: 1,
            unsampled: 1,
            verified_cu: 10,
            unsampled_cu: 30,
            ..Count::default()
        };
        // b's window figures leave out its late verdict.
        let wrong_b = Count {
            unsampled: 1,
            unsampled_cu: 20,
            ..Count::default()
        };
        let window = |complete| pb::ScoreWindow {
            window_id: "r".into(),
            complete,
            scores: vec![score(&a, honest_a, 0.66), score(&b, wrong_b, 0.33)],
            ..Default::default()
        };
        let chain = pb::ChainWeights {
            hotkeys: vec![a.to_bytes().to_vec()],
            uids: vec![4],
            weights: vec![65535],
            dry_run: true,
            ..Default::default()
        };
        let ledger = build("r", Some((validator, window(true))), Some(chain), &verdicts);
        assert_eq!(ledger.lines.len(), 2);
        let first = &ledger.lines[0];
        assert_eq!(first.ss58, a.ss58(), "heaviest first");
        assert_eq!(first.check, Check::Agrees);
        assert_eq!((first.uid, first.chain_weight), (Some(4), Some(65535)));
        assert_eq!(ledger.lines[1].check, Check::Differs);
        assert_eq!(ledger.lines[1].uid, None);
        let open = build("r", Some((validator, window(false))), None, &verdicts);
        assert_eq!(open.lines[1].check, Check::Pending);

        let text = table(&ledger);
        assert!(text.contains("window final"), "{text}");
        assert!(
            text.contains("DIFFERS") && text.contains("dry run"),
            "{text}"
        );
        let doc = json(&[ledger]);
        let hotkeys = &doc["runs"][0]["hotkeys"];
        assert_eq!(hotkeys[0]["uid"], 4);
        assert_eq!(hotkeys[1]["recount"]["late"], 1);
        assert_eq!(doc["runs"][0]["final"], true);
    }

    #[test]
    fn a_run_without_a_window_says_so() {
        let ledger = build("r", None, None, &[]);
        assert!(ledger.lines.is_empty());
        assert!(table(&ledger).contains("no score window yet"));
    }
}
