//! ED25519 identities: owner, miner hotkeys and validators.
//!
//! A [`Keypair`] never leaves the process that loaded it: it has no `Debug`
//! output, and nothing in this crate writes it anywhere but a 0600 key file.
//! A [`Hotkey`] is the public half, shown as an SS58 address (prefix 42) the
//! way Bittensor shows hotkeys.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use blake2::{Blake2b512, Digest as _};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

/// The generic Substrate address format, which Bittensor uses for hotkeys.
pub const SS58_PREFIX: u8 = 42;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("key file {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("key file {path}: {reason}")]
    Format { path: String, reason: String },
    #[error("invalid public key: {0}")]
    PublicKey(String),
    #[error("invalid SS58 address {address:?}: {reason}")]
    Ss58 { address: String, reason: String },
}

/// The public half of an ED25519 identity.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Hotkey(VerifyingKey);

impl Hotkey {
    /// The SS58 address of raw key bytes read from a record, or a note of
    /// why they are no key, for logs and views.
    pub fn ss58_of(bytes: &[u8]) -> String {
        Hotkey::from_bytes(bytes)
            .map(|h| h.ss58())
            .unwrap_or_else(|_| format!("<invalid key: {} bytes>", bytes.len()))
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, KeyError> {
        let array: [u8; 32] = bytes
            .try_into()
            .map_err(|_| KeyError::PublicKey(format!("expected 32 bytes, got {}", bytes.len())))?;
        VerifyingKey::from_bytes(&array)
            .map(Hotkey)
            .map_err(|e| KeyError::PublicKey(e.to_string()))
    }

    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.0
    }

    /// SS58 address with prefix 42, e.g. `5F...`.
    pub fn ss58(&self) -> String {
        ss58_encode(&self.to_bytes())
    }

    /// The first characters of the SS58 address, for tables and log lines.
    pub fn short(&self) -> String {
        self.ss58()[..8].to_string()
    }

    /// Verifies a raw signature by this key (strict: rejects malleable forms).
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        match Signature::from_slice(signature) {
            Ok(sig) => self.0.verify_strict(message, &sig).is_ok(),
            Err(_) => false,
        }
    }
}

impl PartialOrd for Hotkey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Hotkey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.as_bytes().cmp(other.0.as_bytes())
    }
}

impl fmt::Display for Hotkey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.ss58())
    }
}

impl fmt::Debug for Hotkey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hotkey({})", self.ss58())
    }
}

impl FromStr for Hotkey {
    type Err = KeyError;

    /// Accepts an SS58 address or 64 hex characters (with or without `0x`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let hex_part = s.strip_prefix("0x").unwrap_or(s);
        if hex_part.len() == 64 && hex_part.bytes().all(|b| b.is_ascii_hexdigit()) {
            let bytes = hex::decode(hex_part).map_err(|e| KeyError::PublicKey(e.to_string()))?;
            return Hotkey::from_bytes(&bytes);
        }
        Hotkey::from_bytes(&ss58_decode(s)?)
    }
}

fn ss58_checksum(body: &[u8]) -> [u8; 2] {
    let mut hasher = Blake2b512::new();
    hasher.update(b"SS58PRE");
    hasher.update(body);
    let hash = hasher.finalize();
    [hash[0], hash[1]]
}

/// Encodes a 32-byte account id as an SS58 address with prefix 42.
pub fn ss58_encode(account: &[u8; 32]) -> String {
    let mut body = Vec::with_capacity(35);
    body.push(SS58_PREFIX);
    body.extend_from_slice(account);
    let checksum = ss58_checksum(&body);
    body.extend_from_slice(&checksum);
    bs58::encode(body).into_string()
}

