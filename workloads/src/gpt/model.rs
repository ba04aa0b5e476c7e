//! The model math of the `gpt_pipe` workload: a small GPT cut into pipeline
//! stages.
//!
//! Every stage holds `blocks_per_stage` pre-norm transformer blocks:
//!
//! ```text
//! x = x + Wo·attn(rmsnorm(x, ln1))          causal multi-head self-attention
//! x = x + W2·(silu(W1·h) * W3·h),  h = rmsnorm(x, ln2)   (SwiGLU)
//! ```
//!
//! Stage 0 (the head) first embeds the tokens (`tok_emb[tokens] + pos_emb`);
//! the last stage (the tail) ends with a final RMSNorm `ln_f`, the `lm_head`
//! projection and the mean cross-entropy against the targets. With one stage
//! that stage is head and tail at once.
//!
//! Parameters travel as [`F32Tensor`]s named as [`stage_params`] lists them.
//! Every backward pass is Burn autodiff over the same stage functions the
//! forward uses; the optimizer ([`adamw`]) is plain f32 Rust so that its
//! result does not depend on a backend. Everything read from an artifact is
//! checked (names, shapes, lengths, token ids) before a tensor is built.

use burn::tensor::activation::{log_softmax, silu, softmax};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::module::embedding;
use burn::tensor::{Bool, Int, Tensor, TensorData};
use locus_protocol::pb::GptConfig;
use locus_protocol::tensor::{F32Tensor, MAX_ELEMENTS, TensorError};

use crate::WorkloadError;
use crate::rng::SplitMix64;

/// Named tensors, in artifact order.
pub type Named = Vec<(String, F32Tensor)>;

/// RMSNorm epsilon.
pub const NORM_EPS: f64 = 1e-5;

/// Standard deviation of the initial weights and embeddings.
pub const INIT_STD: f64 = 0.02;

/// Largest intermediate tensor (elements) one stage call may build: attention
/// scores, the SwiGLU hidden layer or the logits. Bounds what an oversized
/// input can make a reader allocate.
pub const MAX_INTERMEDIATE: u64 = 1 << 30;

/// Names of one block's parameters, in artifact order.
const BLOCK_PARAMS: [&str; 9] = ["ln1", "wq", "wk", "wv", "wo", "ln2", "w1", "w3", "w2"];

/// Mask value for attention scores above the diagonal (exp underflows to 0).
const MASKED: f32 = -1.0e9;

fn config_error(what: impl Into<String>) -> WorkloadError {
    WorkloadError::Config(what.into())
}

fn input_error(name: &str, reason: impl Into<String>) -> WorkloadError {
    WorkloadError::Input(TensorError::Invalid {
        name: name.to_string(),
        reason: reason.into(),
    })
}

/// Checks the model dimensions of a configuration before any allocation
/// depends on them. Optimizer fields are checked by [`adamw`].
pub fn validate_config(cfg: &GptConfig) -> Result<(), WorkloadError> {
    if !(1..=1 << 20).contains(&cfg.vocab) {
        return Err(config_error("vocab must be 1..=2^20"));
    }
    if !(1..=8192).contains(&cfg.d_model) {
        return Err(config_error("d_model must be 1..=8192"));
    }
    if cfg.heads == 0 || cfg.heads > cfg.d_model || !cfg.d_model.is_multiple_of(cfg.heads) {
        return Err(config_error("heads must divide d_model"));
    }
    if !(1..=65536).contains(&cfg.d_ff) {
        return Err(config_error("d_ff must be 1..=65536"));
    }
    if !(1..=8192).contains(&cfg.seq_len) {
        return Err(config_error("seq_len must be 1..=8192"));
    }
    if !(1..=256).contains(&cfg.stages) || !(1..=256).contains(&cfg.blocks_per_stage) {
        return Err(config_error("stages and blocks_per_stage must be 1..=256"));
    }
    let d = cfg.d_model as u64;
    let largest = [
        cfg.vocab as u64 * d,
        cfg.seq_len as u64 * d,
        cfg.d_ff as u64 * d,
    ];
    if largest.iter().any(|&n| n > MAX_ELEMENTS) {
        return Err(config_error(format!(
            "a parameter tensor would exceed {MAX_ELEMENTS} elements"
        )));
    }
    Ok(())
}

fn check_stage(cfg: &GptConfig, stage: u32) -> Result<(), WorkloadError> {
    validate_config(cfg)?;
    if stage >= cfg.stages {
        return Err(config_error(format!(
            "stage {stage} out of range (stages = {})",
            cfg.stages
        )));
    }
    Ok(())
}

fn is_head(stage: u32) -> bool {
    stage == 0
}

fn is_tail(cfg: &GptConfig, stage: u32) -> bool {
    cfg.stages.checked_sub(1) == Some(stage)
}

/// Names and shapes of stage `stage`'s parameters, in artifact order.
///
/// Head: `tok_emb` [vocab, d], `pos_emb` [seq_len, d]; per block `b` (index
/// local to the stage): `h{b}.ln1` [d], `h{b}.wq`, `h{b}.wk`, `h{b}.wv`,
/// `h{b}.wo` [d, d], `h{b}.ln2` [d], `h{b}.w1`, `h{b}.w3` [d, d_ff],
/// `h{b}.w2` [d_ff, d]; tail: `ln_f` [d], `lm_head` [d, vocab], and with
/// `output_bias` `lm_bias` [vocab].
pub fn stage_params(cfg: &GptConfig, stage: u32) -> Vec<(String, Vec<usize>)> {
    let d = cfg.d_model as usize;
    let f = cfg.d_ff as usize;
    let mut out = Vec::new();
    if is_head(stage) {
        out.push(("tok_emb".to_string(), vec![cfg.vocab as usize, d]));
        out.push(("pos_emb".to_string(), vec![cfg.seq_len as usize, d]));
    }
    for b in 0..cfg.blocks_per_stage {
        for p in BLOCK_PARAMS {
            let shape = match p {
                "ln1" | "ln2" => vec![d],
                "w1" | "w3" => vec![d, f],
                "w2" => vec![f, d],
                _ => vec![d, d],
            };
            out.push((format!("h{b}.{p}"), shape));
        }
    }
    if is_tail(cfg, stage) {
        out.push(("ln_f".to_string(), vec![d]));
        out.push(("lm_head".to_string(), vec![d, cfg.vocab as usize]));
        if cfg.output_bias {
            out.push((LM_BIAS.to_string(), vec![cfg.vocab as usize]));
        }
    }
    out
}

/// The tail's output bias (with `output_bias`).
pub const LM_BIAS: &str = "lm_bias";

/// Whether a parameter is an RMSNorm gain (initialised to one, never decayed).
fn is_norm(name: &str) -> bool {
    name == "ln_f" || name.ends_with(".ln1") || name.ends_with(".ln2")
}

/// Whether AdamW applies weight decay to a parameter: the weight matrices
/// (`wq`, `wk`, `wv`, `wo`, `w1`, `w3`, `w2`, `lm_head`), not the norm gains
/// and not the embeddings or the output bias.
pub fn decays(name: &str) -> bool {
    !is_norm(name) && !matches!(name, "tok_emb" | "pos_emb" | LM_BIAS)
}

