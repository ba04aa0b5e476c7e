//! The local smoke, run as a user runs it: one command, real processes, a
//! real bucket directory, and the score table it prints.

mod common;

use common::{smoke, weight};

// Runs with a misbehaving miner: tests/attacks.rs.

#[test]
fn honest_run_pays_every_miner_and_loss_falls() {
    let out = smoke(&["--steps", "3", "--miners", "4"]);
    assert!(out.status.success(), "honest smoke failed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let weights: Vec<f64> = (0..4).map(|i| weight(&stdout, i)).collect();
    assert!(weights.iter().all(|w| *w > 0.0), "{weights:?}");
    assert!(
        (weights.iter().sum::<f64>() - 1.0).abs() < 1e-3,
        "{weights:?}"
    );
    let losses: Vec<f32> = stdout
        .lines()
        .find_map(|l| l.strip_prefix("eval loss by step: "))
        .expect("loss line")
        .trim_matches(['[', ']'])
        .split(", ")
        .map(|v| v.parse().expect("loss"))
        .collect();
    assert_eq!(losses.len(), 3);
    assert!(
        losses.windows(2).all(|p| p[1] < p[0]),
        "eval loss must fall every step: {losses:?}"
    );
}

/// The gpt_pipe smoke, streamed stage to stage over real processes and a
/// real bucket directory, ends with exactly the parameters `locus train`
/// computes in one process from the same flags.
#[test]
fn gpt_pipe_smoke_equals_the_single_process_trainer() {
    let model = common::TINY_GPT;
    let mut args = vec!["--steps", "2", "--miners", "3"];
    args.extend(model);
    let out = smoke(&args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "gpt_pipe smoke failed:\n{stdout}");
    assert!(
        stdout.contains("held-out loss bars: corpus unigram entropy "),
        "{stdout}"
    );
    assert!(stdout.contains("final held-out loss "), "{stdout}");
    let trained = common::locus()
        .arg("train")
        .args(["--steps", "2"])
        .args(model)
        .output()
        .expect("running locus train");
    let train_out = String::from_utf8_lossy(&trained.stdout);
    assert!(trained.status.success(), "locus train failed:\n{train_out}");
    assert_eq!(
        common::fingerprint(&stdout),
        common::fingerprint(&train_out),
        "the distributed run and the trainer end with different parameters"
    );
}
