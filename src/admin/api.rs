//! `GET /api/experiments` and `PATCH /api/experiments/{key}`.
//!
//! A PATCH edits the YAML file in place (only the changed values; see `config::edit`),
//! validates the result exactly as a reload would (transitions included), writes it
//! atomically (temporary file, fsync, rename) and applies it, all under the load lock.
//! The file stays the one source of truth: the watcher then sees a file whose text is
//! already in force.
//!
//! The weights of an experiment with a `bandit:` are not the API's to change (`409`):
//! its state still is.

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
    let path = app.config_path().to_path_buf();
    let mut loaded = app.loaded();
    // What was in force, for the log line of the change.
    let before = app.snapshot();
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
    if !change.weights.is_empty() && has_bandit(&before, key) {
        // The bandit sets the weights in force (a hand edit would be undone at its next
        // update); the file's weights are the burn-in weights every run starts from.
        return error(
            StatusCode::CONFLICT,
            format!(
                "experiment `{key}` has a bandit: its weights are set by the bandit; `variants.*.weight` in the file are the burn-in weights"
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
            Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, write_failure(&path, &e)),
        };
        if let Err(e) = crate::util::fsutil::write_atomically(&target, text.as_bytes(), mode) {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                write_failure(&target, &e),
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
        let now = app.snapshot();
        if let (Some(before), Some(after)) = (
            loaded_experiment(&before, key),
            loaded_experiment(&now, key),
        ) {
            tracing::info!(
                "experiment {key} changed through the admin API: {}",
                describe_change(before, after)
            );
        }
    }
    let snapshot = app.snapshot();
    (StatusCode::OK, experiment_json(&snapshot, key))
}

/// Whether experiment `key`, as in force, has a bandit (the file is the same text:
/// checked above).
fn has_bandit(snapshot: &Snapshot, key: &str) -> bool {
    loaded_experiment(snapshot, key).is_some_and(|e| e.bandit.is_some())
}

fn loaded_experiment<'a>(
    snapshot: &'a Snapshot,
    key: &str,
) -> Option<&'a crate::config::Experiment> {
    snapshot.config.experiments.iter().find(|e| e.key == key)
}

/// What a change did, for the log: `state active → rollout, rollout_variant Mars`,
/// `weights Mars=70 Moon=30 (were Mars=50 Moon=50)`. Variants by name.
pub fn describe_change(
    before: &crate::config::Experiment,
    after: &crate::config::Experiment,
) -> String {
    let mut parts = Vec::new();
    if before.state != after.state {
        parts.push(format!(
            "state {} → {}",
            before.state.as_str(),
            after.state.as_str()
        ));
    }
    if before.rollout_variant != after.rollout_variant {
        parts.push(format!(
            "rollout_variant {}",
            after.rollout_variant.as_deref().unwrap_or("(none)")
        ));
    }
    let weights = |e: &crate::config::Experiment| {
        let by_name: BTreeMap<&str, u32> = e
            .variants
            .iter()
            .map(|v| (v.name.as_str(), v.weight))
            .collect();
        by_name
            .iter()
            .map(|(name, weight)| format!("{name}={weight}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let (old, new) = (weights(before), weights(after));
    if old != new {
        parts.push(format!("weights {new} (were {old})"));
    }
    if parts.is_empty() {
        "nothing that the log describes (formatting only)".to_string()
    } else {
        parts.join(", ")
    }
}

/// Why writing the config failed, and what to do about it: the page shows it and the
/// log records it. In the documented Docker setup the config is mounted read-only.
pub fn write_failure(path: &std::path::Path, err: &std::io::Error) -> String {
    use std::io::ErrorKind;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let hint = match err.kind() {
        ErrorKind::ReadOnlyFilesystem => format!(
            " — the config is on a read-only mount: mount {} writable (without `:ro`), or change the file where it comes from",
            dir.display()
        ),
        ErrorKind::PermissionDenied => format!(
            " — abproxy may not create files in {}: a change is written to a temporary file beside the config and renamed over it, so the directory must be writable by the user abproxy runs as",
            dir.display()
        ),
        ErrorKind::ResourceBusy => format!(
            " — {} is itself a mount point (a single file mounted into a container) and cannot be replaced: mount its directory instead",
            path.display()
        ),
        _ => String::new(),
    };
    format!("cannot write {}: {err}{hint}", path.display())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn experiment(
        state: &str,
        moon: u32,
        mars: u32,
        rollout: Option<&str>,
    ) -> crate::config::Experiment {
        let rollout = rollout.map_or(String::new(), |v| format!("    rollout_variant: {v}\n"));
        let text = format!(
            "upstreams:\n  moon: http://127.0.0.1:9001\n  mars: http://127.0.0.1:9002\nexperiments:\n  moon_mars:\n    state: {state}\n    variants:\n      Moon: {{ weight: {moon}, upstream: moon }}\n      Mars: {{ weight: {mars}, upstream: mars }}\n    fallback: Moon\n{rollout}"
        );
        Config::from_str(&text, std::path::Path::new("t.yaml"))
            .unwrap()
            .experiments
            .remove(0)
    }

    #[test]
    fn changes_are_logged_as_what_changed() {
        let before = experiment("active", 50, 50, None);
        assert_eq!(
            describe_change(&before, &experiment("active", 30, 70, None)),
            "weights Mars=70 Moon=30 (were Mars=50 Moon=50)"
        );
        assert_eq!(
            describe_change(&before, &experiment("rollout", 50, 50, Some("Mars"))),
            "state active → rollout, rollout_variant Mars"
        );
        assert_eq!(
            describe_change(&before, &before),
            "nothing that the log describes (formatting only)"
        );
    }

    #[test]
    fn write_failures_say_why_and_what_to_do() {
        use std::io::{Error, ErrorKind};
        let path = std::path::Path::new("/etc/abproxy/abproxy.yaml");
        let read_only = write_failure(path, &Error::from(ErrorKind::ReadOnlyFilesystem));
        assert!(
            read_only.starts_with("cannot write /etc/abproxy/abproxy.yaml: read-only filesystem")
                && read_only.contains("mount /etc/abproxy writable"),
            "{read_only}"
        );
        // What the kernel says on a read-only mount (EROFS): the same advice.
        let erofs = write_failure(path, &Error::from_raw_os_error(30));
        assert!(
            erofs.contains("Read-only file system") && erofs.contains("writable"),
            "{erofs}"
        );
        let denied = write_failure(path, &Error::from_raw_os_error(13));
        assert!(
            denied.contains("may not create files in /etc/abproxy"),
            "{denied}"
        );
        let busy = write_failure(path, &Error::from_raw_os_error(16));
        assert!(busy.contains("mount its directory instead"), "{busy}");
        let other = write_failure(path, &Error::other("disk on fire"));
        assert_eq!(
            other,
            "cannot write /etc/abproxy/abproxy.yaml: disk on fire"
        );
    }
}