/// Deterministic initial parameters of stage `stage`, drawn in artifact order
/// from `SplitMix64::derive(cfg.seed, "gpt-init", &[stage])`: normals with
/// std [`INIT_STD`], the residual output projections `wo` and `w2` scaled by
/// `1/sqrt(2 · stages · blocks_per_stage)`, norm gains one, the output
/// bias zero (the owner's initial artifact sets it from the token counts:
/// [`unigram_bias`]).
///
/// The configuration is assumed valid (see [`validate_config`]).
pub fn init_stage(cfg: &GptConfig, stage: u32) -> Named {
    let mut rng = SplitMix64::derive(cfg.seed, "gpt-init", &[stage as u64]);
    let total_blocks = (cfg.stages as u64 * cfg.blocks_per_stage as u64).max(1);
    let residual_std = INIT_STD / ((2 * total_blocks) as f64).sqrt();
    stage_params(cfg, stage)
        .into_iter()
        .map(|(name, shape)| {
            let n = shape.iter().product();
            let values = if is_norm(&name) {
                vec![1.0; n]
            } else if name == LM_BIAS {
                vec![0.0; n]
            } else if name.ends_with(".wo") || name.ends_with(".w2") {
                rng.normals(n, residual_std)
            } else {
                rng.normals(n, INIT_STD)
            };
            (name, F32Tensor::new(shape, values))
        })
        .collect()
}

/// The owner's initial output bias: the log-frequency of each model id in
/// the training tokens `ids`, add-one smoothed (an id never seen is rare,
/// not impossible). With it the untrained model already predicts the
/// unigram distribution, and training spends its first steps on context
/// rather than on relearning token frequencies through the LM head.
/// Computed in f64 and rounded once: the same bits wherever it is computed.
pub fn unigram_bias(ids: &[u32], vocab: usize) -> Vec<f32> {
    let mut counts = vec![0u64; vocab];
    for &id in ids {
        if let Some(c) = counts.get_mut(id as usize) {
            *c += 1;
        }
    }
    let total = (ids.len() + vocab) as f64;
    counts
        .into_iter()
        .map(|c| ((c + 1) as f64 / total).ln() as f32)
        .collect()
}

/// What a stage reads.
#[derive(Clone, Copy, Debug)]
pub enum StageInput<'a> {
    /// Stage 0: token ids [batch, seq_len], row-major.
    Tokens(&'a [u32]),
    /// Other stages: the previous stage's output [batch, seq_len, d_model].
    Act(&'a F32Tensor),
}

/// Where a stage's backward pass starts.
#[derive(Clone, Copy, Debug)]
pub enum Upstream<'a> {
    /// Tail: next-token targets [batch, seq_len], row-major.
    Targets(&'a [u32]),
    /// Other stages: dL/d(stage output) [batch, seq_len, d_model].
    Grad(&'a F32Tensor),
}

/// Result of [`backward`].
#[derive(Clone, Debug, PartialEq)]
pub struct Backward {
    /// `grad.<name>` for every parameter, in [`stage_params`] order.
    pub grads: Named,
    /// dL/d(input) [batch, seq_len, d_model]; `None` for stage 0.
    pub grad_input: Option<F32Tensor>,
    /// The mean cross-entropy; tail only.
    pub loss: Option<f32>,
}

/// A stage's parameters as Burn tensors, in [`stage_params`] order. Vectors
/// (norm gains) are held as [1, d] so that all parameters share one rank.
struct Params<B: Backend> {
    tensors: Vec<Tensor<B, 2>>,
    head: bool,
    blocks: usize,
    /// The tail's last tensor is `lm_bias`.
    bias: bool,
}

impl<B: Backend> Params<B> {
    fn block(&self, b: usize) -> &[Tensor<B, 2>] {
        let start = if self.head { 2 } else { 0 } + b * BLOCK_PARAMS.len();
        &self.tensors[start..start + BLOCK_PARAMS.len()]
    }

    fn emb(&self) -> (&Tensor<B, 2>, &Tensor<B, 2>) {
        (&self.tensors[0], &self.tensors[1])
    }

    /// The tail's final norm gain, LM head and output bias.
    fn output(&self) -> (&Tensor<B, 2>, &Tensor<B, 2>, Option<&Tensor<B, 2>>) {
        let n = self.tensors.len() - usize::from(self.bias);
        let bias = self.bias.then(|| &self.tensors[n]);
        (&self.tensors[n - 2], &self.tensors[n - 1], bias)
    }
}

/// Checks that `t` holds `shape` with a matching number of values.
fn check_tensor(name: &str, t: &F32Tensor, shape: &[usize]) -> Result<(), WorkloadError> {
    if t.shape != shape {
        return Err(input_error(
            name,
            format!("shape {:?}, expected {:?}", t.shape, shape),
        ));
    }
    let n: usize = shape.iter().product();
    if t.values.len() != n {
        return Err(input_error(
            name,
            format!("{} values for shape {:?}", t.values.len(), shape),
        ));
    }
    Ok(())
}

/// Finds exactly one tensor called `name`.
fn lookup<'a>(named: &'a Named, name: &str) -> Result<&'a F32Tensor, WorkloadError> {
    let mut found = named.iter().filter(|(n, _)| n == name).map(|(_, t)| t);
    let first = found
        .next()
        .ok_or_else(|| WorkloadError::Input(TensorError::Missing(name.to_string())))?;
    if found.next().is_some() {
        return Err(input_error(name, "appears more than once"));
    }
    Ok(first)
}

/// Validates and loads stage `stage`'s parameters (extra names are ignored).
fn load_params<B: Backend>(
    cfg: &GptConfig,
    stage: u32,
    named: &Named,
    device: &B::Device,
) -> Result<Params<B>, WorkloadError> {
    let mut tensors = Vec::new();
    for (name, shape) in stage_params(cfg, stage) {
        let t = lookup(named, &name)?;
        check_tensor(&name, t, &shape)?;
        let shape2 = if shape.len() == 1 {
            vec![1, shape[0]]
        } else {
            shape
        };
        tensors.push(Tensor::from_data(
            TensorData::new(t.values.clone(), shape2),
            device,
        ));
    }
    Ok(Params {
        tensors,
        head: is_head(stage),
        blocks: cfg.blocks_per_stage as usize,
        bias: is_tail(cfg, stage) && cfg.output_bias,
    })
}

/// Rows of a [rows, seq_len] token buffer, after checking its length and ids.
fn token_rows(cfg: &GptConfig, name: &str, tokens: &[u32]) -> Result<usize, WorkloadError> {
    let t = cfg.seq_len as usize;
    if tokens.is_empty() || !tokens.len().is_multiple_of(t) {
        return Err(input_error(
            name,
            format!(
                "{} tokens is not a positive multiple of seq_len {t}",
                tokens.len()
            ),
        ));
    }
    if let Some(bad) = tokens.iter().find(|&&id| id >= cfg.vocab) {
        return Err(input_error(
            name,
            format!("token id {bad} out of range (vocab {})", cfg.vocab),
        ));
    }
    Ok(tokens.len() / t)
}

/// Refuses a batch whose largest intermediate tensor would be unreasonable.
fn check_batch(cfg: &GptConfig, stage: u32, batch: usize) -> Result<(), WorkloadError> {
    let (b, t) = (batch as u64, cfg.seq_len as u64);
    let mut widest = (cfg.heads as u64 * t).max(cfg.d_ff as u64);
    if is_tail(cfg, stage) {
        widest = widest.max(cfg.vocab as u64);
    }
    if b.saturating_mul(t).saturating_mul(widest) > MAX_INTERMEDIATE {
        return Err(input_error(
            "input",
            format!("batch {batch} is too large for this model"),
        ));
    }
    Ok(())
}

fn int_tensor<B: Backend>(
    tokens: &[u32],
    rows: usize,
    cols: usize,
    device: &B::Device,
) -> Tensor<B, 2, Int> {
    let ids: Vec<i64> = tokens.iter().map(|&id| id as i64).collect();
    Tensor::from_data(TensorData::new(ids, [rows, cols]), device)
}

