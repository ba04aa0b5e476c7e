//! The seam where a worker may misbehave on purpose.
//!
//! The validator and the owner are tested against miners that cheat
//! (`tests/attacks.rs`, `tests/hostile.rs`). That misbehaviour must not live
//! inside the honest code path as `if attacking { … }` branches: it would be
//! compiled into every production miner, and every change to the job path
//! would have to step around it. Instead the worker calls an [`Adversary`]
//! at a few fixed points of each job, and the attacks are one implementation
//! of it, compiled only with the `fault-injection` feature
//! (`crate::attacker::Attacker`, driven by `--fault-mode`).
//!
//! A production build uses [`Honest`]: a unit struct whose hooks are the
//! trait's defaults, which do nothing. The worker is generic over its
//! adversary, so those empty hooks are inlined away.

use std::future::Future;
use std::sync::Arc;

use locus_daemon::Shutdown;
use locus_protocol::{Bucket, Keypair, pb};

use crate::access::Access;
use crate::worker::Skip;

/// What a worker lends its adversary: the same bucket, key and HTTP client
/// it works with, so an attack holds no more than the miner does.
pub struct Tools<'a> {
    pub bucket: &'a Bucket,
    pub key: &'a Arc<Keypair>,
    pub http: &'a locus_protocol::tls::LazyHttpClient,
    /// This worker's index under its hotkey.
    pub worker: u32,
}

/// The job being executed, once its assignment and inputs are verified.
pub struct Job<'a> {
    pub assignment: &'a pb::Assignment,
    pub run: &'a Arc<pb::RunManifest>,
    /// `JobKind` of the owner-signed manifest.
    pub kind: i32,
    pub micro_batch: u32,
    /// Pipeline stage of the job (0 without stages).
    pub stage: u32,
    /// Where this attempt's receipt goes.
    pub receipt_key: &'a str,
}

/// A result just published: its artifact, and the write path used for it.
pub struct Published<'a> {
    pub access: &'a Access,
    pub artifact_key: &'a str,
    pub artifact: &'a pb::TensorArtifact,
}

/// Hooks a worker calls at fixed points of its loop and of each job, in
/// this order: [`background`](Self::background) once at start; per job
/// [`after_verify`](Self::after_verify),
/// [`instead_of_compute`](Self::instead_of_compute),
/// [`after_compute`](Self::after_compute),
/// [`before_publish`](Self::before_publish),
/// [`before_receipt`](Self::before_receipt),
/// [`after_publish`](Self::after_publish). Every default does nothing, so
/// an honest implementation is empty.
pub trait Adversary: Send + Sync + 'static {
    /// At start-up, beside the assignment loop: work that waits for no
    /// assignment (it is spawned and runs until `shutdown`).
    fn background(&self, tools: &Tools<'_>, shutdown: &Shutdown) {
        let _ = (tools, shutdown);
    }

    /// After the assignment's signature and fields were checked, before
    /// anything else is read for it. An error abandons the assignment.
    fn after_verify(
        &mut self,
        tools: &Tools<'_>,
        assignment: &pb::Assignment,
    ) -> impl Future<Output = Result<(), Skip>> + Send {
        let _ = (tools, assignment);
        async { Ok(()) }
    }

    /// Before computing: `Some` replaces the computation with its outputs
    /// (or abandons the job with its error).
    fn instead_of_compute(
        &mut self,
        tools: &Tools<'_>,
        job: &Job<'_>,
    ) -> impl Future<Output = Option<Result<Vec<pb::Tensor>, Skip>>> + Send {
        let _ = (tools, job);
        async { None }
    }

    /// After computing, on the outputs about to be published.
    fn after_compute(
        &mut self,
        job: &Job<'_>,
        tensors: &mut Vec<pb::Tensor>,
    ) -> impl Future<Output = ()> + Send {
        let _ = (job, tensors);
        async {}
    }

    /// Just before the artifact is written.
    fn before_publish(&mut self, job: &Job<'_>) -> impl Future<Output = ()> + Send {
        let _ = job;
        async {}
    }

    /// After the artifact, before the receipt is written: may change the
    /// receipt, or keep it from being written (an error).
    fn before_receipt(
        &mut self,
        tools: &Tools<'_>,
        job: &Job<'_>,
        receipt: &mut pb::Receipt,
    ) -> impl Future<Output = Result<(), Skip>> + Send {
        let _ = (tools, job, receipt);
        async { Ok(()) }
    }

    /// After the artifact and the receipt are written.
    fn after_publish(
        &mut self,
        tools: &Tools<'_>,
        job: &Job<'_>,
        published: &Published<'_>,
    ) -> impl Future<Output = ()> + Send {
        let _ = (tools, job, published);
        async {}
    }
}

/// The production miner: every hook does nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct Honest;

impl Adversary for Honest {}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::executor::block_on;
    use locus_protocol::tensor::F32Tensor;

    /// Compiles only if a worker's loop is `Send` whatever its adversary:
    /// callers run workers on spawned tasks.
    fn worker_loop_is_send<A: Adversary>(worker: &mut crate::worker::Worker<A>, stop: &Shutdown) {
        fn send<F: Send>(_: F) {}
        send(worker.run(stop));
    }

    #[test]
    fn a_worker_s_loop_is_send() {
        let _ = worker_loop_is_send::<Honest>;
    }

    #[test]
    fn an_honest_worker_s_hooks_change_nothing() {
        let (assignment, run) = (pb::Assignment::default(), Arc::default());
        let job = Job {
            assignment: &assignment,
            run: &run,
            kind: pb::JobKind::Inner as i32,
            micro_batch: 0,
            stage: 0,
            receipt_key: "receipt",
        };
        let outputs = vec![F32Tensor::new(vec![2], vec![1.0, 2.0]).to_pb("x")];
        let mut tensors = outputs.clone();
        block_on(Honest.after_compute(&job, &mut tensors));
        block_on(Honest.before_publish(&job));
        assert_eq!(tensors, outputs);
    }
}
