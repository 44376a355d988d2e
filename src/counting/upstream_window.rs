//! Reading the variants' upstream counts (`abproxy_variant_responses_total`,
//! `abproxy_variant_duration_seconds`) for the guardrails, two ways:
//!
//! - [`local`]: this process's counters now, as [`UpstreamTotals`]; the caller keeps the
//!   reading of the last evaluation and takes the window with [`UpstreamTotals::since`];
//! - [`prometheus_queries`] and [`from_prometheus_answers`] (`counts: prometheus`): the
//!   window's increase summed over every replica, asked of Prometheus by the caller (no
//!   HTTP here), read into windows.
//!
//! Both end in the same `stats::upstream` figures, the p95 by `histogram_quantile`'s rule.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use prometheus::core::Metric;
use serde_json::Value;

use crate::counting::metrics::{Metrics, CODE_CLASSES, VARIANT_DURATION, VARIANT_RESPONSES};
use crate::counting::promql::sample_value;
use crate::stats::upstream::{window, UpstreamTotals, UpstreamWindow};

/// The current totals of each of `variants` of `experiment` in this process (a variant
/// without series yet gets them, at 0).
pub fn local(
    metrics: &Metrics,
    experiment: &str,
    variants: &[&str],
) -> BTreeMap<String, UpstreamTotals> {
    variants
        .iter()
        .map(|&variant| {
            let responses = CODE_CLASSES
                .iter()
                .map(|&class| {
                    let counter = metrics
                        .variant_responses
                        .with_label_values(&[experiment, variant, class]);
                    (class.to_string(), counter.get())
                })
                .collect();
            let histogram = metrics
                .variant_duration
                .with_label_values(&[experiment, variant])
                .metric();
            let histogram = histogram.get_histogram();
            // The exposition's buckets are the finite ones; `+Inf` is every observation.
            let buckets = histogram
                .get_bucket()
                .iter()
                .map(|b| (b.upper_bound(), b.cumulative_count()))
                .chain([(f64::INFINITY, histogram.get_sample_count())])
                .collect();
            (variant.to_string(), UpstreamTotals { responses, buckets })
        })
        .collect()
}

/// The PromQL of one window of `window` (the decision's `every`) ending at the instant
/// it is evaluated at: responses by (variant, code_class), then duration buckets by
/// (variant, le), each the sum over every replica of its series' `increase` (which
/// reads a replica's restart as a counter reset).
pub fn prometheus_queries(experiment: &str, window: Duration) -> [String; 2] {
    // In milliseconds: `every` may have a part of a second (`1500ms`).
    let range = format!("{}ms", window.as_millis());
    [
        format!(
            r#"sum by (variant, code_class) (increase({VARIANT_RESPONSES}{{experiment="{experiment}"}}[{range}]))"#
        ),
        format!(
            r#"sum by (variant, le) (increase({VARIANT_DURATION}_bucket{{experiment="{experiment}"}}[{range}]))"#
        ),
    ]
}

/// The variants' windows from the samples of Prometheus's answers to
/// [`prometheus_queries`] (in the same order; `state::prometheus::instant_query` asks
/// and checks the answers). A variant with no series in either answer
/// is missing (an empty window to the decision); one sample that cannot be read fails
/// the whole reading, as a window read in part would understate a variant's errors.
pub fn from_prometheus_answers(
    responses: &[Value],
    buckets: &[Value],
) -> Result<BTreeMap<String, UpstreamWindow>, String> {
    let mut by_class: BTreeMap<String, BTreeMap<&str, f64>> = BTreeMap::new();
    for sample in responses {
        let variant = label(sample, "variant")?;
        let class = label(sample, "code_class")?;
        *by_class
            .entry(variant.to_string())
            .or_default()
            .entry(class)
            .or_default() += value(sample)?;
    }
    let mut by_bound: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for sample in buckets {
        let variant = label(sample, "variant")?;
        let le = label(sample, "le")?;
        let bound = match le {
            "+Inf" => f64::INFINITY,
            finite => finite
                .parse()
                .map_err(|_| format!("a bucket bound `le=\"{finite}\"` is not a number"))?,
        };
        by_bound
            .entry(variant.to_string())
            .or_default()
            .push((bound, value(sample)?));
    }
    let variants: BTreeSet<String> = by_class.keys().chain(by_bound.keys()).cloned().collect();
    Ok(variants
        .into_iter()
        .map(|variant| {
            let classes = by_class.get(&variant).cloned().unwrap_or_default();
            let buckets = by_bound.get(&variant).map(Vec::as_slice).unwrap_or(&[]);
            let figures = window(&classes, buckets);
            (variant, figures)
        })
        .collect())
}

fn label<'a>(sample: &'a Value, name: &str) -> Result<&'a str, String> {
    sample["metric"][name]
        .as_str()
        .ok_or_else(|| format!("a sample without a `{name}` label: {sample}"))
}