/// A checked stage input: its batch size and, for activations, the values.
enum Checked<'a> {
    Tokens(&'a [u32], usize),
    Act(&'a F32Tensor, usize),
}

impl Checked<'_> {
    fn batch(&self) -> usize {
        match self {
            Checked::Tokens(_, b) | Checked::Act(_, b) => *b,
        }
    }
}

fn check_input<'a>(
    cfg: &GptConfig,
    stage: u32,
    input: StageInput<'a>,
) -> Result<Checked<'a>, WorkloadError> {
    let checked = match (is_head(stage), input) {
        (true, StageInput::Tokens(tokens)) => {
            Checked::Tokens(tokens, token_rows(cfg, "tokens", tokens)?)
        }
        (false, StageInput::Act(act)) => {
            let (t, d) = (cfg.seq_len as usize, cfg.d_model as usize);
            let b = match act.shape.as_slice() {
                [b, ..] if *b > 0 => *b,
                _ => return Err(input_error("act", format!("shape {:?}", act.shape))),
            };
            check_tensor("act", act, &[b, t, d])?;
            Checked::Act(act, b)
        }
        (true, StageInput::Act(_)) => {
            return Err(config_error("stage 0 reads tokens, not activations"));
        }
        (false, StageInput::Tokens(_)) => {
            return Err(config_error(format!(
                "stage {stage} reads activations, not tokens"
            )));
        }
    };
    check_batch(cfg, stage, checked.batch())?;
    Ok(checked)
}

/// `x / sqrt(mean(x², last dim) + eps) · g`, with `g` held as [1, d].
fn rmsnorm<B: Backend>(x: Tensor<B, 3>, g: &Tensor<B, 2>) -> Tensor<B, 3> {
    let rms = x.clone().square().mean_dim(2).add_scalar(NORM_EPS).sqrt();
    x.div(rms).mul(g.clone().unsqueeze::<3>())
}

/// Causal multi-head self-attention, `x` [b, t, d] → [b, t, d].
fn attention<B: Backend>(x: Tensor<B, 3>, p: &[Tensor<B, 2>], heads: usize) -> Tensor<B, 3> {
    let [b, t, d] = x.dims();
    let hd = d / heads;
    let x2 = x.reshape([b * t, d]);
    let split = |w: &Tensor<B, 2>| {
        x2.clone()
            .matmul(w.clone())
            .reshape([b, t, heads, hd])
            .swap_dims(1, 2)
    };
    let (q, k, v) = (split(&p[1]), split(&p[2]), split(&p[3]));
    let scores = q
        .matmul(k.swap_dims(2, 3))
        .mul_scalar(1.0 / (hd as f64).sqrt());
    let mask = Tensor::<B, 2, Bool>::tril_mask([t, t], 0, &scores.device())
        .unsqueeze::<4>()
        .expand([b, heads, t, t]);
    let att = softmax(scores.mask_fill(mask, MASKED), 3);
    att.matmul(v)
        .swap_dims(1, 2)
        .reshape([b * t, d])
        .matmul(p[4].clone())
        .reshape([b, t, d])
}

/// One pre-norm block; `p` holds its parameters in [`BLOCK_PARAMS`] order.
fn block<B: Backend>(x: Tensor<B, 3>, p: &[Tensor<B, 2>], heads: usize) -> Tensor<B, 3> {
    let x = x.clone() + attention(rmsnorm(x, &p[0]), p, heads);
    let [b, t, d] = x.dims();
    let h = rmsnorm(x.clone(), &p[5]).reshape([b * t, d]);
    let gate = silu(h.clone().matmul(p[6].clone()));
    let up = h.matmul(p[7].clone());
    x + (gate * up).matmul(p[8].clone()).reshape([b, t, d])
}

/// The input of a stage as a Burn value.
enum In<B: Backend> {
    Tokens(Tensor<B, 2, Int>),
    Act(Tensor<B, 3>),
}

/// Embedding (head) and blocks of a stage: its output before the tail's
/// final norm, [b, seq_len, d].
fn stage_body<B: Backend>(cfg: &GptConfig, p: &Params<B>, input: In<B>) -> Tensor<B, 3> {
    let mut x = match input {
        In::Tokens(ids) => {
            let (tok, pos) = p.emb();
            embedding(tok.clone(), ids) + pos.clone().unsqueeze::<3>()
        }
        In::Act(x) => x,
    };
    for b in 0..p.blocks {
        x = block(x, p.block(b), cfg.heads as usize);
    }
    x
}

/// Per-position negative log-likelihood [b·t, 1] of the tail.
fn tail_nll<B: Backend>(
    p: &Params<B>,
    x: Tensor<B, 3>,
    targets: Tensor<B, 2, Int>,
) -> Tensor<B, 2> {
    let (ln_f, lm_head, bias) = p.output();
    let [b, t, d] = x.dims();
    let mut logits = rmsnorm(x, ln_f).reshape([b * t, d]).matmul(lm_head.clone());
    if let Some(bias) = bias {
        logits = logits + bias.clone();
    }
    log_softmax(logits, 1)
        .gather(1, targets.reshape([b * t, 1]))
        .neg()
}

fn to_f32<B: Backend, const D: usize>(t: Tensor<B, D>) -> Result<F32Tensor, WorkloadError> {
    let shape = t.dims().to_vec();
    let values = t
        .into_data()
        .into_vec::<f32>()
        .map_err(|e| WorkloadError::Backend(format!("{e:?}")))?;
    Ok(F32Tensor::new(shape, values))
}

fn act_tensor<B: Backend>(act: &F32Tensor, device: &B::Device) -> Tensor<B, 3> {
    let [b, t, d] = [act.shape[0], act.shape[1], act.shape[2]];
    Tensor::from_data(TensorData::new(act.values.clone(), [b, t, d]), device)
}

/// Forward of a non-tail stage: its output activations [batch, seq_len,
/// d_model]. The batch size is taken from the input.
pub fn forward<B: Backend>(
    cfg: &GptConfig,
    stage: u32,
    params: &Named,
    input: StageInput,
    device: &B::Device,
) -> Result<F32Tensor, WorkloadError> {
    check_stage(cfg, stage)?;
    if is_tail(cfg, stage) {
        return Err(config_error(format!(
            "stage {stage} is the tail: it has no forward output, only a loss"
        )));
    }
    let input = check_input(cfg, stage, input)?;
    let p = load_params::<B>(cfg, stage, params, device)?;
    let x = match input {
        Checked::Tokens(tokens, b) => {
            In::Tokens(int_tensor(tokens, b, cfg.seq_len as usize, device))
        }
        Checked::Act(act, _) => In::Act(act_tensor(act, device)),
    };
    to_f32(stage_body(cfg, &p, x))
}

