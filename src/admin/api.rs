//! `GET /api/experiments` and `PATCH /api/experiments/{key}`.
//!
//! A PATCH changes the experiment through the config file, by the path an automated
//! decision takes too (`state::change`): the YAML edited in place, validated as a reload
//! would, written atomically and applied under the load lock.
//!
//! The weights of an experiment with a `bandit:` are not the API's to change (`409`):
//! its state still is.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{json, Value};

use crate::config::edit::Change;
use crate::config::State;
use crate::experiments::lifecycle::allowed_targets;
use crate::state::app::App;
use crate::state::change::{change_experiment, ChangeError};
use crate::state::snapshot::Snapshot;

/// The body of a PATCH; every field optional, unknown fields refused.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Patch {
    pub state: Option<State>,
    pub weights: Option<BTreeMap<String, u32>>,
    pub rollout_variant: Option<String>,
}

/// An API answer: status and JSON body.
pub type Answer = (http::StatusCode, Value);

fn error(status: http::StatusCode, message: impl std::fmt::Display) -> Answer {
    (status, json!({ "error": message.to_string() }))
}

/// Every experiment with its config, state, runs, weights in force and live counts.
pub fn list(snapshot: &Snapshot) -> Value {
    let experiments: Vec<Value> = snapshot
        .config
        .experiments
        .iter()
        .map(|e| experiment_json(snapshot, &e.key))
        .collect();
    json!({ "experiments": experiments })
}

pub fn experiment_json(snapshot: &Snapshot, key: &str) -> Value {
    let runs = &snapshot.runs;
    let config = snapshot
        .config
        .experiments
        .iter()
        .find(|e| e.key == key)
        .expect("listed from the config");
    let plan = snapshot
        .experiments
        .iter()
        .find(|p| p.key == key)
        .expect("every experiment has a plan");
    let run_json = |r: &crate::state::runs::Run| json!({ "number": r.number, "started_at": r.started_at, "ended_at": r.ended_at });
    let record = runs.get(key);
    // The weights new devices are hashed by now: the config's, or the current period's.
    let in_force = plan.table.weights(plan.variants.len());
    let total_in_force: u64 = in_force.iter().map(|&w| w as u64).sum::<u64>().max(1);
    let variants: Vec<Value> = config
        .variants
        .iter()
        .zip(&plan.variants)
        .zip(&in_force)
        .map(|((v, p), &w)| {
            json!({
                "name": v.name,
                "weight": v.weight,
                "share": w as f64 / total_in_force as f64,
                "upstream": v.upstream,
                // In the last run (`last_run`), from the counts log: they survive restarts.
                "assigned": p.counts.totals().assigned,
                "exposed": p.counts.totals().exposures,
            })
        })
        .collect();
    json!({
        "key": config.key,
        "title": config.title,
        "state": config.state.as_str(),
        "allowed_states": allowed_targets(config.state).iter().map(|s| s.as_str()).collect::<Vec<_>>(),
        "routing": config.is_routing(),
        "fallback": config.fallback,
        "control": config.control,
        "rollout_variant": config.rollout_variant,
        "traffic": config.traffic_bp as f64 / 100.0,
        "match": { "path_prefix": config.matcher.path_prefix, "host": config.matcher.host },
        "run": record.and_then(|r| r.current_run()).map(run_json),
        "last_run": record.and_then(|r| r.last_run()).map(run_json),
        "runs": record.map(|r| r.runs.iter().map(run_json).collect::<Vec<_>>()).unwrap_or_default(),
        "variants": variants,
        // The bandit owns the weights (`weight` above is then its burn-in weight).
        "bandit": config.bandit.is_some(),
        "period": plan.counts_run.map(|_| plan.period),
    })
}

/// `GET /api/experiments/{key}/decisions`: the experiment's `decide` settings (`null`
/// without a `decide` block) and every decision record, oldest first (`None`: no such
/// experiment).
pub fn decisions(snapshot: &Snapshot, app: &App, key: &str) -> Option<Value> {
    let e = snapshot.config.experiments.iter().find(|e| e.key == key)?;
    // What the evaluations of the last run carry: streaks, freeze, a human's change.
    let state = snapshot
        .runs
        .get(key)
        .and_then(|r| r.runs.last())
        .map(|run| {
            let carried = app.decisions.experiment(key, run.number);
            json!({
                "run": run.number,
                "last_evaluated_at": carried.state.last_eval_ms.map(crate::util::time::rfc3339),
                "breaches": carried.state.breaches,
                "frozen": carried.frozen,
                "human_changed": carried.state.human_changed,
                "unavailable": carried.unavailable,
            })
        });
    Some(json!({
        "experiment": key,
        "decide": e.decide.as_ref().map(decide_json),
        "state": state,
        "decisions": app.decisions.records(key),
    }))
}

/// The settings of a `decide` block, durations in seconds.
pub fn decide_json(d: &crate::config::Decide) -> Value {
    let guardrail = |g: &Option<crate::config::Guardrail>| {
        g.map(|g| {
            json!({"max_ratio": g.max_ratio, "min_requests": g.min_requests, "failures": g.failures})
        })
    };
    json!({
        "mode": d.mode.as_str(),
        "every_seconds": d.every.as_secs_f64(),
        "min_duration_seconds": d.min_duration.as_secs_f64(),
        "min_devices": d.min_devices,
        "max_duration_seconds": d.max_duration.map(|m| m.as_secs_f64()),
        "on_timeout": d.on_timeout.as_str(),
        "counts": d.counts.as_str(),
        "promote": {"goal": d.promote.goal, "confidence": d.promote.confidence},
        "guardrails": {
            "action": d.guardrails.action.as_str(),
            "errors": guardrail(&d.guardrails.errors),
            "latency_p95": guardrail(&d.guardrails.latency_p95),
            "srm": d.guardrails.srm,
        },
    })
}

/// Apply a PATCH to experiment `key`. Blocking (file I/O): call from a blocking task.
/// Every change is logged as what changed; every failure with its reason (the page
/// shows the same text), so a refused or failed write is never silent.
pub fn patch(app: &App, key: &str, body: &[u8]) -> Answer {
    let answer = apply_patch(app, key, body);
    let status = answer.0;
    if !status.is_success() {
        let why = answer.1["error"].as_str().unwrap_or("no reason given");
        if status.is_server_error() {
            tracing::error!("admin API: change to experiment {key} failed ({status}): {why}");
        } else {
            tracing::warn!("admin API: change to experiment {key} refused ({status}): {why}");
        }
    }
    answer
}

fn apply_patch(app: &App, key: &str, body: &[u8]) -> Answer {
    use http::StatusCode;
    let patch: Patch = match serde_json::from_slice(body) {
        Ok(p) => p,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("invalid request body: {e}"),
            )
        }
    };
    let change = Change {
        state: patch.state,
        weights: patch.weights.unwrap_or_default().into_iter().collect(),
        rollout_variant: patch.rollout_variant,
    };
    match change_experiment(app, key, &change, "the admin API", |_| Ok(())) {
        Ok(()) => (StatusCode::OK, experiment_json(&app.snapshot(), key)),
        Err(e) => {
            let status = match &e {
                ChangeError::UnknownExperiment(_) => StatusCode::NOT_FOUND,
                ChangeError::Conflict(_) => StatusCode::CONFLICT,
                ChangeError::Invalid(_) => StatusCode::BAD_REQUEST,
                ChangeError::Failed(_) => StatusCode::INTERNAL_SERVER_ERROR,
            };
            error(status, e)
        }
    }
}
