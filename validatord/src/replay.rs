//! Judging one receipt: attribute it, check what it commits to, and replay
//! it when sampled.
//!
//! A receipt that cannot be attributed to the hotkey the owner assigned the
//! job to (bad signature, signed by someone else, moved to another key) is
//! rejected outright and earns nothing. An attributable receipt always gets a
//! verdict: failed when the hotkey's own signed objects disagree (an artifact
//! it signed that does not match its receipt, wrong shapes) or a replay
//! disagrees; verified when a replay agrees; unsampled otherwise; late (no
//! credit, no penalty) when it came after the lease, or when something it
//! depends on is gone or was replaced by someone else, which proves nothing
//! against the hotkey.

use std::sync::Arc;
use std::time::Instant;

use locus_protocol::attribution::{self, Attributed};
use locus_protocol::pb::{self, VerdictOutcome};
use locus_protocol::time::Clock;
use locus_protocol::{
    Bucket, BucketError, Digest, Expect, Hotkey, Keypair, RejectReason, Rejection, Verified,
};
use locus_workloads::compare::{Agreement, compare_outputs};
use locus_workloads::{Device, cost};
use prost::Message as _;

use crate::input_cache::InputCache;
use crate::sampling;

/// What the validator needs to judge receipts of one run.
pub struct Judge<'a> {
    pub bucket: &'a Bucket,
    pub owner: &'a Hotkey,
    pub validator: &'a Keypair,
    /// Shared with the replays it starts ([`Judge::replayer`]).
    pub run: &'a Arc<pb::RunManifest>,
    pub sample_rate: f64,
    pub device: &'a Device,
    /// Whether a hotkey has yet to pass enough replays in this run: every
    /// one of its receipts is replayed until it has (see
    /// [`sampling::must_replay`]).
    pub on_probation: &'a (dyn Fn(&Hotkey) -> bool + Sync),
    /// Inputs already verified for an earlier replay.
    pub inputs: &'a InputCache,
    /// The time verdicts are dated by.
    pub clock: &'a Clock,
}

#[derive(Debug, thiserror::Error)]
pub enum JudgeError {
    /// Not attributable to the assigned hotkey: no verdict, no credit.
    #[error(transparent)]
    Rejected(#[from] Rejection),
    /// Storage trouble: try again later.
    #[error(transparent)]
    Bucket(BucketError),
    /// The replay task itself died (not the miner's fault): try again later.
    #[error("replay task failed: {0}")]
    Replay(String),
}

impl From<BucketError> for JudgeError {
    fn from(e: BucketError) -> Self {
        match e {
            BucketError::Rejected(r) => JudgeError::Rejected(r),
            other => JudgeError::Bucket(other),
        }
    }
}

fn inconsistent(key: &str, what: String) -> JudgeError {
    JudgeError::Rejected(Rejection {
        key: key.to_string(),
        reason: RejectReason::Inconsistent(what),
    })
}

/// What judging a receipt came to.
pub enum Judgement {
    /// The verdict to write.
    Done(Box<pb::Verdict>),
    /// Sampled, and every other check passed: the verdict waits for a
    /// replay, by this validator ([`Judge::replay`]) or by an auditor.
    Replay(Box<PendingReplay>),
}

/// A verdict but for its outcome, and what decides the outcome.
struct Draft {
    verdict: pb::Verdict,
    sampled: bool,
    /// Why the replay was forced, if it was.
    forced: Option<&'static str>,
    /// The attempt of the same job already credited, if any.
    credited: Option<u32>,
    /// Dates the verdict when it is concluded.
    clock: Clock,
}

impl Draft {
    /// The verdict once `checked` is known.
    fn conclude(self, checked: Checked) -> pb::Verdict {
        let mut verdict = self.verdict;
        verdict.unix_ms = self.clock.now_ms();
        match checked {
            Checked::Passed => {
                verdict.outcome = if self.sampled {
                    verdict.reason = self.forced.unwrap_or("sampled").to_string();
                    VerdictOutcome::Verified as i32
                } else {
                    VerdictOutcome::Unsampled as i32
                };
                // A job earns once. A redo is judged like any result, since
                // downstream jobs will use it, but it is not paid again.
                if let Some(first) = self.credited.filter(|a| *a != verdict.attempt) {
                    verdict.compute_units = 0;
                    let note = format!("job already credited to attempt {first}: used, not paid");
                    verdict.reason = if verdict.reason.is_empty() {
                        note
                    } else {
                        format!("{}; {note}", verdict.reason)
                    };
                }
            }
            Checked::Failed(reason) => {
                verdict.outcome = VerdictOutcome::Failed as i32;
                verdict.reason = reason;
                verdict.output = None;
                verdict.scalars.clear();
            }
            Checked::Void(reason) => {
                verdict.compute_units = 0;
                verdict.reason = reason;
                verdict.output = None;
                verdict.scalars.clear();
            }
        }
        verdict
    }
}

/// A sampled receipt whose checks passed, waiting for its replay.
pub struct PendingReplay {
    draft: Draft,
    target: ReplayTarget,
    kind: pb::JobKind,
}

impl PendingReplay {
    /// The verdict as it stands (its outcome still open).
    pub fn verdict(&self) -> &pb::Verdict {
        &self.draft.verdict
    }

