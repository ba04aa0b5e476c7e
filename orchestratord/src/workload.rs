//! The owner's choice of workload on the command line, and the one place
//! that maps a workload name to its implementation with the owner's data.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use locus_workloads::gpt::{self, GptPipe, TokenData, tokens::Tokens};
use locus_workloads::{Workload, mlp};

/// The corpus this repository ships (see `data/corpus/README.md`): GPT-2
/// BPE tokens of 14 Shakespeare plays, the default `gpt_pipe` data.
pub const SHIPPED_TOKENS: &[u8] = include_bytes!("../../data/corpus/shakespeare.tokens.bin");

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum WorkloadName {
    /// Round-style teacher/student MLP jobs.
    MlpRound,
    /// A GPT trained pipeline-parallel across miners on GPT-2 BPE tokens.
    GptPipe,
}

/// gpt_pipe: the losses a held-out loss is measured against (nats per
/// token).
#[derive(Clone, Copy, Debug)]
pub struct LossBars {
    /// Unigram entropy of the whole token file: the bar a trained model's
    /// held-out loss must get below.
    pub corpus_entropy: f64,
    /// The held-out split's own unigram entropy: what knowing its
    /// frequencies in hindsight would score.
    pub heldout_entropy: f64,
    /// The held-out loss of a model that knows only the training split's
    /// token frequencies (the untrained model with the owner's output bias).
    pub frequency_model: f64,
}

impl LossBars {
    /// The lines `locus train` and the smoke print after the last step.
    pub fn report(&self, final_eval_loss: Option<f32>) -> String {
        let mut out = format!(
            "held-out loss bars: corpus unigram entropy {:.4} nats; a model that knows only the training split's token frequencies scores {:.4} on the held-out split, whose own unigram entropy is {:.4}",
            self.corpus_entropy, self.frequency_model, self.heldout_entropy
        );
        if let Some(loss) = final_eval_loss {
            let verdict = if f64::from(loss) < self.corpus_entropy {
                "below"
            } else {
                "NOT below"
            };
            out.push_str(&format!(
                "\nfinal held-out loss {loss:.4}: {verdict} the corpus's unigram entropy"
            ));
        }
        out
    }
}

/// What the run trains: shared by `orchestratord` and `locus local-smoke`.
#[derive(Args, Clone, Debug)]
pub struct WorkloadArgs {
    /// The workload: `mlp_round` or `gpt_pipe`.
    #[arg(long, env = "LOCUS_WORKLOAD", value_enum, default_value = "mlp_round")]
    pub workload: WorkloadName,
    /// Seed for data order and initial weights.
    #[arg(long, env = "LOCUS_SEED", default_value_t = 1234)]
    pub seed: u64,
    /// Micro-batches per step, 1 to 64.
    #[arg(
        long,
        env = "LOCUS_MICRO_BATCHES",
        value_parser = locus_daemon::limits::micro_batches()
    )]
    pub micro_batches: Option<u32>,
    /// mlp_round: replicas per micro-batch (each an independent inner job), 1 to 64.
    #[arg(long, env = "LOCUS_REPLICAS", default_value_t = 2, value_parser = locus_daemon::limits::replicas())]
    pub replicas: u32,
    /// gpt_pipe: an int32 little-endian GPT-2 token file (the `tokens.bin`
    /// layout); default: the shipped Shakespeare corpus. The last 5 % is
    /// held out for evaluation.
    #[arg(long, env = "LOCUS_TOKENS", value_name = "FILE")]
    pub tokens: Option<PathBuf>,
    /// gpt_pipe: pipeline stages (one miner job per stage and micro-batch).
    #[arg(long, env = "LOCUS_STAGES", default_value_t = 4)]
    pub stages: u32,
    /// gpt_pipe: transformer blocks per stage.
    #[arg(long, env = "LOCUS_BLOCKS_PER_STAGE", default_value_t = 1)]
    pub blocks_per_stage: u32,
    /// gpt_pipe: model width.
    #[arg(long, env = "LOCUS_D_MODEL", default_value_t = 64)]
    pub d_model: u32,
    /// gpt_pipe: attention heads (must divide --d-model).
    #[arg(long, env = "LOCUS_HEADS", default_value_t = 4)]
    pub heads: u32,
    /// gpt_pipe: feed-forward width.
    #[arg(long, env = "LOCUS_D_FF", default_value_t = 172)]
    pub d_ff: u32,
    /// gpt_pipe: tokens per sequence.
    #[arg(long, env = "LOCUS_SEQ_LEN", default_value_t = 64)]
    pub seq_len: u32,
    /// gpt_pipe: sequences per micro-batch.
    #[arg(long, env = "LOCUS_BATCH", default_value_t = 4)]
    pub batch: u32,
    /// gpt_pipe: give the model all 50,304 GPT-2 ids (the reference's
    /// layout) instead of only the ids the token file uses.
    #[arg(long, env = "LOCUS_FULL_VOCAB")]
    pub full_vocab: bool,
    /// gpt_pipe: AdamW learning rate.
    #[arg(long, env = "LOCUS_LR", default_value_t = 2.5e-3)]
    pub lr: f32,
}