/// Decodes an SS58 address with prefix 42 into its 32-byte account id.
pub fn ss58_decode(address: &str) -> Result<[u8; 32], KeyError> {
    let err = |reason: &str| KeyError::Ss58 {
        address: address.to_string(),
        reason: reason.to_string(),
    };
    let raw = bs58::decode(address)
        .into_vec()
        .map_err(|_| err("not base58"))?;
    if raw.len() != 35 {
        return Err(err("expected a 32-byte account with a one-byte prefix"));
    }
    if raw[0] != SS58_PREFIX {
        return Err(err("network prefix is not 42"));
    }
    if ss58_checksum(&raw[..33]) != raw[33..] {
        return Err(err("checksum mismatch"));
    }
    let mut account = [0u8; 32];
    account.copy_from_slice(&raw[1..33]);
    Ok(account)
}

/// An ED25519 signing key. Deliberately not `Debug`, `Clone` or serializable.
pub struct Keypair {
    signing: SigningKey,
}

impl Keypair {
    /// A fresh key from the operating system's CSPRNG.
    pub fn generate() -> Self {
        let seed: [u8; 32] = rand::random();
        Self::from_seed(&seed)
    }

    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Keypair {
            signing: SigningKey::from_bytes(seed),
        }
    }

    pub fn hotkey(&self) -> Hotkey {
        Hotkey(self.signing.verifying_key())
    }

    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.signing.sign(message).to_bytes()
    }

    /// The 32-byte seed, for code that derives further key material from it
    /// (for example the X25519 key that opens sealed grants).
    pub fn seed(&self) -> [u8; 32] {
        self.signing.to_bytes()
    }

    /// Loads a key file: the JSON hotkey format of Bittensor wallets
    /// (`secretSeed`, `publicKey`, `ss58Address`, `cryptoType` 0 = ED25519),
    /// which is also what [`Keypair::write_key_file`] writes.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let shown = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|source| KeyError::Io {
            path: shown.clone(),
            source,
        })?;
        if is_encrypted_key_file(&bytes) {
            return Err(KeyError::Format {
                path: shown,
                reason: "the key file is encrypted (a password-protected Bittensor key); \
                         daemons need an unencrypted hotkey, as btcli writes by default"
                    .into(),
            });
        }
        let text = String::from_utf8(bytes).map_err(|_| KeyError::Format {
            path: shown.clone(),
            reason: "not a key file: not UTF-8 text".into(),
        })?;
        Self::parse_key_file(&text, &shown)
    }

    /// Parses the text of a key file (see [`Keypair::load`]); `origin` names
    /// where it came from in errors. Separate from the file read so the
    /// parser can be fuzzed on bytes alone.
    pub fn parse_key_file(text: &str, origin: &str) -> Result<Self, KeyError> {
        let format = |reason: String| KeyError::Format {
            path: origin.to_string(),
            reason,
        };
        let file: KeyFile =
            serde_json::from_str(text).map_err(|e| format(format!("not a key file: {e}")))?;
        if let Some(crypto) = file.crypto_type
            && crypto != 0
        {
            return Err(format(format!(
                "cryptoType {crypto} is not ED25519 (0); create the hotkey with `btcli wallet new-hotkey --crypto-type ed25519` or `locus keygen`"
            )));
        }
        let seed =
            decode_hex32(&file.secret_seed).map_err(|e| format(format!("secretSeed: {e}")))?;
        let keypair = Keypair::from_seed(&seed);
        let hotkey = keypair.hotkey();
        if let Some(public) = &file.public_key {
            let public = decode_hex32(public).map_err(|e| format(format!("publicKey: {e}")))?;
            if public != hotkey.to_bytes() {
                return Err(format("publicKey does not match secretSeed".into()));
            }
        }
        if let Some(address) = &file.ss58_address
            && *address != hotkey.ss58()
        {
            return Err(format(format!(
                "ss58Address {address} does not match secretSeed ({hotkey})"
            )));
        }
        Ok(keypair)
    }

    /// Writes the key as a Bittensor-style JSON hotkey file with mode 0600.
    /// Refuses to overwrite an existing file.
    pub fn write_key_file(&self, path: &Path) -> Result<(), KeyError> {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let shown = path.display().to_string();
        let io = |source| KeyError::Io {
            path: shown.clone(),
            source,
        };
        let hotkey = self.hotkey();
        let public = format!("0x{}", hex::encode(hotkey.to_bytes()));
        let file = KeyFile {
            secret_seed: format!("0x{}", hex::encode(self.seed())),
            public_key: Some(public.clone()),
            account_id: Some(public),
            ss58_address: Some(hotkey.ss58()),
            crypto_type: Some(0),
        };
        let json = serde_json::to_string_pretty(&file).map_err(|e| KeyError::Format {
            path: shown.clone(),
            reason: e.to_string(),
        })?;
        if let Some(parent) = path.parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(io)?;
        out.write_all(json.as_bytes()).map_err(io)?;
        Ok(())
    }
}

