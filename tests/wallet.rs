//! Hotkeys created by Bittensor's own wallet package (`bittensor-wallet`
//! from PyPI, installed by scripts/test-deps.sh) load as Locus keys with the
//! same SS58 address, recovery phrases restore the same key on both sides,
//! and the daemons find a hotkey by btcli's wallet flags.

mod common;

use std::io::Write as _;
use std::process::{Command, Stdio};

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

/// Runs Python with the Bittensor wallet package; returns its stdout lines.
fn python(script: &str, args: &[&str]) -> Vec<String> {
    let mut command = Command::new("python3");
    command.arg("-c").arg(script).args(args);
    common::stdout_of(
        command,
        "python3 (scripts/test-deps.sh installs bittensor-wallet)",
    )
    .lines()
    .map(str::to_string)
    .collect()
}

/// `locus keygen` with `args`, `stdin` on its standard input; its stdout
/// (the SS58 address) and stderr.
fn keygen(args: &[&str], stdin: &str) -> (String, String) {
    let mut child = common::locus()
        .arg("keygen")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("locus keygen");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("writing stdin");
    let out = child.wait_with_output().expect("locus keygen");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "locus keygen {args:?}: {stderr}");
    (
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        stderr,
    )
}

#[test]
fn recovery_phrases_restore_the_same_hotkey_here_and_in_bittensor() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wallets = dir.path().display().to_string();
    // Made here: the phrase `locus keygen` shows restores the same address
    // in Python, and Python's Wallet reads the hotkey file it wrote.
    let (ss58, stderr) = keygen(
        &[
            "--wallet.path",
            &wallets,
            "--wallet.name",
            "miner",
            "--wallet.hotkey",
            "locus",
        ],
        "",
    );
    let phrase = stderr
        .lines()
        .find(|line| line.starts_with("    ") && line.split_whitespace().count() == 12)
        .unwrap_or_else(|| panic!("no 12-word phrase shown:\n{stderr}"))
        .trim()
        .to_string();
    let script = r#"
import sys
from bittensor_wallet import Keypair, Wallet
print(Keypair.create_from_mnemonic(sys.argv[1], crypto_type=0).ss58_address)
print(Wallet(name="miner", hotkey="locus", path=sys.argv[2]).hotkey.ss58_address)
"#;
    assert_eq!(
        python(script, &[&phrase, &wallets]),
        vec![ss58.clone(), ss58]
    );

    // Made in Python (12 and 24 words): `locus keygen --regen` restores the
    // address Python derives.
    for words in ["12", "24"] {
        let script = r#"
import sys
from bittensor_wallet import Keypair
m = Keypair.generate_mnemonic(int(sys.argv[1]))
print(m)
print(Keypair.create_from_mnemonic(m, crypto_type=0).ss58_address)
"#;
        let lines = python(script, &[words]);
        let out = dir.path().join(format!("regen-{words}.json"));
        let (restored, _) = keygen(
            &["--regen", "--out", &out.display().to_string()],
            &format!("{}\n", lines[0]),
        );
        assert_eq!(restored, lines[1], "{words}-word phrase");
        assert_eq!(
            Keypair::load(&out)
                .expect("restored key file")
                .hotkey()
                .ss58(),
            lines[1]
        );
    }
}

/// `minerd --wallet.name/--wallet.hotkey/--wallet.path` runs with that
/// hotkey: its workers heartbeat under the wallet's address. A wallet that
/// is not there stops it with the wallet named.
#[test]
fn minerd_finds_its_hotkey_by_btcli_wallet_flags() {
    let system = common::System::new(0);
    let wallets = system.work.join("wallets");
    let key = Keypair::generate();
    key.write_key_file(&wallets.join("miner").join("hotkeys").join("locus"))
        .expect("hotkey file");
    let args = |hotkey: &str| {
        vec![
            format!("--bucket={}", system.bucket_dir().display()),
            format!("--owner={}", system.owner_ss58()),
            format!("--wallet.path={}", wallets.display()),
            "--wallet.name=miner".to_string(),
            format!("--wallet.hotkey={hotkey}"),
            "--heartbeat-secs=1".to_string(),
        ]
    };
    let missing = Command::new(common::bin_dir().join("minerd"))
        .args(args("absent"))
        .output()
        .expect("minerd");
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(!missing.status.success());
    assert!(
        stderr.contains(r#"wallet "miner", hotkey "absent""#) && stderr.contains("--hotkey-file"),
        "{stderr}"
    );
    let mut miner = common::Proc::start(&system, "minerd", "miner", &args("locus"));
    let heartbeats = system.bucket.layout().heartbeats();
    let address = key.hotkey().ss58();
    system.wait_until("a heartbeat under the wallet's hotkey", 60, || {
        system
            .rt
            .block_on(system.bucket.list(&heartbeats, None))
            .unwrap_or_default()
            .iter()
            .any(|k| k.contains(&address))
    });
    miner.terminate();
    assert!(miner.wait(30).success(), "{}", miner.log_text());
}
