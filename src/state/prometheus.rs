//! Asking Prometheus: an instant query at a given time, and one experiment's counts of
//! one run, summed over every replica at one instant. `abproxy analyze --prometheus`, the
//! bandit updater and the automated decisions read through here, so that with
//! `counts: prometheus` every replica reads the counts the analysis shows.

use std::time::Duration;

use serde_json::Value;

use crate::config::{BanditCounts, PrometheusSource};
use crate::counting::metrics;
use crate::counting::prometheus_counts::{counts_from, Answers};
use crate::counting::promql::{instant_vector, latest_in_run};
use crate::stats::analysis::Counts;
use crate::transport::json_get::{get_json, query_component, Service};

/// How long after a boundary (of a bandit or a decision) its counts are read: at once from
/// this process's book; after the settle delay from Prometheus, so every replica's scrape
/// up to it has arrived.
pub fn settle(counts: BanditCounts, prometheus: Option<&PrometheusSource>) -> Duration {
    match (counts, prometheus) {
        (BanditCounts::Prometheus, Some(p)) => p.settle,
        _ => Duration::ZERO,
    }
}

/// The samples of the instant vector `promql` evaluates to at `at_ms` (Unix ms), from the
/// Prometheus at `base_url` (`http://host:port`, a path prefix allowed, a trailing `/`
/// ignored). Errors are sentences: the server unreachable, or the query refused.
pub async fn instant_query(base_url: &str, promql: &str, at_ms: u64) -> Result<Vec<Value>, String> {
    let url = format!(
        "{}/api/v1/query?query={}&time={}.{:03}",
        base_url.trim_end_matches('/'),
        query_component(promql),
        at_ms / 1000,
        at_ms % 1000
    );
    instant_vector(promql, get_json(&url, None, Service::Prometheus).await?)
}

/// Run `run` of experiment `key` (whose control is `control`) at `at_ms`, summed over
/// every replica Prometheus scraped within `lookback` (a Prometheus duration) whose last
/// run of `key` is `run`, once per replica (see [`latest_in_run`]): devices, conversions,
/// value sums and squares, weights, and the same per period with each period's shares.
/// Every query is evaluated at the one instant `at_ms`, so the totals and the periods
/// come from the same scrape of each replica (a scrape between two queries would
/// otherwise let the periods hold more than the totals). Returns the counts and the
/// warnings for the reader (replicas whose periods differ).
pub async fn run_counts(
    base_url: &str,
    key: &str,
    run: u32,
    control: &str,
    lookback: &str,
    at_ms: u64,
) -> Result<(Counts, Vec<String>), String> {
    let latest = |metric: &str, by: &str, aggregate: &str| {
        let selector = format!(r#"{metric}{{experiment="{key}"}}"#);
        let promql = latest_in_run(&selector, key, run, lookback, by, aggregate);
        async move { instant_query(base_url, &promql, at_ms).await }
    };
    let answers = Answers {
        users: latest(metrics::ASSIGNMENTS, "variant", "sum").await?,
        conversions: latest(metrics::CONVERSIONS, "variant, goal", "sum").await?,
        value_sums: latest(metrics::CONVERSION_VALUE_SUM, "variant, goal", "sum").await?,
        value_squares: latest(
            metrics::CONVERSION_VALUE_SUM_SQUARES,
            "variant, goal",
            "sum",
        )
        .await?,
        weights: latest(metrics::VARIANT_WEIGHT, "variant", "max").await?,
        period_users: latest(metrics::PERIOD_ASSIGNMENTS, "variant, period", "sum").await?,
        period_conversions: latest(metrics::PERIOD_CONVERSIONS, "variant, goal, period", "sum")
            .await?,
        period_value_sums: latest(
            metrics::PERIOD_CONVERSION_VALUE_SUM,
            "variant, goal, period",
            "sum",
        )
        .await?,
        period_value_squares: latest(
            metrics::PERIOD_CONVERSION_VALUE_SUM_SQUARES,
            "variant, goal, period",
            "sum",
        )
        .await?,
        // Replicas of one period hash by the same shares: the max and the min agree
        // unless their periods differ.
        share_max: latest(metrics::PERIOD_SHARE, "variant, period", "max").await?,
        share_min: latest(metrics::PERIOD_SHARE, "variant, period", "min").await?,
    };
    counts_from(key, control, run, &answers)
}
