//! A variant's upstream figures over a window, for the guardrails of automated decisions
//! (`experiments::decide`): requests, errors and the p95 latency, from the counts of
//! `abproxy_variant_responses_total` and the buckets of `abproxy_variant_duration_seconds`.
//! Pure: counts in, figures out; reading the counts (this process's metrics, or
//! Prometheus's sum over the replicas) is `counting::upstream_window`'s.
//!
//! The p95 follows Prometheus's `histogram_quantile`, so the figure a decision uses is the
//! one a dashboard over the same buckets shows.

use std::collections::BTreeMap;

/// The `code_class` values that are errors of the upstream: a 5xx answer, or no answer
/// at all (`error`: refused, reset, timed out). Client-caused failures are never counted
/// in any class, so they cannot raise a variant's error rate.
pub const ERROR_CLASSES: [&str; 2] = ["5xx", "error"];

/// The latency quantile the guardrail compares.
pub const LATENCY_QUANTILE: f64 = 0.95;

/// A variant's upstream figures in the window since the last evaluation.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct UpstreamWindow {
    pub requests: u64,
    /// 5xx answers and requests without an answer (client-caused failures left out).
    pub errors: u64,
    pub p95_seconds: Option<f64>,
}

/// One reading of a variant's cumulative counters: what its counts were at one instant
/// since the process started.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UpstreamTotals {
    /// By `code_class` label (`1xx` … `5xx`, `error`).
    pub responses: BTreeMap<String, u64>,
    /// The duration histogram's buckets: (upper bound in seconds, cumulative count),
    /// ascending, the last one `+Inf` (its count is every observation).
    pub buckets: Vec<(f64, u64)>,
}

impl UpstreamTotals {
    /// What was counted after `earlier` up to this reading. A counter that went down
    /// means the process restarted in between (its counters started again from 0), so
    /// this reading is then the whole window: the same rule as Prometheus's `increase`,
    /// without its extrapolation.
    pub fn since(&self, earlier: &UpstreamTotals) -> UpstreamTotals {
        let class_went_down = earlier
            .responses
            .iter()
            .any(|(class, &before)| self.responses.get(class).copied().unwrap_or(0) < before);
        let buckets_went_down = !earlier.buckets.is_empty()
            && (earlier.buckets.len() != self.buckets.len()
                || earlier
                    .buckets
                    .iter()
                    .zip(&self.buckets)
                    .any(|(&(le_before, before), &(le, now))| le_before != le || now < before));
        if class_went_down || buckets_went_down {
            return self.clone();
        }
        UpstreamTotals {
            responses: self
                .responses
                .iter()
                .map(|(class, &now)| {
                    let before = earlier.responses.get(class).copied().unwrap_or(0);
                    (class.clone(), now - before)
                })
                .collect(),
            buckets: if earlier.buckets.is_empty() {
                self.buckets.clone()
            } else {
                self.buckets
                    .iter()
                    .zip(&earlier.buckets)
                    .map(|(&(le, now), &(_, before))| (le, now - before))
                    .collect()
            },
        }
    }

    /// These counts, taken as one window's.
    pub fn window(&self) -> UpstreamWindow {
        let responses: BTreeMap<&str, f64> = self
            .responses
            .iter()
            .map(|(class, &n)| (class.as_str(), n as f64))
            .collect();
        let buckets: Vec<(f64, f64)> = self.buckets.iter().map(|&(le, n)| (le, n as f64)).collect();
        window(&responses, &buckets)
    }
}

/// A window from its counts: responses by `code_class`, and the duration histogram's
/// cumulative buckets (upper bound, count; any order, `+Inf` among them). Counts are
/// floats because Prometheus's `increase` extrapolates; requests and errors are rounded
/// to the nearest whole request.
pub fn window(responses: &BTreeMap<&str, f64>, buckets: &[(f64, f64)]) -> UpstreamWindow {
    let requests: f64 = responses.values().sum();
    let errors: f64 = ERROR_CLASSES
        .iter()
        .filter_map(|class| responses.get(class))
        .sum();
    UpstreamWindow {
        requests: requests.round().max(0.0) as u64,
        errors: errors.round().max(0.0) as u64,
        p95_seconds: histogram_quantile(LATENCY_QUANTILE, buckets),
    }
}

