//! `gpt_pipe`: a GPT trained pipeline-parallel across miners.
//!
//! The model is cut into `stages` pipeline stages ([`model`]). One training
//! step is a DAG of jobs per stage `p` and micro-batch `m`, streamed stage
//! to stage through the bucket:
//!
//! ```text
//! fwd(p, m)     stage p's forward on micro-batch m → activations     (p < S-1)
//! bwd(p, m)     recompute stage p's forward, back-propagate → parameter
//!               gradients and the gradient of stage p's input          (every p)
//! outer(p)      AdamW on the mean gradient of stage p → its next parameters
//! eval          the whole model's loss on fixed held-out sequences
//! ```
//!
//! A job runs as soon as its inputs exist, so micro-batches stream through
//! the stages with no barrier between them. The owner writes the initial
//! parameters of each stage and, per micro-batch, the token windows it
//! trains on ([`tokens`]): which sequences a micro-batch uses is fixed by
//! owner-signed artifacts that the manifests name by digest.

pub mod model;
pub mod tokens;

use std::sync::Arc;

use locus_protocol::pb::{self, GptConfig, JobKind};
use locus_protocol::tensor::{F32Tensor, TensorError};

use crate::device::OnBackend;
use crate::plan::{JobSpec, Source, in_generation};
use crate::{Device, ExportedModel, OutputSpec, Workload, WorkloadError};
use model::{Named, StageInput, Upstream};
use tokens::Tokens;

/// The name run manifests carry.
pub const WORKLOAD_GPT: &str = "gpt_pipe";

/// The exported table of a compacted vocabulary: row `i` of `tok_emb` and
/// column `i` of `lm_head` are GPT-2 token `token_ids[i]`.
pub const TOKEN_IDS: &str = "token_ids";

/// Owner artifact of the fixed held-out sequences.
pub const HELDOUT: &str = "heldout";

/// The small default: a run that trains visibly on 2 CPU cores in about a
/// minute. `seed` picks initial weights and which windows each micro-batch
/// draws.
pub fn default_config(seed: u64) -> GptConfig {
    GptConfig {
        vocab: 50304,
        d_model: 64,
        heads: 4,
        d_ff: 172,
        seq_len: 64,
        batch: 4,
        stages: 4,
        blocks_per_stage: 1,
        micro_batches: 4,
        // With the unigram-initialised output bias, 2.5e-3 gave the lowest
        // held-out loss after 40 default-size steps of 1e-2, 5e-3, 2.5e-3
        // and 1.5e-3 (6.19 against 6.23 at 5e-3; 1e-2 overshoots).
        lr: 2.5e-3,
        beta1: 0.9,
        beta2: 0.95,
        eps: 1e-8,
        weight_decay: 0.1,
        seed,
        eval_sequences: 16,
        tokens_digest: Vec::new(),
        train_tokens: 0,
        heldout_tokens: 0,
        token_ids: Vec::new(),
        output_bias: true,
    }
}

/// The most ids a compacted vocabulary lists (GPT-2 has 50,257).
pub const MAX_TOKEN_IDS: usize = 1 << 16;

/// `cfg` with its vocabulary compacted to the ids `tokens` uses. Rows of
/// the embedding and LM head for ids the corpus never holds cannot learn
/// anything but "never": dropping them makes the vocabulary-sized matrices,
/// which dominate a small model's compute and artifacts, several times
/// smaller, and the loss starts at ln(ids used) instead of ln(50304).
pub fn with_compact_vocabulary(cfg: GptConfig, tokens: &Tokens) -> GptConfig {
    let token_ids = tokens.distinct();
    GptConfig {
        vocab: token_ids.len() as u32,
        token_ids,
        ..cfg
    }
}

