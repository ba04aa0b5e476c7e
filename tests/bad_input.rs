//! Bad objects planted in the bucket of a running system: each is rejected
//! with a message naming it, no daemon stops, and none of it earns anything.

mod common;

use common::System;
use locus_protocol::{Expect, Hotkey, Keypair, envelope, pb};
use object_store::PutMode;
use prost::Message as _;

const RUN: &str = "badinput";

#[test]
fn planted_bad_objects_are_rejected_and_earn_nothing() {
    let sys = System::new(2);
    let (owner, validator) = (&sys.owner.key, &sys.validator.key);
    let (miner_a, miner_b) = (&sys.miners[0].key, &sys.miners[1].key);
    let attacker = Keypair::generate();
    let mut validatord = sys.start_validator("validatord", RUN, &["--sample-rate=1.0"]);
    let mut miner_procs = [sys.start_miner(0, &[]), sys.start_miner(1, &[])];
    let (rt, bucket) = (&sys.rt, &sys.bucket);
    let layout = bucket.layout().clone();
    sys.wait_heartbeats(2);
    // 6. A heartbeat for the attacker signed by someone else, there before
    //    the owner first looks (a run can end before its next look).
    let fake_heartbeat = layout.heartbeat(&attacker.hotkey(), 0);
    rt.block_on(bucket.put_bytes(
        &fake_heartbeat,
        envelope::seal(&pb::WorkerHeartbeat::default(), &fake_heartbeat, miner_b).bytes,
        PutMode::Overwrite,
    ))
    .expect("plant");
    let mut orchestratord = sys.start_orchestrator("orchestratord", RUN, &["--steps=3"]);
    let owner_key = owner.hotkey();
    sys.wait_until("step 0 to complete", 120, || {
        rt.block_on(
            bucket.get_opt::<pb::RunState>(&layout.run_state(RUN), Expect::Signer(&owner_key)),
        )
        .ok()
        .flatten()
        .is_some_and(|s| s.completed_steps >= 1)
    });

    // A real receipt of miner A from step 0 to tamper with.
    let step0 = rt
        .block_on(bucket.list(&layout.receipts_of_step(RUN, 0), None))
        .expect("list");
    let (real_key, real) = step0
        .iter()
        .find_map(|k| {
            let r = rt
                .block_on(bucket.get::<pb::Receipt>(k, Expect::Signer(&miner_a.hotkey())))
                .ok()?;
            Some((k.clone(), r))
        })
        .expect("miner A has a step-0 receipt");
    let real_bytes = rt
        .block_on(bucket.get_bytes(&real_key))
        .expect("bytes")
        .to_vec();
    let job = real.job_id.clone();
    let other_job = step0
        .iter()
        .filter_map(|k| layout.parse_receipt(RUN, k))
        .map(|(_, j, _)| j)
        .find(|j| *j != job)
        .expect("another job");
    let put = |key: &str, bytes: Vec<u8>| {
        rt.block_on(bucket.put_bytes(key, bytes, PutMode::Overwrite))
            .expect("plant")
    };

    // 1. Garbage bytes.
    let garbage = layout.receipt(RUN, 0, &job, 50);
    put(
        &garbage,
        b"\x08\x96\x01 definitely not an envelope".to_vec(),
    );
    // 2. A wrong signature: miner A's envelope with an altered payload.
    let wrong_sig = layout.receipt(RUN, 0, &job, 51);
    let mut env = pb::Envelope::decode(real_bytes.as_slice()).expect("envelope");
    let mut altered = real.clone().into_inner();
    altered.attempt = 51;
    env.payload = altered.encode_to_vec();
    put(&wrong_sig, env.encode_to_vec());
    // 3. The right signature under the wrong key: A's valid receipt replayed
    //    for another job.
    let replayed = layout.receipt(RUN, 0, &other_job, 52);
    put(&replayed, real_bytes.clone());
    // 4. A receipt signed by another hotkey (miner B) claiming A's assignment.
    let by_other = layout.receipt(RUN, 0, &job, 53);
    let mut stolen = real.clone().into_inner();
    stolen.attempt = 53;
    stolen.hotkey = miner_b.hotkey().to_bytes().to_vec();
    put(&by_other, envelope::seal(&stolen, &by_other, miner_b).bytes);
    // 5. A manifest and assignment not signed by the owner, in miner A's prefix.
    let forged_job = "s00000-forged";
    let manifest_key = layout.job_manifest(RUN, forged_job);
    let forged_manifest = pb::JobManifest {
        run_id: RUN.into(),
        job_id: forged_job.into(),
        kind: pb::JobKind::Eval as i32,
        ..Default::default()
    };
    let sealed = envelope::seal(&forged_manifest, &manifest_key, &attacker);
    put(&manifest_key, sealed.bytes);
    let forged_assignment_key = layout.assignment(&miner_a.hotkey(), 0, 999_999_999_999);
    let forged_assignment = pb::Assignment {
        run_id: RUN.into(),
        job_id: forged_job.into(),
        attempt: 1,
        hotkey: miner_a.hotkey().to_bytes().to_vec(),
        worker: 0,
        manifest_key: manifest_key.clone(),
        manifest_digest: sealed.digest.to_vec(),
        deadline_unix_ms: u64::MAX,
        ..Default::default()
    };
    put(
        &forged_assignment_key,
        envelope::seal(&forged_assignment, &forged_assignment_key, &attacker).bytes,
    );

    assert!(
        validatord.wait(180).success(),
        "validatord must finish normally"
    );
    assert!(
        orchestratord.wait(60).success(),
        "orchestratord must finish normally"
    );
    // A worker that knows where its next assignment goes reads only that
    // key, and lists its prefix (where the forgery sits) every
    // `LIST_WHILE_EXPECTING`: give miner A that long to come across it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !miner_procs[0].log_text().contains(&forged_assignment_key)
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    for m in miner_procs.iter_mut() {
        assert!(m.is_running(), "{} must still be running", m.name);
        m.terminate();
        assert!(m.wait(60).success());
    }

    let validator_log = validatord.log_text();
    for (key, reason) in [
        (&garbage, "not a signed envelope"),
        (&wrong_sig, "signature does not verify"),
        (&replayed, "signature does not verify"),
        (&by_other, "assignment for another job"),
    ] {
        let line = validator_log
            .lines()
            .find(|l| l.contains(key.as_str()))
            .unwrap_or_else(|| panic!("validator never named {key}:\n{validator_log}"));
        assert!(
            line.contains("rejected") && line.contains(reason),
            "{key}: {line}"
        );
    }
    let miner_a_log = miner_procs[0].log_text();
    let line = miner_a_log
        .lines()
        .find(|l| l.contains(&forged_assignment_key))
        .unwrap_or_else(|| panic!("miner A never named the forged assignment:\n{miner_a_log}"));
    assert!(
        line.contains("not executed") && line.contains(&sys.owner_ss58()),
        "{line}"
    );
    assert!(
        rt.block_on(bucket.list(
            &format!("{}/runs/{RUN}/artifacts/{forged_job}/", layout.root()),
            None
        ))
        .expect("list")
        .is_empty(),
        "no miner may execute a forged manifest"
    );
    assert!(
        orchestratord.log_text().contains("rejected heartbeat"),
        "orchestrator must reject the forged heartbeat"
    );

    // Scores: only the two real miners, both paid; nothing for planted receipts.
    let window = rt
        .block_on(bucket.get::<pb::ScoreWindow>(
            &layout.score_window(RUN),
            Expect::Signer(&validator.hotkey()),
        ))
        .expect("score window");
    assert!(window.complete);
    let hotkeys: Vec<Hotkey> = window
        .scores
        .iter()
        .map(|s| Hotkey::from_bytes(&s.hotkey).expect("hotkey"))
        .collect();
    assert_eq!(hotkeys.len(), 2, "{:?}", window.scores);
    assert!(!hotkeys.contains(&attacker.hotkey()));
    // Miner B signed the stolen receipt: the table shows the rejection, and
    // its own honest work is still paid.
    let b = window
        .scores
        .iter()
        .find(|s| s.hotkey == miner_b.hotkey().to_bytes())
        .expect("miner B scored");
    assert_eq!(b.rejected, 1, "{b:?}");
    assert!(b.reason.contains("1 rejected"), "{}", b.reason);
    assert!(
        window
            .scores
            .iter()
            .all(|s| s.weight > 0.0 && s.failed == 0),
        "{:?}",
        window.scores
    );
    let receipts_total = (0..3)
        .map(|s| {
            rt.block_on(bucket.list(&layout.receipts_of_step(RUN, s), None))
                .expect("list")
                .len() as u64
        })
        .sum::<u64>();
    assert_eq!(
        window.receipts,
        receipts_total - 4,
        "the 4 planted receipts earn nothing"
    );
}
