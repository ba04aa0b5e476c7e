//! Static job costs and compute units.
//!
//! A job's cost is a function of the run configuration and the job's kind
//! only: the same work always earns the same compute units, whoever does it
//! and however long it takes. The owner writes the cost into the signed
//! manifest; nothing a miner reports changes it.

use locus_protocol::pb::StaticCost;

/// One compute unit is 1,000 FLOP-equivalents; moving one byte through the
/// bucket counts as 4 FLOPs, so I/O-heavy jobs (reduce) still earn.
pub fn compute_units(cost: &StaticCost) -> u64 {
    let work = cost
        .flops
        .saturating_add(cost.bytes_moved.saturating_mul(4));
    work.div_ceil(1000).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_job_earns_at_least_one_unit_and_io_counts() {
        let units = |flops, bytes_moved| compute_units(&StaticCost { flops, bytes_moved });
        assert_eq!(units(1, 0), 1);
        assert_eq!(units(0, 0), 1);
        assert_eq!(units(2000, 0), 2);
        assert_eq!(units(0, 500), 2);
        assert_eq!(units(u64::MAX, u64::MAX), u64::MAX.div_ceil(1000));
    }
}