/// Checks a configuration from the bucket before any allocation depends on
/// it.
pub fn validate_config(cfg: &GptConfig) -> Result<(), WorkloadError> {
    // The model bounds the vocabulary to 2^20, so token ids, which travel
    // as f32 values, are exact (f32 holds every integer below 2^24).
    model::validate_config(cfg)?;
    let bad = |what: &str| Err(WorkloadError::Config(what.to_string()));
    if !(1..=1024).contains(&cfg.batch) || !(1..=256).contains(&cfg.micro_batches) {
        return bad("batch must be 1..=1024 and micro_batches 1..=256");
    }
    if !(1..=4096).contains(&cfg.eval_sequences) {
        return bad("eval_sequences must be 1..=4096");
    }
    let finite = [cfg.lr, cfg.beta1, cfg.beta2, cfg.eps, cfg.weight_decay];
    if !finite.iter().all(|v| v.is_finite() && *v >= 0.0) || cfg.beta1 >= 1.0 || cfg.beta2 >= 1.0 {
        return bad("lr, betas, eps and weight decay must be finite and ≥ 0, betas below 1");
    }
    // Exported as int32, the token file's type; the run manifest has room
    // for 2^16 of them.
    let ascending = cfg.token_ids.windows(2).all(|w| w[0] < w[1]);
    let int32 = cfg.token_ids.last().is_none_or(|&id| id <= i32::MAX as u32);
    if !cfg.token_ids.is_empty()
        && (cfg.token_ids.len() != cfg.vocab as usize
            || cfg.token_ids.len() > MAX_TOKEN_IDS
            || !ascending
            || !int32)
    {
        return bad(
            "token_ids must list `vocab` (at most 65,536) distinct int32 token ids in ascending order",
        );
    }
    // Logits of the largest batch, the biggest tensor a job holds.
    let rows = cfg.batch.max(cfg.eval_sequences) as u64;
    if rows * cfg.seq_len as u64 * cfg.vocab as u64 > 4 * locus_protocol::tensor::MAX_ELEMENTS {
        return bad("batch × seq_len × vocab is too large for one job");
    }
    Ok(())
}

/// The owner's token file split into training and held-out ranges.
pub struct TokenData {
    pub tokens: Tokens,
    pub train: std::ops::Range<usize>,
    pub heldout: std::ops::Range<usize>,
}

/// Fraction of the token file held out for evaluation (its end).
pub const HELDOUT_FRACTION: f64 = 0.05;

impl TokenData {
    /// Splits `tokens` for `cfg`'s sequence length.
    pub fn new(tokens: Tokens, cfg: &GptConfig) -> Result<Self, WorkloadError> {
        let window = cfg.seq_len as usize + 1;
        let (train, heldout) = tokens
            .split(HELDOUT_FRACTION, window)
            .map_err(|e| WorkloadError::Config(e.to_string()))?;
        Ok(TokenData {
            tokens,
            train,
            heldout,
        })
    }
}

/// The gpt_pipe workload of one run. Miners and validators hold it without
/// token data (they read the owner's windows from the bucket); the owner
/// holds it with the token file.
pub struct GptPipe {
    cfg: GptConfig,
    data: Option<Arc<TokenData>>,
}

impl GptPipe {
    /// The workload a run manifest describes (no token data).
    pub fn new(cfg: GptConfig) -> Result<Self, WorkloadError> {
        validate_config(&cfg)?;
        Ok(GptPipe { cfg, data: None })
    }

    /// The owner's side: `cfg` completed with the digest and split sizes of
    /// `data`, which it draws micro-batches from.
    /// With `cfg.token_ids` set, the tokens are renumbered into that
    /// vocabulary here: the windows the owner writes carry model ids.
    pub fn for_owner(mut cfg: GptConfig, mut data: TokenData) -> Result<Self, WorkloadError> {
        cfg.tokens_digest = data.tokens.digest().to_vec();
        cfg.train_tokens = data.train.len() as u64;
        cfg.heldout_tokens = data.heldout.len() as u64;
        validate_config(&cfg)?;
        if !cfg.token_ids.is_empty() {
            data.tokens = data
                .tokens
                .renumbered(&cfg.token_ids)
                .map_err(|e| WorkloadError::Config(e.to_string()))?;
        } else if let Some(bad) = data.tokens.ids().iter().find(|&&id| id >= cfg.vocab) {
            return Err(WorkloadError::Config(format!(
                "token id {bad} is outside the vocabulary of {}",
                cfg.vocab
            )));
        }
        Ok(GptPipe {
            cfg,
            data: Some(Arc::new(data)),
        })
    }

    pub fn config(&self) -> &GptConfig {
        &self.cfg
    }

