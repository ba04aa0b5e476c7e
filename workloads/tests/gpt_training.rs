//! Runs the gpt_pipe workload's DAG in one process on the shipped corpus:
//! the held-out loss falls, and two runs agree bit for bit.

mod common;

use locus_protocol::pb;
use locus_workloads::gpt::tokens::Tokens;
use locus_workloads::gpt::{self, GptPipe, TokenData};
use locus_workloads::trainer::Trainer;
use locus_workloads::{Device, Workload, WorkloadError};

use common::{corpus, owner, tiny};

#[test]
fn gpt_pipe_trains_and_repeats_bitwise() {
    // Without the output bias the model starts uniform, so four steps of a
    // tiny model show a large fall; the bias's unigram start is checked in
    // `a_compacted_vocabulary_maps_windows_back_to_the_corpus`.
    let pipe = owner(pb::GptConfig {
        output_bias: false,
        ..tiny()
    });
    let train = || {
        let mut trainer = Trainer::new(&pipe, Device::Cpu);
        let losses: Vec<(f32, f32)> = (0..4)
            .map(|step| {
                let l = trainer.step(step).unwrap();
                (l.train_loss.unwrap(), l.eval_loss.unwrap())
            })
            .collect();
        let params: Vec<pb::TensorArtifact> =
            trainer.params_after(3).into_iter().cloned().collect();
        (losses, params)
    };
    let (losses, params) = train();
    println!("(train, eval) losses: {losses:?}");
    assert_eq!(params.len(), 3, "one parameter artifact per stage");
    let uniform = (pipe.config().vocab as f32).ln();
    assert!(losses[0].0 > uniform - 0.5, "{losses:?}");
    assert!(
        losses[3].1 < losses[0].1 - 0.2,
        "the held-out loss did not fall: {losses:?}"
    );
    assert_eq!(train(), (losses, params), "a second run differs");
}

#[test]
fn the_owner_writes_windows_only_with_the_token_file() {
    let cfg = pb::GptConfig {
        tokens_digest: vec![1; 32],
        ..tiny()
    };
    let miner = GptPipe::new(cfg).unwrap();
    assert!(matches!(
        miner.owner_artifact(&gpt::batch_id(0, 0)),
        Err(WorkloadError::Config(_))
    ));
    // Initial parameters need no data, but for the tail's output bias,
    // which starts at the token counts.
    assert!(miner.owner_artifact(&gpt::init_id(1)).is_ok());
    assert!(matches!(
        miner.owner_artifact(&gpt::init_id(2)),
        Err(WorkloadError::Config(_))
    ));
    for bad in [
        "init-p3",
        "init-p01",
        "batch-s00000-m02",
        "batch-s0-m00",
        "x",
    ] {
        assert!(
            matches!(
                owner(tiny()).owner_artifact(bad),
                Err(WorkloadError::UnknownOwnerArtifact(_))
            ),
            "{bad}"
        );
    }
    let pipe = owner(tiny());
    let batch = pipe.owner_artifact(&gpt::batch_id(5, 1)).unwrap();
    assert_eq!(batch[0].shape, vec![2, 17]);
    assert_eq!(batch, pipe.owner_artifact(&gpt::batch_id(5, 1)).unwrap());
    assert_ne!(batch, pipe.owner_artifact(&gpt::batch_id(5, 0)).unwrap());
}

/// A compacted vocabulary: the model has one row per id the corpus uses,
/// the owner's windows carry indices into it that map back to the corpus's
/// own tokens, and the export names the GPT-2 id of every row.
#[test]
fn a_compacted_vocabulary_maps_windows_back_to_the_corpus() {
    let tokens = Tokens::read(&corpus(), tiny().vocab).expect("the shipped corpus");
    let cfg = gpt::with_compact_vocabulary(tiny(), &tokens);
    assert_eq!(cfg.vocab as usize, cfg.token_ids.len());
    assert!(
        (10_000..20_000).contains(&cfg.vocab),
        "the corpus uses {} ids",
        cfg.vocab
    );
    let data = TokenData::new(tokens.clone(), &cfg).unwrap();
    let (heldout, train) = (data.heldout.clone(), data.train.clone());
    let pipe = GptPipe::for_owner(cfg.clone(), data).unwrap();
    // The run manifest still names the corpus itself.
    assert_eq!(pipe.config().tokens_digest, tokens.digest().to_vec());
    let windows = pipe.owner_artifact(gpt::HELDOUT).unwrap();
    let model_ids: Vec<u32> = windows[0]
        .data
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]) as u32)
        .collect();
    assert!(model_ids.iter().all(|&id| id < cfg.vocab));
    let window = cfg.seq_len as usize + 1;
    let gpt2: Vec<u32> = model_ids[..window]
        .iter()
        .map(|&id| cfg.token_ids[id as usize])
        .collect();
    assert_eq!(gpt2, tokens.ids()[heldout.start..heldout.start + window]);
    // Training runs on the small vocabulary.
    let mut trainer = Trainer::new(&pipe, Device::Cpu);
    // The owner starts the output bias at the training split's token
    // frequencies, so the first loss is far below a uniform guess's.
    let loss = trainer.step(0).unwrap().train_loss.unwrap();
    assert!(loss < (cfg.vocab as f32).ln() - 1.5, "{loss}");
    let init = pipe.owner_artifact(&gpt::init_id(cfg.stages - 1)).unwrap();
    let bias = init.iter().find(|t| t.name == gpt::model::LM_BIAS);
    let bias: Vec<f32> = bias
        .expect("the tail has an output bias")
        .data
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let model_ids = tokens.renumbered(&cfg.token_ids).unwrap();
    let want = gpt::model::unigram_bias(&model_ids.ids()[train], cfg.vocab as usize);
    assert_eq!(bias, want);
    let exported = pipe
        .export(
            &trainer
                .params_after(0)
                .into_iter()
                .cloned()
                .collect::<Vec<_>>(),
        )
        .unwrap();
    assert_eq!(
        exported.ids,
        vec![(gpt::TOKEN_IDS.to_string(), cfg.token_ids.clone())]
    );
    let shape = |name: &str| {
        let t = exported.tensors.iter().find(|t| t.name == name);
        t.expect("exported").shape.clone()
    };
    assert_eq!(shape("tok_emb"), vec![u64::from(cfg.vocab), 16]);
    assert_eq!(shape("lm_head"), vec![16, u64::from(cfg.vocab)]);

    // A manifest whose table does not match its vocabulary is refused.
    for token_ids in [vec![5, 3], vec![3, 3], vec![1, 2, 3], vec![0, u32::MAX]] {
        let bad = pb::GptConfig {
            vocab: 2,
            token_ids,
            ..tiny()
        };
        assert!(
            matches!(GptPipe::new(bad.clone()), Err(WorkloadError::Config(_))),
            "{:?}",
            bad.token_ids
        );
    }
    // A corpus id outside the owner's table is refused with its name.
    let data = TokenData::new(tokens.clone(), &cfg).unwrap();
    let short = pb::GptConfig {
        vocab: 2,
        token_ids: vec![0, 1],
        ..cfg
    };
    let err = GptPipe::for_owner(short, data).err().expect("refused");
    assert!(err.to_string().contains("token"), "{err}");
}
