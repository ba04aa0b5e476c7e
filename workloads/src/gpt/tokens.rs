//! Token files: the text a GPT trains on, as GPT-2 BPE token ids.
//!
//! A token file (`*.tokens.bin`) has the reference system's `tokens.bin`
//! layout: a raw array of little-endian int32 token ids, no header, so its
//! length is four times the token count. Every id must lie in `0..vocab`.
//!
//! The last part of a token file is held out for evaluation ([`Tokens::split`]).
//! A micro-batch trains on windows of `seq_len + 1` consecutive tokens drawn
//! from the training part by a seeded generator ([`train_windows`]), so a
//! validator replaying a job draws exactly the windows the miner drew; the
//! held-out windows are fixed ([`heldout_windows`]).

use std::fs;
use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::rng::SplitMix64;

/// The size of the GPT-2 vocabulary (tiktoken's `r50k_base`): ids `0..50257`,
/// where 50256 is `<|endoftext|>`.
pub const GPT2_VOCAB: u32 = 50257;

/// Bytes per token id in a token file.
pub const TOKEN_BYTES: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("cannot read token file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "token file length {len} bytes is not a multiple of {TOKEN_BYTES}: \
         {} trailing bytes at byte offset {}",
        len % TOKEN_BYTES,
        len - len % TOKEN_BYTES
    )]
    Length { len: usize },
    #[error(
        "token id {id} at byte offset {offset} (token {index}) is outside the vocabulary 0..{vocab}"
    )]
    OutOfVocab {
        /// Byte offset of the id in the file.
        offset: usize,
        /// Index of the token.
        index: usize,
        /// The id as the file's int32 reads.
        id: i64,
        vocab: u32,
    },
    #[error("token id {id} (token {index}) is not among the {size} ids of the run's vocabulary")]
    NotInVocabulary { index: usize, id: u32, size: usize },
    #[error("cannot split {len} tokens: {reason}")]
    Split { len: usize, reason: String },
    #[error("tokenizer: {0}")]
    Tokenizer(String),
}

/// A sequence of token ids, every one inside the vocabulary it was checked
/// against.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tokens {
    ids: Vec<u32>,
}

impl Tokens {
    /// Token ids checked against `vocab`.
    pub fn from_ids(ids: Vec<u32>, vocab: u32) -> Result<Tokens, TokenError> {
        if let Some(index) = ids.iter().position(|&id| id >= vocab) {
            return Err(TokenError::OutOfVocab {
                offset: index * TOKEN_BYTES,
                index,
                id: i64::from(ids[index]),
                vocab,
            });
        }
        Ok(Tokens { ids })
    }

    /// Parses the token file layout: little-endian int32 ids, no header.
    /// The length must be a multiple of 4 and every id in `0..vocab`
    /// (negative ids are rejected); errors name the byte offset.
    pub fn from_le_bytes(bytes: &[u8], vocab: u32) -> Result<Tokens, TokenError> {
        if !bytes.len().is_multiple_of(TOKEN_BYTES) {
            return Err(TokenError::Length { len: bytes.len() });
        }
        let mut ids = Vec::with_capacity(bytes.len() / TOKEN_BYTES);
        for (index, chunk) in bytes.chunks_exact(TOKEN_BYTES).enumerate() {
            let id = i32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
            match u32::try_from(id) {
                Ok(id) if id < vocab => ids.push(id),
                _ => {
                    return Err(TokenError::OutOfVocab {
                        offset: index * TOKEN_BYTES,
                        index,
                        id: i64::from(id),
                        vocab,
                    });
                }
            }
        }
        Ok(Tokens { ids })
    }

