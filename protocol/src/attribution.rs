//! Whose work a receipt is: the one rule every reader applies.
//!
//! The orchestrator (before it uses a result), the validator (before it
//! judges one) and the discovery index (before it shows one) must agree on
//! which receipts count, or a receipt the UI rejects could be paid, or one
//! the validator never judges could be held for a verdict forever. So the
//! rule lives here, once:
//!
//! - [`attribute`]: the receipt is the assigned hotkey's answer to the
//!   owner's assignment. A receipt that fails it proves nothing against any
//!   hotkey (anyone with write access can plant one): no verdict, no credit.
//! - [`check_commitments`]: what the assigned hotkey's own signed receipt
//!   commits to agrees with its assignment. A receipt that fails it is that
//!   hotkey's fault: a validator fails it.

use prost::Message as _;

use crate::envelope::{self, Expect, RejectReason, Rejection, Verified};
use crate::keys::{Hotkey, Keypair};
use crate::paths::Layout;
use crate::pb;

/// A receipt attributed to the hotkey its assignment names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attributed {
    pub step: u32,
    pub job: String,
    pub attempt: u32,
    /// The hotkey the owner assigned the job to, which signed the receipt.
    pub hotkey: Hotkey,
}

/// Why a receipt is not attributable to the assigned hotkey.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Misattribution {
    #[error("not a receipt key of run {run}")]
    NotAReceiptKey { run: String },
    #[error(
        "receipt is for run {run:?} step {step} job {job:?} attempt {attempt}, its key names another"
    )]
    DisagreesWithKey {
        run: String,
        step: u32,
        job: String,
        attempt: u32,
    },
    #[error("names {0:?}, which is not an assignment key")]
    NotAnAssignmentKey(String),
    #[error(
        "names an assignment for another job (run {run:?} step {step} job {job:?} attempt {attempt})"
    )]
    AssignmentForAnotherJob {
        run: String,
        step: u32,
        job: String,
        attempt: u32,
    },
    #[error("its assignment names an invalid hotkey")]
    InvalidAssignedHotkey,
    #[error("its assignment sits under another hotkey or worker than it names")]
    AssignmentMisplaced,
    #[error("claims hotkey {claimed}, but the job was assigned to {assigned}")]
    WrongHotkey { claimed: String, assigned: String },
    #[error("claims worker {claimed}, but the job was assigned to worker {assigned}")]
    WrongWorker { claimed: u32, assigned: u32 },
    #[error("signed by {signer}, but the job was assigned to {assigned}")]
    WrongSigner { signer: String, assigned: String },
}

impl Misattribution {
    /// As a rejection of the receipt at `key`, for logs and the index.
    pub fn at(self, key: &str) -> Rejection {
        let reason = match self {
            Misattribution::WrongSigner { signer, assigned } => RejectReason::UnexpectedSigner {
                signer,
                expected: assigned,
            },
            other => RejectReason::Inconsistent(other.to_string()),
        };
        Rejection {
            key: key.to_string(),
            reason,
        }
    }
}

/// Checks that the receipt stored at `key` (signature verified, any signer)
/// answers `assignment`, the owner-signed assignment read from the key the
/// receipt names, and that the hotkey it assigns signed it.
pub fn attribute(
    layout: &Layout,
    run_id: &str,
    key: &str,
    receipt: &Verified<pb::Receipt>,
    assignment: &pb::Assignment,
) -> Result<Attributed, Misattribution> {
    let (step, job, attempt) =
        layout
            .parse_receipt(run_id, key)
            .ok_or_else(|| Misattribution::NotAReceiptKey {
                run: run_id.to_string(),
            })?;
    if receipt.run_id != run_id
        || receipt.job_id != job
        || receipt.attempt != attempt
        || receipt.step != step
    {
        return Err(Misattribution::DisagreesWithKey {
            run: receipt.run_id.clone(),
            step: receipt.step,
            job: receipt.job_id.clone(),
            attempt: receipt.attempt,
        });
    }
    let (placed_under, placed_worker, _) = layout
        .parse_assignment(&receipt.assignment_key)
        .ok_or_else(|| Misattribution::NotAnAssignmentKey(receipt.assignment_key.clone()))?;
    if assignment.run_id != run_id
        || assignment.job_id != job
        || assignment.attempt != attempt
        || assignment.step != step
    {
        return Err(Misattribution::AssignmentForAnotherJob {
            run: assignment.run_id.clone(),
            step: assignment.step,
            job: assignment.job_id.clone(),
            attempt: assignment.attempt,
        });
    }
    let assigned = Hotkey::from_bytes(&assignment.hotkey)
        .map_err(|_| Misattribution::InvalidAssignedHotkey)?;
    if placed_under != assigned || placed_worker != assignment.worker {
        return Err(Misattribution::AssignmentMisplaced);
    }
    if receipt.hotkey != assigned.to_bytes() {
        let claimed = Hotkey::from_bytes(&receipt.hotkey)
            .map(|h| h.ss58())
            .unwrap_or_else(|_| "an invalid key".into());
        return Err(Misattribution::WrongHotkey {
            claimed,
            assigned: assigned.ss58(),
        });
    }
    if receipt.worker != assignment.worker {
        return Err(Misattribution::WrongWorker {
            claimed: receipt.worker,
            assigned: assignment.worker,
        });
    }
    if *receipt.signer() != assigned {
        return Err(Misattribution::WrongSigner {
            signer: receipt.signer().ss58(),
            assigned: assigned.ss58(),
        });
    }
    Ok(Attributed {
        step,
        job,
        attempt,
        hotkey: assigned,
    })
}