    /// The kind of the job: critical jobs are replayed by the validator.
    pub fn kind(&self) -> pb::JobKind {
        self.kind
    }

    /// The verdict once the replay's finding is in; `auditor` is whose
    /// replay it rests on (none: this validator's own).
    pub fn conclude(self, replayed: &Replayed, auditor: Option<&Hotkey>) -> pb::Verdict {
        let mut verdict = self.draft.conclude(replayed.checked.clone());
        verdict.replay_ms = replayed.ms;
        if let Some(auditor) = auditor {
            verdict.auditor = auditor.to_bytes().to_vec();
            verdict.reason = format!("{}; replayed by auditor {auditor}", verdict.reason);
        }
        verdict
    }
}

/// What a replay needs: the job, and the output it is compared with.
struct ReplayTarget {
    manifest: Verified<pb::JobManifest>,
    /// Shared with the replay input cache (see `Judge::check_output`).
    artifact: Arc<pb::TensorArtifact>,
    /// The backend the receipt says computed the output.
    backend: String,
}

/// What one replay found.
#[derive(Clone, Debug)]
pub struct Replayed {
    pub checked: Checked,
    /// Digest of the replayed outputs ([`outputs_digest`]); none when no
    /// replay ran (an earlier check decided).
    pub digest: Option<Digest>,
    pub ms: u64,
}

impl Replayed {
    fn without_replay(checked: Checked) -> Self {
        Replayed {
            checked,
            digest: None,
            ms: 0,
        }
    }
}

/// BLAKE3 over the encoded output tensors, in order: what two replays on
/// one backend agree on bit for bit.
pub fn outputs_digest(tensors: &[pb::Tensor]) -> Digest {
    let mut bytes = Vec::new();
    for t in tensors {
        t.encode_length_delimited(&mut bytes)
            .expect("a Vec grows as needed");
    }
    Digest::of(&bytes)
}

impl Judge<'_> {
    /// Reads the receipt at `key` and the assignment it names, and checks
    /// that the receipt is the assigned hotkey's answer to it.
    async fn attribute(
        &self,
        key: &str,
    ) -> Result<(Verified<pb::Receipt>, Verified<pb::Assignment>, Attributed), JudgeError> {
        let layout = self.bucket.layout();
        let run_id = &self.run.run_id;
        if layout.parse_receipt(run_id, key).is_none() {
            return Err(inconsistent(key, "not a receipt key".into()));
        }
        // Signature first (any signer), attribution next.
        let receipt: Verified<pb::Receipt> = self.bucket.get(key, Expect::AnySigner).await?;
        // Read nothing a receipt names unless it is an assignment key.
        if layout.parse_assignment(&receipt.assignment_key).is_none() {
            let named = receipt.assignment_key.clone();
            return Err(JudgeError::Rejected(
                attribution::Misattribution::NotAnAssignmentKey(named).at(key),
            ));
        }
        // The copy the receipt carries is the owner's word as much as the
        // object at the key. Without one: the owner writes an assignment
        // before any receipt for it can exist, so a receipt naming a missing
        // assignment is bogus, not early.
        let assignment: Verified<pb::Assignment> =
            match attribution::carried_assignment(&receipt, self.owner) {
                Some(carried) => carried,
                None => self
                    .bucket
                    .get(&receipt.assignment_key, Expect::Signer(self.owner))
                    .await
                    .map_err(|e| match e {
                        BucketError::NotFound { key: missing } => inconsistent(
                            key,
                            format!("names assignment {missing}, which does not exist"),
                        ),
                        other => other.into(),
                    })?,
            };
        let attributed = attribution::attribute(layout, run_id, key, &receipt, &assignment)
            .map_err(|m| JudgeError::Rejected(m.at(key)))?;
        Ok((receipt, assignment, attributed))
    }

