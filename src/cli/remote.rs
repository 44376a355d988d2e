//! Where `abproxy analyze` gets counts from when they are not in a file: a running
//! proxy's admin API, or a Prometheus server that scrapes one or more replicas.
//!
//! Both give `analysis::Counts`, so every source is analysed and printed the same way.

use serde_json::Value;

use crate::counting::metrics;
use crate::stats::analysis::Counts;
pub(crate) use crate::transport::json_get::{get_json, Service};

use crate::counting::prometheus_counts::{counts_from, Answers};
use crate::counting::promql::{instant_vector, sample_value};

/// Counts of one experiment and, from the admin API, the run they are from.
pub struct Fetched {
    pub counts: Counts,
    /// `{"number", "started_at", "ended_at"}` when the source knows it.
    pub run: Option<Value>,
    /// The experiment's latest run, when the source knows it (the admin API).
    pub latest_run: Option<u64>,
    /// What the reader should know about the counts (printed on stderr).
    pub warnings: Vec<String>,
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
            warnings: Vec::new(),
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
    // Every query is evaluated at one instant, so the totals and the periods come from
    // the same scrape of each replica (a scrape between two queries would otherwise let
    // the periods hold more than the totals).
    let at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let query = |promql: String| {
        let url = format!(
            "{base}/api/v1/query?query={}&time={at:.3}",
            crate::transport::json_get::query_component(&promql)
        );
        async move { instant_vector(&promql, get_json(&url, None, Service::Prometheus).await?) }
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
        let run = u32::try_from(run).map_err(|_| format!("`{key}`: run {run} is out of range"))?;
        let latest = |metric: &str, by: &str, aggregate: &str| {
            crate::counting::promql::latest_in_run(
                &format!(r#"{metric}{{experiment="{key}"}}"#),
                &key,
                run,
                lookback,
                by,
                aggregate,
            )
        };
        let answers = Answers {
            users: query(latest(metrics::ASSIGNMENTS, "variant", "sum")).await?,
            conversions: query(latest(metrics::CONVERSIONS, "variant, goal", "sum")).await?,
            value_sums: query(latest(
                metrics::CONVERSION_VALUE_SUM,
                "variant, goal",
                "sum",
            ))
            .await?,
            value_squares: query(latest(
                metrics::CONVERSION_VALUE_SUM_SQUARES,
                "variant, goal",
                "sum",
            ))
            .await?,
            weights: query(latest(metrics::VARIANT_WEIGHT, "variant", "max")).await?,
            period_users: query(latest(
                metrics::PERIOD_ASSIGNMENTS,
                "variant, period",
                "sum",
            ))
            .await?,
            period_conversions: query(latest(
                metrics::PERIOD_CONVERSIONS,
                "variant, goal, period",
                "sum",
            ))
            .await?,
            period_value_sums: query(latest(
                metrics::PERIOD_CONVERSION_VALUE_SUM,
                "variant, goal, period",
                "sum",
            ))
            .await?,
            period_value_squares: query(latest(
                metrics::PERIOD_CONVERSION_VALUE_SUM_SQUARES,
                "variant, goal, period",
                "sum",
            ))
            .await?,
            // Replicas of one period hash by the same shares: the max and the min agree
            // unless their periods differ.
            share_max: query(latest(metrics::PERIOD_SHARE, "variant, period", "max")).await?,
            share_min: query(latest(metrics::PERIOD_SHARE, "variant, period", "min")).await?,
        };
        let (counts, warnings) = counts_from(&key, &control, run, &answers)?;
        fetched.push(Fetched {
            counts,
            run: Some(serde_json::json!({ "number": run })),
            latest_run: None,
            warnings,
        });
    }
    Ok(fetched)
}

fn is_prometheus_duration(text: &str) -> bool {
    let digits = text.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &text[digits.len()..];
    !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && ["ms", "s", "m", "h", "d", "w", "y"].contains(&unit)
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
}