    fn last_stage(&self) -> u32 {
        self.cfg.stages - 1
    }

    fn data(&self, id: &str) -> Result<&TokenData, WorkloadError> {
        self.data.as_deref().ok_or_else(|| {
            WorkloadError::Config(format!(
                "owner artifact {id:?} needs the token file, which only the owner has"
            ))
        })
    }
}

/// Job ids of step `step` (generation 0).
pub fn forward_id(step: u32, stage: u32, mb: u32) -> String {
    format!("s{step:05}-fwd-p{stage}-m{mb:02}")
}
pub fn backward_id(step: u32, stage: u32, mb: u32) -> String {
    format!("s{step:05}-bwd-p{stage}-m{mb:02}")
}
pub fn outer_id(step: u32, stage: u32) -> String {
    format!("s{step:05}-outer-p{stage}")
}
pub fn eval_id(step: u32) -> String {
    format!("s{step:05}-eval")
}
/// Owner artifact ids: each stage's initial parameters and a micro-batch's
/// token windows (the same in every generation: a rewind trains on the
/// same data).
pub fn init_id(stage: u32) -> String {
    format!("init-p{stage}")
}
pub fn batch_id(step: u32, mb: u32) -> String {
    format!("batch-s{step:05}-m{mb:02}")
}

/// Per-parameter optimizer state names in parameter artifacts.
fn adam_m(name: &str) -> String {
    format!("adam_m.{name}")
}
fn adam_v(name: &str) -> String {
    format!("adam_v.{name}")
}

impl GptPipe {
    fn param_spec(&self, stage: u32) -> OutputSpec {
        let params = model::stage_params(&self.cfg, stage);
        let mut out = params.clone();
        out.extend(params.iter().map(|(n, s)| (adam_m(n), s.clone())));
        out.extend(params.iter().map(|(n, s)| (adam_v(n), s.clone())));
        out
    }

    fn act_shape(&self) -> Vec<usize> {
        vec![
            self.cfg.batch as usize,
            self.cfg.seq_len as usize,
            self.cfg.d_model as usize,
        ]
    }

    fn window_shape(&self, rows: u32) -> Vec<usize> {
        vec![rows as usize, self.cfg.seq_len as usize + 1]
    }

    /// Parameter-count-based FLOPs of one stage forward over `tokens`
    /// positions.
    fn forward_flops(&self, stage: u32, tokens: u64) -> u64 {
        let (d, ff, t, v) = (
            self.cfg.d_model as u64,
            self.cfg.d_ff as u64,
            self.cfg.seq_len as u64,
            self.cfg.vocab as u64,
        );
        let per_block = 8 * d * d + 6 * d * ff + 4 * t * d;
        let mut per_token = self.cfg.blocks_per_stage as u64 * per_block;
        if stage == self.last_stage() {
            per_token += 2 * d * v + if self.cfg.output_bias { v } else { 0 };
        }
        per_token.saturating_mul(tokens)
    }

    fn param_bytes(&self, stage: u32) -> u64 {
        model::stage_params(&self.cfg, stage)
            .iter()
            .map(|(_, s)| s.iter().product::<usize>() as u64 * 4)
            .sum()
    }
}

impl GptPipe {
    /// A stage parameter's name in the whole model: blocks are numbered
    /// across stages (`blocks.{global}.{param}`); embeddings, the final norm
    /// the LM head and its bias keep their names.
    pub fn export_name(&self, stage: u32, name: &str) -> String {
        let block = name
            .strip_prefix('h')
            .and_then(|rest| rest.split_once('.'))
            .and_then(|(b, param)| Some((b.parse::<u32>().ok()?, param)));
        match block {
            Some((local, param)) => {
                let global = stage * self.cfg.blocks_per_stage + local;
                format!("blocks.{global}.{param}")
            }
            None => name.to_string(),
        }
    }
}

fn input_error_named(name: &str, got: &[usize], want: &[usize]) -> WorkloadError {
    WorkloadError::Input(TensorError::Invalid {
        name: name.to_string(),
        reason: format!("shape {got:?}, expected {want:?}"),
    })
}