    /// Judges the receipt at `key`, which the storage says was written at
    /// `written_ms`. `credited` is the attempt of the same job already
    /// credited, if any. A sampled receipt comes back as a
    /// [`Judgement::Replay`]; everything else as the verdict to write.
    pub async fn judge(
        &self,
        key: &str,
        written_ms: u64,
        credited: Option<u32>,
    ) -> Result<Judgement, JudgeError> {
        let (receipt, assignment, attributed) = self.attribute(key).await?;
        let Attributed {
            step,
            job,
            attempt,
            hotkey: assigned,
        } = attributed;
        let mut verdict = pb::Verdict {
            run_id: self.run.run_id.clone(),
            job_id: job.clone(),
            attempt,
            hotkey: assigned.to_bytes().to_vec(),
            receipt_key: key.to_string(),
            receipt_digest: receipt.digest().to_vec(),
            outcome: VerdictOutcome::Late as i32,
            step,
            ..Default::default()
        };
        let manifest = match self.manifest(&assignment, &job).await? {
            Ok(manifest) => manifest,
            Err(reason) => {
                verdict.reason = reason;
                verdict.unix_ms = self.clock.now_ms();
                return Ok(Judgement::Done(Box::new(verdict)));
            }
        };
        let units = cost::compute_units(&manifest.cost.unwrap_or_default());
        let proof = sampling::proof(self.validator, key, &receipt.digest());
        let kind = pb::JobKind::try_from(manifest.kind).unwrap_or_default();
        let forced = sampling::must_replay(kind, (self.on_probation)(&assigned));
        // A forced replay is published as a draw at rate 1, so anyone's
        // check of the decision (`sampling::verify`) still holds.
        let rate = if forced.is_some() {
            1.0
        } else {
            self.sample_rate
        };
        let sampled = sampling::is_sampled(&proof, rate);
        verdict.sample_proof = proof.to_vec();
        verdict.sample_rate = rate;
        verdict.compute_units = units;
        if written_ms > assignment.deadline_unix_ms {
            verdict.reason = format!(
                "written {} ms after the lease expired",
                written_ms - assignment.deadline_unix_ms
            );
            verdict.unix_ms = self.clock.now_ms();
            return Ok(Judgement::Done(Box::new(verdict)));
        }
        let mut draft = Draft {
            verdict,
            sampled,
            forced,
            credited,
            clock: self.clock.clone(),
        };
        let started = Instant::now();
        let checked = self
            .check_output(&receipt, &assignment, &manifest, &assigned)
            .await?;
        let ms = started.elapsed().as_millis() as u64;
        if let Ok(artifact) = &checked {
            // What the owner needs to use the result on this verdict alone
            // (kept only if the verdict passes, see `Draft::conclude`).
            draft.verdict.output = receipt.output.clone();
            draft.verdict.scalars = locus_protocol::tensor::scalars(&artifact.tensors)
                .into_iter()
                .map(|(name, value)| {
                    locus_protocol::tensor::F32Tensor::new(vec![1], vec![value]).to_pb(&name)
                })
                .collect();
        }
        let found = match checked {
            Ok(artifact) if sampled => {
                return Ok(Judgement::Replay(Box::new(PendingReplay {
                    draft,
                    target: ReplayTarget {
                        manifest,
                        artifact,
                        backend: receipt.backend.clone(),
                    },
                    kind,
                })));
            }
            Ok(_) => Checked::Passed,
            Err(found) => found,
        };
        let mut verdict = draft.conclude(found);
        verdict.replay_ms = ms;
        Ok(Judgement::Done(Box::new(verdict)))
    }

    /// [`Judge::judge`], with a sampled receipt replayed here at once.
    pub async fn judge_here(
        &self,
        key: &str,
        written_ms: u64,
        credited: Option<u32>,
    ) -> Result<pb::Verdict, JudgeError> {
        match self.judge(key, written_ms, credited).await? {
            Judgement::Done(verdict) => Ok(*verdict),
            Judgement::Replay(pending) => {
                let replayed = self.replay(&pending).await?;
                Ok(pending.conclude(&replayed, None))
            }
        }
    }

    /// Replays a pending receipt here, on this validator's device.
    pub async fn replay(&self, pending: &PendingReplay) -> Result<Replayed, JudgeError> {
        self.replay_target(&pending.target).await
    }