impl WorkloadArgs {
    /// The workload these arguments describe, with the owner's data.
    pub fn build(&self) -> anyhow::Result<Arc<dyn Workload>> {
        match self.workload {
            WorkloadName::MlpRound => {
                let mut cfg = mlp::default_config(self.seed);
                cfg.micro_batches = self.micro_batches.unwrap_or(2);
                cfg.replicas = self.replicas;
                Ok(Arc::new(mlp::MlpRound::new(cfg)?))
            }
            WorkloadName::GptPipe => {
                let cfg = locus_protocol::pb::GptConfig {
                    stages: self.stages,
                    blocks_per_stage: self.blocks_per_stage,
                    d_model: self.d_model,
                    heads: self.heads,
                    d_ff: self.d_ff,
                    seq_len: self.seq_len,
                    batch: self.batch,
                    micro_batches: self.micro_batches.unwrap_or(4),
                    lr: self.lr,
                    ..gpt::default_config(self.seed)
                };
                let tokens = self.tokens(cfg.vocab)?;
                let cfg = if self.full_vocab {
                    cfg
                } else {
                    gpt::with_compact_vocabulary(cfg, &tokens)
                };
                let data = TokenData::new(tokens, &cfg)?;
                Ok(Arc::new(GptPipe::for_owner(cfg, data)?))
            }
        }
    }

    /// gpt_pipe: the losses a trained model's held-out loss is measured
    /// against, from the owner's token file.
    pub fn loss_bars(&self) -> anyhow::Result<Option<LossBars>> {
        if self.workload != WorkloadName::GptPipe {
            return Ok(None);
        }
        let cfg = locus_protocol::pb::GptConfig {
            seq_len: self.seq_len,
            ..gpt::default_config(self.seed)
        };
        let tokens = self.tokens(cfg.vocab)?;
        let data = TokenData::new(tokens.clone(), &cfg)?;
        let ids = data.tokens.ids();
        let (train, heldout) = (&ids[data.train.clone()], &ids[data.heldout.clone()]);
        // What the owner's output bias predicts before any training: the
        // training split's smoothed frequencies over the model's vocabulary.
        let model = gpt::with_compact_vocabulary(cfg.clone(), &tokens);
        let (train_ids, heldout_ids, vocab) = if self.full_vocab {
            (train.to_vec(), heldout.to_vec(), cfg.vocab)
        } else {
            let renumbered = tokens.renumbered(&model.token_ids)?;
            let ids = renumbered.ids();
            (
                ids[data.train.clone()].to_vec(),
                ids[data.heldout.clone()].to_vec(),
                model.vocab,
            )
        };
        let bias = gpt::model::unigram_bias(&train_ids, vocab as usize);
        let frequency_model = heldout_ids
            .iter()
            .map(|&id| -f64::from(bias[id as usize]))
            .sum::<f64>()
            / heldout_ids.len().max(1) as f64;
        Ok(Some(LossBars {
            corpus_entropy: gpt::tokens::unigram_entropy(ids),
            heldout_entropy: gpt::tokens::unigram_entropy(heldout),
            frequency_model,
        }))
    }

    fn tokens(&self, vocab: u32) -> anyhow::Result<Tokens> {
        Ok(match &self.tokens {
            Some(path) => Tokens::read(path, vocab)
                .with_context(|| format!("reading the token file {}", path.display()))?,
            None => Tokens::from_le_bytes(SHIPPED_TOKENS, vocab).context("the shipped corpus")?,
        })
    }

    /// The same arguments as command-line flags, for a child orchestrator.
    pub fn to_flags(&self) -> Vec<String> {
        let mut flags = vec![
            "--workload".to_string(),
            self.workload
                .to_possible_value()
                .map(|v| v.get_name().to_string())
                .unwrap_or_default(),
            "--seed".into(),
            self.seed.to_string(),
            "--replicas".into(),
            self.replicas.to_string(),
        ];
        if let Some(m) = self.micro_batches {
            flags.extend(["--micro-batches".into(), m.to_string()]);
        }
        if let Some(path) = &self.tokens {
            flags.extend(["--tokens".into(), path.display().to_string()]);
        }
        for (flag, value) in [
            ("--stages", self.stages),
            ("--blocks-per-stage", self.blocks_per_stage),
            ("--d-model", self.d_model),
            ("--heads", self.heads),
            ("--d-ff", self.d_ff),
            ("--seq-len", self.seq_len),
            ("--batch", self.batch),
        ] {
            flags.extend([flag.to_string(), value.to_string()]);
        }
        flags.extend(["--lr".into(), self.lr.to_string()]);
        if self.full_vocab {
            flags.push("--full-vocab".into());
        }
        flags
    }
}
