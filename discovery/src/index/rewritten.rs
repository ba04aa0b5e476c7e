//! Objects their writers rewrite in place: worker heartbeats, score windows,
//! chain weights and dropped-auditor records. Each family is listed with metadata once per refresh
//! and an object is read again only when its version changed, all through
//! one generic [`DiscoveryIndex::refresh_rewritten`]; a [`Family`] says only
//! where its objects live, who signs them and what makes one valid.

use std::collections::{BTreeMap, BTreeSet};

use locus_protocol::{Expect, Hotkey, Layout, Listed, Record, Verified, pb};

use super::{DiscoveryIndex, RefreshReport, Tracked, Version, answer, check, settled};

/// One family of rewritten objects.
pub(super) trait Family {
    type Record: Record + Send;
    /// What the index keeps of a valid object.
    type Value;
    /// What the index learns from an object's key.
    type Key;
    /// The object's kind in logs and in the rejected list.
    const KIND: &'static str;

    /// Where the family's objects live.
    fn prefix(layout: &Layout) -> String;
    /// The index's table of this family.
    fn table(index: &mut DiscoveryIndex) -> &mut BTreeMap<String, Tracked<Self::Value>>;
    /// What `key` names, or why the object is rejected unread.
    fn parse_key(layout: &Layout, key: &str) -> Result<Self::Key, String>;
    /// Who must have signed the object (`None`: any signer, checked later).
    fn signer(key: &Self::Key) -> Option<&Hotkey>;
    /// Whether a verified object is valid where it is, given what the index knows.
    fn check(
        index: &DiscoveryIndex,
        key: &Self::Key,
        record: Verified<Self::Record>,
    ) -> Result<Self::Value, String>;
}

/// A worker's heartbeat, signed by the hotkey its key names.
pub(super) struct Heartbeats;

impl Family for Heartbeats {
    type Record = pb::WorkerHeartbeat;
    type Value = pb::WorkerHeartbeat;
    type Key = (Hotkey, u32);
    const KIND: &'static str = "heartbeat";

    fn prefix(layout: &Layout) -> String {
        layout.heartbeats()
    }

    fn table(index: &mut DiscoveryIndex) -> &mut BTreeMap<String, Tracked<Self::Value>> {
        &mut index.heartbeats
    }

    fn parse_key(layout: &Layout, key: &str) -> Result<Self::Key, String> {
        layout
            .parse_heartbeat(key)
            .ok_or_else(|| "key is not heartbeats/{ss58}/w{worker}.pb".to_string())
    }

    fn signer((hotkey, _): &Self::Key) -> Option<&Hotkey> {
        Some(hotkey)
    }

    fn check(
        _: &DiscoveryIndex,
        (hotkey, worker): &Self::Key,
        hb: Verified<pb::WorkerHeartbeat>,
    ) -> Result<Self::Value, String> {
        check(
            hb.hotkey == hotkey.to_bytes() && hb.worker == *worker,
            || {
                format!(
                    "heartbeat names hotkey {} worker {}, its key names {hotkey} worker {worker}",
                    Hotkey::ss58_of(&hb.hotkey),
                    hb.worker
                )
            },
        )
        .map(|()| hb.into_inner())
    }
}

/// A validator's score window, signed by a validator of the runs it scores.
pub(super) struct Scores;

impl Family for Scores {
    type Record = pb::ScoreWindow;
    type Value = (pb::ScoreWindow, Hotkey);
    /// The window the key names.
    type Key = String;
    const KIND: &'static str = "score window";

    fn prefix(layout: &Layout) -> String {
        layout.scores()
    }

    fn table(index: &mut DiscoveryIndex) -> &mut BTreeMap<String, Tracked<Self::Value>> {
        &mut index.scores
    }

    fn parse_key(layout: &Layout, key: &str) -> Result<Self::Key, String> {
        Ok(layout.parse_score_window(key).unwrap_or_default())
    }

    fn signer(_: &Self::Key) -> Option<&Hotkey> {
        None
    }

    fn check(
        index: &DiscoveryIndex,
        window: &Self::Key,
        s: Verified<pb::ScoreWindow>,
    ) -> Result<Self::Value, String> {
        let allowed = index.validators_of(&s.run_ids);
        let signer = *s.signer();
        check(s.window_id == *window, || {
            format!("window {:?} stored under {window:?}", s.window_id)
        })?;
        check(!allowed.is_empty(), || {
            format!("names no known run (runs {:?})", s.run_ids)
        })?;
        check(allowed.contains(&signer), || {
            format!(
                "signed by {signer}, not a validator of run(s) {:?}",
                s.run_ids
            )
        })?;
        Ok((s.into_inner(), signer))
    }
}

/// The weights a validator pushed (or would push) to chain for a window,
/// signed by a validator of the runs that window scored (of any known run
/// when the window is not indexed).
pub(super) struct Weights;

impl Family for Weights {
    type Record = pb::ChainWeights;
    type Value = (pb::ChainWeights, Hotkey);
    /// The window the key names.
    type Key = String;
    const KIND: &'static str = "chain weights";

    fn prefix(layout: &Layout) -> String {
        layout.weights()
    }

    fn table(index: &mut DiscoveryIndex) -> &mut BTreeMap<String, Tracked<Self::Value>> {
        &mut index.weights
    }