/// Recomputes stage `stage`'s forward from `input` and back-propagates with
/// Burn autodiff: the tail from the mean cross-entropy against `Targets`,
/// other stages from `Grad` (the surrogate `(output · grad).sum()`).
/// Returns the parameter gradients, dL/d(input) (not for stage 0) and, for
/// the tail, the loss.
pub fn backward<B: AutodiffBackend>(
    cfg: &GptConfig,
    stage: u32,
    params: &Named,
    input: StageInput,
    upstream: Upstream,
    device: &B::Device,
) -> Result<Backward, WorkloadError> {
    check_stage(cfg, stage)?;
    let input = check_input(cfg, stage, input)?;
    let (b, t, d) = (input.batch(), cfg.seq_len as usize, cfg.d_model as usize);
    let tail = is_tail(cfg, stage);
    // Check the upstream before building any tensor.
    match (tail, upstream) {
        (true, Upstream::Targets(targets)) => {
            if token_rows(cfg, "targets", targets)? != b {
                return Err(input_error(
                    "targets",
                    format!("{} targets for {b} sequences", targets.len()),
                ));
            }
        }
        (false, Upstream::Grad(grad)) => check_tensor("grad", grad, &[b, t, d])?,
        (true, Upstream::Grad(_)) => {
            return Err(config_error(
                "the tail back-propagates from targets, not a gradient",
            ));
        }
        (false, Upstream::Targets(_)) => {
            return Err(config_error(format!(
                "stage {stage} back-propagates from a gradient, not targets"
            )));
        }
    }
    let loaded = load_params::<B>(cfg, stage, params, device)?;
    let p = Params {
        tensors: loaded
            .tensors
            .into_iter()
            .map(|t| t.require_grad())
            .collect(),
        ..loaded
    };
    let (x, act) = match input {
        Checked::Tokens(tokens, _) => (In::Tokens(int_tensor(tokens, b, t, device)), None),
        Checked::Act(act, _) => {
            let a = act_tensor::<B>(act, device).require_grad();
            (In::Act(a.clone()), Some(a))
        }
    };
    let out = stage_body(cfg, &p, x);
    let objective = match upstream {
        Upstream::Targets(targets) => tail_nll(&p, out, int_tensor(targets, b, t, device)).mean(),
        Upstream::Grad(grad) => (out * act_tensor::<B>(grad, device)).sum(),
    };
    let gradients = objective.backward();
    let loss = if tail {
        Some(to_f32(objective.inner())?.values[0])
    } else {
        None
    };
    let mut grads = Vec::with_capacity(p.tensors.len());
    for ((name, shape), tensor) in stage_params(cfg, stage).into_iter().zip(&p.tensors) {
        let g = match tensor.grad(&gradients) {
            Some(g) => to_f32(g)?.values,
            None => vec![0.0; shape.iter().product()],
        };
        grads.push((format!("grad.{name}"), F32Tensor::new(shape, g)));
    }
    let grad_input = match act {
        Some(a) => Some(match a.grad(&gradients) {
            Some(g) => to_f32(g)?,
            None => F32Tensor::new(vec![b, t, d], vec![0.0; b * t * d]),
        }),
        None => None,
    };
    Ok(Backward {
        grads,
        grad_input,
        loss,
    })
}

/// `base^exp` by repeated squaring in f64: the same bits on every platform.
fn powu(base: f64, mut exp: u32) -> f64 {
    let (mut acc, mut x) = (1.0f64, base);
    while exp > 0 {
        if exp & 1 == 1 {
            acc *= x;
        }
        x *= x;
        exp >>= 1;
    }
    acc
}

/// One AdamW step at 1-based step `t`, in plain f32 (deterministic on every
/// backend).
///
/// The gradient of a parameter `name` is the mean of `grad.<name>` over
/// `grads` (as [`backward`] names them), summed in the given order. Then,
/// as in PyTorch's AdamW: `m = β1·m + (1-β1)·g`, `v = β2·v + (1-β2)·g²`,
/// `p ← p · (1 - lr·wd)` for the parameters [`decays`] selects (weight
/// matrices; not norm gains, not embeddings), then
/// `p ← p - lr · m̂ / (sqrt(v̂) + eps)` with `m̂ = m / (1-β1^t)`,
/// `v̂ = v / (1-β2^t)`. The bias corrections are computed in f64 and rounded
/// once. Returns `(params, m, v)`, each in `params`' order and names (the
/// moments keep the parameter names).
pub fn adamw(
    cfg: &GptConfig,
    t: u32,
    params: &Named,
    m: &Named,
    v: &Named,
    grads: &[&Named],
) -> Result<(Named, Named, Named), WorkloadError> {
    if t == 0 {
        return Err(config_error("adamw step t is 1-based"));
    }
    if grads.is_empty() {
        return Err(config_error("adamw needs at least one gradient"));
    }
    let finite = [cfg.lr, cfg.beta1, cfg.beta2, cfg.eps, cfg.weight_decay]
        .iter()
        .all(|x| x.is_finite());
    if !finite
        || !(0.0..1.0).contains(&cfg.beta1)
        || !(0.0..1.0).contains(&cfg.beta2)
        || cfg.eps <= 0.0
        || cfg.lr < 0.0
        || cfg.weight_decay < 0.0
    {
        return Err(config_error(
            "adamw needs finite lr >= 0, betas in [0, 1), eps > 0, weight_decay >= 0",
        ));
    }
    let (lr, b1, b2, eps, wd) = (cfg.lr, cfg.beta1, cfg.beta2, cfg.eps, cfg.weight_decay);
    let bc1 = (1.0 - powu(b1 as f64, t)) as f32;
    let bc2 = (1.0 - powu(b2 as f64, t)) as f32;
    let n = grads.len() as f32;
    let (mut out_p, mut out_m, mut out_v) = (Vec::new(), Vec::new(), Vec::new());
    for (i, (name, p)) in params.iter().enumerate() {
        if params[..i].iter().any(|(other, _)| other == name) {
            return Err(input_error(name, "appears more than once"));
        }
        let shape = p.shape.clone();
        check_tensor(name, p, &shape)?;
        let mi = lookup(m, name)?;
        check_tensor(name, mi, &shape)?;
        let vi = lookup(v, name)?;
        check_tensor(name, vi, &shape)?;
        let gname = format!("grad.{name}");
        let mut g = vec![0.0f32; p.values.len()];
        for named in grads {
            let gi = lookup(named, &gname)?;
            check_tensor(&gname, gi, &shape)?;
            for (acc, x) in g.iter_mut().zip(&gi.values) {
                *acc += *x;
            }
        }
        let decay = if decays(name) { 1.0 - lr * wd } else { 1.0 };
        let mut np = Vec::with_capacity(g.len());
        let mut nm = Vec::with_capacity(g.len());
        let mut nv = Vec::with_capacity(g.len());
        for (j, &gsum) in g.iter().enumerate() {
            let gj = gsum / n;
            let mj = b1 * mi.values[j] + (1.0 - b1) * gj;
            let vj = b2 * vi.values[j] + (1.0 - b2) * gj * gj;
            let step = (mj / bc1) / ((vj / bc2).sqrt() + eps);
            np.push(p.values[j] * decay - lr * step);
            nm.push(mj);
            nv.push(vj);
        }
        out_p.push((name.clone(), F32Tensor::new(shape.clone(), np)));
        out_m.push((name.clone(), F32Tensor::new(shape.clone(), nm)));
        out_v.push((name.clone(), F32Tensor::new(shape, nv)));
    }
    Ok((out_p, out_m, out_v))
}