/// The `q` quantile (0 ≤ q ≤ 1) of a histogram given as cumulative buckets (upper
/// bound, count), as Prometheus's `histogram_quantile` computes it (`bucketQuantile` in
/// its `promql/quantile.go`):
///
/// - buckets sorted by bound, those of one bound merged, counts made monotonic (an
///   `increase` of each bucket on its own can come out slightly non-monotonic);
/// - the rank `q × observations` falls in the first bucket whose count reaches it, and
///   the quantile is interpolated linearly inside it, from the bound below (0 for the
///   lowest bucket when its bound is above 0);
/// - a rank in the `+Inf` bucket gives the highest finite bound;
/// - `None` (Prometheus: NaN) with no observations, without a `+Inf` bucket, or with
///   fewer than two buckets.
pub fn histogram_quantile(q: f64, buckets: &[(f64, f64)]) -> Option<f64> {
    let mut sorted: Vec<(f64, f64)> = Vec::with_capacity(buckets.len());
    let mut by_bound = buckets.to_vec();
    by_bound.sort_by(|a, b| a.0.total_cmp(&b.0));
    for (le, count) in by_bound {
        match sorted.last_mut() {
            Some(last) if last.0 == le => last.1 += count,
            _ => sorted.push((le, count)),
        }
    }
    if sorted.len() < 2 || sorted.last()?.0 != f64::INFINITY {
        return None;
    }
    let mut highest = f64::NEG_INFINITY;
    for bucket in &mut sorted {
        highest = highest.max(bucket.1);
        bucket.1 = highest;
    }
    let observations = sorted.last()?.1;
    if observations <= 0.0 || observations.is_nan() {
        return None;
    }
    let mut rank = q * observations;
    let b = sorted.iter().position(|&(_, count)| count >= rank)?;
    if b == sorted.len() - 1 {
        return Some(sorted[b - 1].0);
    }
    if b == 0 && sorted[0].0 <= 0.0 {
        return Some(sorted[0].0);
    }
    let (bucket_end, mut count) = sorted[b];
    let mut bucket_start = 0.0;
    if b > 0 {
        bucket_start = sorted[b - 1].0;
        count -= sorted[b - 1].1;
        rank -= sorted[b - 1].1;
    }
    Some(bucket_start + (bucket_end - bucket_start) * (rank / count))
}

#[cfg(test)]
mod tests {
    use super::*;

    const INF: f64 = f64::INFINITY;

    fn totals(responses: &[(&str, u64)], buckets: &[(f64, u64)]) -> UpstreamTotals {
        UpstreamTotals {
            responses: responses
                .iter()
                .map(|&(class, n)| (class.to_string(), n))
                .collect(),
            buckets: buckets.to_vec(),
        }
    }

    fn close(a: Option<f64>, b: f64) -> bool {
        a.is_some_and(|a| (a - b).abs() < 1e-12)
    }

    /// 100 observations: 10 up to 0.1 s, 80 more up to 0.5 s, 10 more up to 1 s.
    /// rank 95 is in (0.5, 1]: 0.5 + 0.5 × (95 − 90) / 10 = 0.75 (the same histogram in
    /// `promtool test rules`: `counting::upstream_window`'s Prometheus test).
    #[test]
    fn the_p95_interpolates_inside_its_bucket() {
        let buckets = [(0.1, 10.0), (0.5, 90.0), (1.0, 100.0), (INF, 100.0)];
        assert!(close(histogram_quantile(0.95, &buckets), 0.75));
        // rank 50: 0.1 + 0.4 × (50 − 10) / 80 = 0.3.
        assert!(close(histogram_quantile(0.5, &buckets), 0.3));
    }

    /// The lowest bucket starts at 0: 20 observations up to 0.01 s, rank 19 → 0.0095.
    #[test]
    fn the_lowest_bucket_interpolates_from_zero() {
        let buckets = [(0.01, 20.0), (0.1, 20.0), (INF, 20.0)];
        assert!(close(histogram_quantile(0.95, &buckets), 0.0095));
    }

    /// 10 observations, 9 up to 0.5 s and one slower than the highest bound: rank 9.5 is
    /// in `+Inf`, and the answer is the highest finite bound.
    #[test]
    fn a_quantile_in_the_inf_bucket_is_the_highest_finite_bound() {
        let buckets = [(0.1, 0.0), (0.5, 9.0), (30.0, 9.0), (INF, 10.0)];
        assert_eq!(histogram_quantile(0.95, &buckets), Some(30.0));
    }

