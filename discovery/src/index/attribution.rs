//! Whether a receipt is the work its assignment handed out: the one rule
//! the index applies between a receipt and the owner-signed assignment it
//! names. It lives alone here so that the protocol's shared rule can take
//! its place by changing [`attribute`]'s body.

use locus_protocol::{Layout, Verified, pb};

use super::{check, ss58_of};

/// `Ok` when `assignment` (verified as the owner's) is the one `receipt`
/// of `run` answers: same run, step, job, attempt, hotkey and worker, and
/// the same job manifest digest; otherwise why not. It takes what the
/// protocol's `attribution::attribute` takes (layout, run, key, verified
/// receipt, assignment), though this rule reads neither the layout nor the
/// run: the receipt's own fields were checked against its key before.
pub(super) fn attribute(
    _layout: &Layout,
    _run: &str,
    receipt: &Verified<pb::Receipt>,
    assignment: &pb::Assignment,
) -> Result<(), String> {
    let (r, a): (&pb::Receipt, _) = (receipt, assignment);
    check(
        a.run_id == r.run_id
            && a.job_id == r.job_id
            && a.attempt == r.attempt
            && a.step == r.step
            && a.hotkey == r.hotkey
            && a.worker == r.worker,
        || {
            format!(
                "assignment is for job {:?} attempt {} hotkey {} worker {}, the receipt claims job {:?} attempt {} worker {}",
                a.job_id,
                a.attempt,
                ss58_of(&a.hotkey),
                a.worker,
                r.job_id,
                r.attempt,
                r.worker
            )
        },
    )?;
    check(a.manifest_digest == r.manifest_digest, || {
        "receipt commits to another job manifest than its assignment".into()
    })
}