    fn parse_key(layout: &Layout, key: &str) -> Result<Self::Key, String> {
        Ok(layout.parse_chain_weights(key).unwrap_or_default())
    }

    fn signer(_: &Self::Key) -> Option<&Hotkey> {
        None
    }

    fn check(
        index: &DiscoveryIndex,
        window: &Self::Key,
        w: Verified<pb::ChainWeights>,
    ) -> Result<Self::Value, String> {
        let score_runs = index
            .scores
            .values()
            .filter_map(|t| t.value.as_ref().ok())
            .find(|(s, _)| s.window_id == w.window_id)
            .map(|(s, _)| s.run_ids.clone());
        let allowed = match score_runs {
            Some(runs) => index.validators_of(&runs),
            None => index.all_validators(),
        };
        let signer = *w.signer();
        check(w.window_id == *window, || {
            format!("window {:?} stored under {window:?}", w.window_id)
        })?;
        check(allowed.contains(&signer), || {
            format!("signed by {signer}, not a validator of a known run")
        })?;
        Ok((w.into_inner(), signer))
    }
}

/// A validator's record that it dropped an auditor, signed by a validator
/// of a known run, for the auditor its key names.
pub(super) struct DroppedAuditors;

impl Family for DroppedAuditors {
    type Record = pb::AuditorDropped;
    type Value = (pb::AuditorDropped, Hotkey);
    /// The auditor the key names.
    type Key = Hotkey;
    const KIND: &'static str = "dropped-auditor record";

    fn prefix(layout: &Layout) -> String {
        layout.dropped_auditors()
    }

    fn table(index: &mut DiscoveryIndex) -> &mut BTreeMap<String, Tracked<Self::Value>> {
        &mut index.dropped_auditors
    }

    fn parse_key(layout: &Layout, key: &str) -> Result<Self::Key, String> {
        layout
            .parse_auditor_dropped(key)
            .ok_or_else(|| "key is not dropped-auditors/{ss58}.pb".to_string())
    }

    fn signer(_: &Self::Key) -> Option<&Hotkey> {
        None
    }

    fn check(
        index: &DiscoveryIndex,
        auditor: &Self::Key,
        d: Verified<pb::AuditorDropped>,
    ) -> Result<Self::Value, String> {
        let signer = *d.signer();
        check(d.auditor == auditor.to_bytes(), || {
            format!(
                "names auditor {}, its key names {auditor}",
                Hotkey::ss58_of(&d.auditor)
            )
        })?;
        check(index.all_validators().contains(&signer), || {
            format!("signed by {signer}, not a validator of a known run")
        })?;
        Ok((d.into_inner(), signer))
    }
}

impl DiscoveryIndex {
    /// Reads the objects of family `F` that are new or changed since they
    /// were read, and forgets the ones no longer listed.
    pub(super) async fn refresh_rewritten<F: Family>(
        &mut self,
        report: &mut RefreshReport,
    ) -> Result<(), crate::Error> {
        let layout = self.bucket.layout().clone();
        let listed = self.bucket.list_meta(&F::prefix(&layout), None).await?;
        for l in stale(F::table(self), listed, report) {
            let value = match F::parse_key(&layout, &l.key) {
                Err(reason) => Err(reason),
                Ok(key) => {
                    report.fetched += 1;
                    let expect = F::signer(&key).map_or(Expect::AnySigner, Expect::Signer);
                    let got = self.bucket.get_listed::<F::Record>(&l, expect).await;
                    let Some(got) = settled(F::KIND, &l.key, got) else {
                        continue;
                    };
                    answer(got).and_then(|record| F::check(self, &key, record))
                }
            };
            report.changed = true;
            match &value {
                Ok(_) => {
                    self.rejected.remove(&l.key);
                }
                Err(reason) => {
                    report.rejected += u64::from(self.reject(&l.key, F::KIND, reason.clone()));
                }
            }
            let version = Version::of(&l);
            F::table(self).insert(l.key, Tracked { version, value });
        }
        Ok(())
    }

    /// Validators of the named runs that this index knows.
    fn validators_of(&self, run_ids: &[String]) -> Vec<Hotkey> {
        let mut out: Vec<Hotkey> = run_ids
            .iter()
            .filter_map(|r| self.runs.get(r))
            .flat_map(|r| r.validators.iter().copied())
            .collect();
        out.sort();
        out.dedup();
        out
    }

    fn all_validators(&self) -> Vec<Hotkey> {
        let ids: Vec<String> = self.runs.keys().cloned().collect();
        self.validators_of(&ids)
    }
}

/// Forgets tracked objects no longer listed and returns the listed ones
/// that must be read (again): new or changed.
fn stale<T>(
    tracked: &mut BTreeMap<String, Tracked<T>>,
    listed: Vec<Listed>,
    report: &mut RefreshReport,
) -> Vec<Listed> {
    let present: BTreeSet<&str> = listed.iter().map(|l| l.key.as_str()).collect();
    let before = tracked.len();
    tracked.retain(|k, _| present.contains(k.as_str()));
    report.changed |= before != tracked.len();
    listed
        .into_iter()
        .filter(|l| !tracked.get(&l.key).is_some_and(|t| t.is_current(l)))
        .collect()
}
