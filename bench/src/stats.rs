//! Order statistics used by the report: medians across rounds and
//! latency percentiles within a round.

/// Median of `values` (mean of the two middle values for an even count);
/// `None` when empty. NaNs are ignored.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    Some(if sorted.len().is_multiple_of(2) {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    } else {
        sorted[mid]
    })
}

/// Percentile `p` (0–100) of an ascending-sorted slice by the nearest-rank
/// method: the smallest value with at least `p`% of samples at or below it.
pub fn percentile_sorted(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() || !(0.0..=100.0).contains(&p) {
        return None;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Spread of `values` as (max − min) / median, in percent; a quick noise gauge.
pub fn spread_percent(values: &[f64]) -> Option<f64> {
    let mid = median(values)?;
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (mid != 0.0).then(|| (max - min) / mid.abs() * 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[7.0]), Some(7.0));
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[5.0, f64::NAN, 1.0, 3.0]), Some(3.0));
    }

    #[test]
    fn median_ignores_one_outlier() {
        assert_eq!(median(&[100.0, 101.0, 99.0, 5.0, 100.5]), Some(100.0));
    }

    #[test]
    fn nearest_rank_percentiles() {
        let samples: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile_sorted(&samples, 50.0), Some(50));
        assert_eq!(percentile_sorted(&samples, 99.0), Some(99));
        assert_eq!(percentile_sorted(&samples, 100.0), Some(100));
        assert_eq!(percentile_sorted(&samples, 0.0), Some(1));
        let few = [10, 20, 30];
        assert_eq!(percentile_sorted(&few, 50.0), Some(20));
        assert_eq!(percentile_sorted(&few, 99.0), Some(30));
        assert_eq!(percentile_sorted(&[], 50.0), None);
        assert_eq!(percentile_sorted(&few, 101.0), None);
    }

    #[test]
    fn spread_is_range_over_median() {
        assert_eq!(spread_percent(&[90.0, 100.0, 110.0]), Some(20.0));
        assert_eq!(spread_percent(&[]), None);
        assert_eq!(spread_percent(&[0.0, 0.0]), None);
    }
}
