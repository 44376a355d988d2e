//! What triggers a config reload: the file changing on disk, or SIGHUP.
//!
//! Editors save by writing a temporary file and renaming it over the old one, and a
//! Kubernetes ConfigMap volume swaps a `..data` symlink; a watch on the file itself
//! would be lost at the first such save. So the *directory* is watched, events are
//! filtered by name, bursts are debounced, and `App::reload` ignores a file whose text
//! did not change.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;

use crate::state::app::App;

/// One save is several events (create, write, rename, chmod); wait this long after the
/// last one before reading the file.
pub const DEBOUNCE: Duration = Duration::from_millis(100);

/// Watches the config file's directory (and, when the path is a symlink into another
/// directory, that one too), and those of the TLS certificate and key, until dropped.
pub struct ConfigWatcher {
    _watcher: notify::RecommendedWatcher,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ConfigWatcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Start reloading `app` when its config file changes. Must run inside a tokio runtime.
pub fn watch_config(app: Arc<App>) -> notify::Result<ConfigWatcher> {
    let mut watched = watched_places(app.config_path());
    // The certificate and key in force at start-up are watched too: a renewal (certbot,
    // cert-manager) rewrites them without touching the config.
    if let Some(tls) = &app.snapshot().config.tls {
        watched.extend(watched_places(&tls.cert));
        watched.extend(watched_places(&tls.key));
    }
    let names: Vec<OsString> = watched.iter().map(|(_, name)| name.clone()).collect();
    let mut dirs: Vec<&PathBuf> = watched.iter().map(|(dir, _)| dir).collect();
    dirs.sort();
    dirs.dedup();
    let (tx, mut rx) = mpsc::unbounded_channel::<()>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let relevant = match &event {
            // An error may mean missed events (queue overflow): re-read to be sure.
            Err(_) => true,
            Ok(event) => {
                changes_content(&event.kind)
                    && (event.paths.is_empty()
                        || event.paths.iter().any(|p| is_relevant(p, &names)))
            }
        };
        if relevant {
            let _ = tx.send(());
        }
    })?;
    for dir in dirs {
        watcher.watch(dir, RecursiveMode::NonRecursive)?;
    }
    let task = tokio::spawn(async move {
        while rx.recv().await.is_some() {
            // Debounce: wait until the events stop for DEBOUNCE.
            while let Ok(Some(())) = tokio::time::timeout(DEBOUNCE, rx.recv()).await {}
            let app = app.clone();
            // File reads and snapshot building are blocking work.
            let _ = tokio::task::spawn_blocking(move || app.reload(false)).await;
        }
    });
    Ok(ConfigWatcher {
        _watcher: watcher,
        task,
    })
}

/// Both reload triggers, running until dropped.
pub struct Reloaders {
    _watcher: Option<ConfigWatcher>,
    #[cfg(unix)]
    sighup: tokio::task::JoinHandle<()>,
}

impl Reloaders {
    /// Start watching the config file and listening for SIGHUP. The watch is in place
    /// when this returns: a change made after it is never missed.
    pub fn start(app: Arc<App>) -> std::io::Result<Reloaders> {
        // Without a watch (e.g. the inotify instance limit is reached) the proxy still
        // serves, and SIGHUP still reloads: say so rather than refuse to start.
        let watcher = watch_config(app.clone())
            .inspect_err(|e| {
                tracing::warn!(
                    "cannot watch {} for changes ({e}); reload with SIGHUP instead",
                    app.config_path().display()
                )
            })
            .ok();
        #[cfg(unix)]
        let sighup = reload_on_sighup(app)?;
        Ok(Reloaders {
            _watcher: watcher,
            #[cfg(unix)]
            sighup,
        })
    }
}

impl Drop for Reloaders {
    fn drop(&mut self) {
        #[cfg(unix)]
        self.sighup.abort();
    }
}