impl Workload for GptPipe {
    fn name(&self) -> &'static str {
        WORKLOAD_GPT
    }

    fn configure(&self, run: &mut pb::RunManifest) {
        run.workload = WORKLOAD_GPT.into();
        run.gpt = Some(self.cfg.clone());
    }

    fn step_jobs(&self, step: u32, generation: u32, prev_generation: u32) -> Vec<JobSpec> {
        let (stages, mbs) = (self.cfg.stages, self.cfg.micro_batches);
        let last = self.last_stage();
        let g = generation;
        let params = |p: u32| {
            if step == 0 {
                Source::Owner(init_id(p))
            } else {
                Source::Job(in_generation(outer_id(step - 1, p), prev_generation))
            }
        };
        let job = |id: String, kind, micro_batch, stage, inputs| JobSpec {
            job_id: in_generation(id, g),
            step,
            kind,
            micro_batch,
            replica: 0,
            stage,
            inputs,
        };
        let stage_input = |p: u32, m: u32| {
            if p == 0 {
                Source::Owner(batch_id(step, m))
            } else {
                Source::Job(in_generation(forward_id(step, p - 1, m), g))
            }
        };
        let mut jobs = Vec::new();
        for m in 0..mbs {
            for p in 0..last {
                jobs.push(job(
                    forward_id(step, p, m),
                    JobKind::Forward,
                    m,
                    p,
                    vec![params(p), stage_input(p, m)],
                ));
            }
        }
        for m in 0..mbs {
            for p in (0..stages).rev() {
                let mut inputs = vec![params(p), stage_input(p, m)];
                if p < last {
                    inputs.push(Source::Job(in_generation(backward_id(step, p + 1, m), g)));
                } else if p > 0 {
                    // The tail's targets; a one-stage model reads them from
                    // its input batch.
                    inputs.push(Source::Owner(batch_id(step, m)));
                }
                jobs.push(job(
                    backward_id(step, p, m),
                    JobKind::Backward,
                    m,
                    p,
                    inputs,
                ));
            }
        }
        for p in 0..stages {
            let mut inputs = vec![params(p)];
            inputs.extend((0..mbs).map(|m| Source::Job(in_generation(backward_id(step, p, m), g))));
            jobs.push(job(outer_id(step, p), JobKind::Outer, 0, p, inputs));
        }
        let mut inputs: Vec<Source> = (0..stages)
            .map(|p| Source::Job(in_generation(outer_id(step, p), g)))
            .collect();
        inputs.push(Source::Owner(HELDOUT.into()));
        jobs.push(job(eval_id(step), JobKind::Eval, 0, 0, inputs));
        jobs
    }

    fn param_jobs(&self, step: u32, generation: u32) -> Vec<String> {
        (0..self.cfg.stages)
            .map(|p| in_generation(outer_id(step, p), generation))
            .collect()
    }

    fn owner_artifact(&self, id: &str) -> Result<Vec<pb::Tensor>, WorkloadError> {
        let unknown = || WorkloadError::UnknownOwnerArtifact(id.to_string());
        let window = self.cfg.seq_len as usize + 1;
        let windows = |ids: Vec<u32>, rows: u32| {
            let values = ids.into_iter().map(|t| t as f32).collect();
            vec![F32Tensor::new(self.window_shape(rows), values).to_pb("tokens")]
        };
        if let Some(stage) = id.strip_prefix("init-p") {
            let stage: u32 = stage.parse().map_err(|_| unknown())?;
            if stage >= self.cfg.stages || id != init_id(stage) {
                return Err(unknown());
            }
            let mut params = model::init_stage(&self.cfg, stage);
            if let Some((_, bias)) = params.iter_mut().find(|(n, _)| n == model::LM_BIAS) {
                let data = self.data(id)?;
                let train = &data.tokens.ids()[data.train.clone()];
                bias.values = model::unigram_bias(train, self.cfg.vocab as usize);
            }
            let mut out: Vec<pb::Tensor> = params.iter().map(|(n, t)| t.to_pb(n)).collect();
            for prefix in [adam_m as fn(&str) -> String, adam_v] {
                out.extend(params.iter().map(|(n, t)| {
                    F32Tensor::new(t.shape.clone(), vec![0.0; t.values.len()]).to_pb(&prefix(n))
                }));
            }
            return Ok(out);
        }
        if id == HELDOUT {
            let data = self.data(id)?;
            let n = self.cfg.eval_sequences as usize;
            let ids = tokens::heldout_windows(&data.tokens, data.heldout.clone(), n, window);
            return Ok(windows(ids, self.cfg.eval_sequences));
        }
        let (step, mb) = parse_batch_id(id).ok_or_else(unknown)?;
        if mb >= self.cfg.micro_batches {
            return Err(unknown());
        }
        let data = self.data(id)?;
        let ids = tokens::train_windows(
            &data.tokens,
            data.train.clone(),
            self.cfg.seed,
            step,
            mb,
            self.cfg.batch as usize,
            window,
        );
        Ok(windows(ids, self.cfg.batch))
    }

    fn step_examples(&self) -> u64 {
        self.cfg.micro_batches as u64 * self.cfg.batch as u64 * self.cfg.seq_len as u64
    }

    fn cost(&self, kind: JobKind, stage: u32) -> pb::StaticCost {
        let tokens = self.cfg.batch as u64 * self.cfg.seq_len as u64;
        let act_bytes = tokens * self.cfg.d_model as u64 * 4;
        let params = self.param_bytes(stage);
        let (flops, bytes_moved) = match kind {
            JobKind::Forward => (self.forward_flops(stage, tokens), params + 2 * act_bytes),
            // Recompute the forward, then a backward of twice its cost.
            JobKind::Backward => (
                3 * self.forward_flops(stage, tokens),
                2 * params + 3 * act_bytes,
            ),
            JobKind::Outer => {
                let mbs = self.cfg.micro_batches as u64;
                ((mbs + 12) * params / 4, (6 + mbs) * params)
            }
            JobKind::Eval => {
                let tokens = self.cfg.eval_sequences as u64 * self.cfg.seq_len as u64;
                let flops = (0..self.cfg.stages)
                    .map(|p| self.forward_flops(p, tokens))
                    .sum();
                let bytes = (0..self.cfg.stages).map(|p| 3 * self.param_bytes(p)).sum();
                (flops, bytes)
            }
            _ => (0, 0),
        };
        pb::StaticCost { flops, bytes_moved }
    }

    fn output_spec(&self, kind: JobKind, stage: u32) -> OutputSpec {
        let scalar = |n: &str| (n.to_string(), vec![1]);
        match kind {
            JobKind::Forward => vec![("act".into(), self.act_shape())],
            JobKind::Backward => {
                let mut out: OutputSpec = model::stage_params(&self.cfg, stage)
                    .into_iter()
                    .map(|(n, s)| (format!("grad.{n}"), s))
                    .collect();
                if stage > 0 {
                    out.push(("grad_in".into(), self.act_shape()));
                }
                if stage == self.last_stage() {
                    out.push(scalar("loss"));
                }
                out
            }
            JobKind::Outer => {
                let mut out = self.param_spec(stage);
                if stage == self.last_stage() {
                    out.push(scalar("train_loss"));
                }
                out
            }
            JobKind::Eval => vec![scalar("eval_loss")],
            _ => Vec::new(),
        }
    }

    fn export(&self, parts: &[pb::TensorArtifact]) -> Result<ExportedModel, WorkloadError> {
        if parts.len() != self.cfg.stages as usize {
            return Err(WorkloadError::Config(format!(
                "{} parameter artifacts for {} stages",
                parts.len(),
                self.cfg.stages
            )));
        }
        let mut out = Vec::new();
        for (stage, part) in (0..self.cfg.stages).zip(parts) {
            for (name, shape) in model::stage_params(&self.cfg, stage) {
                let t = part.tensor(&name)?;
                if t.shape != shape {
                    return Err(input_error_named(&name, &t.shape, &shape));
                }
                out.push(t.to_pb(&self.export_name(stage, &name)));
            }
        }
        let mut ids = Vec::new();
        if !self.cfg.token_ids.is_empty() {
            ids.push((TOKEN_IDS.to_string(), self.cfg.token_ids.clone()));
        }
        Ok(ExportedModel { tensors: out, ids })
    }

    fn execute(
        &self,
        job: &pb::JobManifest,
        inputs: &[&pb::TensorArtifact],
        device: &Device,
    ) -> Result<Vec<pb::Tensor>, WorkloadError> {
        device.run(GptJob {
            pipe: self,
            job,
            inputs,
        })
    }
}

