//! The commit-reveal encryption checked against the Bittensor SDK's own implementation
//! (PyPI `bittensor-drand`), offline, with quicknet's published signature of round 1000:
//! what one side seals the other opens, and both aim at the same round.

use std::time::{SystemTime, UNIX_EPOCH};

use codec::{Decode, Encode};
use locus_chain::timelock::{self, RevealSchedule, WeightsTlockPayload};

#[path = "support/drand.rs"]
mod drand;

fn payload() -> WeightsTlockPayload {
    WeightsTlockPayload {
        hotkey: (0..32).collect(),
        uids: (0..256).collect(),
        values: (0..256u32).map(|i| (i * 257) as u16).collect(),
        version_key: 9_001,
    }
}

#[test]
fn the_sdk_opens_what_we_seal() {
    let plain = payload().encode();
    let sealed = timelock::encrypt(&plain, 1000).expect("seals");
    assert_eq!(drand::sdk_decrypt(&sealed, 1000), plain);
}

#[test]
fn we_open_what_the_sdk_seals() {
    let plain = payload().encode();
    let script = "import sys, bittensor_drand as d\n\
                  data, r = d.encrypt_at_round(bytes.fromhex(sys.argv[1]), 1000)\n\
                  print(bytes(data).hex())";
    let envelope = hex::decode(drand::python(script, &[&hex::encode(&plain)], None)).expect("hex");
    let (sealed, round) = <(Vec<u8>, u64)>::decode(&mut &envelope[..]).expect("SDK envelope");
    assert_eq!(round, 1000);
    let signature = hex::decode(drand::ROUND_1000_SIGNATURE).expect("hex");
    let opened = timelock::decrypt(&sealed, &signature).expect("opens");
    assert_eq!(
        WeightsTlockPayload::decode(&mut &opened[..]).expect("payload"),
        payload()
    );
    // The wrong round's key opens nothing.
    let other = hex::decode(drand::python(
        "import bittensor_drand as d\nprint(bytes(d.encrypt_at_round(b'x', 1001)[0]).hex())",
        &[],
        None,
    ))
    .expect("hex");
    let (sealed, _) = <(Vec<u8>, u64)>::decode(&mut &other[..]).expect("SDK envelope");
    assert_eq!(
        timelock::decrypt(&sealed, &signature),
        Err(timelock::TimelockError::WrongKey)
    );
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64()
}

/// The SDK release for the legacy epoch schedule (`bittensor-drand` 1.2.0, the one for
/// the runtime our bindings are built from) names the same round for the same chain
/// state. It reads the clock itself, so its answer must fall between ours just before
/// and just after the call.
#[test]
fn the_reveal_round_is_the_sdk_s() {
    let legacy = drand::legacy_sdk_path();
    let cases = [
        (3u16, 99u64, 150u64, 1u64, 12.0f64),
        (1, 360, 5_000_123, 1, 12.0),
        (42, 360, 6_000_000, 2, 12.0),
        (3, 10, 1_000, 3, 0.25),
    ];
    for (netuid, tempo, block, periods, block_time) in cases {
        let schedule = RevealSchedule {
            netuid,
            tempo,
            reveal_period_epochs: periods,
            current_block: block,
            block_time_secs: block_time,
        };
        let script = "import sys, bittensor_drand as d\n\
                      a = [int(x) for x in sys.argv[1:5]]\n\
                      _, r = d.get_encrypted_commit([1], [65535], 7, a[1], a[2], a[0], a[3], float(sys.argv[5]), bytes(32))\n\
                      print(r)";
        let before = schedule.reveal_round(unix_now());
        let sdk: u64 = drand::python(
            script,
            &[
                &netuid.to_string(),
                &tempo.to_string(),
                &block.to_string(),
                &periods.to_string(),
                &block_time.to_string(),
            ],
            Some(&legacy),
        )
        .parse()
        .expect("a round");
        let after = schedule.reveal_round(unix_now());
        assert!(
            (before..=after).contains(&sdk),
            "netuid {netuid} tempo {tempo} block {block}: the SDK says {sdk}, we say {before}..={after}"
        );
    }
}