    /// An auditor's replay of the receipt at `key`: every check a sampled
    /// receipt gets, the replay included, whatever the draw. Attribution
    /// trouble comes back void: the validator that asked judges that itself.
    pub async fn audit(&self, key: &str) -> Result<Replayed, JudgeError> {
        let (receipt, assignment, attributed) = match self.attribute(key).await {
            Ok(found) => found,
            Err(JudgeError::Rejected(r)) => {
                return Ok(Replayed::without_replay(Checked::Void(r.to_string())));
            }
            Err(e) => return Err(e),
        };
        let manifest = match self.manifest(&assignment, &attributed.job).await? {
            Ok(manifest) => manifest,
            Err(reason) => return Ok(Replayed::without_replay(Checked::Void(reason))),
        };
        match self
            .check_output(&receipt, &assignment, &manifest, &attributed.hotkey)
            .await?
        {
            Ok(artifact) => {
                let target = ReplayTarget {
                    manifest,
                    artifact,
                    backend: receipt.backend.clone(),
                };
                self.replay_target(&target).await
            }
            Err(checked) => Ok(Replayed::without_replay(checked)),
        }
    }

    /// The owner's manifest that `assignment` commits to: the one it
    /// carries, else the one at the key it names. `Ok(Err(reason))`: it is
    /// gone or not the owner's (planted over), which proves nothing about
    /// the miner: no credit, no penalty, the job is redone.
    async fn manifest(
        &self,
        assignment: &Verified<pb::Assignment>,
        job: &str,
    ) -> Result<Result<Verified<pb::JobManifest>, String>, JudgeError> {
        let layout = self.bucket.layout();
        let key = &assignment.manifest_key;
        if layout
            .parse_job_manifest(&self.run.run_id, key)
            .is_none_or(|(id, _)| id != job)
        {
            return Ok(Err(format!(
                "assignment names {key}, not a manifest of {job}"
            )));
        }
        if let Some(carried) = attribution::embedded_manifest(assignment) {
            return Ok(carried.map_err(|e| format!("assignment unusable, the job is redone: {e}")));
        }
        match self.bucket.get(key, Expect::Signer(self.owner)).await {
            Ok(manifest) => Ok(Ok(manifest)),
            Err(e) if e.is_transient() => Err(e.into()),
            Err(e) => Ok(Err(format!("manifest unusable, the job is redone: {e}"))),
        }
    }

    /// Whether the result credited for a job (attempt `credited` at
    /// `receipt_key`, by `hotkey`) has since been contradicted by its own
    /// writer: an artifact validly signed by that hotkey at the committed
    /// key whose digest differs from the one its signed receipt commits to.
    /// Two signed outputs for one deterministic job prove the writer
    /// equivocated. An artifact that is gone, or was replaced by anything
    /// that hotkey did not sign, proves nothing against it.
    pub async fn equivocation(
        &self,
        receipt_key: &str,
        hotkey: &Hotkey,
    ) -> Result<Option<String>, JudgeError> {
        let receipt = match self
            .bucket
            .get::<pb::Receipt>(receipt_key, Expect::Signer(hotkey))
            .await
        {
            Ok(r) => r,
            Err(e) if e.is_transient() => return Err(e.into()),
            Err(_) => return Ok(None),
        };
        let output = receipt.output.clone().unwrap_or_default();
        match self
            .bucket
            .get::<pb::TensorArtifact>(&output.key, Expect::Signer(hotkey))
            .await
        {
            Ok(artifact) if artifact.digest().as_bytes().as_slice() != output.digest.as_slice() => {
                Ok(Some(format!(
                    "artifact {} was replaced after its verdict by another one signed by the same hotkey (equivocation)",
                    output.key
                )))
            }
            Ok(_) => Ok(None),
            Err(e) if e.is_transient() => Err(e.into()),
            Err(_) => Ok(None),
        }
    }

