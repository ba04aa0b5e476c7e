//! The shipped corpus: tokenizing `data/corpus/shakespeare.txt` with the
//! GPT-2 BPE gives exactly `data/corpus/shakespeare.tokens.bin`, and the
//! facts the `gpt_pipe` workload relies on hold for it.

use std::fs;
use std::path::PathBuf;

use locus_workloads::gpt::tokens::{
    GPT2_VOCAB, Tokens, detokenize_gpt2, heldout_windows, tokenize_gpt2, train_windows,
    unigram_entropy,
};

/// The held-out share of the corpus.
const HELDOUT_FRACTION: f64 = 0.05;
/// A GPT-2 small context plus the shifted target.
const WINDOW: usize = 1025;

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../data/corpus")
}

#[test]
fn shipped_tokens_are_the_gpt2_encoding_of_the_shipped_text() {
    let dir = corpus_dir();
    let text = fs::read_to_string(dir.join("shakespeare.txt")).unwrap();
    let shipped = Tokens::read(&dir.join("shakespeare.tokens.bin"), GPT2_VOCAB).unwrap();
    let tokens = tokenize_gpt2(&text).unwrap();
    assert_eq!(tokens.len(), shipped.len(), "token count");
    assert!(tokens == shipped, "tokens differ from the shipped file");
    assert_eq!(tokens.digest(), shipped.digest());
    // The BPE is lossless: the tokens decode to the text.
    assert!(detokenize_gpt2(shipped.ids()).unwrap() == text);

    let n = shipped.len();
    let (train, heldout) = shipped.split(HELDOUT_FRACTION, WINDOW).unwrap();
    let h_train = unigram_entropy(&shipped.ids()[train.clone()]);
    let h_heldout = unigram_entropy(&shipped.ids()[heldout.clone()]);
    let distinct = {
        let mut ids = shipped.ids().to_vec();
        ids.sort_unstable();
        ids.dedup();
        ids.len()
    };
    println!("text: {} bytes", text.len());
    println!("tokens: {n} ({} bytes), {distinct} distinct ids", n * 4);
    println!("digest: {}", blake3::Hash::from(shipped.digest()).to_hex());
    println!("split: train {train:?}, held out {heldout:?}");
    println!("unigram entropy: train {h_train:.4} nats, held out {h_heldout:.4} nats");

    // Facts of this corpus; a change to the text or the tokenizer shows here.
    assert_eq!(n, 585_259, "token count");
    assert_eq!(
        blake3::Hash::from(shipped.digest()).to_hex().as_str(),
        "5a077ba7843a1d231b41522c1288f74cc2770d18ba63c82d25d01b2ff6dbd670"
    );
    assert_eq!(heldout.len(), (n as f64 * HELDOUT_FRACTION).ceil() as usize);
    assert_eq!(train.end, heldout.start);
    // Far more text than one window in either part.
    assert!(heldout.len() > 20 * WINDOW);
    // Bytes per token of English prose under GPT-2 BPE.
    let bytes_per_token = text.len() as f64 / n as f64;
    assert!((3.0..4.5).contains(&bytes_per_token), "{bytes_per_token}");
    // Unigram entropy of English in GPT-2 tokens is roughly 6-8 nats; the
    // held-out part (nearly all of The Tempest) is smaller, so lower.
    assert!((6.0..8.0).contains(&h_train), "{h_train}");
    assert!((5.5..8.0).contains(&h_heldout), "{h_heldout}");

    // Windows over the real split stay in their ranges.
    let w = train_windows(&shipped, train.clone(), 1, 0, 0, 8, WINDOW);
    assert_eq!(w.len(), 8 * WINDOW);
    let h = heldout_windows(&shipped, heldout.clone(), 16, WINDOW);
    assert_eq!(h.len(), 16 * WINDOW);
    assert_eq!(
        &h[..WINDOW],
        &shipped.ids()[heldout.start..heldout.start + WINDOW]
    );
    assert_eq!(
        &h[15 * WINDOW..],
        &shipped.ids()[heldout.end - WINDOW..heldout.end]
    );
}
