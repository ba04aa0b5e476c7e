//! The validator hotkey that signs extrinsics, loaded from a Bittensor wallet keyfile.

use std::path::Path;

use ed25519_dalek::Signer as _;
use serde::Deserialize;
use subxt::utils::{AccountId32, MultiSignature};

use crate::ChainError;

/// Which signature scheme a hotkey uses (Bittensor keyfile `cryptoType`: 0 ed25519, 1 sr25519).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CryptoType {
    Ed25519,
    Sr25519,
}

enum Pair {
    Sr25519(Box<subxt_signer::sr25519::Keypair>),
    Ed25519(Box<ed25519_dalek::SigningKey>),
}

/// A validator hotkey able to sign Subtensor extrinsics.
pub struct ValidatorSigner {
    pair: Pair,
    account: [u8; 32],
}

impl std::fmt::Debug for ValidatorSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ValidatorSigner")
            .field("crypto", &self.crypto_type())
            .field("ss58", &self.ss58())
            .finish_non_exhaustive()
    }
}

/// The fields of a Bittensor keyfile that matter here.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Keyfile {
    secret_seed: Option<String>,
    public_key: Option<String>,
    account_id: Option<String>,
    ss58_address: Option<String>,
    crypto_type: Option<u8>,
}

fn wallet_error(path: &Path, reason: impl Into<String>) -> ChainError {
    ChainError::Wallet {
        path: path.display().to_string(),
        reason: reason.into(),
    }
}

fn parse_hex32(path: &Path, field: &str, value: &str) -> Result<[u8; 32], ChainError> {
    let digits = value.strip_prefix("0x").unwrap_or(value);
    let bytes = hex::decode(digits)
        .map_err(|e| wallet_error(path, format!("field {field} is not hex: {e}")))?;
    bytes.try_into().map_err(|b: Vec<u8>| {
        wallet_error(
            path,
            format!("field {field} has {} bytes, expected 32", b.len()),
        )
    })
}

impl ValidatorSigner {
    /// An sr25519 hotkey from its 32-byte secret seed (a schnorrkel mini-secret, expanded the
    /// way Substrate and the Bittensor SDK do).
    pub fn sr25519_from_seed(seed: [u8; 32]) -> Result<Self, ChainError> {
        let pair = subxt_signer::sr25519::Keypair::from_secret_key(seed).map_err(|e| {
            ChainError::Wallet {
                path: "<seed>".into(),
                reason: format!("invalid sr25519 seed: {e}"),
            }
        })?;
        let account = pair.public_key().0;
        Ok(Self {
            pair: Pair::Sr25519(Box::new(pair)),
            account,
        })
    }

    /// An ed25519 hotkey from its 32-byte secret seed.
    pub fn ed25519_from_seed(seed: [u8; 32]) -> Self {
        let key = ed25519_dalek::SigningKey::from_bytes(&seed);
        let account = key.verifying_key().to_bytes();
        Self {
            pair: Pair::Ed25519(Box::new(key)),
            account,
        }
    }

    /// Loads a hotkey from a Bittensor keyfile (the JSON written by btcli / the SDK).
    ///
    /// The key is derived from `secretSeed` per `cryptoType` (default sr25519) and must match
    /// the file's `publicKey` (and `accountId` / `ss58Address` where present). Encrypted
    /// keyfiles are refused: hotkeys are normally stored unencrypted.
    pub fn from_wallet_file(path: impl AsRef<Path>) -> Result<Self, ChainError> {
        let path = path.as_ref();
        let bytes =
            std::fs::read(path).map_err(|e| wallet_error(path, format!("cannot read: {e}")))?;
        if locus_protocol::keys::is_encrypted_key_file(&bytes) {
            return Err(wallet_error(
                path,
                "the keyfile is encrypted; a validator hotkey must be stored unencrypted",
            ));
        }
        let file: Keyfile = serde_json::from_slice(&bytes)
            .map_err(|e| wallet_error(path, format!("not a Bittensor keyfile (JSON): {e}")))?;
        let seed_hex = file.secret_seed.as_deref().ok_or_else(|| {
            wallet_error(path, "no secretSeed field (is this a public-only keyfile?)")
        })?;
        let seed = parse_hex32(path, "secretSeed", seed_hex)?;
        let signer = match file.crypto_type {
            None | Some(1) => {
                Self::sr25519_from_seed(seed).map_err(|e| wallet_error(path, e.to_string()))?
            }
            Some(0) => Self::ed25519_from_seed(seed),
            Some(other) => {
                return Err(wallet_error(
                    path,
                    format!("unsupported cryptoType {other} (0 = ed25519, 1 = sr25519)"),
                ));
            }
        };
        for (field, value) in [
            ("publicKey", &file.public_key),
            ("accountId", &file.account_id),
        ] {
            if let Some(value) = value {
                let expected = parse_hex32(path, field, value)?;
                if expected != signer.account {
                    return Err(wallet_error(
                        path,
                        format!(
                            "{field} {} does not match the key derived from secretSeed ({})",
                            value,
                            signer.ss58()
                        ),
                    ));
                }
            }
        }
        if let Some(address) = &file.ss58_address
            && *address != signer.ss58()
        {
            return Err(wallet_error(
                path,
                format!(
                    "ss58Address {address} does not match the derived key {}",
                    signer.ss58()
                ),
            ));
        }
        Ok(signer)
    }