/// The record type the copy of an assignment a receipt carries is signed
/// as: not the assignment's own, so that a copy (which leaves the grant
/// out) cannot be stored at the assignment's key and pass for it.
pub const ASSIGNMENT_COPY: &str = "locus.v1.Assignment/copy";

/// What of an assignment its receipt carries: all but the sealed grant,
/// which only the miner can open and which makes an assignment on S3 too
/// large to carry.
fn copy_of(assignment: &pb::Assignment) -> pb::Assignment {
    pb::Assignment {
        sealed_grant: Vec::new(),
        copy_signature: Vec::new(),
        ..assignment.clone()
    }
}

/// The owner's signature over the copy of `assignment`, to be stored at
/// `key`, that its receipt will carry (`Assignment.copy_signature`).
pub fn sign_assignment_copy(assignment: &pb::Assignment, key: &str, owner: &Keypair) -> Vec<u8> {
    envelope::sign_copy(&copy_of(assignment), ASSIGNMENT_COPY, key, owner).signature
}

/// `Receipt.assignment`'s field number (locus.proto).
const RECEIPT_ASSIGNMENT_FIELD: u32 = 16;

/// The most bytes [`carry_assignment`] adds to a receipt for `assignment`
/// (whatever its `next_seq`): what the owner sizes a receipt's grant by.
pub fn carried_assignment_bound(assignment: &pb::Assignment) -> u64 {
    let widest = pb::Assignment {
        next_seq: Some(u64::MAX),
        ..copy_of(assignment)
    };
    let copy = envelope::envelope_len(ASSIGNMENT_COPY, widest.encoded_len());
    (prost::encoding::key_len(RECEIPT_ASSIGNMENT_FIELD)
        + prost::encoding::encoded_len_varint(copy as u64)
        + copy) as u64
}

/// Whether a receipt's own room and the copy's (`copy_bound`) stay within
/// a receipt's size limit.
fn copy_room_fits(copy_bound: u64) -> bool {
    crate::grant::RECEIPT_SIZE + copy_bound <= <pb::Receipt as crate::Record>::MAX_BYTES as u64
}

/// Whether the receipt answering `assignment` can carry its copy: the
/// copy and the receipt's own fields (at most [`RECEIPT_SIZE`](crate::grant::RECEIPT_SIZE))
/// stay within a receipt's size limit. The owner signs no copy of an
/// assignment too large for that (a manifest naming very many inputs); its
/// receipt names the assignment's key only.
pub fn copy_fits(assignment: &pb::Assignment) -> bool {
    copy_room_fits(carried_assignment_bound(assignment))
}

/// The exact size of the receipt answering `assignment` that a PUT grant
/// allows: the receipt's own room, and its copy of the assignment where
/// one fits.
pub fn receipt_size(assignment: &pb::Assignment) -> u64 {
    let bound = carried_assignment_bound(assignment);
    let copy = if copy_room_fits(bound) { bound } else { 0 };
    crate::grant::RECEIPT_SIZE + copy
}

/// The copy of `assignment` (signed by `owner`) for its miner's receipt;
/// None where the owner signed no copy.
pub fn carry_assignment(assignment: &pb::Assignment, owner: &Hotkey) -> Option<pb::Envelope> {
    if assignment.copy_signature.is_empty() {
        return None;
    }
    Some(envelope::signed_envelope(
        ASSIGNMENT_COPY,
        copy_of(assignment).encode_to_vec(),
        owner,
        assignment.copy_signature.clone(),
    ))
}

