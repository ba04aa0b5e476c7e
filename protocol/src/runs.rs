//! Run manifests as a worker reads them: once per run, only the owner's,
//! and only one that names the run it was read for.

use std::collections::HashMap;
use std::sync::Arc;

use crate::{Bucket, BucketError, Expect, Hotkey, RejectReason, Rejection, pb};

/// The run manifests a worker has read, verified. Handed out shared: a
/// manifest is read by every job of its run, and a gpt_pipe one carries the
/// output bias, a float per token.
pub struct RunManifests {
    owner: Hotkey,
    runs: HashMap<String, Arc<pb::RunManifest>>,
}

impl RunManifests {
    /// Manifests must be signed by `owner`.
    pub fn new(owner: Hotkey) -> Self {
        RunManifests {
            owner,
            runs: HashMap::new(),
        }
    }

    /// The owner's manifest of `run_id`, read from `bucket` the first time.
    /// A manifest that names another run is refused as inconsistent.
    pub async fn get(
        &mut self,
        bucket: &Bucket,
        run_id: &str,
    ) -> Result<Arc<pb::RunManifest>, BucketError> {
        if let Some(run) = self.runs.get(run_id) {
            return Ok(run.clone());
        }
        let key = bucket.layout().run_manifest(run_id);
        let run = bucket
            .get::<pb::RunManifest>(&key, Expect::Signer(&self.owner))
            .await?
            .into_inner();
        if run.run_id != run_id {
            return Err(BucketError::Rejected(Rejection {
                key,
                reason: RejectReason::Inconsistent(format!("names run {:?}", run.run_id)),
            }));
        }
        let run = Arc::new(run);
        self.runs.insert(run_id.to_string(), run.clone());
        Ok(run)
    }
}