    /// The checks every attributable receipt gets, sampled or not: its
    /// commitments, and the output artifact its hotkey signed (digest and
    /// shapes). `Ok(Ok(artifact))`: all hold; `Ok(Err(found))`: they decide
    /// the verdict; `Err`: a storage problem to retry.
    async fn check_output(
        &self,
        receipt: &pb::Receipt,
        assignment: &pb::Assignment,
        manifest: &Verified<pb::JobManifest>,
        hotkey: &Hotkey,
    ) -> Result<Result<Arc<pb::TensorArtifact>, Checked>, JudgeError> {
        if let Err(broken) =
            attribution::check_commitments(self.bucket.layout(), receipt, assignment)
        {
            return Ok(Err(Checked::Failed(broken.to_string())));
        }
        if manifest.digest().as_bytes().as_slice() != assignment.manifest_digest.as_slice() {
            return Ok(Err(Checked::Void(format!(
                "manifest {} changed since the assignment: the job is redone",
                manifest.key()
            ))));
        }
        let output = receipt.output.clone().unwrap_or_default();
        let expected_key = output.key.clone();
        // Only an object this hotkey validly signed can count against it:
        // a missing artifact, or one that is not its own, may be anyone's
        // doing (a stranger with write access to a local bucket).
        let artifact = match self
            .bucket
            .get::<pb::TensorArtifact>(&expected_key, Expect::Signer(hotkey))
            .await
        {
            Ok(a) => a,
            Err(e) if e.is_transient() => return Err(e.into()),
            Err(e) => {
                return Ok(Err(Checked::Void(format!(
                    "no artifact of this hotkey at {expected_key}, the job is redone: {e}"
                ))));
            }
        };
        if artifact.digest().as_bytes().as_slice() != output.digest.as_slice() {
            return Ok(Err(Checked::Failed(format!(
                "artifact {expected_key} does not match the committed digest"
            ))));
        }
        // Structure is checked on every receipt, sampled or not: the owner
        // refuses a result of the wrong shape, so it must never be paid.
        let expected = locus_workloads::for_run(self.run)
            .and_then(|w| Ok(w.output_spec(locus_workloads::job_kind(manifest)?, manifest.stage)));
        let shape = expected
            .map_err(|e| e.to_string())
            .and_then(|spec| locus_workloads::check_outputs(&spec, &artifact.tensors));
        if let Err(e) = shape {
            return Ok(Err(Checked::Failed(format!(
                "artifact {expected_key}: {e}"
            ))));
        }
        // Downstream jobs read this output (by key, writer and this digest):
        // replaying one finds it here instead of reading it again.
        let as_input = pb::InputRef {
            key: expected_key,
            digest: output.digest,
            writer: hotkey.to_bytes().to_vec(),
        };
        let size = artifact.size();
        let artifact = Arc::new(artifact.into_inner());
        self.inputs.insert(&as_input, artifact.clone(), size);
        Ok(Ok(artifact))
    }

    /// Reads the job's inputs (verified against the owner's manifest),
    /// runs the job on this device and compares with the claimed output.
    async fn replay_target(&self, target: &ReplayTarget) -> Result<Replayed, JudgeError> {
        self.replayer().replay(target).await
    }

    /// What replays this judge's jobs on a task of its own.
    pub fn replayer(&self) -> Replayer {
        Replayer {
            bucket: self.bucket.clone(),
            run: Arc::clone(self.run),
            device: self.device.clone(),
            inputs: self.inputs.clone(),
        }
    }
}

/// Replays jobs without borrowing the [`Judge`]: it owns what a replay
/// needs, so a sampled receipt replays on a task of its own while the
/// validator reads and checks the next one. Reading, verifying and decoding
/// then overlap the computing, the one part a replay cannot avoid.
#[derive(Clone)]
pub struct Replayer {
    bucket: Bucket,
    run: Arc<pb::RunManifest>,
    device: Device,
    inputs: InputCache,
}

/// A sampled receipt whose replay runs on a task of its own
/// ([`Replayer::start`]).
pub struct ReplayTask {
    job_id: String,
    task: tokio::task::JoinHandle<(Box<PendingReplay>, Result<Replayed, JudgeError>)>,
}

impl ReplayTask {
    /// The job being replayed: what is judged after it for the same job
    /// waits for it (its credit decides theirs).
    pub fn job_id(&self) -> &str {
        &self.job_id
    }

    /// Waits for the replay; returns the pending verdict with what the
    /// replay found.
    pub async fn finish(self) -> Result<(Box<PendingReplay>, Replayed), JudgeError> {
        let (pending, replayed) = self
            .task
            .await
            .map_err(|e| JudgeError::Replay(e.to_string()))?;
        Ok((pending, replayed?))
    }
}

impl Replayer {
    /// Starts replaying `pending` on a task of its own.
    pub fn start(&self, pending: Box<PendingReplay>) -> ReplayTask {
        let job_id = pending.verdict().job_id.clone();
        let replayer = self.clone();
        let task = tokio::spawn(async move {
            let replayed = replayer.replay(&pending.target).await;
            (pending, replayed)
        });
        ReplayTask { job_id, task }
    }

