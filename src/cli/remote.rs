//! Where `abproxy analyze` gets counts from when they are not in a file: a running
//! proxy's admin API, or a Prometheus server that scrapes one or more replicas.
//!
//! Both give `analysis::Counts`, so every source is analysed and printed the same way.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::counting::metrics;
use crate::stats::analysis::{indexmap_like::OrderedMap, Counts, GoalCounts, VariantCounts};
pub(crate) use crate::transport::json_get::{get_json, Service};

/// Counts of one experiment and, from the admin API, the run they are from.
pub struct Fetched {
    pub counts: Counts,
    /// `{"number", "started_at", "ended_at"}` when the source knows it.
    pub run: Option<Value>,
    /// The experiment's latest run, when the source knows it (the admin API).
    pub latest_run: Option<u64>,
}

fn base(url: &str) -> Result<&str, String> {
    if !url.starts_with("http://") {
        return Err(format!("`{url}` is not an http:// URL"));
    }
    Ok(url.trim_end_matches('/'))
}

/// The admin token given on the command line, else the one in `ABPROXY_ADMIN_TOKEN`.
pub fn admin_token(given: Option<String>) -> Option<String> {
    given.or_else(|| std::env::var(crate::state::secret::TOKEN_ENV).ok())
}

/// From a running proxy's admin listener (`--admin http://127.0.0.1:8081`): one
/// experiment, or every experiment of its config; its last run, or run `run`.
pub async fn from_admin(
    url: &str,
    token: Option<&str>,
    experiment: Option<&str>,
    run: Option<u32>,
) -> Result<Vec<Fetched>, String> {
    let base = base(url)?;
    let keys = match experiment {
        Some(key) => vec![key.to_string()],
        None => {
            let list = get_json(&format!("{base}/api/experiments"), token, Service::Admin).await?;
            list["experiments"]
                .as_array()
                .ok_or("the admin API's experiment list has no `experiments`")?
                .iter()
                .filter_map(|e| e["key"].as_str().map(str::to_string))
                .collect()
        }
    };
    let mut fetched = Vec::new();
    let query = run.map_or(String::new(), |n| format!("?run={n}"));
    for key in keys {
        let results = get_json(
            &format!("{base}/api/experiments/{key}/results{query}"),
            token,
            Service::Admin,
        )
        .await?;
        let counts = serde_json::from_value(results["counts"].clone())
            .map_err(|e| format!("{key}: the results hold no usable counts: {e}"))?;
        fetched.push(Fetched {
            counts,
            run: Some(results["run"].clone()).filter(|r| !r.is_null()),
            latest_run: results["runs"]
                .as_array()
                .and_then(|runs| runs.last())
                .and_then(|r| r["number"].as_u64()),
        });
    }
    Ok(fetched)
}