    /// The hotkey's public key, which is also its on-chain account id.
    pub fn account_id(&self) -> [u8; 32] {
        self.account
    }

    /// The hotkey as an SS58 address (prefix 42).
    pub fn ss58(&self) -> String {
        locus_protocol::keys::ss58_encode(&self.account)
    }

    pub fn crypto_type(&self) -> CryptoType {
        match self.pair {
            Pair::Sr25519(_) => CryptoType::Sr25519,
            Pair::Ed25519(_) => CryptoType::Ed25519,
        }
    }
}

impl<T> subxt::tx::Signer<T> for ValidatorSigner
where
    T: subxt::Config<AccountId = AccountId32, Signature = MultiSignature>,
{
    fn account_id(&self) -> AccountId32 {
        AccountId32(self.account)
    }

    fn sign(&self, signer_payload: &[u8]) -> MultiSignature {
        match &self.pair {
            Pair::Sr25519(pair) => MultiSignature::Sr25519(pair.sign(signer_payload).0),
            Pair::Ed25519(key) => MultiSignature::Ed25519(key.sign(signer_payload).to_bytes()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Substrate's well-known dev key: //Alice is the mini-secret below.
    const ALICE_SEED: &str = "e5be9a5092b81bca64be81d212e7f2f9eba183bb7a90954f7b76361f6edb5c0a";
    const ALICE_PUBLIC: &str = "d43593c715fdd31c61141abd04a99fd6822c8558854ccde39a5684e7a56da27d";
    const ALICE_SS58: &str = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY";

    fn write(dir: &Path, name: &str, body: &str) -> std::path::PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, body).expect("write keyfile");
        path
    }

    #[test]
    fn sr25519_keyfile_loads_and_matches() {
        let dir = tempfile::tempdir().expect("tempdir");
        let hotkeys = dir.path().join("validator").join("hotkeys");
        std::fs::create_dir_all(&hotkeys).expect("mkdir");
        write(
            &hotkeys,
            "default",
            &format!(
                r#"{{"accountId":"0x{ALICE_PUBLIC}","publicKey":"0x{ALICE_PUBLIC}","privateKey":"0x00","secretPhrase":"","secretSeed":"0x{ALICE_SEED}","ss58Address":"{ALICE_SS58}","cryptoType":1}}"#
            ),
        );
        let signer =
            ValidatorSigner::from_wallet_file(hotkeys.join("default")).expect("keyfile loads");
        assert_eq!(signer.ss58(), ALICE_SS58);
        assert_eq!(signer.crypto_type(), CryptoType::Sr25519);
    }

    #[test]
    fn mismatched_public_key_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = write(
            dir.path(),
            "hk",
            &format!(
                r#"{{"publicKey":"0x{}","secretSeed":"0x{ALICE_SEED}"}}"#,
                "11".repeat(32)
            ),
        );
        let err = ValidatorSigner::from_wallet_file(&path).expect_err("mismatch");
        assert!(err.to_string().contains("does not match"), "{err}");
    }

    #[test]
    fn ed25519_keyfile_loads() {
        let seed = [7u8; 32];
        let public = ed25519_dalek::SigningKey::from_bytes(&seed)
            .verifying_key()
            .to_bytes();
        let dir = tempfile::tempdir().expect("tempdir");
        let path = write(
            dir.path(),
            "hk",
            &format!(
                r#"{{"publicKey":"0x{}","secretSeed":"0x{}","cryptoType":0}}"#,
                hex::encode(public),
                hex::encode(seed)
            ),
        );
        let signer = ValidatorSigner::from_wallet_file(&path).expect("loads");
        assert_eq!(signer.crypto_type(), CryptoType::Ed25519);
        assert_eq!(signer.account_id(), public);
    }

    #[test]
    fn encrypted_and_garbage_keyfiles_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let enc = write(dir.path(), "enc", "$NACLabcdef");
        assert!(
            ValidatorSigner::from_wallet_file(&enc)
                .expect_err("enc")
                .to_string()
                .contains("encrypted")
        );
        let bad = write(dir.path(), "bad", r#"{"secretSeed":"0x1234"}"#);
        assert!(
            ValidatorSigner::from_wallet_file(&bad)
                .expect_err("short")
                .to_string()
                .contains("expected 32")
        );
        let missing = dir.path().join("nope");
        assert!(ValidatorSigner::from_wallet_file(&missing).is_err());
    }
}