fn parse_batch_id(id: &str) -> Option<(u32, u32)> {
    let rest = id.strip_prefix("batch-s")?;
    let (step, mb) = rest.split_once("-m")?;
    let (step, mb): (u32, u32) = (step.parse().ok()?, mb.parse().ok()?);
    (batch_id(step, mb) == id).then_some((step, mb))
}

struct GptJob<'a> {
    pipe: &'a GptPipe,
    job: &'a pb::JobManifest,
    inputs: &'a [&'a pb::TensorArtifact],
}

fn input_error(job: &pb::JobManifest, reason: String) -> WorkloadError {
    WorkloadError::Input(TensorError::Invalid {
        name: job.job_id.clone(),
        reason,
    })
}

impl GptJob<'_> {
    fn expect_inputs(&self, n: usize) -> Result<(), WorkloadError> {
        if self.inputs.len() == n {
            Ok(())
        } else {
            Err(input_error(
                self.job,
                format!("{} inputs, expected {n}", self.inputs.len()),
            ))
        }
    }

    /// Stage `stage`'s parameters (and, with `prefix`, optimizer state)
    /// from an artifact.
    fn named(
        &self,
        artifact: &pb::TensorArtifact,
        stage: u32,
        prefix: fn(&str) -> String,
    ) -> Result<Named, WorkloadError> {
        model::stage_params(&self.pipe.cfg, stage)
            .iter()
            .map(|(n, _)| Ok((n.clone(), artifact.tensor(&prefix(n))?)))
            .collect()
    }

    /// The token windows of an owner batch artifact: `rows` × (seq_len + 1).
    fn windows(&self, artifact: &pb::TensorArtifact, rows: u32) -> Result<Vec<u32>, WorkloadError> {
        let t = artifact.tensor("tokens")?;
        let want = self.pipe.window_shape(rows);
        if t.shape != want {
            return Err(input_error(
                self.job,
                format!("tokens have shape {:?}, expected {want:?}", t.shape),
            ));
        }
        let vocab = self.pipe.cfg.vocab;
        t.values
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                if v >= 0.0 && v < vocab as f32 && v.fract() == 0.0 {
                    Ok(v as u32)
                } else {
                    Err(input_error(
                        self.job,
                        format!("token {i} is {v}, not an id below {vocab}"),
                    ))
                }
            })
            .collect()
    }
}

