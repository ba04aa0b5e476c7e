//! Pure weight arithmetic: score normalization and the set-weights rate limit.

use crate::ChainError;

/// Largest on-chain weight value (`u16::MAX`): the top-scoring uid gets this.
pub const U16_MAX_WEIGHT: u16 = u16::MAX;

/// Turns `(uid, score)` pairs into the `(dests, weights)` vectors `set_weights` takes.
///
/// Matches what the Bittensor SDK does before emitting weights
/// (`convert_weights_and_uids_for_emit`): every score is divided by the largest one and
/// scaled to 65535 (so the best uid always gets exactly 65535), rounded to the nearest
/// integer, uids whose weight rounds to 0 are left out, and the result is sorted by uid.
///
/// Rejected: an empty list, a NaN / infinite / negative score, a uid given twice, and a
/// list whose scores are all zero (there is nothing to set; the chain would refuse an
/// empty weight vector).
pub fn normalize_max_u16(scores: &[(u16, f64)]) -> Result<(Vec<u16>, Vec<u16>), ChainError> {
    if scores.is_empty() {
        return Err(ChainError::NoWeights);
    }
    let mut sorted: Vec<(u16, f64)> = Vec::with_capacity(scores.len());
    for &(uid, score) in scores {
        if !score.is_finite() || score < 0.0 {
            return Err(ChainError::InvalidScore { uid, score });
        }
        sorted.push((uid, score));
    }
    sorted.sort_by_key(|&(uid, _)| uid);
    if let Some(pair) = sorted.windows(2).find(|pair| pair[0].0 == pair[1].0) {
        return Err(ChainError::DuplicateUid(pair[0].0));
    }
    let max = sorted
        .iter()
        .map(|&(_, score)| score)
        .fold(0.0_f64, f64::max);
    if max <= 0.0 {
        return Err(ChainError::AllScoresZero);
    }
    let mut uids = Vec::with_capacity(sorted.len());
    let mut weights = Vec::with_capacity(sorted.len());
    for (uid, score) in sorted {
        let scaled = (score / max * f64::from(U16_MAX_WEIGHT)).round();
        // `score / max` is in [0, 1], so `scaled` is in [0, 65535]; the clamp only guards
        // against rounding surprises.
        let weight = scaled.clamp(0.0, f64::from(U16_MAX_WEIGHT)) as u16;
        if weight > 0 {
            uids.push(uid);
            weights.push(weight);
        }
    }
    Ok((uids, weights))
}

/// Whether a validator may set weights now, by the rule Subtensor applies
/// (`check_rate_limit`): allowed when it never set weights (`last_update == 0`) or when at
/// least `rate_limit` blocks have passed since `last_update`.
///
/// Returns `None` when allowed, or `Some(next_block)`: the first block at which it is.
pub fn rate_limited_until(last_update: u64, rate_limit: u64, current_block: u64) -> Option<u64> {
    if last_update == 0 || rate_limit == 0 {
        return None;
    }
    let next = last_update.saturating_add(rate_limit);
    if current_block >= next {
        None
    } else {
        Some(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_normalizes_and_sorts() {
        let (uids, weights) =
            normalize_max_u16(&[(7, 0.5), (2, 1.0), (4, 0.25), (9, 0.0)]).expect("valid scores");
        assert_eq!(uids, vec![2, 4, 7]);
        assert_eq!(weights, vec![65535, 16384, 32768]);
    }

    #[test]
    fn scale_of_scores_does_not_matter() {
        let a = normalize_max_u16(&[(0, 3.0), (1, 1.0)]).expect("valid");
        let b = normalize_max_u16(&[(0, 300.0), (1, 100.0)]).expect("valid");
        assert_eq!(a, b);
        assert_eq!(a.1, vec![65535, 21845]);
    }

    #[test]
    fn single_uid_gets_full_weight() {
        assert_eq!(
            normalize_max_u16(&[(5, 1e-9)]).expect("valid"),
            (vec![5], vec![65535])
        );
    }

    #[test]
    fn tiny_scores_that_round_to_zero_are_dropped() {
        let (uids, weights) = normalize_max_u16(&[(0, 1.0), (1, 1e-6)]).expect("valid");
        assert_eq!((uids, weights), (vec![0], vec![65535]));
    }

    #[test]
    fn all_zero_is_rejected() {
        assert!(matches!(
            normalize_max_u16(&[(0, 0.0), (1, 0.0)]),
            Err(ChainError::AllScoresZero)
        ));
    }

    #[test]
    fn empty_is_rejected() {
        assert!(matches!(normalize_max_u16(&[]), Err(ChainError::NoWeights)));
    }

    #[test]
    fn nan_negative_and_infinite_are_rejected() {
        for bad in [f64::NAN, -0.5, f64::INFINITY, f64::NEG_INFINITY] {
            match normalize_max_u16(&[(0, 1.0), (3, bad)]) {
                Err(ChainError::InvalidScore { uid: 3, .. }) => {}
                other => panic!("score {bad} gave {other:?}"),
            }
        }
    }

    #[test]
    fn duplicate_uid_is_rejected() {
        assert!(matches!(
            normalize_max_u16(&[(1, 1.0), (1, 2.0)]),
            Err(ChainError::DuplicateUid(1))
        ));
    }

    #[test]
    fn rate_limit_rule() {
        // Never set weights: allowed at once.
        assert_eq!(rate_limited_until(0, 100, 5), None);
        // No limit configured.
        assert_eq!(rate_limited_until(90, 0, 91), None);
        // Set at 1000 with a limit of 100: refused until block 1100 included.
        assert_eq!(rate_limited_until(1000, 100, 1000), Some(1100));
        assert_eq!(rate_limited_until(1000, 100, 1099), Some(1100));
        assert_eq!(rate_limited_until(1000, 100, 1100), None);
        assert_eq!(rate_limited_until(1000, 100, 5000), None);
        // No overflow at the edges.
        assert_eq!(rate_limited_until(u64::MAX - 1, 100, 7), Some(u64::MAX));
    }
}
