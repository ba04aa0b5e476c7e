//! Verified input artifacts, kept for the next job that names them.
//!
//! Every inner job of a step starts from the same parameter artifact, so a
//! validator replaying them, or a miner's worker given several of them,
//! read, verified and decoded that artifact once per job. An input is kept
//! here only after it verified against what the owner's manifest names (its
//! key, the hotkey that must have signed it and its digest), and is found
//! again only by all three: a replaced or re-signed object has another
//! digest or signer and is read afresh.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use locus_protocol::{Verified, pb};

/// What an input is known by: key, writer's public key, payload digest.
type InputId = (String, Vec<u8>, Vec<u8>);

/// A bounded store of verified input artifacts, oldest out first. Clones
/// share one store, so a replay running on a task of its own (the
/// validator's `Replayer`) keeps what it read for the next one.
#[derive(Clone)]
pub struct InputCache {
    budget: usize,
    inner: Arc<Mutex<Entries>>,
}

#[derive(Default)]
struct Entries {
    by_id: HashMap<InputId, (Arc<pb::TensorArtifact>, usize)>,
    order: VecDeque<InputId>,
    bytes: usize,
}

impl InputCache {
    /// Keeps at most `budget` bytes of artifacts (by their stored size).
    pub fn new(budget: usize) -> Self {
        InputCache {
            budget,
            inner: Arc::default(),
        }
    }

    /// The artifact `input` names, if one that verified against it is kept.
    pub fn get(&self, input: &pb::InputRef) -> Option<Arc<pb::TensorArtifact>> {
        let entries = self.inner.lock().ok()?;
        entries
            .by_id
            .get(&id_of(input))
            .map(|(artifact, _)| artifact.clone())
    }

    /// Keeps `artifact`, read and verified for `input`, if it is what
    /// `input` names (its digest; the signer was checked by the read) and
    /// returns it to use. None: another object sits at the key since the
    /// manifest was written, which is neither kept nor to be used.
    pub fn keep(
        &self,
        input: &pb::InputRef,
        artifact: Verified<pb::TensorArtifact>,
    ) -> Option<Arc<pb::TensorArtifact>> {
        if artifact.digest().as_bytes().as_slice() != input.digest.as_slice() {
            return None;
        }
        let size = artifact.size();
        let artifact = Arc::new(artifact.into_inner());
        self.insert(input, artifact.clone(), size);
        Some(artifact)
    }

    /// Keeps `artifact`, which verified against `input`; `size` is its
    /// stored size. One larger than the whole budget is not kept.
    pub fn insert(&self, input: &pb::InputRef, artifact: Arc<pb::TensorArtifact>, size: usize) {
        if size > self.budget {
            return;
        }
        let Ok(mut entries) = self.inner.lock() else {
            return;
        };
        let id = id_of(input);
        if entries.by_id.contains_key(&id) {
            return;
        }
        while entries.bytes + size > self.budget {
            let Some(oldest) = entries.order.pop_front() else {
                break;
            };
            if let Some((_, freed)) = entries.by_id.remove(&oldest) {
                entries.bytes -= freed;
            }
        }
        entries.bytes += size;
        entries.order.push_back(id.clone());
        entries.by_id.insert(id, (artifact, size));
    }
}

fn id_of(input: &pb::InputRef) -> InputId {
    (
        input.key.clone(),
        input.writer.clone(),
        input.digest.clone(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(key: &str, digest: u8) -> pb::InputRef {
        pb::InputRef {
            key: key.into(),
            digest: vec![digest; 32],
            writer: vec![1; 32],
        }
    }

    fn artifact(job: &str) -> Arc<pb::TensorArtifact> {
        Arc::new(pb::TensorArtifact {
            job_id: job.into(),
            ..Default::default()
        })
    }

    #[test]
    fn kept_only_when_it_is_what_the_manifest_names() {
        let writer = locus_protocol::Keypair::generate();
        let key = "v1/netuid=1/runs/r/artifacts/s0-forward/a001.pb";
        let read = || {
            let sealed = locus_protocol::envelope::seal(&*artifact("forward"), key, &writer);
            locus_protocol::envelope::open::<pb::TensorArtifact>(
                &sealed.bytes,
                key,
                locus_protocol::Expect::Signer(&writer.hotkey()),
            )
            .expect("opens")
        };
        let named = |digest: Vec<u8>| pb::InputRef {
            key: key.into(),
            digest,
            writer: writer.hotkey().to_bytes().to_vec(),
        };
        let cache = InputCache::new(1 << 20);
        let replaced = named(vec![0; 32]);
        assert!(
            cache.keep(&replaced, read()).is_none(),
            "another digest is used"
        );
        assert!(cache.get(&replaced).is_none(), "another digest is kept");
        let wanted = named(read().digest().as_bytes().to_vec());
        assert_eq!(cache.keep(&wanted, read()).expect("used").job_id, "forward");
        assert_eq!(cache.get(&wanted).expect("kept").job_id, "forward");
    }

    #[test]
    fn found_only_by_key_writer_and_digest_and_bounded() {
        let cache = InputCache::new(100);
        cache.insert(&input("a", 1), artifact("a"), 60);
        assert_eq!(cache.get(&input("a", 1)).expect("kept").job_id, "a");
        // The same key with another digest (the object was replaced) or
        // another writer is not the same input.
        assert!(cache.get(&input("a", 2)).is_none());
        let mut other_writer = input("a", 1);
        other_writer.writer = vec![2; 32];
        assert!(cache.get(&other_writer).is_none());
        // Over budget: the oldest goes.
        cache.insert(&input("b", 1), artifact("b"), 60);
        assert!(cache.get(&input("a", 1)).is_none());
        assert!(cache.get(&input("b", 1)).is_some());
        // Larger than the whole budget: not kept, nothing evicted.
        cache.insert(&input("c", 1), artifact("c"), 101);
        assert!(cache.get(&input("c", 1)).is_none());
        assert!(cache.get(&input("b", 1)).is_some());
    }
}
