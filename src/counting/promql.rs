//! PromQL that sums what every replica counted, once per replica, and the reading of
//! Prometheus's answers: what `abproxy analyze --prometheus` and a bandit with
//! `counts: prometheus` ask. Pure: strings in, a query out; JSON in, samples out (the
//! queries' behaviour on gone, moved and doubly scraped replicas is tested in
//! Prometheus's own engine, `tests/it/bandit_replicas/query.rs`).

use serde_json::Value;

use crate::counting::metrics::EXPERIMENT_RUN;

/// `aggregate by (by)` over every replica of `selector` (a metric with its label
/// matchers, e.g. `abproxy_assignments_total{experiment="k"}`): each replica's last value
/// within `lookback`, of the replicas whose last `abproxy_experiment_run` of `key` is `run`.
///
/// - `last_over_time`: a replica that stopped (scaled down, or between the two halves of
///   a rolling restart) leaves stale series, which an instant selector drops; its devices
///   are still the run's, and its devices' later conversions are counted by the replicas
///   left, so dropping them would both shrink the counts and inflate the rates.
/// - only the (instance, job) whose last `abproxy_experiment_run` is `run`: a replica in
///   another run counts another population.
/// - `max by (replica, …)`: a replica is its data directory (the `replica` label), not its
///   address: one that came back under another address, or is scraped by two jobs, counts
///   once (its counts only grow, so the max is its latest).
/// - `topk by (instance, job) (1, …)`: an address that two replicas used in turn has one
///   series of counts (the counts carry no `replica` label) but two replica ids; the join
///   needs one, or Prometheus refuses the whole query.
pub fn latest_in_run(
    selector: &str,
    key: &str,
    run: u32,
    lookback: &str,
    by: &str,
    aggregate: &str,
) -> String {
    let on_run = format!(
        r#"topk by (instance, job) (1, max by (instance, job, replica) (0 * (last_over_time({EXPERIMENT_RUN}{{experiment="{key}"}}[{lookback}]) == {run}) + 1))"#
    );
    format!(
        r#"{aggregate} by ({by}) (max by (replica, {by}) (last_over_time({selector}[{lookback}]) * on (instance, job) group_left (replica) {on_run}))"#
    )
}

/// The samples of an instant-vector answer to `promql` (`/api/v1/query`), or why there
/// are none: Prometheus refused the query, or answered something other than a vector.
pub fn instant_vector(promql: &str, answer: Value) -> Result<Vec<Value>, String> {
    if answer["status"] != "success" {
        return Err(format!("Prometheus refused `{promql}`: {answer}"));
    }
    answer["data"]["result"]
        .as_array()
        .cloned()
        .ok_or_else(|| format!("Prometheus answered `{promql}` without a vector"))
}

/// The value of one sample of an instant vector (`"value": [time, "12"]`).
pub fn sample_value(series: &Value) -> Option<f64> {
    series["value"][1].as_str()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_that_is_not_a_vector_is_an_error() {
        let refused = serde_json::json!({"status": "error", "error": "bad query"});
        assert!(instant_vector("up", refused)
            .unwrap_err()
            .starts_with("Prometheus refused `up`"));
        let scalar =
            serde_json::json!({"status": "success", "data": {"resultType": "scalar", "result": 1}});
        assert_eq!(
            instant_vector("1", scalar).unwrap_err(),
            "Prometheus answered `1` without a vector"
        );
    }
}