/// The assignment `receipt` carries, verified as the one `owner` wrote at
/// the key the receipt names. None: it carries none, or one that does not
/// verify; the reader then reads that key, as it would without a copy.
pub fn carried_assignment(
    receipt: &pb::Receipt,
    owner: &Hotkey,
) -> Option<Verified<pb::Assignment>> {
    let copy = receipt.assignment.as_ref()?;
    envelope::open_copy(
        copy,
        ASSIGNMENT_COPY,
        &receipt.assignment_key,
        Expect::Signer(owner),
    )
    .ok()
}

/// Why the manifest an assignment carries cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EmbeddedManifest {
    #[error("the manifest it carries is not the one it commits to (digest)")]
    Digest,
    #[error("the manifest it carries is for run {run:?} step {step} job {job:?}")]
    AnotherJob { run: String, step: u32, job: String },
}

/// The job manifest `assignment` carries (field 12), vouched for by the
/// assignment's signature as if read from its `manifest_key`. `None`: it
/// carries none (written before field 12); the reader fetches the key.
pub fn embedded_manifest(
    assignment: &Verified<pb::Assignment>,
) -> Option<Result<Verified<pb::JobManifest>, EmbeddedManifest>> {
    let manifest = assignment.manifest.clone()?;
    if manifest.run_id != assignment.run_id
        || manifest.job_id != assignment.job_id
        || manifest.step != assignment.step
    {
        return Some(Err(EmbeddedManifest::AnotherJob {
            run: manifest.run_id,
            step: manifest.step,
            job: manifest.job_id,
        }));
    }
    let manifest = assignment.vouch_for(assignment.manifest_key.clone(), manifest);
    if manifest.digest().as_bytes().as_slice() != assignment.manifest_digest.as_slice() {
        return Some(Err(EmbeddedManifest::Digest));
    }
    Some(Ok(manifest))
}

/// A receipt's own commitment that disagrees with its assignment: the
/// assigned hotkey signed something other than what it was asked to do.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BrokenCommitment {
    #[error("receipt does not commit to the assigned manifest")]
    Manifest,
    #[error("output committed at {committed}, expected {expected}")]
    OutputKey { committed: String, expected: String },
}

