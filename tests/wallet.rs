//! Hotkeys created by Bittensor's own wallet package (`bittensor-wallet`
//! from PyPI, installed by scripts/test-deps.sh) load as Locus keys with the
//! same SS58 address.

use std::process::Command;

use locus_protocol::Keypair;

#[test]
fn bittensor_wallet_ed25519_hotkey_loads_with_the_same_address() {
    let dir = tempfile::tempdir().expect("tempdir");
    let script = r#"
import sys
from bittensor_wallet import Wallet
w = Wallet(name="miner", hotkey="default", path=sys.argv[1])
w.create_new_hotkey(crypto_type=0, use_password=False, overwrite=True, suppress=True)
"#;
    let status = Command::new("python3")
        .args(["-c", script, &dir.path().display().to_string()])
        .status()
        .expect("python3 (run scripts/test-deps.sh to install bittensor-wallet)");
    assert!(
        status.success(),
        "bittensor-wallet could not create a hotkey"
    );
    let path = dir.path().join("miner/hotkeys/default");
    let file: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).expect("hotkey file")).expect("json");
    let key = Keypair::load(&path).expect("Locus loads the wallet's hotkey");
    assert_eq!(
        key.hotkey().ss58(),
        file["ss58Address"].as_str().expect("ss58Address")
    );
    assert_eq!(
        format!("0x{}", hex_of(&key.hotkey().to_bytes())),
        file["publicKey"].as_str().expect("publicKey")
    );
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