/// Mean cross-entropy of the whole model over `n` sequences `tokens`
/// [n, seq_len + 1] (inputs: the first seq_len tokens of a row; targets:
/// the same shifted by one), run stage by stage in chunks of `cfg.batch`
/// sequences; no autodiff. `stages` holds every stage's parameters.
pub fn eval_loss<B: Backend>(
    cfg: &GptConfig,
    stages: &[Named],
    tokens: &[u32],
    n: usize,
    device: &B::Device,
) -> Result<f32, WorkloadError> {
    validate_config(cfg)?;
    if stages.len() != cfg.stages as usize {
        return Err(config_error(format!(
            "{} stages of parameters, the model has {}",
            stages.len(),
            cfg.stages
        )));
    }
    let t = cfg.seq_len as usize;
    let row = t + 1;
    if n == 0 || n.checked_mul(row) != Some(tokens.len()) {
        return Err(input_error(
            "tokens",
            format!("{} tokens, expected {n} rows of {row}", tokens.len()),
        ));
    }
    if let Some(bad) = tokens.iter().find(|&&id| id >= cfg.vocab) {
        return Err(input_error(
            "tokens",
            format!("token id {bad} out of range (vocab {})", cfg.vocab),
        ));
    }
    let chunk = (cfg.batch as usize).max(1);
    check_batch(cfg, cfg.stages - 1, chunk.min(n))?;
    let loaded = stages
        .iter()
        .enumerate()
        .map(|(s, named)| load_params::<B>(cfg, s as u32, named, device))
        .collect::<Result<Vec<_>, _>>()?;
    let mut total = 0.0f64;
    for start in (0..n).step_by(chunk) {
        let rows = chunk.min(n - start);
        let (mut inputs, mut targets) = (Vec::new(), Vec::new());
        for r in start..start + rows {
            let seq = &tokens[r * row..(r + 1) * row];
            inputs.extend_from_slice(&seq[..t]);
            targets.extend_from_slice(&seq[1..]);
        }
        let mut x = In::Tokens(int_tensor(&inputs, rows, t, device));
        let last = loaded.len() - 1;
        for p in &loaded[..last] {
            x = In::Act(stage_body(cfg, p, x));
        }
        let out = stage_body(cfg, &loaded[last], x);
        let nll = tail_nll(&loaded[last], out, int_tensor(&targets, rows, t, device)).sum();
        total += to_f32(nll)?.values[0] as f64;
    }
    Ok((total / (n * t) as f64) as f32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::ndarray::NdArrayDevice;
    use burn::backend::{Autodiff, NdArray};

    type Ad = Autodiff<NdArray<f32>>;
    type Nd = NdArray<f32>;
    const DEV: NdArrayDevice = NdArrayDevice::Cpu;

    fn tiny() -> GptConfig {
        GptConfig {
            vocab: 97,
            d_model: 16,
            heads: 2,
            d_ff: 32,
            seq_len: 8,
            batch: 2,
            stages: 3,
            blocks_per_stage: 1,
            micro_batches: 1,
            lr: 1e-2,
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-8,
            weight_decay: 0.1,
            seed: 7,
            output_bias: true,
            ..Default::default()
        }
    }

    /// Initial parameters pushed away from the initialisation (matrices ×10,
    /// gains 1 ± 0.1) so that attention and gradients are far from trivial.
    fn test_params(cfg: &GptConfig, stage: u32) -> Named {
        let mut rng = SplitMix64::derive(99, "test-perturb", &[stage as u64]);
        init_stage(cfg, stage)
            .into_iter()
            .map(|(name, mut t)| {
                let noise = rng.normals(t.values.len(), 1.0);
                for (v, z) in t.values.iter_mut().zip(noise) {
                    if is_norm(&name) {
                        *v += 0.1 * z;
                    } else if name == LM_BIAS {
                        *v += z;
                    } else {
                        *v *= 10.0;
                    }
                }
                (name, t)
            })
            .collect()
    }

    fn all_params(cfg: &GptConfig) -> Vec<Named> {
        (0..cfg.stages).map(|s| test_params(cfg, s)).collect()
    }

    /// `n` random rows of seq_len + 1 tokens.
    fn random_rows(cfg: &GptConfig, n: usize, label: &str) -> Vec<u32> {
        let mut rng = SplitMix64::derive(5, label, &[]);
        (0..n * (cfg.seq_len as usize + 1))
            .map(|_| (rng.next_u64() % cfg.vocab as u64) as u32)
            .collect()
    }

    /// Inputs (first seq_len) and targets (shifted by one) of rows.
    fn split_rows(cfg: &GptConfig, rows: &[u32]) -> (Vec<u32>, Vec<u32>) {
        let t = cfg.seq_len as usize;
        let (mut inputs, mut targets) = (Vec::new(), Vec::new());
        for seq in rows.chunks(t + 1) {
            inputs.extend_from_slice(&seq[..t]);
            targets.extend_from_slice(&seq[1..]);
        }
        (inputs, targets)
    }

    /// Forward through every stage, then backward tail → head, passing
    /// grad_input upstream. Returns each stage's [`Backward`], in stage order.
    fn pipeline(cfg: &GptConfig, params: &[Named], rows: &[u32]) -> Vec<Backward> {
        let (inputs, targets) = split_rows(cfg, rows);
        let last = cfg.stages as usize - 1;
        let mut acts: Vec<F32Tensor> = Vec::new();
        for s in 0..last {
            let input = match s {
                0 => StageInput::Tokens(&inputs),
                _ => StageInput::Act(&acts[s - 1]),
            };
            acts.push(forward::<Nd>(cfg, s as u32, &params[s], input, &DEV).unwrap());
        }
        let input_of = |s: usize| match s {
            0 => StageInput::Tokens(&inputs),
            _ => StageInput::Act(&acts[s - 1]),
        };
        let mut out = vec![
            backward::<Ad>(
                cfg,
                last as u32,
                &params[last],
                input_of(last),
                Upstream::Targets(&targets),
                &DEV,
            )
            .unwrap(),
        ];
        for s in (0..last).rev() {
            let grad = out[0]
                .grad_input
                .clone()
                .expect("non-head stage has grad_input");
            let bw = backward::<Ad>(
                cfg,
                s as u32,
                &params[s],
                input_of(s),
                Upstream::Grad(&grad),
                &DEV,
            )
            .unwrap();
            out.insert(0, bw);
        }
        assert!(out[0].grad_input.is_none());
        out
    }

    /// Gradients of one autodiff graph through the whole model, built from
    /// the same stage functions; returns (grads per stage, loss).
    fn whole_model(cfg: &GptConfig, params: &[Named], rows: &[u32]) -> (Vec<Named>, f32) {
        let (inputs, targets) = split_rows(cfg, rows);
        let (b, t) = (inputs.len() / cfg.seq_len as usize, cfg.seq_len as usize);
        let ps: Vec<Params<Ad>> = params
            .iter()
            .enumerate()
            .map(|(s, named)| {
                let l = load_params::<Ad>(cfg, s as u32, named, &DEV).unwrap();
                Params {
                    tensors: l.tensors.into_iter().map(|t| t.require_grad()).collect(),
                    ..l
                }
            })
            .collect();
        let last = ps.len() - 1;
        let mut x = In::Tokens(int_tensor(&inputs, b, t, &DEV));
        for p in &ps[..last] {
            x = In::Act(stage_body(cfg, p, x));
        }
        let out = stage_body(cfg, &ps[last], x);
        let loss = tail_nll(&ps[last], out, int_tensor(&targets, b, t, &DEV)).mean();
        let g = loss.backward();
        let grads = ps
            .iter()
            .enumerate()
            .map(|(s, p)| {
                stage_params(cfg, s as u32)
                    .into_iter()
                    .zip(&p.tensors)
                    .map(|((name, shape), tensor)| {
                        let gt = to_f32(tensor.grad(&g).unwrap()).unwrap();
                        (format!("grad.{name}"), F32Tensor::new(shape, gt.values))
                    })
                    .collect()
            })
            .collect();
        (grads, to_f32(loss.inner()).unwrap().values[0])
    }

    fn norm(v: &[f32]) -> f64 {
        v.iter()
            .map(|&x| (x as f64) * (x as f64))
            .sum::<f64>()
            .sqrt()
    }

    #[test]
    fn stage_params_and_init_agree() {
        let cfg = tiny();
        for s in 0..cfg.stages {
            let spec = stage_params(&cfg, s);
            let init = init_stage(&cfg, s);
            assert_eq!(init, init_stage(&cfg, s));
            assert_eq!(spec.len(), init.len());
            for ((n, shape), (m, t)) in spec.iter().zip(&init) {
                assert_eq!((n, shape), (m, &t.shape));
                assert_eq!(t.values.len(), shape.iter().product::<usize>());
                if is_norm(n) {
                    assert!(t.values.iter().all(|&v| v == 1.0));
                }
            }
        }
        let names =
            |s| -> Vec<String> { stage_params(&cfg, s).into_iter().map(|(n, _)| n).collect() };
        assert_eq!(names(0)[..3], ["tok_emb", "pos_emb", "h0.ln1"]);
        assert_eq!(names(1).len(), 9);
        assert_eq!(names(2)[9..], ["ln_f", "lm_head", LM_BIAS]);
        let tail = init_stage(&cfg, 2);
        assert!(tail[11].1.values.iter().all(|&v| v == 0.0));
        assert_ne!(init_stage(&cfg, 1)[1].1, init_stage(&cfg, 2)[1].1);
        // Residual projections are scaled down by 1/sqrt(2 · 3 blocks).
        let wo = &init_stage(&cfg, 1)[4].1;
        let std = norm(&wo.values) / (wo.values.len() as f64).sqrt();
        assert!((std - INIT_STD / 6f64.sqrt()).abs() < 0.003, "{std}");
    }

    #[test]
    fn attention_is_causal() {
        let cfg = tiny();
        let p = test_params(&cfg, 0);
        let mut tokens: Vec<u32> = random_rows(&cfg, 2, "causal")[..16].to_vec();
        let a = forward::<Nd>(&cfg, 0, &p, StageInput::Tokens(&tokens), &DEV).unwrap();
        tokens[5] = (tokens[5] + 1) % cfg.vocab;
        let b = forward::<Nd>(&cfg, 0, &p, StageInput::Tokens(&tokens), &DEV).unwrap();
        assert_eq!(a.shape, vec![2, 8, 16]);
        let d = 16;
        assert_eq!(
            a.values[..5 * d],
            b.values[..5 * d],
            "positions before 5 unchanged"
        );
        for pos in 5..8 {
            assert_ne!(
                a.values[pos * d..(pos + 1) * d],
                b.values[pos * d..(pos + 1) * d]
            );
        }
        assert_eq!(a.values[8 * d..], b.values[8 * d..], "other row unchanged");
    }

    #[test]
    fn pipeline_backward_equals_whole_model_autodiff() {
        let cfg = tiny();
        let params = all_params(&cfg);
        let rows = random_rows(&cfg, 2, "grads");
        let pipe = pipeline(&cfg, &params, &rows);
        let (whole, whole_loss) = whole_model(&cfg, &params, &rows);
        let loss = pipe[2].loss.unwrap();
        assert!(pipe[0].loss.is_none() && pipe[1].loss.is_none());
        assert!(
            (loss - whole_loss).abs() <= 1e-6 * whole_loss.abs(),
            "{loss} vs {whole_loss}"
        );
        let eval = eval_loss::<Nd>(&cfg, &params, &rows, 2, &DEV).unwrap();
        assert!((eval - loss).abs() <= 1e-5 * loss.abs(), "{eval} vs {loss}");
        for s in 0..3 {
            assert_eq!(pipe[s].grads.len(), whole[s].len());
            for ((n1, g1), (n2, g2)) in pipe[s].grads.iter().zip(&whole[s]) {
                assert_eq!(n1, n2);
                assert_eq!(g1.shape, g2.shape);
                let scale = g2.values.iter().fold(0f32, |m, x| m.max(x.abs()));
                assert!(scale > 0.0, "stage {s} {n1} has a zero gradient");
                for (a, b) in g1.values.iter().zip(&g2.values) {
                    assert!((a - b).abs() <= 1e-5 * scale, "stage {s} {n1}: {a} vs {b}");
                }
            }
        }

        // Finite differences of eval_loss along the gradient direction and on
        // the largest single gradient entry of a few parameters.
        let probes = [
            (0, "tok_emb"),
            (0, "h0.wq"),
            (0, "h0.ln1"),
            (1, "h0.wk"),
            (1, "h0.w3"),
            (2, "h0.w2"),
            (2, "ln_f"),
            (2, "lm_head"),
        ];
        let loss_with = |stage: usize, name: &str, dir: &[f32], h: f32| {
            let mut p = params.clone();
            let t = &mut p[stage].iter_mut().find(|(n, _)| n == name).unwrap().1;
            for (v, d) in t.values.iter_mut().zip(dir) {
                *v += h * d;
            }
            eval_loss::<Nd>(&cfg, &p, &rows, 2, &DEV).unwrap() as f64
        };
        for (stage, name) in probes {
            let g = &lookup(&pipe[stage].grads, &format!("grad.{name}"))
                .unwrap()
                .values;
            let gnorm = norm(g);
            let dir: Vec<f32> = g.iter().map(|&x| (x as f64 / gnorm) as f32).collect();
            let h = 1e-2;
            let fd = (loss_with(stage, name, &dir, h) - loss_with(stage, name, &dir, -h))
                / (2.0 * h as f64);
            assert!(
                (fd - gnorm).abs() <= 5e-3 * gnorm,
                "stage {stage} {name}: directional fd {fd} vs |g| {gnorm}"
            );
            let (i, gi) = g.iter().enumerate().fold((0, 0f32), |(bi, bg), (i, &x)| {
                if x.abs() > bg.abs() { (i, x) } else { (bi, bg) }
            });
            let mut unit = vec![0.0; g.len()];
            unit[i] = 1.0;
            let fd = (loss_with(stage, name, &unit, h) - loss_with(stage, name, &unit, -h))
                / (2.0 * h as f64);
            assert!(
                (fd - gi as f64).abs() <= 1e-2 * (gi.abs() as f64) + 1e-4,
                "stage {stage} {name}[{i}]: fd {fd} vs grad {gi}"
            );
        }
    }

    fn bits(t: &F32Tensor) -> Vec<u32> {
        t.values.iter().map(|v| v.to_bits()).collect()
    }

    #[test]
    fn backward_is_bitwise_deterministic() {
        let cfg = tiny();
        let params = all_params(&cfg);
        let rows = random_rows(&cfg, 2, "det");
        let a = pipeline(&cfg, &params, &rows);
        let b = pipeline(&cfg, &params, &rows);
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(x.loss.map(f32::to_bits), y.loss.map(f32::to_bits));
            assert_eq!(
                x.grad_input.as_ref().map(bits),
                y.grad_input.as_ref().map(bits)
            );
            for ((n1, g1), (n2, g2)) in x.grads.iter().zip(&y.grads) {
                assert_eq!(n1, n2);
                assert_eq!(bits(g1), bits(g2), "{n1}");
            }
        }
    }

    #[test]
    fn single_stage_is_head_and_tail() {
        let cfg = GptConfig {
            stages: 1,
            blocks_per_stage: 2,
            ..tiny()
        };
        let params = vec![init_stage(&cfg, 0)];
        let names: Vec<String> = stage_params(&cfg, 0).into_iter().map(|(n, _)| n).collect();
        assert_eq!(names.len(), 2 + 18 + 3);
        let rows = random_rows(&cfg, 2, "single");
        let bw = pipeline(&cfg, &params, &rows).remove(0);
        assert!(bw.grad_input.is_none());
        let got: Vec<&str> = bw.grads.iter().map(|(n, _)| n.as_str()).collect();
        let want: Vec<String> = names.iter().map(|n| format!("grad.{n}")).collect();
        assert_eq!(got, want);
        let eval = eval_loss::<Nd>(&cfg, &params, &rows, 2, &DEV).unwrap();
        let loss = bw.loss.unwrap();
        assert!((eval - loss).abs() <= 1e-5 * loss);
        // At initialisation the prediction is close to uniform.
        assert!((loss - (97f32).ln()).abs() < 0.1, "{loss}");
        assert!(forward::<Nd>(&cfg, 0, &params[0], StageInput::Tokens(&rows[..8]), &DEV).is_err());
    }

    #[test]
    fn unigram_bias_is_the_smoothed_log_frequency() {
        let bias = unigram_bias(&[2, 2, 2, 0, 7], 4);
        // Counts 1, 0, 3, 0 (7 is out of range, still counted in the
        // total), add-one smoothed over 5 + 4.
        let want = [2.0f64, 1.0, 4.0, 1.0].map(|c| (c / 9.0).ln() as f32);
        assert_eq!(bias, want);
    }

    #[test]
    fn output_bias_makes_the_untrained_model_a_unigram_model() {
        let cfg = tiny();
        let rows = random_rows(&cfg, 4, "unigram");
        // A skewed distribution: token v has weight v + 1.
        let skewed: Vec<u32> = (0..cfg.vocab)
            .flat_map(|v| vec![v; v as usize + 1])
            .collect();
        let bias = unigram_bias(&skewed, cfg.vocab as usize);
        let mut params: Vec<Named> = (0..cfg.stages).map(|s| init_stage(&cfg, s)).collect();
        let tail = params.last_mut().unwrap();
        let (_, b) = tail.iter_mut().find(|(n, _)| n == LM_BIAS).unwrap();
        b.values = bias.clone();
        // The cross-entropy of the targets under softmax(bias).
        let norm = bias.iter().map(|&b| (b as f64).exp()).sum::<f64>().ln();
        let (_, targets) = split_rows(&cfg, &rows);
        let unigram = targets
            .iter()
            .map(|&t| norm - bias[t as usize] as f64)
            .sum::<f64>()
            / targets.len() as f64;
        let eval = eval_loss::<Nd>(&cfg, &params, &rows, 4, &DEV).unwrap() as f64;
        // The initial LM head adds logits of std ~0.08: a small excess only.
        assert!((eval - unigram).abs() < 0.02, "{eval} vs {unigram}");
        // Without the bias the same model predicts uniformly.
        let plain = GptConfig {
            output_bias: false,
            ..cfg.clone()
        };
        params.last_mut().unwrap().retain(|(n, _)| n != LM_BIAS);
        let uniform = eval_loss::<Nd>(&plain, &params, &rows, 4, &DEV).unwrap();
        assert!((uniform - (97f32).ln()).abs() < 0.05, "{uniform}");
        assert!(!decays(LM_BIAS));
    }

    #[test]
    fn adamw_trains_a_repeated_pattern() {
        let cfg = tiny();
        let pattern = [3u32, 17, 42, 8, 91];
        let rows: Vec<u32> = (0..2)
            .flat_map(|r| (0..9).map(move |i| pattern[(i + 2 * r) % pattern.len()]))
            .collect();
        let mut params: Vec<Named> = (0..cfg.stages).map(|s| init_stage(&cfg, s)).collect();
        let zeros = |p: &Named| -> Named {
            p.iter()
                .map(|(n, t)| {
                    (
                        n.clone(),
                        F32Tensor::new(t.shape.clone(), vec![0.0; t.values.len()]),
                    )
                })
                .collect()
        };
        let mut m: Vec<Named> = params.iter().map(zeros).collect();
        let mut v: Vec<Named> = params.iter().map(zeros).collect();
        let start = eval_loss::<Nd>(&cfg, &params, &rows, 2, &DEV).unwrap();
        assert!((start - (97f32).ln()).abs() < 0.1, "{start}");
        for step in 1..=40 {
            // Two micro-batches of one sequence each; AdamW takes their mean.
            let mb: Vec<Vec<Backward>> =
                rows.chunks(9).map(|r| pipeline(&cfg, &params, r)).collect();
            for s in 0..cfg.stages as usize {
                let grads = [&mb[0][s].grads, &mb[1][s].grads];
                let (p, ms, vs) = adamw(&cfg, step, &params[s], &m[s], &v[s], &grads).unwrap();
                params[s] = p;
                m[s] = ms;
                v[s] = vs;
            }
        }
        let end = eval_loss::<Nd>(&cfg, &params, &rows, 2, &DEV).unwrap();
        assert!(end < 1.0, "eval loss {start} → {end}");
    }

    #[test]
    fn adamw_matches_the_formula() {
        let cfg = tiny();
        let p: Named = vec![
            ("h0.wq".into(), F32Tensor::new(vec![1, 2], vec![1.0, -2.0])),
            ("h0.ln1".into(), F32Tensor::new(vec![2], vec![1.0, 1.0])),
        ];
        let zeros: Named = p
            .iter()
            .map(|(n, t)| (n.clone(), F32Tensor::new(t.shape.clone(), vec![0.0; 2])))
            .collect();
        let g1: Named = vec![
            (
                "grad.h0.wq".into(),
                F32Tensor::new(vec![1, 2], vec![0.5, 0.0]),
            ),
            (
                "grad.h0.ln1".into(),
                F32Tensor::new(vec![2], vec![-1.0, 2.0]),
            ),
        ];
        let g2: Named = vec![
            (
                "grad.h0.ln1".into(),
                F32Tensor::new(vec![2], vec![-1.0, 0.0]),
            ),
            (
                "grad.h0.wq".into(),
                F32Tensor::new(vec![1, 2], vec![1.5, 0.0]),
            ),
        ];
        let (np, nm, nv) = adamw(&cfg, 1, &p, &zeros, &zeros, &[&g1, &g2]).unwrap();
        // Step 1: m̂ = g, v̂ = g², so the step is lr·sign(g) (up to eps).
        let wq = &np[0].1.values;
        let decayed = 1.0 - cfg.lr * cfg.weight_decay;
        assert!((wq[0] - (decayed - cfg.lr)).abs() < 1e-6, "{wq:?}");
        assert_eq!(wq[1], -2.0 * decayed);
        let ln = &np[1].1.values;
        assert!((ln[0] - (1.0 + cfg.lr)).abs() < 1e-6 && (ln[1] - (1.0 - cfg.lr)).abs() < 1e-6);
        assert_eq!(nm[0].0, "h0.wq");
        assert!((nm[0].1.values[0] - 0.1).abs() < 1e-7);
        assert!((nv[1].1.values[1] - 0.05).abs() < 1e-7);
        assert!(!decays("tok_emb") && !decays("pos_emb") && !decays("ln_f") && !decays("h3.ln2"));
        assert!(decays("lm_head") && decays("h0.w2"));
    }

    fn is_input<T>(r: Result<T, WorkloadError>) -> bool {
        matches!(r, Err(WorkloadError::Input(_)))
    }

    fn is_config<T>(r: Result<T, WorkloadError>) -> bool {
        matches!(r, Err(WorkloadError::Config(_)))
    }

    #[test]
    fn bad_inputs_are_errors() {
        let cfg = tiny();
        let params = all_params(&cfg);
        let rows = random_rows(&cfg, 2, "bad");
        let (inputs, targets) = split_rows(&cfg, &rows);
        let fwd = |s: u32, p: &Named, input| forward::<Nd>(&cfg, s, p, input, &DEV).map(|_| ());
        let act = forward::<Nd>(&cfg, 0, &params[0], StageInput::Tokens(&inputs), &DEV).unwrap();

        // Tokens: out of vocab, ragged length, empty.
        let mut big = inputs.clone();
        big[3] = 97;
        assert!(is_input(fwd(0, &params[0], StageInput::Tokens(&big))));
        assert!(is_input(fwd(
            0,
            &params[0],
            StageInput::Tokens(&inputs[..15])
        )));
        assert!(is_input(fwd(0, &params[0], StageInput::Tokens(&[]))));
        // Activations: wrong shape, values not matching the shape.
        let wrong = F32Tensor::new(vec![2, 8, 15], vec![0.0; 240]);
        assert!(is_input(fwd(1, &params[1], StageInput::Act(&wrong))));
        let short = F32Tensor {
            shape: vec![2, 8, 16],
            values: vec![0.0; 255],
        };
        assert!(is_input(fwd(1, &params[1], StageInput::Act(&short))));
        let flat = F32Tensor::new(vec![256], vec![0.0; 256]);
        assert!(is_input(fwd(1, &params[1], StageInput::Act(&flat))));
        // Parameters: missing, wrong shape, wrong length, duplicated.
        let mut missing = params[1].clone();
        missing.retain(|(n, _)| n != "h0.wq");
        assert!(matches!(
            fwd(1, &missing, StageInput::Act(&act)),
            Err(WorkloadError::Input(TensorError::Missing(n))) if n == "h0.wq"
        ));
        let mut reshaped = params[1].clone();
        reshaped[2].1 = F32Tensor::new(vec![16, 15], vec![0.0; 240]);
        assert!(is_input(fwd(1, &reshaped, StageInput::Act(&act))));
        let mut truncated = params[1].clone();
        truncated[2].1.values.pop();
        assert!(is_input(fwd(1, &truncated, StageInput::Act(&act))));
        let mut doubled = params[1].clone();
        doubled.push(doubled[0].clone());
        assert!(is_input(fwd(1, &doubled, StageInput::Act(&act))));
        // Stage kinds: tokens to a middle stage, activations to the head,
        // forward of the tail, a stage out of range, a bad configuration.
        assert!(is_config(fwd(1, &params[1], StageInput::Tokens(&inputs))));
        assert!(is_config(fwd(0, &params[0], StageInput::Act(&act))));
        assert!(is_config(fwd(2, &params[2], StageInput::Act(&act))));
        assert!(is_config(fwd(3, &params[2], StageInput::Act(&act))));
        let odd_heads = GptConfig { heads: 3, ..tiny() };
        assert!(is_config(
            forward::<Nd>(&odd_heads, 1, &params[1], StageInput::Act(&act), &DEV).map(|_| ())
        ));

        // Backward: bad targets, bad gradient, the wrong kind of upstream.
        let bwd =
            |s: u32, p: &Named, input, up| backward::<Ad>(&cfg, s, p, input, up, &DEV).map(|_| ());
        let mut bad_targets = targets.clone();
        bad_targets[0] = 1000;
        assert!(is_input(bwd(
            2,
            &params[2],
            StageInput::Act(&act),
            Upstream::Targets(&bad_targets)
        )));
        assert!(is_input(bwd(
            2,
            &params[2],
            StageInput::Act(&act),
            Upstream::Targets(&targets[..8])
        )));
        assert!(is_config(bwd(
            2,
            &params[2],
            StageInput::Act(&act),
            Upstream::Grad(&act)
        )));
        assert!(is_config(bwd(
            1,
            &params[1],
            StageInput::Act(&act),
            Upstream::Targets(&targets)
        )));
        assert!(is_input(bwd(
            1,
            &params[1],
            StageInput::Act(&act),
            Upstream::Grad(&wrong)
        )));
        assert!(is_input(bwd(
            0,
            &params[0],
            StageInput::Tokens(&big),
            Upstream::Grad(&act)
        )));
        assert!(
            bwd(
                2,
                &params[2],
                StageInput::Act(&act),
                Upstream::Targets(&targets)
            )
            .is_ok()
        );

        // AdamW: missing gradient or moment, mismatched shape, bad step.
        let g = backward::<Ad>(
            &cfg,
            1,
            &params[1],
            StageInput::Act(&act),
            Upstream::Grad(&act),
            &DEV,
        )
        .unwrap()
        .grads;
        let p = &params[1];
        assert!(adamw(&cfg, 1, p, p, p, &[&g]).is_ok());
        assert!(is_config(adamw(&cfg, 0, p, p, p, &[&g])));
        assert!(is_config(adamw(&cfg, 1, p, p, p, &[])));
        let mut g_missing = g.clone();
        g_missing.pop();
        assert!(is_input(adamw(&cfg, 1, p, p, p, &[&g, &g_missing])));
        assert!(is_input(adamw(&cfg, 1, p, &missing, p, &[&g])));
        assert!(is_input(adamw(&cfg, 1, p, p, &reshaped, &[&g])));
        let nan_lr = GptConfig {
            lr: f32::NAN,
            ..tiny()
        };
        assert!(is_config(adamw(&nan_lr, 1, p, p, p, &[&g])));

        // eval_loss: wrong token count, out-of-vocab token, wrong stage count.
        assert!(eval_loss::<Nd>(&cfg, &params, &rows, 2, &DEV).is_ok());
        assert!(is_input(eval_loss::<Nd>(
            &cfg,
            &params,
            &rows[..17],
            2,
            &DEV
        )));
        assert!(is_input(eval_loss::<Nd>(&cfg, &params, &rows, 3, &DEV)));
        assert!(is_input(eval_loss::<Nd>(&cfg, &params, &[], 0, &DEV)));
        let mut bad_rows = rows.clone();
        bad_rows[17] = 97;
        assert!(is_input(eval_loss::<Nd>(&cfg, &params, &bad_rows, 2, &DEV)));
        assert!(is_config(eval_loss::<Nd>(
            &cfg,
            &params[..2],
            &rows,
            2,
            &DEV
        )));
        assert!(is_input(eval_loss::<Nd>(
            &cfg,
            &[params[0].clone(), missing, params[2].clone()],
            &rows,
            2,
            &DEV
        )));
    }

    /// Wall time of one tail and one head backward at a GPT-2-vocabulary
    /// size: `cargo test -p locus-workloads --release -- --ignored --nocapture
    /// backward_timing`.
    #[test]
    #[ignore]
    fn backward_timing() {
        let cfg = GptConfig {
            vocab: 50304,
            d_model: 64,
            heads: 4,
            d_ff: 256,
            seq_len: 64,
            batch: 4,
            stages: 2,
            blocks_per_stage: 1,
            ..tiny()
        };
        let rows = random_rows(&cfg, 4, "timing");
        let (inputs, targets) = split_rows(&cfg, &rows);
        let params: Vec<Named> = (0..2).map(|s| init_stage(&cfg, s)).collect();
        let act = forward::<Nd>(&cfg, 0, &params[0], StageInput::Tokens(&inputs), &DEV).unwrap();
        for round in 0..3 {
            let t0 = std::time::Instant::now();
            let tail = backward::<Ad>(
                &cfg,
                1,
                &params[1],
                StageInput::Act(&act),
                Upstream::Targets(&targets),
                &DEV,
            )
            .unwrap();
            let t1 = std::time::Instant::now();
            let grad = tail.grad_input.unwrap();
            backward::<Ad>(
                &cfg,
                0,
                &params[0],
                StageInput::Tokens(&inputs),
                Upstream::Grad(&grad),
                &DEV,
            )
            .unwrap();
            let t2 = std::time::Instant::now();
            println!(
                "round {round}: tail backward {:.1} ms (loss {:.4}), head backward {:.1} ms",
                (t1 - t0).as_secs_f64() * 1e3,
                tail.loss.unwrap(),
                (t2 - t1).as_secs_f64() * 1e3
            );
        }
    }
}
