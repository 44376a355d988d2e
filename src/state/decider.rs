//! Automated decisions, run: at each boundary of an experiment's `decide.every`, read the
//! run's counts and the variants' upstream figures, apply the rule
//! (`experiments::decide`), and for each decision it makes: act on it (`act` mode, through
//! the admin API's path, `state::change`), record it (`state::decision_log`), count it,
//! log it and post it to the webhook. An evaluation that cannot be made (Prometheus down,
//! say) decides nothing and is recorded once per streak, with the reason.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::config::edit::Change;
use crate::config::{BanditCounts, Decide, Experiment, Mode, PrometheusSource, State};
use crate::counting::upstream_window;
use crate::experiments::bandit::boundaries;
use crate::experiments::decide::{self, Action, Decision, Inputs, Kind};
use crate::state::app::App;
use crate::state::decision_log::{ConfigFingerprint, DecisionRecord, ExperimentDecisions};
use crate::state::runs::Run;
use crate::stats::analysis::{analyze_without_posteriors, Settings};
use crate::stats::upstream::{UpstreamTotals, UpstreamWindow};
use crate::transport::webhook::{Delivery, RetryPolicy, Webhook};
use crate::util::time::{parse_rfc3339, rfc3339, unix_ms};

/// The longest the loop sleeps: a config change that adds a `decide` block or changes
/// its cadence is seen within it.
const LONGEST_SLEEP: Duration = Duration::from_secs(1);

/// The `kind` of a record whose evaluation could not be made.
pub const NO_DECISION: &str = "no_decision";

/// The decision loop, running until stopped or dropped.
pub struct Decider {
    task: tokio::task::JoinHandle<()>,
    stop: tokio::sync::watch::Sender<bool>,
}

/// How long [`Decider::stop`] lets an evaluation in progress finish (its Prometheus
/// reads time out after 30 s; an act-mode change is one file write).
const STOP_GRACE: Duration = Duration::from_secs(35);

impl Decider {
    pub fn start(app: Arc<App>) -> Decider {
        let (stop, stopping) = tokio::sync::watch::channel(false);
        Decider {
            task: tokio::spawn(run(app, stopping)),
            stop,
        }
    }

    /// Stop it between evaluations and wait until its task is gone: an evaluation in
    /// progress finishes, so a change it applied is also recorded and posted. (The task
    /// holds the `App`; see `state::bandit::Updater::stop`.)
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        if tokio::time::timeout(STOP_GRACE, &mut self.task)
            .await
            .is_err()
        {
            tracing::warn!("decisions: an evaluation was still running at shutdown; stopped");
            self.task.abort();
            let _ = (&mut self.task).await;
        }
    }
}