/// Checks what an attributed receipt commits to: the manifest its
/// assignment names, and its output at the attempt's artifact key.
pub fn check_commitments(
    layout: &Layout,
    receipt: &pb::Receipt,
    assignment: &pb::Assignment,
) -> Result<(), BrokenCommitment> {
    if receipt.manifest_digest != assignment.manifest_digest {
        return Err(BrokenCommitment::Manifest);
    }
    let expected = layout.artifact(&receipt.run_id, &receipt.job_id, receipt.attempt);
    let committed = receipt.output.as_ref().map_or("", |o| o.key.as_str());
    if committed != expected {
        return Err(BrokenCommitment::OutputKey {
            committed: committed.to_string(),
            expected,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::{Expect, open, seal};
    use crate::keys::Keypair;

    const RUN: &str = "run-1";

    struct Case {
        layout: Layout,
        miner: Keypair,
        assignment: pb::Assignment,
        receipt: pb::Receipt,
        key: String,
    }

    fn case() -> Case {
        let layout = Layout::new(7);
        let miner = Keypair::generate();
        let hotkey = miner.hotkey();
        let assignment = pb::Assignment {
            run_id: RUN.into(),
            job_id: "s0-fwd-1".into(),
            attempt: 2,
            hotkey: hotkey.to_bytes().to_vec(),
            worker: 1,
            manifest_key: layout.job_manifest(RUN, "s0-fwd-1"),
            manifest_digest: vec![7; 32],
            step: 0,
            ..Default::default()
        };
        let receipt = pb::Receipt {
            run_id: RUN.into(),
            job_id: "s0-fwd-1".into(),
            attempt: 2,
            hotkey: hotkey.to_bytes().to_vec(),
            worker: 1,
            assignment_key: layout.assignment(&hotkey, 1, 5),
            manifest_digest: vec![7; 32],
            output: Some(pb::OutputCommitment {
                key: layout.artifact(RUN, "s0-fwd-1", 2),
                ..Default::default()
            }),
            step: 0,
            ..Default::default()
        };
        let key = layout.receipt(RUN, 0, "s0-fwd-1", 2);
        Case {
            layout,
            miner,
            assignment,
            receipt,
            key,
        }
    }

    type Mutation = Box<dyn Fn(&mut Case)>;

    fn signed(receipt: &pb::Receipt, by: &Keypair, key: &str) -> Verified<pb::Receipt> {
        let sealed = seal(receipt, key, by);
        open::<pb::Receipt>(&sealed.bytes, key, Expect::AnySigner).expect("a fresh envelope opens")
    }

    fn attribute_case(c: &Case, signer: &Keypair) -> Result<Attributed, Misattribution> {
        let receipt = signed(&c.receipt, signer, &c.key);
        attribute(&c.layout, RUN, &c.key, &receipt, &c.assignment)
    }

    #[test]
    fn the_assigned_hotkeys_receipt_is_attributed_to_it() {
        let c = case();
        let got = attribute_case(&c, &c.miner).expect("honest receipt");
        assert_eq!(got.hotkey, c.miner.hotkey());
        assert_eq!(
            (got.step, got.job.as_str(), got.attempt),
            (0, "s0-fwd-1", 2)
        );
        assert_eq!(
            check_commitments(&c.layout, &c.receipt, &c.assignment),
            Ok(())
        );
    }

    #[test]
    fn a_receipt_signed_by_anyone_else_is_not() {
        let c = case();
        let stranger = Keypair::generate();
        assert!(matches!(
            attribute_case(&c, &stranger),
            Err(Misattribution::WrongSigner { .. })
        ));
    }

    #[test]
    fn every_field_that_ties_the_receipt_to_its_assignment_is_checked() {
        let mutations: Vec<(&str, Mutation)> = vec![
            ("step", Box::new(|c| c.receipt.step = 1)),
            ("job", Box::new(|c| c.receipt.job_id = "s0-fwd-2".into())),
            (
                "assignment key",
                Box::new(|c| c.receipt.assignment_key = "x".into()),
            ),
            (
                "assignment job",
                Box::new(|c| c.assignment.job_id = "s0-fwd-2".into()),
            ),
            ("assignment step", Box::new(|c| c.assignment.step = 3)),
            ("assignment attempt", Box::new(|c| c.assignment.attempt = 1)),
            ("assignment worker", Box::new(|c| c.assignment.worker = 0)),
            ("receipt worker", Box::new(|c| c.receipt.worker = 0)),
            (
                "receipt hotkey",
                Box::new(|c| c.receipt.hotkey = Keypair::generate().hotkey().to_bytes().to_vec()),
            ),
            (
                "bad assigned key",
                Box::new(|c| c.assignment.hotkey = vec![1; 3]),
            ),
        ];
        for (what, mutate) in mutations {
            let mut c = case();
            mutate(&mut c);
            assert!(attribute_case(&c, &c.miner).is_err(), "{what} not checked");
        }
    }

    #[test]
    fn a_receipt_key_of_another_run_is_not_attributed() {
        let c = case();
        let receipt = signed(&c.receipt, &c.miner, &c.key);
        let err = attribute(&c.layout, "run-2", &c.key, &receipt, &c.assignment).unwrap_err();
        assert_eq!(
            err,
            Misattribution::NotAReceiptKey {
                run: "run-2".into()
            }
        );
        let rejection = err.at(&c.key);
        assert!(rejection.to_string().contains(&c.key));
    }

    #[test]
    fn broken_commitments_are_named() {
        let mut c = case();
        c.receipt.manifest_digest = vec![8; 32];
        assert_eq!(
            check_commitments(&c.layout, &c.receipt, &c.assignment),
            Err(BrokenCommitment::Manifest)
        );
        let mut c = case();
        c.receipt.output = None;
        assert!(matches!(
            check_commitments(&c.layout, &c.receipt, &c.assignment),
            Err(BrokenCommitment::OutputKey { .. })
        ));
    }

    /// What an assignment carries is what a GET of its manifest key would
    /// have given: the same record, digest and signer; a carried manifest
    /// that is not the committed one, or is another job's, is refused.
    #[test]
    fn an_assignment_vouches_for_the_manifest_it_carries() {
        let c = case();
        let owner = Keypair::generate();
        let manifest = pb::JobManifest {
            run_id: RUN.into(),
            job_id: "s0-fwd-1".into(),
            step: 0,
            cost: Some(pb::StaticCost {
                flops: 1_000,
                bytes_moved: 64,
            }),
            ..Default::default()
        };
        let manifest_key = c.assignment.manifest_key.clone();
        let stored = open::<pb::JobManifest>(
            &seal(&manifest, &manifest_key, &owner).bytes,
            &manifest_key,
            Expect::Signer(&owner.hotkey()),
        )
        .expect("the stored manifest opens");
        let carrying = |manifest: Option<pb::JobManifest>| {
            let assignment = pb::Assignment {
                manifest_digest: stored.digest().to_vec(),
                manifest,
                ..c.assignment.clone()
            };
            let key = c.layout.assignment(&c.miner.hotkey(), 1, 5);
            open::<pb::Assignment>(
                &seal(&assignment, &key, &owner).bytes,
                &key,
                Expect::Signer(&owner.hotkey()),
            )
            .expect("the assignment opens")
        };
        let carried = embedded_manifest(&carrying(Some(manifest.clone())))
            .expect("carried")
            .expect("the committed manifest");
        assert_eq!(*carried, *stored);
        assert_eq!(carried.digest(), stored.digest());
        assert_eq!(carried.key(), stored.key());
        assert_eq!(carried.signer(), stored.signer());
        assert_eq!(carried.size(), stored.size());
        assert!(embedded_manifest(&carrying(None)).is_none());
        let other_cost = pb::JobManifest {
            cost: None,
            ..manifest.clone()
        };
        assert_eq!(
            embedded_manifest(&carrying(Some(other_cost))).map(|r| r.err()),
            Some(Some(EmbeddedManifest::Digest))
        );
        let other_job = pb::JobManifest {
            job_id: "s0-fwd-2".into(),
            ..manifest
        };
        assert!(matches!(
            embedded_manifest(&carrying(Some(other_job))),
            Some(Err(EmbeddedManifest::AnotherJob { .. }))
        ));
    }

    /// A receipt's copy of its assignment counts as the owner's word only
    /// if the owner signed it for the key the receipt names; a copy that
    /// was changed, re-signed by someone else or moved to another key sends
    /// the reader to the key. The copy cannot pass for the assignment.
    #[test]
    fn a_receipt_carries_its_assignment_as_the_owner_signed_it() {
        let c = case();
        let owner = Keypair::generate();
        let assignment = pb::Assignment {
            sealed_grant: vec![9; 300],
            next_seq: Some(6),
            ..c.assignment.clone()
        };
        let key = c.receipt.assignment_key.clone();
        let with_copy = pb::Assignment {
            copy_signature: sign_assignment_copy(&assignment, &key, &owner),
            ..assignment.clone()
        };
        let receipt = pb::Receipt {
            assignment: carry_assignment(&with_copy, &owner.hotkey()),
            ..c.receipt.clone()
        };
        let carried = carried_assignment(&receipt, &owner.hotkey()).expect("the owner's copy");
        assert_eq!(carried.key(), key);
        assert_eq!(*carried.signer(), owner.hotkey());
        assert_eq!(
            *carried,
            pb::Assignment {
                sealed_grant: Vec::new(),
                ..assignment.clone()
            }
        );
        // Attributed as the stored assignment would be.
        let stored = open::<pb::Assignment>(
            &seal(&with_copy, &key, &owner).bytes,
            &key,
            Expect::Signer(&owner.hotkey()),
        )
        .unwrap();
        let sealed_receipt = signed(&receipt, &c.miner, &c.key);
        assert_eq!(
            attribute(&c.layout, RUN, &c.key, &sealed_receipt, &carried),
            attribute(&c.layout, RUN, &c.key, &sealed_receipt, &stored)
        );

        // Not the owner's, changed, or for another key: no copy.
        assert!(carried_assignment(&receipt, &c.miner.hotkey()).is_none());
        let mut changed = receipt.clone();
        if let Some(copy) = changed.assignment.as_mut() {
            copy.payload = pb::Assignment {
                attempt: 3,
                ..pb::Assignment::decode(copy.payload.as_slice()).unwrap()
            }
            .encode_to_vec();
        }
        assert!(carried_assignment(&changed, &owner.hotkey()).is_none());
        let moved = pb::Receipt {
            assignment_key: c.layout.assignment(&owner.hotkey(), 1, 7),
            ..receipt.clone()
        };
        assert!(carried_assignment(&moved, &owner.hotkey()).is_none());
        let none = pb::Receipt {
            assignment: None,
            ..receipt.clone()
        };
        assert!(carried_assignment(&none, &owner.hotkey()).is_none());

        // Stored at the assignment's key, a copy is the wrong type.
        let copy = receipt.assignment.clone().unwrap();
        let err =
            open::<pb::Assignment>(&copy.encode_to_vec(), &key, Expect::Signer(&owner.hotkey()))
                .unwrap_err();
        assert!(
            matches!(err.reason, RejectReason::WrongType { .. }),
            "{err}"
        );
    }
}