/// Reload on every SIGHUP (an explicit trigger: applied even when the text is unchanged).
#[cfg(unix)]
pub fn reload_on_sighup(app: Arc<App>) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let mut hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    Ok(tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading {}", app.config_path().display());
            let app = app.clone();
            let _ = tokio::task::spawn_blocking(move || app.reload(true)).await;
        }
    }))
}

/// Does this kind of event mean the file may now read differently?
///
/// Reads never do (and reloading reads the file: reacting to reads would loop). On
/// Linux, inotify reports the end of an in-place write as close-write, so raw data
/// writes are ignored there: a writer that pauses mid-file (scp, `cat a > f; cat b >>
/// f`) is not read half-way. Renames (editors' atomic saves, a ConfigMap's `..data`
/// swap), creation and removal count everywhere.
fn changes_content(kind: &notify::EventKind) -> bool {
    use notify::event::{AccessKind, AccessMode, EventKind, ModifyKind};
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        EventKind::Modify(ModifyKind::Data(_) | ModifyKind::Any) => !cfg!(target_os = "linux"),
        EventKind::Modify(ModifyKind::Metadata(_)) => false,
        _ => true,
    }
}

/// (directory, file name) pairs to watch: the path as given, and where it resolves.
fn watched_places(path: &Path) -> Vec<(PathBuf, OsString)> {
    let mut places = Vec::new();
    let mut add = |p: &Path| {
        let dir = match p.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if let Some(name) = p.file_name() {
            if !places.iter().any(|(d, n)| *d == dir && n == name) {
                places.push((dir, name.to_os_string()));
            }
        }
    };
    add(path);
    if let Ok(resolved) = std::fs::canonicalize(path) {
        add(&resolved);
    }
    places
}

/// The config file itself, or a Kubernetes `..data`-style entry next to it.
fn is_relevant(event_path: &Path, names: &[OsString]) -> bool {
    match event_path.file_name() {
        Some(name) => names.iter().any(|n| n == name) || name.to_string_lossy().starts_with(".."),
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_content_changes_trigger() {
        use notify::event::*;
        assert!(changes_content(&EventKind::Access(AccessKind::Close(
            AccessMode::Write
        ))));
        assert!(changes_content(&EventKind::Modify(ModifyKind::Name(
            RenameMode::To
        ))));
        assert!(changes_content(&EventKind::Create(CreateKind::File)));
        assert!(changes_content(&EventKind::Remove(RemoveKind::File)));
        assert!(!changes_content(&EventKind::Access(AccessKind::Open(
            AccessMode::Any
        ))));
        assert!(!changes_content(&EventKind::Access(AccessKind::Close(
            AccessMode::Read
        ))));
        assert!(!changes_content(&EventKind::Modify(ModifyKind::Metadata(
            MetadataKind::Any
        ))));
        #[cfg(target_os = "linux")]
        assert!(!changes_content(&EventKind::Modify(ModifyKind::Data(
            DataChange::Content
        ))));
    }

    #[test]
    fn relevant_events() {
        let names = vec![OsString::from("abproxy.yaml")];
        assert!(is_relevant(Path::new("/etc/abproxy/abproxy.yaml"), &names));
        assert!(is_relevant(Path::new("/etc/abproxy/..data"), &names));
        assert!(is_relevant(
            Path::new("/etc/abproxy/..2026_11_23_10_00_00.123"),
            &names
        ));
        assert!(!is_relevant(Path::new("/etc/abproxy/other.yaml"), &names));
        assert!(!is_relevant(
            Path::new("/etc/abproxy/.abproxy.yaml.swp"),
            &names
        ));
    }

    #[test]
    fn relative_paths_watch_the_current_directory() {
        let places = watched_places(Path::new("abproxy-does-not-exist.yaml"));
        assert_eq!(
            places,
            vec![(
                PathBuf::from("."),
                OsString::from("abproxy-does-not-exist.yaml")
            )]
        );
    }
}
