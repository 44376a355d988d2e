//! Where `abproxy analyze` gets counts from when they are not in a file: a running
//! proxy's admin API, or a Prometheus server that scrapes one or more replicas.
//!
//! Both give `analysis::Counts`, so every source is analysed and printed the same way.
//! Here: which experiments, runs and controls there are; each run's counts from
//! Prometheus are read by `state::prometheus`, as a replica with `counts: prometheus`
//! reads them.

use serde_json::Value;

use crate::counting::metrics;
use crate::counting::promql::sample_value;
use crate::state::prometheus::{instant_query, run_counts};
use crate::stats::analysis::Counts;
pub(crate) use crate::transport::json_get::{get_json, Service};

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
    // The experiments, runs and controls are read at the instant the counts are, so
    // they are of the same scrapes.
    let at_ms = crate::util::time::unix_ms(std::time::SystemTime::now());
    let query = |promql: String| async move { instant_query(base, &promql, at_ms).await };
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
        };
        let run = u32::try_from(run).map_err(|_| format!("`{key}`: run {run} is out of range"))?;
        let (counts, warnings) = run_counts(base, &key, run, control, lookback, at_ms).await?;
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