    #[test]
    fn no_observations_or_no_inf_bucket_has_no_quantile() {
        assert_eq!(
            histogram_quantile(0.95, &[(0.1, 0.0), (1.0, 0.0), (INF, 0.0)]),
            None
        );
        assert_eq!(histogram_quantile(0.95, &[(0.1, 3.0), (1.0, 5.0)]), None);
        assert_eq!(histogram_quantile(0.95, &[(INF, 5.0)]), None);
        assert_eq!(histogram_quantile(0.95, &[]), None);
    }

    /// Buckets in any order, and a count that dipped below the bucket under it (two
    /// separately extrapolated `increase`s), read as Prometheus reads them: sorted, and
    /// monotonic (the dip raised to 9). rank 9.5 in (0.5, 1]: 0.5 + 0.5 × 0.5 / 1 = 0.75.
    #[test]
    fn unsorted_and_non_monotonic_buckets_are_read_as_prometheus_reads_them() {
        let buckets = [(INF, 10.0), (1.0, 10.0), (0.5, 8.5), (0.1, 9.0)];
        assert!(close(histogram_quantile(0.95, &buckets), 0.75));
    }

    #[test]
    fn requests_are_every_class_and_errors_are_5xx_and_no_answer() {
        let t = totals(
            &[("2xx", 90), ("4xx", 5), ("5xx", 3), ("error", 2)],
            &[(0.1, 50), (1.0, 98), (INF, 98)],
        );
        let w = t.window();
        assert_eq!((w.requests, w.errors), (100, 5));
        // rank 93.1 in (0.1, 1]: 0.1 + 0.9 × 43.1 / 48.
        assert!(close(w.p95_seconds, 0.1 + 0.9 * 43.1 / 48.0));
    }

    #[test]
    fn extrapolated_counts_round_to_whole_requests() {
        let responses = BTreeMap::from([("2xx", 10.4), ("5xx", 1.6)]);
        let w = window(&responses, &[]);
        assert_eq!((w.requests, w.errors, w.p95_seconds), (12, 2, None));
    }

    #[test]
    fn a_window_is_the_later_reading_minus_the_earlier() {
        let earlier = totals(
            &[("2xx", 10), ("5xx", 1)],
            &[(0.1, 8), (1.0, 11), (INF, 11)],
        );
        let later = totals(
            &[("2xx", 30), ("5xx", 1), ("error", 4)],
            &[(0.1, 8), (1.0, 31), (INF, 31)],
        );
        let since = later.since(&earlier);
        assert_eq!(
            since,
            totals(
                &[("2xx", 20), ("5xx", 0), ("error", 4)],
                &[(0.1, 0), (1.0, 20), (INF, 20)]
            )
        );
        let w = since.window();
        assert_eq!((w.requests, w.errors), (24, 4));
        // rank 19 of 20, all in (0.1, 1]: 0.1 + 0.9 × 19 / 20.
        assert!(close(w.p95_seconds, 0.1 + 0.9 * 0.95));
    }

    #[test]
    fn a_counter_that_went_down_means_a_restart_and_the_later_reading_is_the_window() {
        let earlier = totals(&[("2xx", 100)], &[(0.1, 100), (INF, 100)]);
        let later = totals(&[("2xx", 7), ("5xx", 1)], &[(0.1, 8), (INF, 8)]);
        assert_eq!(later.since(&earlier), later);
        // A class the earlier reading had and the later one lacks went down too.
        let earlier = totals(&[("5xx", 2)], &[]);
        let later = totals(&[("2xx", 40)], &[]);
        assert_eq!(later.since(&earlier), later);
        // Only the histogram went down.
        let earlier = totals(&[("2xx", 5)], &[(0.1, 5), (INF, 5)]);
        let later = totals(&[("2xx", 9)], &[(0.1, 2), (INF, 2)]);
        assert_eq!(later.since(&earlier), later);
    }

    #[test]
    fn no_earlier_reading_makes_the_later_one_the_window() {
        let later = totals(&[("2xx", 3)], &[(0.1, 3), (INF, 3)]);
        assert_eq!(later.since(&UpstreamTotals::default()), later);
    }
}