impl Drop for Decider {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What the loop keeps between evaluations, in memory only.
#[derive(Default)]
struct Memory {
    /// The last boundary handled, per experiment and run (also when nothing could be
    /// evaluated at it: the next try is the next boundary).
    handled: HashMap<(String, u32), u64>,
    /// This process's upstream totals per experiment at its last evaluation: the window
    /// of the next one starts there.
    baseline: HashMap<String, BTreeMap<String, UpstreamTotals>>,
    /// Experiments whose metric series exist.
    known: std::collections::HashSet<String>,
}

async fn run(app: Arc<App>, mut stopping: tokio::sync::watch::Receiver<bool>) {
    let webhook = Webhook::start(app.metrics.webhook_failures.clone(), RetryPolicy::default());
    let mut memory = Memory::default();
    loop {
        if *stopping.borrow() {
            return;
        }
        let snapshot = app.snapshot();
        let now_ms = unix_ms(SystemTime::now());
        let mut wake_ms = now_ms + LONGEST_SLEEP.as_millis() as u64;
        for e in &snapshot.config.experiments {
            if *stopping.borrow() {
                return;
            }
            let (Some(d), State::Active) = (&e.decide, e.state) else {
                continue;
            };
            let Some(run) = snapshot.runs.get(&e.key).and_then(|r| r.current_run()) else {
                continue;
            };
            if memory.known.insert(e.key.clone()) {
                // Every kind's series from the start, so a dashboard's increase() sees the first.
                let kinds = Kind::ALL.iter().map(|k| k.as_str()).chain([NO_DECISION]);
                for kind in kinds {
                    app.metrics
                        .decisions
                        .with_label_values(&[e.key.as_str(), kind]);
                }
            }
            let prometheus = snapshot.config.prometheus.as_ref();
            let settle_ms =
                crate::state::prometheus::settle(d.counts, prometheus).as_millis() as u64;
            let (_, next) = boundaries(d.every, now_ms.saturating_sub(settle_ms));
            wake_ms = wake_ms.min(next + settle_ms);
            if d.counts == BanditCounts::Local && !memory.baseline.contains_key(&e.key) {
                // The first window of this process starts now.
                let variants: Vec<&str> = e.variants.iter().map(|v| v.name.as_str()).collect();
                memory.baseline.insert(
                    e.key.clone(),
                    upstream_window::local(&app.metrics, &e.key, &variants),
                );
            }
            let carried = app.decisions.experiment(&e.key, run.number);
            let handled = memory.handled.get(&(e.key.clone(), run.number)).copied();
            let last = carried.state.last_eval_ms.max(handled);
            let due = match d.counts {
                BanditCounts::Prometheus => decide::due_in_order,
                BanditCounts::Local => decide::due,
            };
            let settled_ms = now_ms.saturating_sub(settle_ms);
            let Some(at_ms) = due(d.every, last, settled_ms) else {
                continue;
            };
            if decide::due(d.every, Some(at_ms), settled_ms).is_some() {
                // Catching up: the next boundary is due at once.
                wake_ms = now_ms;
            }
            memory.handled.insert((e.key.clone(), run.number), at_ms);
            let source = match d.counts {
                BanditCounts::Prometheus => prometheus,
                BanditCounts::Local => None,
            };
            evaluate_at(
                &app,
                &webhook,
                &mut memory,
                e,
                d,
                run,
                carried,
                at_ms,
                source,
            )
            .await;
        }
        let sleep_ms = wake_ms.saturating_sub(unix_ms(SystemTime::now()));
        let sleep = tokio::time::sleep(Duration::from_millis(sleep_ms.max(1)).min(LONGEST_SLEEP));
        tokio::select! {
            _ = sleep => {}
            _ = stopping.changed() => {}
        }
    }
}

/// What one evaluation reads: the run's analysis and the variants' upstream windows.
struct Readings {
    report: crate::stats::analysis::Report,
    upstream: BTreeMap<String, UpstreamWindow>,
}

#[allow(clippy::too_many_arguments)]
async fn evaluate_at(
    app: &Arc<App>,
    webhook: &Webhook,
    memory: &mut Memory,
    e: &Experiment,
    d: &Decide,
    run: &Run,
    mut carried: ExperimentDecisions,
    at_ms: u64,
    prometheus: Option<&PrometheusSource>,
) {
    let run_started_ms = parse_rfc3339(&run.started_at).unwrap_or(0);
    if at_ms.saturating_sub(run_started_ms) < d.every.as_millis() as u64 {
        // The run's first window is partial: nothing is read or decided (the rule would
        // decide nothing either), and nothing can be missing.
        carried.state.last_eval_ms = Some(at_ms);
        save(app, &e.key, carried);
        return;
    }
    let readings = match read(app, memory, e, d, run, at_ms, prometheus).await {
        Ok(readings) => readings,
        Err(problem) => {
            tracing::warn!(
                "decisions of {}: no evaluation at {}: {problem}",
                e.key,
                rfc3339(at_ms)
            );
            if carried.unavailable.is_none() {
                let record = DecisionRecord {
                    at: rfc3339(at_ms),
                    experiment: e.key.clone(),
                    run: run.number,
                    kind: NO_DECISION.to_string(),
                    variant: None,
                    mode: d.mode.as_str().to_string(),
                    action: "none".to_string(),
                    applied: false,
                    reason: format!(
                        "No decision: {problem}. Nothing changes until an evaluation can be made; this is recorded once until then."
                    ),
                    evidence: json!({ "problem": problem }),
                    rollout_variant: None,
                    error: None,
                    id: record_id(&e.key, run.number, NO_DECISION, None, at_ms),
                };
                publish(app, webhook, &record);
            }
            carried.unavailable = Some(problem);
            save(app, &e.key, carried);
            return;
        }
    };
    if let Some(problem) = carried.unavailable.take() {
        tracing::info!(
            "decisions of {}: evaluating again at {} (before: {problem})",
            e.key,
            rfc3339(at_ms)
        );
    }
    if let Some(after) = &carried.after_last_decision {
        if *after != ConfigFingerprint::of(e) && !carried.state.human_changed {
            tracing::info!(
                "decisions of {}: the experiment was changed by hand after a decision; no further decisions in run {}",
                e.key,
                run.number
            );
            carried.state.human_changed = true;
        }
    }
    let evaluation = decide::evaluate(
        Inputs {
            decide: d,
            report: &readings.report,
            upstream: &readings.upstream,
            run_started_ms,
            now_ms: at_ms,
        },
        &carried.state,
    );
    carried.state = evaluation.state;
    // What the experiment is expected to be when a decision is applied: as read, then as
    // the decisions before it in this evaluation left it.
    let mut expected = ConfigFingerprint::of(e);
    for decision in evaluation.decisions {
        let (applied, error) = act(app, &e.key, (run.number, &expected), &decision).await;
        if decision.kind == Kind::Srm && applied {
            carried.frozen = true;
        }
        let failed = error.is_some();
        let record = record_of(&e.key, run.number, at_ms, &decision, applied, error);
        publish(app, webhook, &record);
        if failed {
            // Not applied: the experiment is as it was (a human's own fix to it later is
            // not a change "after a decision"), and the record says what to do by hand.
            continue;
        }
        // What the experiment is now: a later difference is a human's.
        let snapshot = app.snapshot();
        let now = snapshot
            .config
            .experiments
            .iter()
            .find(|x| x.key == e.key)
            .map(ConfigFingerprint::of);
        if let Some(now) = &now {
            expected = now.clone();
        }
        carried.after_last_decision = now;
    }
    save(app, &e.key, carried);
}

/// The analysis of the run at `at_ms` and the upstream windows ending there, from this
/// process (`prometheus` `None`) or from Prometheus.
async fn read(
    app: &Arc<App>,
    memory: &mut Memory,
    e: &Experiment,
    d: &Decide,
    run: &Run,
    at_ms: u64,
    prometheus: Option<&PrometheusSource>,
) -> Result<Readings, String> {
    let variants: Vec<&str> = e.variants.iter().map(|v| v.name.as_str()).collect();
    let (counts, upstream) = match prometheus {
        None => {
            let (counts, _) =
                crate::state::run_counts::local(&app.counts.book, e, Some(run), at_ms);
            let now = upstream_window::local(&app.metrics, &e.key, &variants);
            let before = memory.baseline.insert(e.key.clone(), now.clone());
            let upstream = variants
                .iter()
                .map(|&v| {
                    let earlier = before
                        .as_ref()
                        .and_then(|b| b.get(v))
                        .cloned()
                        .unwrap_or_default();
                    let later = now.get(v).cloned().unwrap_or_default();
                    (v.to_string(), later.since(&earlier).window())
                })
                .collect();
            (counts, upstream)
        }
        Some(source) => {
            let base = source.url.to_string();
            let (counts, warnings) = crate::state::prometheus::run_counts(
                &base,
                &e.key,
                run.number,
                &e.control,
                crate::state::bandit::GONE_REPLICA_LOOKBACK,
                at_ms,
            )
            .await
            .map_err(|p| format!("the counts could not be read from Prometheus: {p}"))?;
            for warning in warnings {
                tracing::warn!("decisions of {}: {warning}", e.key);
            }
            let [responses, buckets] = upstream_window::prometheus_queries(&e.key, d.every);
            let responses = crate::state::prometheus::instant_query(&base, &responses, at_ms)
                .await
                .map_err(|p| {
                    format!("the upstream figures could not be read from Prometheus: {p}")
                })?;
            let buckets = crate::state::prometheus::instant_query(&base, &buckets, at_ms)
                .await
                .map_err(|p| {
                    format!("the upstream figures could not be read from Prometheus: {p}")
                })?;
            let upstream = upstream_window::from_prometheus_answers(&responses, &buckets)?;
            (counts, upstream)
        }
    };
    let settings = Settings {
        confidence: d.promote.confidence,
        ..Settings::default()
    };
    // The rule reads no Bayesian figure, and they are the slow part of an analysis.
    let report =
        analyze_without_posteriors(&counts, settings).map_err(|e| format!("no analysis: {e}"))?;
    Ok(Readings { report, upstream })
}

/// Apply `decision` in `act` mode: whether it is in force, and why not if it is not. It is
/// applied only if the experiment is still as it was read (`read`, in run `run`, in `act`
/// mode): a human's change or a new run during the evaluation wins.
async fn act(
    app: &Arc<App>,
    key: &str,
    (run, read): (u32, &ConfigFingerprint),
    decision: &Decision,
) -> (bool, Option<String>) {
    if decision.mode != Mode::Act {
        return (false, None);
    }
    let change = match &decision.action {
        Action::Rollout(v) | Action::Rollback(v) => Change {
            state: Some(State::Rollout),
            rollout_variant: Some(v.clone()),
            ..Change::default()
        },
        Action::Pause(v) => Change {
            weights: vec![(v.clone(), 0)],
            ..Change::default()
        },
        Action::Stop => Change {
            state: Some(State::Inactive),
            ..Change::default()
        },
        // In force by being recorded: the bandit and the rule read the state.
        Action::Freeze | Action::Keep => return (true, None),
    };
    let (app, key, read) = (app.clone(), key.to_string(), read.clone());
    let done = tokio::task::spawn_blocking(move || {
        let still = |now: &crate::state::snapshot::Snapshot| {
            let current = now.config.experiments.iter().find(|x| x.key == key);
            let in_run = now.runs.get(&key).and_then(|r| r.current_run()).map(|r| r.number);
            match current {
                Some(x)
                    if ConfigFingerprint::of(x) == read
                        && in_run == Some(run)
                        && x.decide.as_ref().is_some_and(|d| d.mode == Mode::Act) =>
                {
                    Ok(())
                }
                _ => Err(format!(
                    "experiment `{key}` changed while it was evaluated (its state, weights, run or decide mode); the decision was not applied"
                )),
            }
        };
        crate::state::change::change_experiment(&app, &key, &change, "an automated decision", still)
    })
    .await;
    match done {
        Ok(Ok(())) => (true, None),
        Ok(Err(e)) => (false, Some(e.to_string())),
        Err(e) => (false, Some(format!("the change did not complete: {e}"))),
    }
}

fn record_of(
    key: &str,
    run: u32,
    at_ms: u64,
    decision: &Decision,
    applied: bool,
    error: Option<String>,
) -> DecisionRecord {
    let (action, rollout_variant) = match &decision.action {
        Action::Rollout(v) => ("rollout", Some(v.clone())),
        Action::Rollback(v) => ("rollback", Some(v.clone())),
        Action::Pause(_) => ("pause", None),
        Action::Freeze => ("freeze", None),
        Action::Stop => ("stop", None),
        Action::Keep => ("keep", None),
    };
    let kind = decision.kind.as_str();
    DecisionRecord {
        at: rfc3339(at_ms),
        experiment: key.to_string(),
        run,
        kind: kind.to_string(),
        variant: decision.variant.clone(),
        mode: decision.mode.as_str().to_string(),
        action: action.to_string(),
        applied,
        reason: decision.reason.clone(),
        evidence: decision.evidence.clone(),
        rollout_variant,
        error,
        id: record_id(key, run, kind, decision.variant.as_deref(), at_ms),
    }
}

/// The same on every replica that makes this decision at this boundary.
fn record_id(key: &str, run: u32, kind: &str, variant: Option<&str>, at_ms: u64) -> String {
    let digest = Sha256::digest(format!(
        "{key}\n{run}\n{kind}\n{}\n{at_ms}",
        variant.unwrap_or("")
    ));
    crate::util::random::hex(&digest[..16])
}

/// Record, count, log and notify. The record is on disk before it is posted; one that
/// cannot be written is still served, logged and posted, and the failure logged.
fn publish(app: &App, webhook: &Webhook, record: &DecisionRecord) {
    if let Err(e) = app.decisions.append(record) {
        tracing::error!(
            "decisions of {}: the record could not be saved in the data directory: {e}",
            record.experiment
        );
    }
    app.metrics
        .decisions
        .with_label_values(&[record.experiment.as_str(), record.kind.as_str()])
        .inc();
    let line = text(record);
    match (&record.error, record.kind.as_str()) {
        (Some(_), _) => tracing::error!("{line}"),
        (None, NO_DECISION) => tracing::warn!("{line}"),
        _ => tracing::info!("{line}"),
    }
    let snapshot = app.snapshot();
    let Some(notify) = &snapshot.config.notify else {
        return;
    };
    let secret = match &notify.secret_file {
        None => None,
        Some(path) => match crate::state::secret::read_webhook_secret(path) {
            Ok(secret) => Some(secret),
            Err(e) => {
                // Unsigned, the receiver would (rightly) refuse it: count it as failed.
                tracing::error!("webhook: {e}; the record {} was not sent", record.id);
                app.metrics.webhook_failures.inc();
                return;
            }
        },
    };
    let mut body = serde_json::to_value(record).unwrap_or(Value::Null);
    body["text"] = Value::String(line);
    webhook.send(Delivery {
        url: notify.webhook.clone(),
        secret,
        body: serde_json::to_vec(&body).unwrap_or_default(),
        id: record.id.clone(),
    });
}

/// The record in one line, for the log and a chat channel (the webhook body's `text`).
pub fn text(r: &DecisionRecord) -> String {
    let what = match (&r.error, r.mode.as_str(), r.applied) {
        (Some(e), _, _) => format!("NOT applied: {e}"),
        (None, "notify", _) if r.kind != NO_DECISION => {
            "notify mode: nothing was changed".to_string()
        }
        (None, "act", true) => "applied".to_string(),
        _ => String::new(),
    };
    let variant = r
        .variant
        .as_ref()
        .map_or(String::new(), |v| format!(" ({v})"));
    let tail = if what.is_empty() {
        String::new()
    } else {
        format!(" [{what}]")
    };
    format!(
        "abproxy: {} run {} — {}{variant}: {}{tail}",
        r.experiment, r.run, r.kind, r.reason
    )
}

fn save(app: &App, key: &str, carried: ExperimentDecisions) {
    if let Err(e) = app.decisions.save_experiment(key, carried) {
        tracing::error!(
            "decisions of {key}: the evaluation state could not be saved in the data directory: {e}"
        );
    }
}