/// From Prometheus (`--prometheus http://127.0.0.1:9090`), summed over every replica it
/// scrapes. Each replica reports its own counts of the experiment's last run, durable
/// across its restarts; `last_over_time` over `lookback` keeps the last value of a
/// replica that has gone away, and only replicas whose last run is the latest one
/// (`abproxy_experiment_run`) are summed. A replica is its data directory (the
/// `replica` label of `abproxy_experiment_run`), not its address: one that came back
/// under a new address is counted once.
pub async fn from_prometheus(
    url: &str,
    experiment: Option<&str>,
    lookback: &str,
) -> Result<Vec<Fetched>, String> {
    let base = base(url)?;
    if !is_prometheus_duration(lookback) {
        return Err(format!(
            "--lookback `{lookback}` is not a Prometheus duration (e.g. 30d, 12h)"
        ));
    }
    let query = |promql: String| {
        let url = format!("{base}/api/v1/query?query={}", percent_encode(&promql));
        async move {
            let answer = get_json(&url, None, Service::Prometheus).await?;
            if answer["status"] != "success" {
                return Err(format!("Prometheus refused `{promql}`: {answer}"));
            }
            answer["data"]["result"]
                .as_array()
                .cloned()
                .ok_or_else(|| format!("Prometheus answered `{promql}` without a vector"))
        }
    };
    let run_metric = metrics::EXPERIMENT_RUN;
    let keys: Vec<String> = match experiment {
        Some(key) => vec![key.to_string()],
        None => {
            let mut keys: Vec<String> = query(format!(
                "max by (experiment) (last_over_time({run_metric}[{lookback}]))"
            ))
            .await?
            .iter()
            .filter_map(|s| s["metric"]["experiment"].as_str().map(str::to_string))
            .collect();
            keys.sort();
            keys
        }
    };
    if keys.is_empty() {
        return Err(format!(
            "Prometheus has no {run_metric} series in the last {lookback}: is it scraping abproxy's /metrics?"
        ));
    }
    let mut fetched = Vec::new();
    for key in keys {
        crate::config::names::check_name(&key, crate::config::names::NameKind::Experiment)
            .map_err(|m| format!("--experiment: {m}"))?;
        let runs = query(format!(
            r#"last_over_time({run_metric}{{experiment="{key}"}}[{lookback}])"#
        ))
        .await?;
        let Some((run, control)) = runs
            .iter()
            .filter_map(|s| Some((sample_value(s)? as u64, s["metric"]["control"].as_str()?)))
            .max_by_key(|(run, _)| *run)
        else {
            return Err(format!(
                "Prometheus has no {run_metric} series for `{key}` in the last {lookback}"
            ));
        };
        // The control of a live replica wins over one remembered from before a change.
        let live_controls = query(format!(
            r#"max by (control) ({run_metric}{{experiment="{key}"}} == {run})"#
        ))
        .await?;
        let control = match live_controls.as_slice() {
            [one] => one["metric"]["control"].as_str().unwrap_or(control),
            _ => control,
        }
        .to_string();
        // 1 for each (instance, job) whose last run of this experiment is `run`, with its
        // replica id: multiplying by it keeps only those replicas and labels their counts
        // with the replica, so that `max by (replica, …)` counts a replica seen under two
        // addresses once (its counts only grow, so the max is its latest).
        let on_run = format!(
            r#"max by (instance, job, replica) (0 * (last_over_time({run_metric}{{experiment="{key}"}}[{lookback}]) == {run}) + 1)"#
        );
        let latest = |metric: &str, by: &str, aggregate: &str| {
            format!(
                r#"{aggregate} by ({by}) (max by (replica, {by}) (last_over_time({metric}{{experiment="{key}"}}[{lookback}]) * on(instance, job) group_left(replica) {on_run}))"#
            )
        };
        let users = query(latest(metrics::ASSIGNMENTS, "variant", "sum")).await?;
        let conversions = query(latest(metrics::CONVERSIONS, "variant, goal", "sum")).await?;
        let value_sums = query(latest(
            metrics::CONVERSION_VALUE_SUM,
            "variant, goal",
            "sum",
        ))
        .await?;
        let value_squares = query(latest(
            metrics::CONVERSION_VALUE_SUM_SQUARES,
            "variant, goal",
            "sum",
        ))
        .await?;
        let weights = query(latest(metrics::VARIANT_WEIGHT, "variant", "max")).await?;

        let mut by_variant: BTreeMap<String, VariantCounts> = BTreeMap::new();
        for s in &users {
            if let (Some(v), Some(n)) = (s["metric"]["variant"].as_str(), sample_value(s)) {
                by_variant
                    .entry(v.to_string())
                    .or_insert(VariantCounts {
                        users: 0,
                        goals: BTreeMap::new(),
                    })
                    .users = n as u64;
            }
        }
        let goal_of = |s: &Value| -> Option<(String, String, f64)> {
            Some((
                s["metric"]["variant"].as_str()?.to_string(),
                s["metric"]["goal"].as_str()?.to_string(),
                sample_value(s)?,
            ))
        };
        for (variant, goal, n) in conversions.iter().filter_map(goal_of) {
            if let Some(v) = by_variant.get_mut(&variant) {
                v.goals
                    .entry(goal)
                    .or_insert(GoalCounts {
                        conversions: 0,
                        value_sum: None,
                        value_sum_sq: None,
                    })
                    .conversions = n as u64;
            }
        }
        for (series, squares) in [(&value_sums, false), (&value_squares, true)] {
            for (variant, goal, x) in series.iter().filter_map(goal_of) {
                if let Some(g) = by_variant
                    .get_mut(&variant)
                    .and_then(|v| v.goals.get_mut(&goal))
                {
                    if squares {
                        g.value_sum_sq = Some(x);
                    } else {
                        g.value_sum = Some(x);
                    }
                }
            }
        }
        if by_variant.is_empty() {
            return Err(format!(
                "Prometheus has no {} series for `{key}` in run {run}",
                metrics::ASSIGNMENTS
            ));
        }
        // The control first, then the others by name.
        let mut variants = OrderedMap::default();
        if let Some(c) = by_variant.remove(&control) {
            variants.insert(control.clone(), c);
        }
        for (name, v) in by_variant {
            variants.insert(name, v);
        }
        let weights: BTreeMap<String, f64> = weights
            .iter()
            .filter_map(|s| {
                Some((
                    s["metric"]["variant"].as_str()?.to_string(),
                    sample_value(s)?,
                ))
            })
            .filter(|(name, _)| variants.get(name).is_some())
            .collect();
        fetched.push(Fetched {
            counts: Counts {
                experiment: key,
                control: Some(control),
                weights: (weights.len() == variants.len()).then_some(weights),
                periods: Vec::new(),
                variants,
            },
            run: Some(serde_json::json!({ "number": run })),
            latest_run: None,
        });
    }
    Ok(fetched)
}

/// The value of one sample of an instant vector (`"value": [time, "12"]`).
fn sample_value(series: &Value) -> Option<f64> {
    series["value"][1].as_str()?.parse().ok()
}

fn is_prometheus_duration(text: &str) -> bool {
    let digits = text.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &text[digits.len()..];
    !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && ["ms", "s", "m", "h", "d", "w", "y"].contains(&unit)
}

/// Percent-encode everything but RFC 3986's unreserved characters (for a query value).
pub fn percent_encode(text: &str) -> String {
    crate::transport::json_get::query_component(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookbacks_are_prometheus_durations() {
        for good in ["30d", "12h", "90m", "500ms", "1y"] {
            assert!(is_prometheus_duration(good), "{good}");
        }
        for bad in ["", "d", "30", "30 d", "3x", "1h30m", "-1d"] {
            assert!(!is_prometheus_duration(bad), "{bad}");
        }
    }

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(
            percent_encode(r#"sum by (v) (x{e="k"}[1d]) == 2"#),
            "sum%20by%20%28v%29%20%28x%7Be%3D%22k%22%7D%5B1d%5D%29%20%3D%3D%202"
        );
    }
}
