//! The small gpt_pipe model and the shipped corpus the workload tests share.
#![allow(dead_code)]

use std::path::PathBuf;

use locus_protocol::pb;
use locus_workloads::gpt::tokens::Tokens;
use locus_workloads::gpt::{self, GptPipe, TokenData};

pub fn corpus() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../data/corpus/shakespeare.tokens.bin")
}

pub fn tiny() -> pb::GptConfig {
    pb::GptConfig {
        d_model: 16,
        heads: 2,
        d_ff: 32,
        seq_len: 16,
        batch: 2,
        stages: 3,
        micro_batches: 2,
        eval_sequences: 4,
        lr: 1e-2,
        ..gpt::default_config(3)
    }
}

pub fn owner(cfg: pb::GptConfig) -> GptPipe {
    let tokens = Tokens::read(&corpus(), cfg.vocab).expect("the shipped corpus");
    let data = TokenData::new(tokens, &cfg).unwrap();
    GptPipe::for_owner(cfg, data).unwrap()
}