fn value(sample: &Value) -> Result<f64, String> {
    sample_value(sample).ok_or_else(|| format!("a sample without a number: {sample}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::counting::metrics::VariantMetrics;
    use crate::stats::upstream::ERROR_CLASSES;
    use serde_json::json;

    fn sample(labels: Value, value: &str) -> Value {
        json!({"metric": labels, "value": [1_700_000_000.0, value]})
    }

    #[test]
    fn the_error_classes_are_code_classes() {
        for class in ERROR_CLASSES {
            assert!(CODE_CLASSES.contains(&class), "{class}");
        }
    }

    #[test]
    fn the_queries_sum_each_variants_increase_over_the_window() {
        let [responses, buckets] = prometheus_queries("checkout", Duration::from_secs(300));
        assert_eq!(
            responses,
            r#"sum by (variant, code_class) (increase(abproxy_variant_responses_total{experiment="checkout"}[300000ms]))"#
        );
        assert_eq!(
            buckets,
            r#"sum by (variant, le) (increase(abproxy_variant_duration_seconds_bucket{experiment="checkout"}[300000ms]))"#
        );
    }

    /// B: 100 requests (3 × 5xx, 2 without an answer), buckets 10 ≤ 0.1 s, 90 ≤ 0.5 s,
    /// 100 ≤ 1 s: p95 = 0.5 + 0.5 × (95 − 90) / 10 = 0.75. A answered 2xx only, none
    /// slower than 0.1 s: p95 = 0.1 × 9.5 / 10 = 0.095.
    #[test]
    fn answers_become_each_variants_window() {
        let responses = vec![
            sample(json!({"variant": "A", "code_class": "2xx"}), "10"),
            sample(json!({"variant": "B", "code_class": "2xx"}), "95"),
            sample(json!({"variant": "B", "code_class": "5xx"}), "3"),
            sample(json!({"variant": "B", "code_class": "error"}), "2"),
        ];
        let mut buckets = vec![
            sample(json!({"variant": "A", "le": "0.1"}), "10"),
            sample(json!({"variant": "A", "le": "+Inf"}), "10"),
            sample(json!({"variant": "B", "le": "+Inf"}), "100"),
        ];
        for (le, n) in [("0.1", "10"), ("0.5", "90"), ("1", "100")] {
            buckets.push(sample(json!({"variant": "B", "le": le}), n));
        }
        let windows = from_prometheus_answers(&responses, &buckets).unwrap();
        assert_eq!(windows.len(), 2);
        let a = windows["A"];
        assert_eq!((a.requests, a.errors), (10, 0));
        assert!((a.p95_seconds.unwrap() - 0.095).abs() < 1e-12);
        let b = windows["B"];
        assert_eq!((b.requests, b.errors), (100, 5));
        assert!((b.p95_seconds.unwrap() - 0.75).abs() < 1e-12);
    }

    /// `increase` extrapolates to the window's edges: fractions are rounded to whole
    /// requests, and a variant without duration samples has no p95.
    #[test]
    fn extrapolated_answers_round_and_a_variant_without_buckets_has_no_p95() {
        let responses = vec![
            sample(json!({"variant": "A", "code_class": "2xx"}), "10.4"),
            sample(json!({"variant": "A", "code_class": "5xx"}), "0.6"),
        ];
        let windows = from_prometheus_answers(&responses, &[]).unwrap();
        assert_eq!(
            windows["A"],
            UpstreamWindow {
                requests: 11,
                errors: 1,
                p95_seconds: None
            }
        );
    }

    #[test]
    fn an_unreadable_sample_is_an_error() {
        let no_variant = vec![sample(json!({"code_class": "2xx"}), "1")];
        assert!(from_prometheus_answers(&no_variant, &[]).is_err());
        let bad_le = vec![sample(json!({"variant": "A", "le": "soon"}), "1")];
        assert!(from_prometheus_answers(&[], &bad_le).is_err());
        let no_number = vec![json!({"metric": {"variant": "A", "code_class": "2xx"}})];
        assert!(from_prometheus_answers(&no_number, &[]).is_err());
    }

    #[test]
    fn the_local_reading_is_the_registered_series() {
        let metrics = Metrics::new();
        let b = VariantMetrics::new(&metrics, "k", "B");
        b.responses[1].inc_by(3);
        b.responses[4].inc();
        b.duration.observe(0.003);
        b.duration.observe(0.2);
        let totals = local(&metrics, "k", &["A", "B"]);
        let a = &totals["A"];
        assert!(a.responses.values().all(|&n| n == 0));
        assert_eq!(a.responses.len(), CODE_CLASSES.len());
        assert_eq!(a.buckets.last(), Some(&(f64::INFINITY, 0)));
        let b = &totals["B"];
        assert_eq!((b.responses["2xx"], b.responses["5xx"]), (3, 1));
        let count_at = |le: f64| b.buckets.iter().find(|&&(l, _)| l == le).unwrap().1;
        assert_eq!(
            (count_at(0.0025), count_at(0.005), count_at(0.25)),
            (0, 1, 2)
        );
        assert_eq!(b.buckets.last(), Some(&(f64::INFINITY, 2)));
        let w = b.window();
        assert_eq!((w.requests, w.errors), (4, 1));
    }
}
