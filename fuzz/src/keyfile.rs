//! Target `keyfile`: key files (Bittensor's JSON hotkey format). Operators
//! bring these from their wallets, so the parser sees whatever a wallet
//! tool, an editor or a copy gone wrong left in the file.

use locus_protocol::Keypair;

use crate::keep;

pub fn fuzz(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Keypair::parse_key_file(text, "fuzz.json") {
        Ok(key) => keep(key.hotkey().ss58()),
        Err(e) => keep(e.to_string()),
    }
}