/// Whether `bytes` are a Bittensor key file encrypted with a password (the
/// markers the Bittensor SDK writes in front of the ciphertext).
pub fn is_encrypted_key_file(bytes: &[u8]) -> bool {
    let start = bytes.trim_ascii_start();
    [&b"$NACL"[..], b"$BTWALLET", b"$ANSIBLE_VAULT"]
        .iter()
        .any(|marker| start.starts_with(marker))
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct KeyFile {
    secret_seed: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    public_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    account_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ss58_address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    crypto_type: Option<u8>,
}

fn decode_hex32(text: &str) -> Result<[u8; 32], String> {
    let bytes = hex::decode(text.strip_prefix("0x").unwrap_or(text)).map_err(|e| e.to_string())?;
    bytes
        .try_into()
        .map_err(|b: Vec<u8>| format!("expected 32 bytes, got {}", b.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ss58_round_trips_and_matches_substrate() {
        // Alice's well-known sr25519 account id and address (prefix 42).
        let alice = hex::decode("d43593c715fdd31c61141abd04a99fd6822c8558854ccde39a5684e7a56da27d")
            .unwrap();
        let account: [u8; 32] = alice.try_into().unwrap();
        let address = ss58_encode(&account);
        assert_eq!(address, "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY");
        assert_eq!(ss58_decode(&address).unwrap(), account);
    }

    #[test]
    fn ss58_rejects_bad_checksum() {
        let err = ss58_decode("5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQZ").unwrap_err();
        assert!(err.to_string().contains("checksum"), "{err}");
    }

    #[test]
    fn key_file_round_trip_with_private_mode() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/miner0.json");
        let key = Keypair::generate();
        key.write_key_file(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let loaded = Keypair::load(&path).unwrap();
        assert_eq!(loaded.hotkey(), key.hotkey());
        assert!(key.write_key_file(&path).is_err(), "must not overwrite");
    }

    /// A password-protected Bittensor key file is binary after its marker:
    /// it is named as encrypted, not as bad text.
    #[test]
    fn an_encrypted_key_file_is_named_as_such() {
        let dir = tempfile::tempdir().expect("tempdir");
        for marker in [&b"$NACL"[..], b"$BTWALLET"] {
            let path = dir.path().join("hotkey");
            let mut bytes = marker.to_vec();
            bytes.extend([0xff, 0x00, 0x9c, 0x80]);
            std::fs::write(&path, bytes).expect("write");
            let err = Keypair::load(&path).err().expect("refused").to_string();
            assert!(err.contains("is encrypted"), "{err}");
        }
    }

    #[test]
    fn key_file_errors_name_their_origin() {
        for text in [
            "",
            "{}",
            r#"{"secretSeed": "0x00"}"#,
            r#"{"secretSeed": 1}"#,
        ] {
            let err = Keypair::parse_key_file(text, "wallet/hotkey")
                .err()
                .unwrap();
            assert!(
                err.to_string().starts_with("key file wallet/hotkey: "),
                "{err}"
            );
        }
    }

    #[test]
    fn hotkey_parses_ss58_and_hex() {
        let key = Keypair::generate().hotkey();
        assert_eq!(key.ss58().parse::<Hotkey>().unwrap(), key);
        assert_eq!(hex::encode(key.to_bytes()).parse::<Hotkey>().unwrap(), key);
        assert!("nonsense".parse::<Hotkey>().is_err());
    }
}