/// Splits windows [rows, seq_len + 1] into inputs (first `seq_len`) and
/// targets (shifted by one), both [rows, seq_len].
fn inputs_and_targets(windows: &[u32], seq_len: usize) -> (Vec<u32>, Vec<u32>) {
    let (mut inputs, mut targets) = (Vec::new(), Vec::new());
    for row in windows.chunks(seq_len + 1) {
        inputs.extend_from_slice(&row[..seq_len]);
        targets.extend_from_slice(&row[1..]);
    }
    (inputs, targets)
}

fn identity(name: &str) -> String {
    name.to_string()
}

impl OnBackend for GptJob<'_> {
    type Output = Vec<pb::Tensor>;

    fn run<B: burn::tensor::backend::AutodiffBackend>(
        self,
        device: &B::Device,
    ) -> Result<Self::Output, WorkloadError> {
        let cfg = &self.pipe.cfg;
        let job = self.job;
        let kind = crate::job_kind(job)?;
        let stage = job.stage;
        let last = self.pipe.last_stage();
        let seq_len = cfg.seq_len as usize;
        if stage > last {
            return Err(WorkloadError::Config(format!(
                "stage {stage} of a {}-stage model",
                cfg.stages
            )));
        }
        let inputs = self.inputs;
        match kind {
            JobKind::Forward | JobKind::Backward => {
                if kind == JobKind::Forward {
                    if stage == last {
                        return Err(WorkloadError::Config(
                            "the last stage has no forward job".into(),
                        ));
                    }
                    self.expect_inputs(2)?;
                } else {
                    // The upstream gradient, or the tail's targets (which a
                    // one-stage model reads from its input batch).
                    self.expect_inputs(2 + usize::from(stage < last || stage > 0))?;
                }
                let params = self.named(inputs[0], stage, identity)?;
                let tokens;
                let act;
                let input = if stage == 0 {
                    tokens = inputs_and_targets(&self.windows(inputs[1], cfg.batch)?, seq_len);
                    StageInput::Tokens(&tokens.0)
                } else {
                    act = inputs[1].tensor("act")?;
                    StageInput::Act(&act)
                };
                if kind == JobKind::Forward {
                    let out =
                        model::forward::<B::InnerBackend>(cfg, stage, &params, input, device)?;
                    return Ok(vec![out.to_pb("act")]);
                }
                let grad;
                let targets;
                let upstream = if stage < last {
                    grad = inputs[2].tensor("grad_in")?;
                    Upstream::Grad(&grad)
                } else {
                    let source = inputs.get(2).unwrap_or(&inputs[1]);
                    targets = inputs_and_targets(&self.windows(source, cfg.batch)?, seq_len).1;
                    Upstream::Targets(&targets)
                };
                let back = model::backward::<B>(cfg, stage, &params, input, upstream, device)?;
                let mut out: Vec<pb::Tensor> = back.grads.iter().map(|(n, t)| t.to_pb(n)).collect();
                if let Some(grad_in) = back.grad_input.filter(|_| stage > 0) {
                    out.push(grad_in.to_pb("grad_in"));
                }
                if stage == last {
                    let loss = back.loss.ok_or_else(|| {
                        WorkloadError::Backend("the tail computed no loss".into())
                    })?;
                    out.push(F32Tensor::new(vec![1], vec![loss]).to_pb("loss"));
                }
                Ok(out)
            }
            JobKind::Outer => {
                self.expect_inputs(1 + cfg.micro_batches as usize)?;
                let params = self.named(inputs[0], stage, identity)?;
                let m = self.named(inputs[0], stage, adam_m)?;
                let v = self.named(inputs[0], stage, adam_v)?;
                // Gradients keep their `grad.` names, as `backward` wrote them.
                let grads = inputs[1..]
                    .iter()
                    .map(|a| {
                        model::stage_params(cfg, stage)
                            .iter()
                            .map(|(n, _)| {
                                let name = format!("grad.{n}");
                                Ok((name.clone(), a.tensor(&name)?))
                            })
                            .collect::<Result<Named, WorkloadError>>()
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let grad_refs: Vec<&Named> = grads.iter().collect();
                let t = job
                    .step
                    .checked_add(1)
                    .ok_or_else(|| WorkloadError::Config("step number out of range".into()))?;
                let (params, m, v) = model::adamw(cfg, t, &params, &m, &v, &grad_refs)?;
                let mut out: Vec<pb::Tensor> = params.iter().map(|(n, t)| t.to_pb(n)).collect();
                out.extend(m.iter().map(|(n, t)| t.to_pb(&adam_m(n))));
                out.extend(v.iter().map(|(n, t)| t.to_pb(&adam_v(n))));
                if stage == last {
                    let mut sum = 0.0f32;
                    for a in &inputs[1..] {
                        let loss = a.tensor("loss")?;
                        sum += loss.values.first().copied().unwrap_or(f32::NAN);
                    }
                    let mean = sum / cfg.micro_batches as f32;
                    out.push(F32Tensor::new(vec![1], vec![mean]).to_pb("train_loss"));
                }
                Ok(out)
            }
            JobKind::Eval => {
                self.expect_inputs(cfg.stages as usize + 1)?;
                let stages = (0..cfg.stages)
                    .map(|p| self.named(inputs[p as usize], p, identity))
                    .collect::<Result<Vec<_>, _>>()?;
                let windows = self.windows(inputs[cfg.stages as usize], cfg.eval_sequences)?;
                let loss = model::eval_loss::<B::InnerBackend>(
                    cfg,
                    &stages,
                    &windows,
                    cfg.eval_sequences as usize,
                    device,
                )?;
                Ok(vec![F32Tensor::new(vec![1], vec![loss]).to_pb("eval_loss")])
            }
            _ => Err(WorkloadError::UnknownKind(job.kind)),
        }
    }
}