    /// Reads and checks a token file.
    pub fn read(path: &Path, vocab: u32) -> Result<Tokens, TokenError> {
        let bytes = fs::read(path).map_err(|source| TokenError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Tokens::from_le_bytes(&bytes, vocab)
    }

    /// The token file layout of these ids.
    pub fn to_le_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.ids.len() * TOKEN_BYTES);
        for id in &self.ids {
            out.extend_from_slice(&id.to_le_bytes());
        }
        out
    }

    /// BLAKE3 of [`Tokens::to_le_bytes`]: names a token file in a run manifest.
    pub fn digest(&self) -> [u8; 32] {
        let mut hasher = blake3::Hasher::new();
        for id in &self.ids {
            hasher.update(&id.to_le_bytes());
        }
        *hasher.finalize().as_bytes()
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    pub fn ids(&self) -> &[u32] {
        &self.ids
    }

    /// The distinct ids these tokens use, ascending: a compact vocabulary
    /// (a corpus rarely uses all of GPT-2's 50,257 ids; the shipped one
    /// uses about 14,000).
    pub fn distinct(&self) -> Vec<u32> {
        let mut ids = self.ids.clone();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// These tokens renumbered into `vocabulary` (ascending ids, as
    /// [`Tokens::distinct`] gives): token `t` becomes its index there.
    pub fn renumbered(&self, vocabulary: &[u32]) -> Result<Tokens, TokenError> {
        let mut ids = Vec::with_capacity(self.ids.len());
        for (index, &id) in self.ids.iter().enumerate() {
            match vocabulary.binary_search(&id) {
                Ok(model_id) => ids.push(model_id as u32),
                Err(_) => {
                    return Err(TokenError::NotInVocabulary {
                        index,
                        id,
                        size: vocabulary.len(),
                    });
                }
            }
        }
        Ok(Tokens { ids })
    }

    /// Training and held-out split: the last `heldout_fraction` of the tokens
    /// (rounded up, and at least enough for one window) is held out; the rest
    /// trains. Both parts must hold at least one window of `window` tokens.
    /// Returns `(train, heldout)`, adjacent ranges covering all tokens.
    pub fn split(
        &self,
        heldout_fraction: f64,
        window: usize,
    ) -> Result<(Range<usize>, Range<usize>), TokenError> {
        let len = self.ids.len();
        let fail = |reason: String| TokenError::Split { len, reason };
        if !(0.0..1.0).contains(&heldout_fraction) {
            return Err(fail(format!(
                "held-out fraction {heldout_fraction} is not in [0, 1)"
            )));
        }
        if window == 0 {
            return Err(fail("the window is empty".into()));
        }
        let heldout = ((len as f64 * heldout_fraction).ceil() as usize).max(window);
        if heldout > len || len - heldout < window {
            return Err(fail(format!(
                "{heldout} held out leaves fewer than one window of {window} to train on"
            )));
        }
        let cut = len - heldout;
        Ok((0..cut, cut..len))
    }
}

/// A uniform draw from `0..n` (`n > 0`) without modulo bias: 64-bit draws at
/// or above the largest multiple of `n` not above `u64::MAX` are rejected
/// and drawn again, then the accepted draw is reduced modulo `n`. Replays
/// depend on this exact procedure.
fn uniform_below(rng: &mut SplitMix64, n: u64) -> u64 {
    assert!(n > 0);
    let limit = u64::MAX - u64::MAX % n;
    loop {
        let x = rng.next_u64();
        if x < limit {
            return x % n;
        }
    }
}

/// The `batch` windows of `window` (= seq_len + 1) tokens micro-batch
/// `micro_batch` of step `step` trains on, flattened row-major
/// `[batch, window]`.
///
/// Start offsets are drawn uniformly from the training range (every start
/// whose window fits inside `train`), one after another from a single
/// generator `SplitMix64::derive(seed, "gpt-batch", &[step, micro_batch])`,
/// each with the rejection rule of `uniform_below`. Windows may overlap.
///
/// Panics if `train` does not lie inside the tokens or is shorter than one
/// window (which [`Tokens::split`] rules out).
pub fn train_windows(
    tokens: &Tokens,
    train: Range<usize>,
    seed: u64,
    step: u32,
    micro_batch: u32,
    batch: usize,
    window: usize,
) -> Vec<u32> {
    assert!(
        train.start <= train.end && train.end <= tokens.len(),
        "training range {train:?} is outside the {} tokens",
        tokens.len()
    );
    assert!(
        window > 0 && train.len() >= window,
        "training range {train:?} holds no window of {window} tokens"
    );
    let starts = (train.len() - window + 1) as u64;
    let mut rng = SplitMix64::derive(
        seed,
        "gpt-batch",
        &[u64::from(step), u64::from(micro_batch)],
    );
    let mut out = Vec::with_capacity(batch * window);
    for _ in 0..batch {
        let start = train.start + uniform_below(&mut rng, starts) as usize;
        out.extend_from_slice(&tokens.ids[start..start + window]);
    }
    out
}

/// `n` fixed held-out windows of `window` tokens, evenly spaced over the
/// held-out range, flattened row-major `[n, window]`.
///
/// Window `i` starts at `heldout.start + floor(i * (len - window) / (n - 1))`
/// (`len` the range's length; a single window starts at the range's start),
/// so the first window starts at the start of the range and the last ends
/// at its end. The windows do not overlap whenever `n * window <= len`.
///
/// Panics if `heldout` does not lie inside the tokens or is shorter than one
/// window.
pub fn heldout_windows(
    tokens: &Tokens,
    heldout: Range<usize>,
    n: usize,
    window: usize,
) -> Vec<u32> {
    assert!(
        heldout.start <= heldout.end && heldout.end <= tokens.len(),
        "held-out range {heldout:?} is outside the {} tokens",
        tokens.len()
    );
    assert!(
        window > 0 && heldout.len() >= window,
        "held-out range {heldout:?} holds no window of {window} tokens"
    );
    let span = (heldout.len() - window) as u128;
    let mut out = Vec::with_capacity(n * window);
    for i in 0..n {
        let offset = if n == 1 {
            0
        } else {
            (i as u128 * span / (n as u128 - 1)) as usize
        };
        let start = heldout.start + offset;
        out.extend_from_slice(&tokens.ids[start..start + window]);
    }
    out
}

/// Unigram entropy (nats per token) of a token range: the loss a model that
/// knows only token frequencies reaches; the bar the trained model must beat.
/// Zero for an empty range. Summed in id order, so it is deterministic.
pub fn unigram_entropy(ids: &[u32]) -> f64 {
    let Some(&max) = ids.iter().max() else {
        return 0.0;
    };
    let mut counts = vec![0u64; max as usize + 1];
    for &id in ids {
        counts[id as usize] += 1;
    }
    let total = ids.len() as f64;
    -counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / total;
            p * p.ln()
        })
        .sum::<f64>()
}

