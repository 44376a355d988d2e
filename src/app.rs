//! The state shared by every connection: the current snapshot, the metrics, and the
//! one way to replace the snapshot (start-up and reload share it).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use crate::config::{Config, ConfigError};
use crate::metrics::Metrics;
use crate::snapshot::Snapshot;

pub struct App {
    snapshot: ArcSwap<Snapshot>,
    pub metrics: Metrics,
    config_path: PathBuf,
    /// The text of the config in force. Also serialises reloads (a file event and a
    /// SIGHUP at once must not interleave their swaps).
    loaded_text: Mutex<String>,
}

/// What a reload did.
#[derive(Debug)]
pub enum ReloadOutcome {
    /// The file's text is what is already in force.
    Unchanged,
    Applied,
    /// The file was refused; the previous config keeps serving.
    Refused(ConfigError),
}

impl App {
    /// Load and validate the config file and build the first snapshot.
    pub fn load(config_path: &Path) -> Result<App, ConfigError> {
        let (config, text) = Config::load(config_path)?;
        let metrics = Metrics::new();
        metrics.publish_weights(&config, None);
        metrics.mark_loaded();
        let snapshot = Snapshot::build(config, &metrics, None);
        Ok(App {
            snapshot: ArcSwap::from_pointee(snapshot),
            metrics,
            config_path: config_path.to_path_buf(),
            loaded_text: Mutex::new(text),
        })
    }

    /// The snapshot in force. A request calls this once and keeps the `Arc` to its end,
    /// so a reload never changes the config under a request in flight.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// Re-read the config file; validate; swap. With `force` a file whose text did not
    /// change is re-applied anyway (an explicit SIGHUP); without it, an unchanged file is
    /// left alone (editors and Kubernetes produce many events for one save).
    pub fn reload(&self, force: bool) -> ReloadOutcome {
        let mut loaded_text = self
            .loaded_text
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let (config, text) = match Config::load(&self.config_path) {
            Ok(loaded) => loaded,
            Err(err) => {
                tracing::error!("config reload refused, still serving the previous config: {err}");
                self.metrics.record_reload(false);
                return ReloadOutcome::Refused(err);
            }
        };
        if !force && text == *loaded_text {
            return ReloadOutcome::Unchanged;
        }
        let previous = self.snapshot.load_full();
        if config.listen != previous.config.listen
            || config.admin_listen != previous.config.admin_listen
        {
            tracing::warn!(
                "config {}: listen addresses changed; they take effect only after a restart \
                 (still listening on {} and admin {})",
                self.config_path.display(),
                previous.config.listen,
                previous.config.admin_listen
            );
        }
        self.metrics
            .publish_weights(&config, Some(&previous.config));
        let experiments = config.experiments.len();
        self.snapshot.store(Arc::new(Snapshot::build(
            config,
            &self.metrics,
            Some(&previous),
        )));
        self.metrics.record_reload(true);
        *loaded_text = text;
        tracing::info!(
            "config reloaded from {} ({experiments} experiments)",
            self.config_path.display()
        );
        ReloadOutcome::Applied
    }
}
