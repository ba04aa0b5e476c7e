//! Bittensor wallets: where btcli keeps a hotkey, and the BIP39 recovery
//! phrase behind it.
//!
//! A wallet is a directory `PATH/NAME` (btcli's `--wallet.path`, default
//! `~/.bittensor/wallets`, and `--wallet.name`) whose hotkeys are JSON files
//! `hotkeys/HOTKEY` (`--wallet.hotkey`). [`hotkey_file`] finds one, so every
//! binary that takes a key takes the flags operators already type.
//!
//! A phrase turns into a key the way Substrate's `Pair::from_phrase` (and so
//! the Bittensor SDK's `Keypair.create_from_mnemonic`) does it: the phrase's
//! BIP39 entropy, not the phrase text, goes through PBKDF2-HMAC-SHA512 with
//! the salt `"mnemonic" + password` and 2048 rounds, and the first 32 bytes of
//! the result are the ED25519 seed. A phrase written down from `locus keygen`
//! restores the same SS58 address in btcli, and the other way round.

use std::path::{Path, PathBuf};

use hmac::{Hmac, KeyInit as _, Mac as _};
use sha2::Sha512;

use crate::keys::{KeyError, Keypair};

/// btcli's default `--wallet.path`.
pub const DEFAULT_WALLETS_DIR: &str = "~/.bittensor/wallets";

/// The hotkey file of wallet `name`, hotkey `hotkey` under `wallets` (`~`
/// at its start stands for `$HOME`). Names are single path components, as
/// btcli makes them.
pub fn hotkey_file(wallets: &str, name: &str, hotkey: &str) -> Result<PathBuf, KeyError> {
    for (what, value) in [("wallet name", name), ("hotkey name", hotkey)] {
        let single = Path::new(value).components().count() == 1
            && !matches!(value, "" | "." | "..")
            && !value.contains('/');
        if !single {
            return Err(KeyError::Format {
                path: format!("{wallets}/{name}/hotkeys/{hotkey}"),
                reason: format!("{what} {value:?} is not a plain name"),
            });
        }
    }
    Ok(expand_home(wallets)?
        .join(name)
        .join("hotkeys")
        .join(hotkey))
}

/// `path` with a leading `~` replaced by `$HOME`.
pub fn expand_home(path: &str) -> Result<PathBuf, KeyError> {
    let rest = match path.strip_prefix('~') {
        None => return Ok(PathBuf::from(path)),
        Some(rest) if rest.is_empty() || rest.starts_with('/') => rest.trim_start_matches('/'),
        // `~user/...` is not expanded by btcli either.
        Some(_) => return Ok(PathBuf::from(path)),
    };
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .ok_or_else(|| KeyError::Format {
            path: path.to_string(),
            reason: "HOME is not set; give the wallets directory as an absolute path".into(),
        })?;
    Ok(PathBuf::from(home).join(rest))
}

/// Words in a phrase from [`Keypair::generate_with_phrase`] (btcli's default).
pub const PHRASE_WORDS: usize = 12;

/// Why a recovery phrase was refused.
#[derive(Debug, thiserror::Error)]
#[error("recovery phrase: {0}")]
pub struct PhraseError(String);

impl Keypair {
    /// A fresh key and the 12-word English BIP39 phrase that restores it
    /// (see [`Keypair::from_phrase`]).
    pub fn generate_with_phrase() -> (Keypair, String) {
        let entropy: [u8; PHRASE_WORDS * 4 / 3] = rand::random();
        let phrase = bip39::Mnemonic::from_entropy(&entropy)
            .expect("16 bytes is a valid BIP39 entropy length")
            .to_string();
        (seed_from_entropy(&entropy, ""), phrase)
    }

    /// The key a BIP39 phrase (English, 12 to 24 words, checksum checked)
    /// stands for, with an optional BIP39 password (empty for btcli's).
    pub fn from_phrase(phrase: &str, password: &str) -> Result<Keypair, PhraseError> {
        let words = phrase
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .to_lowercase();
        let mnemonic = bip39::Mnemonic::parse_in_normalized(bip39::Language::English, &words)
            .map_err(|e| PhraseError(e.to_string()))?;
        Ok(seed_from_entropy(&mnemonic.to_entropy(), password))
    }
}

/// Substrate's `seed_from_entropy`: PBKDF2-HMAC-SHA512(entropy, "mnemonic" +
/// password, 2048), first 32 bytes. One output block is all a seed needs.
fn seed_from_entropy(entropy: &[u8], password: &str) -> Keypair {
    const ROUNDS: usize = 2048;
    let mac = Hmac::<Sha512>::new_from_slice(entropy).expect("HMAC takes a key of any length");
    let mut first = mac.clone();
    first.update(b"mnemonic");
    first.update(password.as_bytes());
    first.update(&1u32.to_be_bytes());
    let mut u = first.finalize().into_bytes();
    let mut block = u;
    for _ in 1..ROUNDS {
        let mut next = mac.clone();
        next.update(&u);
        u = next.finalize().into_bytes();
        for (b, x) in block.iter_mut().zip(u.iter()) {
            *b ^= x;
        }
    }
    let mut seed = [0u8; 32];
    seed.copy_from_slice(&block[..32]);
    Keypair::from_seed(&seed)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Substrate's development phrase: its ED25519 key without derivation
    /// is a published constant (what `subkey inspect --scheme ed25519` and
    /// the Bittensor SDK print for it).
    #[test]
    fn the_development_phrase_gives_substrates_ed25519_key() {
        let phrase = "bottom drive obey lake curtain smoke basket hold race lonely fit walk";
        let key = Keypair::from_phrase(phrase, "").expect("valid phrase");
        assert_eq!(
            hex::encode(key.hotkey().to_bytes()),
            "345071da55e5dccefaaa440339415ef9f2663338a38f7da0df21be5ab4e055ef"
        );
        // Extra spaces and capitals are the same phrase; a password is not.
        let spaced = format!("  {}  ", phrase.replace(' ', "   ").to_uppercase());
        let spaced = Keypair::from_phrase(&spaced, "").expect("spacing does not matter");
        assert_eq!(spaced.hotkey(), key.hotkey());
        let other = Keypair::from_phrase(phrase, "pw").expect("password");
        assert_ne!(other.hotkey(), key.hotkey());
    }

    #[test]
    fn a_generated_phrase_restores_its_key() {
        let (key, phrase) = Keypair::generate_with_phrase();
        assert_eq!(phrase.split(' ').count(), PHRASE_WORDS);
        let restored = Keypair::from_phrase(&phrase, "").expect("own phrase parses");
        assert_eq!(restored.hotkey(), key.hotkey());
    }

    #[test]
    fn bad_phrases_are_named() {
        let cases = [
            "bottom drive obey lake curtain smoke basket hold race lonely fit fit",
            "bottom drive obey",
            "notaword drive obey lake curtain smoke basket hold race lonely fit walk",
            "",
        ];
        for phrase in cases {
            let err = Keypair::from_phrase(phrase, "").err().expect("refused");
            assert!(err.to_string().starts_with("recovery phrase: "), "{err}");
        }
    }

    #[test]
    fn wallet_paths_follow_btcli() {
        let path = hotkey_file("/w", "miner", "default").expect("plain names");
        assert_eq!(path, PathBuf::from("/w/miner/hotkeys/default"));
        for (name, hotkey) in [("../x", "h"), ("w", "a/b"), ("", "h"), ("w", "..")] {
            assert!(hotkey_file("/w", name, hotkey).is_err(), "{name}/{hotkey}");
        }
    }
}
