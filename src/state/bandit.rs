//! The bandit updater: at each boundary of a bandit experiment, read the counts, compute
//! the shares (`stats::bandit`), and start a new period of the run when they change.

pub use crate::experiments::bandit::BanditStatus;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::util::time::{parse_rfc3339, rfc3339, unix_ms};

use crate::config::{Bandit, BanditCounts, Experiment, PrometheusSource, State};
use crate::counting::promql;
use crate::experiments::bandit::{boundaries, evaluate, Update};
use crate::state::app::{App, StartPeriodError};
use crate::state::prometheus::instant_query;
use crate::stats::analysis::ArmInputs;

/// The longest the updater sleeps: a config change that adds a bandit or changes its
/// interval is seen within it.
const LONGEST_SLEEP: Duration = Duration::from_secs(1);

/// The bandit status's `problem` while an applied sample-ratio decision freezes the run.
const FROZEN: &str =
    "frozen by a sample-ratio mismatch decision: the shares in force stay until a new run";

/// The updater, running until dropped.
pub struct Updater {
    task: tokio::task::JoinHandle<()>,
}

impl Updater {
    pub fn start(app: Arc<App>) -> Updater {
        Updater {
            task: tokio::spawn(run(app)),
        }
    }
}

impl Updater {
    /// Stop it and wait until its task is gone: the task holds the `App`, whose count
    /// store keeps the data directory locked, so a process (or a test) that starts again
    /// on the same directory must not race its drop. (`Drop` only asks the runtime to
    /// cancel the task, which happens later.)
    pub async fn stop(mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
    }
}