/// Encodes `text` with the GPT-2 BPE (tiktoken's `r50k_base`) as ordinary
/// text: a literal `<|endoftext|>` in `text` is encoded as text, not as the
/// special token.
#[cfg(feature = "tokenizer")]
pub fn tokenize_gpt2(text: &str) -> Result<Tokens, TokenError> {
    let bpe = tiktoken_rs::r50k_base().map_err(|e| TokenError::Tokenizer(e.to_string()))?;
    Tokens::from_ids(bpe.encode_ordinary(text), GPT2_VOCAB)
}

/// Decodes GPT-2 BPE token ids back to text (the inverse of [`tokenize_gpt2`]).
#[cfg(feature = "tokenizer")]
pub fn detokenize_gpt2(ids: &[u32]) -> Result<String, TokenError> {
    let bpe = tiktoken_rs::r50k_base().map_err(|e| TokenError::Tokenizer(e.to_string()))?;
    bpe.decode(ids)
        .map_err(|e| TokenError::Tokenizer(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(n: u32) -> Tokens {
        Tokens::from_ids((0..n).collect(), n.max(1)).unwrap()
    }

    #[test]
    fn round_trip_through_bytes_and_file() {
        let t = Tokens::from_ids(vec![0, 1, 50256, 256, 7], GPT2_VOCAB).unwrap();
        let bytes = t.to_le_bytes();
        assert_eq!(bytes.len(), 20);
        assert_eq!(&bytes[8..12], &[0x50, 0xC4, 0x00, 0x00]);
        assert_eq!(Tokens::from_le_bytes(&bytes, GPT2_VOCAB).unwrap(), t);
        assert_eq!(t.digest(), *blake3::hash(&bytes).as_bytes());
        assert_eq!(t.len(), 5);
        assert_eq!(t.ids(), &[0, 1, 50256, 256, 7]);

        let dir = std::env::temp_dir().join(format!("locus-tokens-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.tokens.bin");
        fs::write(&path, &bytes).unwrap();
        assert_eq!(Tokens::read(&path, GPT2_VOCAB).unwrap(), t);
        fs::remove_dir_all(&dir).unwrap();

        let missing = Tokens::read(Path::new("/nonexistent/x.tokens.bin"), GPT2_VOCAB);
        let msg = missing.unwrap_err().to_string();
        assert!(msg.contains("/nonexistent/x.tokens.bin"), "{msg}");

        assert!(Tokens::from_le_bytes(&[], 10).unwrap().is_empty());
    }

    #[test]
    fn renumbers_into_the_distinct_ids() {
        let t = Tokens::from_ids(vec![50256, 7, 256, 7, 0], GPT2_VOCAB).unwrap();
        let vocabulary = t.distinct();
        assert_eq!(vocabulary, vec![0, 7, 256, 50256]);
        let model = t.renumbered(&vocabulary).unwrap();
        assert_eq!(model.ids(), &[3, 1, 2, 1, 0]);
        let back: Vec<u32> = model
            .ids()
            .iter()
            .map(|&i| vocabulary[i as usize])
            .collect();
        assert_eq!(back, t.ids());
        let err = t.renumbered(&[0, 7, 256]).unwrap_err().to_string();
        assert!(err.contains("50256") && err.contains("token 0"), "{err}");
    }

    #[test]
    fn rejects_bad_lengths_and_ids_naming_the_offset() {
        let err = Tokens::from_le_bytes(&[1, 0, 0, 0, 2, 0], 10).unwrap_err();
        assert!(matches!(err, TokenError::Length { len: 6 }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains("2 trailing bytes at byte offset 4"), "{msg}");

        let mut bytes = Tokens::from_ids(vec![1, 2, 3], 10).unwrap().to_le_bytes();
        bytes.extend_from_slice(&10u32.to_le_bytes());
        let err = Tokens::from_le_bytes(&bytes, 10).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("token id 10 at byte offset 12 (token 3)") && msg.contains("0..10"),
            "{msg}"
        );

        let mut bytes = 5i32.to_le_bytes().to_vec();
        bytes.extend_from_slice(&(-1i32).to_le_bytes());
        let msg = Tokens::from_le_bytes(&bytes, 10).unwrap_err().to_string();
        assert!(msg.contains("token id -1 at byte offset 4"), "{msg}");

        let msg = Tokens::from_ids(vec![0, 9, 11], 10)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("token id 11 at byte offset 8"), "{msg}");
    }

    #[test]
    fn split_sizes() {
        let t = tokens(1000);
        assert_eq!(t.split(0.05, 10).unwrap(), (0..950, 950..1000));
        // Rounded up.
        assert_eq!(t.split(0.0101, 5).unwrap(), (0..989, 989..1000));
        // At least one window is held out.
        assert_eq!(t.split(0.0, 65).unwrap(), (0..935, 935..1000));
        assert_eq!(t.split(0.01, 65).unwrap(), (0..935, 935..1000));
        // Both parts hold a window.
        assert_eq!(t.split(0.5, 500).unwrap(), (0..500, 500..1000));
        assert!(t.split(0.5, 501).is_err());
        assert!(t.split(0.95, 100).is_err());
        assert!(t.split(1.0, 1).is_err());
        assert!(t.split(-0.1, 1).is_err());
        assert!(t.split(f64::NAN, 1).is_err());
        assert!(t.split(0.1, 0).is_err());
        let msg = tokens(10).split(0.05, 8).unwrap_err().to_string();
        assert!(msg.contains("cannot split 10 tokens"), "{msg}");
    }

    #[test]
    fn train_windows_stay_inside_and_are_deterministic() {
        let t = tokens(500);
        let train = 100..300;
        let (batch, window) = (64, 17);
        let w = train_windows(&t, train.clone(), 7, 3, 1, batch, window);
        assert_eq!(w.len(), batch * window);
        for row in w.chunks(window) {
            // Ids equal positions here, so each row is a run of consecutive
            // positions inside the training range.
            assert!(row[0] as usize >= train.start);
            assert!((*row.last().unwrap() as usize) < train.end);
            assert!(row.windows(2).all(|p| p[1] == p[0] + 1));
        }
        assert_eq!(w, train_windows(&t, train.clone(), 7, 3, 1, batch, window));
        assert_ne!(w, train_windows(&t, train.clone(), 7, 3, 2, batch, window));
        assert_ne!(w, train_windows(&t, train.clone(), 7, 4, 1, batch, window));
        assert_ne!(w, train_windows(&t, train.clone(), 8, 3, 1, batch, window));
        // A smaller batch is a prefix of a larger one.
        assert_eq!(
            train_windows(&t, train.clone(), 7, 3, 1, 5, window),
            w[..5 * window]
        );

        // A range exactly one window long always gives that window, and
        // every start of a small range gets drawn.
        let exact = train_windows(&t, 40..57, 1, 0, 0, 3, 17);
        assert_eq!(
            exact,
            [(40..57).collect::<Vec<u32>>().as_slice(); 3].concat()
        );
        let starts: std::collections::BTreeSet<u32> = train_windows(&t, 10..30, 1, 0, 0, 400, 17)
            .chunks(17)
            .map(|r| r[0])
            .collect();
        assert_eq!(starts, (10..=13).collect());
    }

    #[test]
    #[should_panic(expected = "holds no window")]
    fn train_windows_reject_a_short_range() {
        train_windows(&tokens(100), 0..10, 1, 0, 0, 1, 11);
    }

    #[test]
    fn heldout_windows_are_evenly_spaced_inside_the_range() {
        let t = tokens(1000);
        let starts = |heldout: Range<usize>, n: usize, window: usize| -> Vec<u32> {
            let w = heldout_windows(&t, heldout.clone(), n, window);
            assert_eq!(w.len(), n * window);
            for row in w.chunks(window) {
                assert!(row[0] as usize >= heldout.start);
                assert!((*row.last().unwrap() as usize) < heldout.end);
                assert!(row.windows(2).all(|p| p[1] == p[0] + 1));
            }
            w.chunks(window).map(|r| r[0]).collect()
        };
        // Non-overlapping, first at the start, last ending at the end.
        assert_eq!(starts(900..1000, 4, 10), [900, 930, 960, 990]);
        assert_eq!(
            starts(900..1000, 10, 10),
            (900..1000).step_by(10).collect::<Vec<_>>()
        );
        // Overlapping only when the range is too short.
        assert_eq!(starts(900..1000, 3, 40), [900, 930, 960]);
        assert_eq!(starts(900..1000, 1, 10), [900]);
        assert_eq!(starts(900..910, 2, 10), [900, 900]);
        assert!(heldout_windows(&t, 900..1000, 0, 10).is_empty());
        assert_eq!(
            heldout_windows(&t, 900..1000, 4, 10),
            heldout_windows(&t, 900..1000, 4, 10)
        );
    }

    #[test]
    fn entropy_of_known_distributions() {
        assert_eq!(unigram_entropy(&[]), 0.0);
        assert_eq!(unigram_entropy(&[5, 5, 5]), 0.0);
        let uniform: Vec<u32> = (0..8).flat_map(|i| [i * 1000, i * 1000]).collect();
        assert!((unigram_entropy(&uniform) - 8f64.ln()).abs() < 1e-12);
        // p = (1/2, 1/4, 1/4): H = 1.5 ln 2.
        let h = unigram_entropy(&[3, 3, 1, 7]);
        assert!((h - 1.5 * 2f64.ln()).abs() < 1e-12, "{h}");
        // Order does not matter.
        assert_eq!(unigram_entropy(&[7, 1, 3, 3]), h);
    }

    #[cfg(feature = "tokenizer")]
    #[test]
    fn gpt2_encodes_known_text() {
        // "Hello world" in GPT-2 BPE.
        let t = tokenize_gpt2("Hello world").unwrap();
        assert_eq!(t.ids(), &[15496, 995]);
        // The special token is not produced from ordinary text.
        let t = tokenize_gpt2("a<|endoftext|>b").unwrap();
        assert!(!t.ids().contains(&50256));
        assert_eq!(detokenize_gpt2(t.ids()).unwrap(), "a<|endoftext|>b");
    }
}
