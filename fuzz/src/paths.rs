//! Target `paths`: bucket keys as a listing returns them. Anyone who can
//! write to a prefix chooses its keys, so the parsers that turn keys back
//! into hotkeys, steps, jobs and attempts see attacker-controlled text.
//!
//! What a parser accepts must survive a round through the key builder:
//! parse(build(parse(key))) == parse(key).

use locus_protocol::keys::ss58_decode;
use locus_protocol::paths::validate_id;
use locus_protocol::{Hotkey, Layout};

use crate::{NETUID, RUN, keep};

pub fn fuzz(data: &[u8]) {
    let Ok(key) = std::str::from_utf8(data) else {
        return;
    };
    let layout = Layout::new(NETUID);
    if let Some((hotkey, worker)) = layout.parse_heartbeat(key) {
        let rebuilt = layout.heartbeat(&hotkey, worker);
        assert_eq!(layout.parse_heartbeat(&rebuilt), Some((hotkey, worker)));
    }
    if let Some((step, job, attempt)) = layout.parse_receipt(RUN, key) {
        let rebuilt = layout.receipt(RUN, step, &job, attempt);
        assert_eq!(
            layout.parse_receipt(RUN, &rebuilt),
            Some((step, job, attempt))
        );
    }
    if let Some((step, job, attempt)) = layout.parse_verdict(RUN, key) {
        let rebuilt = layout.verdict(RUN, step, &job, attempt);
        assert_eq!(
            layout.parse_verdict(RUN, &rebuilt),
            Some((step, job, attempt))
        );
    }
    if let Some(run) = layout.parse_run_manifest(key) {
        let rebuilt = layout.run_manifest(&run);
        assert_eq!(layout.parse_run_manifest(&rebuilt), Some(run));
    }
    keep(validate_id("id", key));
    keep(ss58_decode(key).map_err(|e| e.to_string()));
    if let Ok(hotkey) = key.parse::<Hotkey>() {
        assert_eq!(hotkey.ss58().parse::<Hotkey>().ok(), Some(hotkey));
        keep(hotkey.short());
    }
}