impl Drop for Updater {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn run(app: Arc<App>) {
    // The last boundary evaluated, per experiment and run.
    let mut evaluated: HashMap<(String, u32), u64> = HashMap::new();
    loop {
        let snapshot = app.snapshot();
        let now_ms = unix_ms(SystemTime::now());
        let mut wake_ms = now_ms + LONGEST_SLEEP.as_millis() as u64;
        for e in &snapshot.config.experiments {
            let (Some(bandit), State::Active) = (&e.bandit, e.state) else {
                continue;
            };
            let Some(run) = snapshot.runs.get(&e.key).and_then(|r| r.current_run()) else {
                continue;
            };
            if app.decisions.frozen(&e.key, run.number) {
                // A sample-ratio mismatch froze the run (an applied decision): the shares
                // stay as they are until a new run. The freeze replaces any earlier
                // problem (counts unavailable at the last update, say), which no update
                // will come to clear.
                let mut status = app.bandit_status(&e.key);
                if status.problem.as_deref() != Some(FROZEN) {
                    status.problem = Some(FROZEN.to_string());
                    status.next_at = None;
                    app.set_bandit_status(&e.key, status);
                }
                continue;
            }
            let settle_ms = crate::state::prometheus::settle(
                bandit.counts,
                snapshot.config.prometheus.as_ref(),
            )
            .as_millis() as u64;
            let (due, next) = boundaries(bandit.update_every, now_ms.saturating_sub(settle_ms));
            wake_ms = wake_ms.min(next + settle_ms);
            let run_started_ms = parse_rfc3339(&run.started_at).unwrap_or(0);
            if !reads_boundary(bandit.counts, due, run_started_ms)
                || evaluated.get(&(e.key.clone(), run.number)) == Some(&due)
            {
                continue;
            }
            evaluated.insert((e.key.clone(), run.number), due);
            let in_force = run
                .current_period()
                .map(|p| p.weights.clone())
                .unwrap_or_default();
            let Some(status) = evaluate_at(
                &app,
                e,
                bandit,
                (run.number, due < run_started_ms),
                &in_force,
                due,
                snapshot.config.prometheus.as_ref(),
            )
            .await
            else {
                continue;
            };
            let status = BanditStatus {
                next_at: Some(rfc3339(next)),
                ..status
            };
            app.set_bandit_status(&e.key, status);
        }
        let sleep_ms = wake_ms.saturating_sub(unix_ms(SystemTime::now()));
        tokio::time::sleep(Duration::from_millis(sleep_ms.max(1)).min(LONGEST_SLEEP)).await;
    }
}

/// Whether the boundary `due_ms` of a run this process started at `run_started_ms` is
/// evaluated. This process's book has no counts from before its run began. Prometheus
/// has the run's counts at any boundary from the replicas that were in it then, so a
/// replica that joins a running experiment (a new one, with an empty data directory)
/// reads the last boundary at once and hashes new devices by the shares the others
/// use, instead of by the config's (burn-in) weights until the next boundary.
fn reads_boundary(counts: BanditCounts, due_ms: u64, run_started_ms: u64) -> bool {
    match counts {
        BanditCounts::Prometheus => true,
        BanditCounts::Local => due_ms >= run_started_ms,
    }
}

/// One evaluation of `e`'s bandit at boundary `at_ms`: read the counts, apply the rule,
/// start a period if it says so; log and count what came of it. `before_run`: the
/// boundary is older than this process's run (see [`reads_boundary`]); counts that
/// cannot be read for it are no problem (most often no replica was in the run yet): the
/// replica waits for the next boundary, as it would without it (`None`).
async fn evaluate_at(
    app: &App,
    e: &Experiment,
    bandit: &Bandit,
    (run, before_run): (u32, bool),
    in_force: &BTreeMap<String, u32>,
    at_ms: u64,
    prometheus: Option<&PrometheusSource>,
) -> Option<BanditStatus> {
    let at = rfc3339(at_ms);
    let variants: Vec<&str> = e.variants.iter().map(|v| v.name.as_str()).collect();
    let counts = match (bandit.counts, prometheus) {
        (BanditCounts::Prometheus, Some(source)) => {
            prometheus_counts(source, &e.key, run, &bandit.goal, &variants, at_ms).await
        }
        _ => Ok(local_counts(app, &e.key, run, &bandit.goal, &variants)),
    };
    let count = |outcome: &str| {
        app.metrics
            .bandit_updates
            .with_label_values(&[e.key.as_str(), outcome])
            .inc()
    };
    let counts = match counts {
        Ok(counts) => counts,
        Err(problem) if before_run => {
            tracing::debug!(
                "bandit of {}: no counts for the boundary {at} before this replica's run: {problem}",
                e.key
            );
            return None;
        }
        Err(problem) => {
            tracing::warn!(
                "bandit of {}: cannot read the counts for the boundary {at}, keeping the shares in force: {problem}",
                e.key
            );
            count("counts_unavailable");
            return Some(BanditStatus {
                last_at: Some(at.clone()),
                last_outcome: Some("counts unavailable: shares kept".to_string()),
                problem: Some(format!("at {at}: {problem}; the shares in force were kept")),
                next_at: None,
            });
        }
    };
    let update = evaluate(bandit, &counts, in_force);
    let mut outcome = update.describe();
    let mut problem = None;
    match update {
        Update::BurnIn { .. } => count("burn_in"),
        Update::Unchanged => count("unchanged"),
        Update::Start { weights, inputs } => match app.start_period(&e.key, run, weights, inputs) {
            Ok(period) => {
                count("started");
                outcome = format!("period {period} started: {outcome}");
                tracing::info!("bandit of {}: {outcome} (boundary {at})", e.key);
            }
            Err(err) => {
                count(match err {
                    StartPeriodError::Limit(_) => "period_limit",
                    _ => "not_saved",
                });
                tracing::error!("bandit of {}: {outcome} not applied: {err}", e.key);
                problem = Some(format!("at {at}: {err}; the shares in force were kept"));
                outcome = "not applied: shares kept".to_string();
            }
        },
    }
    Some(BanditStatus {
        last_at: Some(at),
        last_outcome: Some(outcome),
        problem,
        next_at: None,
    })
}

/// This process's counts of run `run`: devices per variant, and of them those that
/// converted on `goal`.
fn local_counts(
    app: &App,
    key: &str,
    run: u32,
    goal: &str,
    variants: &[&str],
) -> BTreeMap<String, ArmInputs> {
    let counted = app.counts.book.run(key, run, 0);
    variants
        .iter()
        .map(|&v| {
            let c = counted.variants.get(v);
            let inputs = ArmInputs {
                users: c.map_or(0, |c| c.totals.assigned),
                conversions: c
                    .and_then(|c| c.goals.get(goal))
                    .map_or(0, |g| g.totals.conversions),
            };
            (v.to_string(), inputs)
        })
        .collect()
}

/// How long Prometheus remembers the counts of a replica that went away: the default
/// `--lookback` of `abproxy analyze --prometheus`, so that the bandit reads the devices
/// the analysis shows. The same on every replica (it must not depend on a replica's own
/// run book), and longer than Prometheus's default retention (15 days), which then
/// bounds it.
pub const GONE_REPLICA_LOOKBACK: &str = "30d";

/// The PromQL of every replica's devices and of their conversions on `goal`, by variant,
/// in run `run` of `key`: each replica's last counts of the run within
/// [`GONE_REPLICA_LOOKBACK`], once per replica (see [`promql::latest_in_run`]).
pub fn count_queries(key: &str, run: u32, goal: &str) -> (String, String) {
    use crate::counting::metrics::{ASSIGNMENTS, CONVERSIONS};
    let latest = |selector: String| {
        promql::latest_in_run(&selector, key, run, GONE_REPLICA_LOOKBACK, "variant", "sum")
    };
    (
        latest(format!(r#"{ASSIGNMENTS}{{experiment="{key}"}}"#)),
        latest(format!(
            r#"{CONVERSIONS}{{experiment="{key}",goal="{goal}"}}"#
        )),
    )
}

/// Every replica's counts of run `run` at `at_ms`, summed by Prometheus
/// ([`count_queries`]). An answer without every variant is incomplete (no replica
/// scraped yet, or no devices anywhere yet in a variant: either way the rule must not
/// run on it).
async fn prometheus_counts(
    source: &PrometheusSource,
    key: &str,
    run: u32,
    goal: &str,
    variants: &[&str],
    at_ms: u64,
) -> Result<BTreeMap<String, ArmInputs>, String> {
    let (users, conversions) = count_queries(key, run, goal);
    let base_url = source.url.to_string();
    let users = by_variant(&instant_query(&base_url, &users, at_ms).await?)?;
    let conversions = by_variant(&instant_query(&base_url, &conversions, at_ms).await?)?;
    let mut counts = BTreeMap::new();
    for &v in variants {
        let Some(&users) = users.get(v) else {
            return Err(format!(
                "Prometheus has no {} of variant {v} in run {run} at the boundary (incomplete)",
                crate::counting::metrics::ASSIGNMENTS
            ));
        };
        let conversions = conversions.get(v).copied().unwrap_or(0);
        counts.insert(v.to_string(), ArmInputs { users, conversions });
    }
    Ok(counts)
}

/// The `variant` label and value of each sample of an instant vector.
fn by_variant(samples: &[serde_json::Value]) -> Result<BTreeMap<String, u64>, String> {
    samples
        .iter()
        .map(|s| {
            let variant = s["metric"]["variant"]
                .as_str()
                .ok_or("a sample without a variant label")?;
            let value = promql::sample_value(s).ok_or("a sample without a value")?;
            Ok((variant.to_string(), value.round().max(0.0) as u64))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replica_joining_late_reads_the_last_boundary_only_from_prometheus() {
        let (boundary, run_started) = (1_790_000_000_000, 1_790_000_003_000);
        assert!(reads_boundary(
            BanditCounts::Prometheus,
            boundary,
            run_started
        ));
        assert!(!reads_boundary(BanditCounts::Local, boundary, run_started));
        assert!(reads_boundary(
            BanditCounts::Local,
            run_started,
            run_started
        ));
    }

    #[test]
    fn an_instant_vector_reads_by_variant() {
        let answer = serde_json::json!({"status": "success", "data": {"resultType": "vector",
        "result": [
            {"metric": {"variant": "A"}, "value": [1790000000.0, "120"]},
            {"metric": {"variant": "B"}, "value": [1790000000.0, "7"]}
        ]}});
        let samples = promql::instant_vector("q", answer).unwrap();
        assert_eq!(
            by_variant(&samples).unwrap(),
            [("A".to_string(), 120), ("B".to_string(), 7)].into()
        );
        let unlabelled = serde_json::json!([{"metric": {}, "value": [1790000000.0, "3"]}]);
        assert_eq!(
            by_variant(unlabelled.as_array().unwrap()).unwrap_err(),
            "a sample without a variant label"
        );
    }
}
