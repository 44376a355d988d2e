//! `GET /api/experiments` and `PATCH /api/experiments/{key}`.
//!
//! A PATCH edits the YAML file in place (only the changed values; see `config::edit`),
//! validates the result exactly as a reload would (transitions included), writes it
//! atomically (temporary file, fsync, rename) and applies it, all under the load lock.
//! The file stays the one source of truth: the watcher then sees a file whose text is
//! already in force.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{json, Value};

use crate::config::edit::{self, Change, EditError};
use crate::config::{Config, State};
use crate::experiments::lifecycle::allowed_targets;
use crate::state::app::App;
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
    let variants: Vec<Value> = config
        .variants
        .iter()
        .zip(&plan.variants)
        .map(|(v, p)| {
            json!({
                "name": v.name,
                "weight": v.weight,
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
    })
}

/// Apply a PATCH to experiment `key`. Blocking (file I/O): call from a blocking task.
pub fn patch(app: &App, key: &str, body: &[u8]) -> Answer {
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
    let path = app.config_path().to_path_buf();
    let mut loaded = app.loaded();
    let on_disk = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot read {}: {e}", path.display()),
            )
        }
    };
    if on_disk != loaded.text {
        // Editing the file under someone's unapplied (maybe broken) edit would clobber it.
        return error(
            StatusCode::CONFLICT,
            format!(
                "{} has changes that are not in force yet; fix or save it, then try again",
                path.display()
            ),
        );
    }
    let text = match edit::apply(&on_disk, key, &change) {
        Ok(text) => text,
        Err(EditError::UnknownExperiment(_)) => {
            return error(StatusCode::NOT_FOUND, format!("no experiment `{key}`"))
        }
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    if text != on_disk {
        let config = match Config::from_str(&text, &path) {
            Ok(config) => config,
            Err(e) => return error(StatusCode::BAD_REQUEST, e),
        };
        // Everything that can refuse the change (transitions, secret and token files)
        // runs before the file is touched.
        let prepared = match app.prepare(&loaded, config) {
            Ok(prepared) => prepared,
            Err(e) => return error(StatusCode::BAD_REQUEST, e),
        };
        let (target, mode) = match write_target(&path) {
            Ok(found) => found,
            Err(e) => {
                return error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("cannot write {}: {e}", path.display()),
                )
            }
        };
        if let Err(e) = crate::util::fsutil::write_atomically(&target, text.as_bytes(), mode) {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot write {}: {e}", target.display()),
            );
        }
        if let Err(e) = app.commit(&mut loaded, prepared, text) {
            // Put the file back, so file and proxy agree again.
            let restored = crate::util::fsutil::write_atomically(&target, on_disk.as_bytes(), mode);
            app.metrics.record_reload(false);
            let note = if restored.is_ok() {
                "the file was restored"
            } else {
                "and the file could not be restored"
            };
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("not applied ({note}): {e}"),
            );
        }
        app.metrics.record_reload(true);
        tracing::info!("experiment {key} changed through the admin API: {change:?}");
    }
    let snapshot = app.snapshot();
    (StatusCode::OK, experiment_json(&snapshot, key))
}

/// Where to write: through a symlink to the file it names (replacing the link would
/// detach it from what a ConfigMap or deploy tool manages), with that file's mode.
fn write_target(path: &std::path::Path) -> std::io::Result<(std::path::PathBuf, Option<u32>)> {
    let target = std::fs::canonicalize(path)?;
    #[cfg(unix)]
    let mode = Some(
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&target)?.permissions())
            & 0o7777,
    );
    #[cfg(not(unix))]
    let mode = None;
    Ok((target, mode))
}
