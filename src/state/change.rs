//! The one path that changes an experiment's state, weights or rollout variant in the
//! config file: the admin API's PATCH and an automated decision in `act` mode both take
//! it, so a decision is exactly what a human change would be.
//!
//! The YAML file is edited in place (only the changed values; see `config::edit`),
//! validated exactly as a reload would (transitions included), written atomically
//! (temporary file, fsync, rename) and applied, all under the load lock. The file stays
//! the one source of truth: the watcher then sees a file whose text is already in force.
//! Nothing is half-applied: a change that cannot be written or committed leaves the file
//! and the proxy as they were.

use std::collections::BTreeMap;

use crate::config::edit::{self, Change, EditError};
use crate::config::Config;
use crate::state::app::App;
use crate::state::snapshot::Snapshot;

/// Why a change was not applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChangeError {
    #[error("no experiment `{0}`")]
    UnknownExperiment(String),
    /// The file or the experiment is not in a state to take this change now.
    #[error("{0}")]
    Conflict(String),
    /// The change itself is not valid (a refused transition, an unknown variant, …).
    #[error("{0}")]
    Invalid(String),
    /// The file could not be read or written, or the run book not saved.
    #[error("{0}")]
    Failed(String),
}

/// Apply `change` to experiment `key` through the config file; `by` says who asked, for
/// the log line of the change (`the admin API`, `an automated decision`). `still` checks,
/// under the load lock, that what the change was decided on is still in force (a
/// decision read the counts before a human's change, say); its refusal is a conflict.
/// Blocking (file I/O).
pub fn change_experiment(
    app: &App,
    key: &str,
    change: &Change,
    by: &str,
    still: impl FnOnce(&Snapshot) -> Result<(), String>,
) -> Result<(), ChangeError> {
    let path = app.config_path().to_path_buf();
    let mut loaded = app.loaded();
    // What was in force, for the log line of the change.
    let before = app.snapshot();
    still(&before).map_err(ChangeError::Conflict)?;
    let on_disk = std::fs::read_to_string(&path)
        .map_err(|e| ChangeError::Failed(format!("cannot read {}: {e}", path.display())))?;
    if on_disk != loaded.text {
        // Editing the file under someone's unapplied (maybe broken) edit would clobber it.
        return Err(ChangeError::Conflict(format!(
            "{} has changes that are not in force yet; fix or save it, then try again",
            path.display()
        )));
    }
    if !change.weights.is_empty() && has_bandit(&before, key) {
        // The bandit sets the weights in force (a hand edit would be undone at its next
        // update); the file's weights are the burn-in weights every run starts from.
        return Err(ChangeError::Conflict(format!(
            "experiment `{key}` has a bandit: its weights are set by the bandit; `variants.*.weight` in the file are the burn-in weights"
        )));
    }
    let text = match edit::apply(&on_disk, key, change) {
        Ok(text) => text,
        Err(EditError::UnknownExperiment(_)) => {
            return Err(ChangeError::UnknownExperiment(key.to_string()))
        }
        Err(e) => return Err(ChangeError::Invalid(e.to_string())),
    };
    if text == on_disk {
        return Ok(());
    }
    let config = Config::from_str(&text, &path).map_err(|e| ChangeError::Invalid(e.to_string()))?;
    // Everything that can refuse the change (transitions, secret and token files) runs
    // before the file is touched.
    let prepared = app
        .prepare(&loaded, config)
        .map_err(|e| ChangeError::Invalid(e.to_string()))?;
    let (target, mode) =
        write_target(&path).map_err(|e| ChangeError::Failed(write_failure(&path, &e)))?;
    crate::util::fsutil::write_atomically(&target, text.as_bytes(), mode)
        .map_err(|e| ChangeError::Failed(write_failure(&target, &e)))?;
    if let Err(e) = app.commit(&mut loaded, prepared, text) {
        // Put the file back, so file and proxy agree again.
        let restored = crate::util::fsutil::write_atomically(&target, on_disk.as_bytes(), mode);
        app.metrics.record_reload(false);
        let note = if restored.is_ok() {
            "the file was restored"
        } else {
            "and the file could not be restored"
        };
        return Err(ChangeError::Failed(format!("not applied ({note}): {e}")));
    }
    app.metrics.record_reload(true);
    let now = app.snapshot();
    if let (Some(before), Some(after)) = (
        loaded_experiment(&before, key),
        loaded_experiment(&now, key),
    ) {
        tracing::info!(
            "experiment {key} changed through {by}: {}",
            describe_change(before, after)
        );
    }
    Ok(())
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
