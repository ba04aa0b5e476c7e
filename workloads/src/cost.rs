//! Static job costs and compute units.
//!
//! A job's cost is a function of the run configuration and the job's kind
//! only: the same work always earns the same compute units, whoever does it
//! and however long it takes. The owner writes the cost into the signed
//! manifest; nothing a miner reports changes it.

use locus_protocol::pb::{JobKind, MlpConfig, StaticCost};

use crate::mlp::step_rows;

/// One compute unit is 1,000 FLOP-equivalents; moving one byte through the
/// bucket counts as 4 FLOPs, so I/O-heavy jobs (reduce) still earn.
pub fn compute_units(cost: &StaticCost) -> u64 {
    let work = cost
        .flops
        .saturating_add(cost.bytes_moved.saturating_mul(4));
    work.div_ceil(1000).max(1)
}

/// The static cost of one job of the MLP workload.
pub fn mlp_cost(cfg: &MlpConfig, kind: JobKind) -> StaticCost {
    let d = cfg.width as u64;
    let params = 2 * d * d + 2 * d;
    let param_bytes = params * 4;
    // A dense [rows, d] x [d, d] product and the rest of a 2-layer forward pass.
    let forward_flops = |rows: u64| rows * (4 * d * d + 4 * d);
    let step_rows = step_rows(cfg) as u64;
    let batch = cfg.batch_size as u64;
    let data_bytes = 2 * step_rows * d * 4;
    let deltas = (cfg.micro_batches * cfg.replicas) as u64;
    let (flops, bytes_moved) = match kind {
        // Student and teacher forward passes over the step batch.
        JobKind::Forward => (2 * forward_flops(step_rows), 2 * param_bytes + data_bytes),
        // Each local step: forward, backward (twice the forward) and the update.
        JobKind::Inner => (
            cfg.inner_steps as u64 * (3 * forward_flops(batch) + 2 * params),
            2 * param_bytes + data_bytes + param_bytes,
        ),
        JobKind::Reduce => (deltas * params, (deltas + 1) * param_bytes),
        JobKind::Outer => (4 * params, 5 * param_bytes),
        JobKind::Eval => (2 * forward_flops(cfg.eval_batch as u64), 2 * param_bytes),
        JobKind::Unspecified => (0, 0),
    };
    StaticCost { flops, bytes_moved }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mlp::default_config;

    #[test]
    fn costs_are_positive_and_inner_dominates_reduce() {
        let cfg = default_config(1);
        for kind in [
            JobKind::Forward,
            JobKind::Inner,
            JobKind::Reduce,
            JobKind::Outer,
            JobKind::Eval,
        ] {
            assert!(compute_units(&mlp_cost(&cfg, kind)) > 0, "{kind:?}");
        }
        assert!(mlp_cost(&cfg, JobKind::Inner).flops > mlp_cost(&cfg, JobKind::Reduce).flops);
        assert_eq!(
            compute_units(&StaticCost {
                flops: 1,
                bytes_moved: 0
            }),
            1
        );
    }
}