    /// Reads the job's inputs (verified against the owner's manifest),
    /// runs the job on this device and compares with the claimed output.
    async fn replay(&self, target: &ReplayTarget) -> Result<Replayed, JudgeError> {
        let started = Instant::now();
        let manifest = &target.manifest;
        let mut inputs = Vec::with_capacity(manifest.inputs.len());
        for input in &manifest.inputs {
            if let Some(known) = self.inputs.get(input) {
                inputs.push(known);
                continue;
            }
            // The owner signed the manifest: a bad writer key is its own.
            let Ok(writer) = Hotkey::from_bytes(&input.writer) else {
                return Ok(Replayed::without_replay(Checked::Void(format!(
                    "manifest {} names an invalid input writer",
                    manifest.key()
                ))));
            };
            let got: Verified<pb::TensorArtifact> =
                match self.bucket.get(&input.key, Expect::Signer(&writer)).await {
                    Ok(got) => got,
                    Err(e) if e.is_transient() => return Err(e.into()),
                    Err(e) => {
                        return Ok(Replayed::without_replay(Checked::Void(format!(
                            "input {} cannot be replayed from, the job is redone: {e}",
                            input.key
                        ))));
                    }
                };
            let Some(artifact) = self.inputs.keep(input, got) else {
                return Ok(Replayed::without_replay(Checked::Void(format!(
                    "input {} changed since the manifest, the job is redone",
                    input.key
                ))));
            };
            inputs.push(artifact);
        }
        let run = self.run.clone();
        let job = manifest.clone().into_inner();
        let device = self.device.clone();
        // Cached inputs are shared, not copied: a step's parameters and
        // activations are megabytes, read by every job of the step.
        let replayed = tokio::task::spawn_blocking(move || {
            let inputs: Vec<&pb::TensorArtifact> = inputs.iter().map(Arc::as_ref).collect();
            let execute = || locus_workloads::execute(&run, &job, &inputs, &device);
            match compute_pool() {
                Some(pool) => pool.install(execute),
                None => execute(),
            }
        })
        .await
        .map_err(|e| JudgeError::Replay(e.to_string()))?;
        let ms = started.elapsed().as_millis() as u64;
        let replayed = match replayed {
            Ok(t) => t,
            Err(e) => {
                return Ok(Replayed {
                    checked: Checked::Failed(format!("replay failed: {e}")),
                    digest: None,
                    ms,
                });
            }
        };
        let agreement = if target.backend == self.device.backend() {
            Agreement::Bitwise
        } else {
            Agreement::Relative(manifest.cross_backend_tolerance)
        };
        let checked = match compare_outputs(&replayed, &target.artifact.tensors, agreement) {
            Ok(()) => Checked::Passed,
            Err(e) => Checked::Failed(format!("replay mismatch: {e}")),
        };
        Ok(Replayed {
            checked,
            digest: Some(outputs_digest(&replayed)),
            ms,
        })
    }
}

/// The threads a replay computes on: every core but one, which is left to
/// reading, verifying and decoding the next receipt while this one replays
/// ([`Replayer::start`]). On Burn's shared pool, its idle threads spin on
/// every core after each operation and took that core from the reading:
/// on two cores a replay of a small job ran at 62-70 % of plain Burn's
/// throughput instead of overlapping with it. None where the threads
/// cannot be started: replays then run on Burn's pool.
fn compute_pool() -> Option<&'static rayon::ThreadPool> {
    static POOL: std::sync::OnceLock<Option<rayon::ThreadPool>> = std::sync::OnceLock::new();
    POOL.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let built = rayon::ThreadPoolBuilder::new()
            .num_threads(cores.saturating_sub(1).max(1))
            .thread_name(|i| format!("replay-{i}"))
            .build();
        match built {
            Ok(pool) => Some(pool),
            Err(e) => {
                tracing::warn!(error = %e, "cannot start the replay threads; replaying on the shared pool");
                None
            }
        }
    })
    .as_ref()
}

/// What the checks of one receipt found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Checked {
    /// Everything checked holds.
    Passed,
    /// The hotkey's own signed objects prove the result wrong: zero it.
    Failed(String),
    /// The result cannot be judged for reasons that prove nothing against
    /// the hotkey (an object it depends on is gone or not its author's): no
    /// credit, no penalty, and the owner redoes the job.
    Void(String),
}
