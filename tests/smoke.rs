//! The local smoke, run as a user runs it: one command, real processes, a
//! real bucket directory, and the score table it prints.

mod common;

use common::{smoke, weight};

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

fn adversarial(mode: &str, sample_rate: &str, steps: &str) {
    let out = smoke(&[
        "--steps",
        steps,
        "--miners",
        "4",
        "--bad-miner-index",
        "0",
        "--fault-mode",
        mode,
        "--sample-rate",
        sample_rate,
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{mode}: smoke did not end as expected"
    );
    assert_eq!(
        weight(&stdout, 0),
        0.0,
        "{mode}: the cheater must get nothing"
    );
    for i in 1..4 {
        assert!(
            weight(&stdout, i) > 0.0,
            "{mode}: honest miner {i} must be paid"
        );
    }
    assert!(
        stdout.contains("why 0: failed verdict"),
        "{mode}: the table must say why"
    );
}

#[test]
fn partial_corrupt_is_caught_at_full_sampling() {
    adversarial("partial_corrupt", "1.0", "1");
}

#[test]
fn wrong_output_is_caught() {
    adversarial("wrong_output", "1.0", "1");
}

#[test]
fn skip_compute_is_caught() {
    adversarial("skip_compute", "1.0", "1");
}

/// At the default rate (0.25) the cheater does ~2.5 jobs a step; over 12
/// steps it escapes every sample with probability about 0.75^30 ≈ 2e-4.
#[test]
fn partial_corrupt_is_caught_at_the_default_rate_over_many_steps() {
    adversarial("partial_corrupt", "0.25", "12");
}
