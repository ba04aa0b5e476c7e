//! Miners on one CPU backend (Burn flex), the validator on another
//! (ndarray), over real processes: the gpt_pipe smoke's honest results
//! differ in their bits from the validator's replays and still pass the
//! manifest's tolerance, and a corrupted activation is still caught.

mod common;

use std::process::Output;

const MINERS_ON_FLEX: (&str, &str) = ("LOCUS_DEVICES", "flex-cpu");

fn flex_smoke(extra: &[&str]) -> (Output, String) {
    let mut locus = common::locus();
    locus.env(MINERS_ON_FLEX.0, MINERS_ON_FLEX.1);
    let args = [
        &["--steps", "2", "--miners", "3"],
        &common::TINY_GPT[..],
        extra,
    ]
    .concat();
    let out = common::smoke_with(locus, &args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    (out, stdout)
}

#[test]
fn flex_miners_pass_an_ndarray_validator_and_a_cheat_among_them_is_caught() {
    let (out, honest) = flex_smoke(&[]);
    assert!(out.status.success(), "cross-backend smoke failed");
    for miner in 0..3 {
        assert!(common::weight(&honest, miner) > 0.0, "miner {miner} unpaid");
    }
    // The run's parameters are flex's, not what ndarray computes: the
    // validator's replays really ran on another backend than the miners.
    let ndarray = common::stdout_of(
        {
            let mut train = common::locus();
            train
                .arg("train")
                .args(["--steps", "2"])
                .args(common::TINY_GPT);
            train
        },
        "locus train",
    );
    assert_ne!(
        common::fingerprint(&honest),
        common::fingerprint(&ndarray),
        "the flex miners' run equals ndarray's bit for bit: nothing crossed backends"
    );

    let (out, cheated) = flex_smoke(&["--bad-miner-index", "0", "--fault-mode", "partial_corrupt"]);
    assert!(out.status.success(), "cross-backend attack smoke failed");
    assert!(cheated.contains("OK: miner 0 scored 0"), "{cheated}");
    assert!(cheated.contains("replay mismatch"), "{cheated}");
    assert_eq!(
        common::fingerprint(&cheated),
        common::fingerprint(&honest),
        "the cheat survived in the parameters"
    );
}
