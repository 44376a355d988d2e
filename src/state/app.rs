//! The state shared by every connection: the current snapshot, the metrics, and the
//! one path that loads a config (start-up, file reload and the admin API share it):
//!
//! ```text
//! text → Config → transitions checked against the run book → secret → Snapshot → swap
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use arc_swap::ArcSwap;

use crate::config::{Config, ConfigError, Pos};
use crate::counting::metrics::Metrics;
use crate::counting::store::CountStore;
use crate::experiments::bandit::BanditStatus;
use crate::experiments::sticky::Signer;
use crate::state::runs::{now_rfc3339, ConfigWeights, RunBook, RunStore};
use crate::state::snapshot::Snapshot;
use crate::stats::analysis::ArmInputs;

pub struct App {
    snapshot: ArcSwap<Snapshot>,
    pub metrics: Metrics,
    /// Every count of every run, durable in `<data_dir>/counts/` (fixed at start-up).
    pub counts: Arc<CountStore>,
    /// The JSON-lines export, when configured (fixed at start-up).
    pub export: Option<Arc<crate::counting::export::Exporter>>,
    /// TLS on the proxy listener, when configured (on or off is fixed at start-up; the
    /// certificate reloads).
    pub tls: Option<crate::transport::tls::Terminator>,
    config_path: PathBuf,
    /// Fixed at start-up, like the listen addresses.
    runs_store: RunStore,
    /// `ABPROXY_SECRET` and `ABPROXY_ADMIN_TOKEN` as read at start-up.
    env: Env,
    /// The text in force (the run book in force is the snapshot's). The lock also
    /// serialises loads (a file event, a SIGHUP and an API call at once must not
    /// interleave).
    loaded: Mutex<Loaded>,
    /// What each bandit's updater last did, by experiment.
    bandits: Mutex<BTreeMap<String, BanditStatus>>,
    /// Every automated decision and what the next evaluation carries, durable in the
    /// data directory (fixed at start-up).
    pub decisions: crate::state::decision_log::DecisionLog,
}

/// Read, parse and validate the config file at `path`: the config and the text it came
/// from. (The config layer is pure; reading the file is the state's job.)
pub fn load_config(path: &Path) -> Result<(Config, String), ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        path: path.to_path_buf(),
        pos: Pos { line: 0, col: 0 },
        message: format!("cannot read the config file: {e}"),
    })?;
    let config = Config::from_str(&text, path)?;
    Ok((config, text))
}

pub struct Loaded {
    pub text: String,
    /// The last reload was refused: the file then held something other than `text`.
    pub last_refused: bool,
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

/// Settings that may come from the environment, read once at start-up (and given
/// explicitly by tests, which never touch the process environment).
#[derive(Debug, Clone, Default)]
pub struct Env {
    /// `ABPROXY_SECRET`
    pub secret: Option<String>,
    /// `ABPROXY_ADMIN_TOKEN`
    pub admin_token: Option<String>,
}

impl Env {
    pub fn from_process() -> Env {
        Env {
            secret: std::env::var(crate::state::secret::ENV).ok(),
            admin_token: std::env::var(crate::state::secret::TOKEN_ENV).ok(),
        }
    }
}

/// Why a bandit's new period was not started.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StartPeriodError {
    #[error("the run ended before its new period could start")]
    RunEnded,
    #[error(transparent)]
    Limit(crate::state::runs::PeriodLimit),
    #[error("the run book could not be saved: {0}")]
    NotSaved(String),
}

/// A config that passed every check, ready to swap in.
pub struct Prepared {
    config: Config,
    runs: RunBook,
    signer: Signer,
    secret_source: crate::state::secret::Source,
    admin_token: Option<crate::state::secret::AdminToken>,
    /// Read from `tls.cert` and `tls.key` when TLS is on.
    tls_cert: Option<crate::transport::tls::LoadedCert>,
    /// Per upstream: the rustls settings of `https://` ones (their `ca_file` read).
    upstream_tls: Vec<Option<Arc<rustls::ClientConfig>>>,
}

impl App {
    /// Load and validate the config file, check it against the run book in its data
    /// directory, and build the first snapshot. `ABPROXY_SECRET` is read here.
    pub fn load(config_path: &Path) -> Result<App, ConfigError> {
        App::load_with_env(config_path, Env::from_process())
    }

    /// As [`App::load`], with the environment's settings given.
    pub fn load_with_env(config_path: &Path, env: Env) -> Result<App, ConfigError> {
        let (config, text) = load_config(config_path)?;
        let whole_file = |message: String| ConfigError {
            path: config_path.to_path_buf(),
            pos: Pos::default(),
            message,
        };
        std::fs::create_dir_all(&config.data_dir).map_err(|e| {
            whole_file(format!(
                "cannot create data_dir {}: {e}",
                config.data_dir.display()
            ))
        })?;
        let runs_store = RunStore::new(&config.data_dir);
        let book = runs_store
            .load()
            .map_err(|e| whole_file(format!("cannot read the run book: {e}")))?;
        let (counts, report) = CountStore::open(&config.data_dir).map_err(|e| {
            whole_file(format!(
                "cannot read the counts log in {}: {e}",
                config.data_dir.join("counts").display()
            ))
        })?;
        for skipped in &report.skipped {
            tracing::error!("counts log: skipped {skipped}");
        }
        for file in &report.set_aside {
            tracing::error!(
                "counts log: {} had damaged lines; its good records are kept, the file is kept for inspection",
                file.display()
            );
        }
        tracing::info!(
            "counts log: {} records read from {} in {} ms",
            report.records,
            counts.dir().display(),
            report.elapsed.as_millis()
        );
        let counts = Arc::new(counts);
        let decisions = crate::state::decision_log::DecisionLog::open(&config.data_dir)
            .map_err(|e| whole_file(format!("cannot read the decision records: {e}")))?;
        let metrics = Metrics::new();
        let export = match &config.export {
            None => None,
            Some(export) => Some(Arc::new(
                crate::counting::export::Exporter::start(export, metrics.export_dropped.clone())
                    .map_err(|e| {
                        whole_file(format!(
                            "cannot write the export in {}: {e}",
                            export.dir.display()
                        ))
                    })?,
            )),
        };
        let mut prepared = prepare(config_path, config, &book, &env)?;
        let tls = prepared
            .tls_cert
            .take()
            .map(crate::transport::tls::Terminator::new);
        if let crate::state::secret::Source::Generated(file) = &prepared.secret_source {
            tracing::warn!(
                "no {} or secret_file: signing assignment cookies with the key generated in {}; \
                 replicas behind one load balancer must share one secret",
                crate::state::secret::ENV,
                file.display()
            );
        }
        if prepared.runs != book {
            runs_store
                .save(&prepared.runs)
                .map_err(|e| whole_file(format!("cannot save the run book: {e}")))?;
        }
        metrics.mark_loaded();
        let snapshot = Snapshot::build(
            prepared.config,
            prepared.runs,
            prepared.signer,
            prepared.admin_token,
            &metrics,
            prepared.upstream_tls,
            &counts.book,
            export.clone(),
            None,
        );
        snapshot.publish_weights(&metrics, None);
        Ok(App {
            snapshot: ArcSwap::from_pointee(snapshot),
            metrics,
            counts,
            export,
            tls,
            config_path: config_path.to_path_buf(),
            runs_store,
            env,
            loaded: Mutex::new(Loaded {
                text,
                last_refused: false,
            }),
            bandits: Mutex::default(),
            decisions,
        })
    }

    /// The snapshot in force. A request calls this once and keeps the `Arc` to its end,
    /// so a reload never changes the config under a request in flight.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// What the bandit of experiment `key` last did (default before its first boundary).
    pub fn bandit_status(&self, key: &str) -> BanditStatus {
        let bandits = self.bandits.lock().unwrap_or_else(|e| e.into_inner());
        bandits.get(key).cloned().unwrap_or_default()
    }

    pub fn set_bandit_status(&self, key: &str, status: BanditStatus) {
        let mut bandits = self.bandits.lock().unwrap_or_else(|e| e.into_inner());
        bandits.insert(key.to_string(), status);
    }

    /// Start a new period of run `run` of `key` with a bandit's `weights` (computed from
    /// `inputs`): saved in the run book, then in force for new devices. The config in
    /// force is kept as it is. Returns the new period's number.
    pub fn start_period(
        &self,
        key: &str,
        run: u32,
        weights: BTreeMap<String, u32>,
        inputs: BTreeMap<String, ArmInputs>,
    ) -> Result<u32, StartPeriodError> {
        let mut loaded = self.loaded();
        let previous = self.snapshot.load_full();
        let open = previous
            .runs
            .get(key)
            .and_then(|r| r.current_run())
            .is_some_and(|r| r.number == run);
        if !open {
            // The run ended (or another began) between the read of the counts and now.
            return Err(StartPeriodError::RunEnded);
        }
        let book = match previous
            .runs
            .start_period(key, weights, inputs, &now_rfc3339())
        {
            Some(Ok(book)) => book,
            Some(Err(limit)) => return Err(StartPeriodError::Limit(limit)),
            None => return Err(StartPeriodError::RunEnded),
        };
        let mut prepared = self
            .prepare(&loaded, (*previous.config).clone())
            .map_err(|e| StartPeriodError::NotSaved(e.to_string()))?;
        prepared.runs = book;
        let period = prepared
            .runs
            .get(key)
            .and_then(|r| r.current_run())
            .and_then(|r| r.current_period())
            .map_or(0, |p| p.number);
        let text = loaded.text.clone();
        self.commit(&mut loaded, prepared, text)
            .map_err(|e| StartPeriodError::NotSaved(e.message))?;
        Ok(period)
    }

    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// The text and run book in force, locked: no load happens while it is held.
    pub fn loaded(&self) -> MutexGuard<'_, Loaded> {
        self.loaded
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Re-read the config file; validate; swap. With `force` a file whose text did not
    /// change is re-applied anyway (an explicit SIGHUP); without it, an unchanged file is
    /// left alone (editors and Kubernetes produce many events for one save).
    pub fn reload(&self, force: bool) -> ReloadOutcome {
        let mut loaded = self.loaded();
        let outcome = match load_config(&self.config_path) {
            Err(err) => ReloadOutcome::Refused(err),
            // A broken file put back as it was: nothing changes, but the log's last word
            // (an error) and the reload metrics must say the file is good again.
            Ok((_, text)) if !force && text == loaded.text && loaded.last_refused => {
                loaded.last_refused = false;
                tracing::info!(
                    "config {} is valid again and the same as the config in force; still serving it",
                    self.config_path.display()
                );
                self.metrics.record_reload(true);
                return ReloadOutcome::Unchanged;
            }
            // The certificate files may have changed on their own.
            Ok((_, text)) if !force && text == loaded.text => return self.refresh_tls(),
            Ok((config, text)) => match self.apply(&mut loaded, config, text) {
                Ok(()) => ReloadOutcome::Applied,
                Err(err) => ReloadOutcome::Refused(err),
            },
        };
        loaded.last_refused = matches!(outcome, ReloadOutcome::Refused(_));
        match &outcome {
            ReloadOutcome::Refused(err) => {
                tracing::error!("config reload refused, still serving the previous config: {err}");
                self.metrics.record_reload(false);
            }
            _ => {
                self.metrics.record_reload(true);
                tracing::info!("config reloaded from {}", self.config_path.display());
            }
        }
        outcome
    }

    /// Re-read the certificate and key of the config in force; swap them in if their
    /// files changed. A bad pair is refused and the one in force keeps serving.
    fn refresh_tls(&self) -> ReloadOutcome {
        let (Some(terminator), Some(paths)) = (&self.tls, &self.snapshot().config.tls) else {
            return ReloadOutcome::Unchanged;
        };
        match crate::transport::tls::load(paths).map(|cert| terminator.resolver.install(cert)) {
            Ok(true) => {
                tracing::info!("TLS certificate reloaded from {}", paths.cert.display());
                self.metrics.record_reload(true);
                ReloadOutcome::Applied
            }
            Ok(false) => ReloadOutcome::Unchanged,
            Err(message) => {
                tracing::error!(
                    "TLS certificate reload refused, still serving the previous one: {message}"
                );
                self.metrics.record_reload(false);
                ReloadOutcome::Refused(ConfigError {
                    path: self.config_path.clone(),
                    pos: Pos::default(),
                    message,
                })
            }
        }
    }

    /// Check `config` against the run book, save the book, swap the snapshot. The caller
    /// holds the lock (`loaded`) from reading the text to here.
    pub fn apply(
        &self,
        loaded: &mut Loaded,
        config: Config,
        text: String,
    ) -> Result<(), ConfigError> {
        let prepared = self.prepare(loaded, config)?;
        self.commit(loaded, prepared, text)
    }

    /// Every check and read a config needs before it can be applied; nothing is written,
    /// nothing changes. The caller holds the lock (`loaded`).
    /// `_held` proves the caller holds the load lock: the run book checked against here
    /// must still be the one in force when the caller commits.
    pub fn prepare(&self, _held: &Loaded, mut config: Config) -> Result<Prepared, ConfigError> {
        let previous = self.snapshot.load_full();
        if config.listen != previous.config.listen
            || config.admin_listen != previous.config.admin_listen
            || config.data_dir != previous.config.data_dir
            || config.export != previous.config.export
        {
            tracing::warn!(
                "config {}: listen addresses, data_dir or export changed; they take effect only after a restart \
                 (still listening on {} and admin {}, data in {})",
                self.config_path.display(),
                previous.config.listen,
                previous.config.admin_listen,
                previous.config.data_dir.display()
            );
        }
        if config.tls.is_some() != previous.config.tls.is_some() {
            tracing::warn!(
                "config {}: tls was turned {}; that takes effect only after a restart",
                self.config_path.display(),
                if config.tls.is_some() { "on" } else { "off" }
            );
            config.tls = previous.config.tls.clone();
        }
        // The data directory in force is the one the run book was read from.
        config.data_dir = previous.config.data_dir.clone();
        config.export = previous.config.export.clone();
        prepare(&self.config_path, config, &previous.runs, &self.env)
    }

    /// Save the run book and swap in the prepared config. Fails only if the run book
    /// cannot be saved, and then changes nothing.
    pub fn commit(
        &self,
        loaded: &mut Loaded,
        prepared: Prepared,
        text: String,
    ) -> Result<(), ConfigError> {
        let previous = self.snapshot.load_full();
        if prepared.runs != previous.runs {
            self.runs_store
                .save(&prepared.runs)
                .map_err(|e| ConfigError {
                    path: self.config_path.clone(),
                    pos: Pos::default(),
                    message: format!(
                        "cannot save the run book {}: {e}",
                        self.runs_store.path().display()
                    ),
                })?;
        }
        let prepared_tls = prepared.tls_cert;
        let snapshot = Snapshot::build(
            prepared.config,
            prepared.runs,
            prepared.signer,
            prepared.admin_token,
            &self.metrics,
            prepared.upstream_tls,
            &self.counts.book,
            self.export.clone(),
            Some(&previous),
        );
        snapshot.publish_weights(&self.metrics, Some(&previous));
        self.snapshot.store(Arc::new(snapshot));
        if let (Some(terminator), Some(cert)) = (&self.tls, prepared_tls) {
            if terminator.resolver.install(cert) {
                tracing::info!("TLS certificate reloaded");
            }
        }
        loaded.text = text;
        Ok(())
    }
}

/// Every check a config must pass beyond its own validity: state transitions against
/// the run book, and a usable secret.
fn prepare(
    path: &Path,
    config: Config,
    book: &RunBook,
    env: &Env,
) -> Result<Prepared, ConfigError> {
    let runs = check_transitions(path, &config, book)?;
    let admin_token = crate::state::secret::AdminToken::load(
        env.admin_token.clone(),
        config.admin_token_file.as_deref(),
    )
    .map_err(|message| ConfigError {
        path: path.to_path_buf(),
        pos: Pos::default(),
        message,
    })?;
    let (secret, source) = crate::state::secret::load(
        env.secret.clone(),
        config.secret_file.as_deref(),
        &config.data_dir,
    )
    .map_err(|message| ConfigError {
        path: path.to_path_buf(),
        pos: Pos::default(),
        message,
    })?;
    if let Some(secret) = config
        .notify
        .as_ref()
        .and_then(|n| n.secret_file.as_deref())
    {
        crate::state::secret::read_webhook_secret(secret).map_err(|message| ConfigError {
            path: path.to_path_buf(),
            pos: Pos::default(),
            message,
        })?;
    }
    let tls_cert = match &config.tls {
        None => None,
        Some(tls) => Some(
            crate::transport::tls::load(tls).map_err(|message| ConfigError {
                path: path.to_path_buf(),
                pos: Pos::default(),
                message,
            })?,
        ),
    };
    let upstream_tls = config
        .upstreams
        .iter()
        .map(crate::transport::upstream_client::tls_config)
        .collect::<Result<_, _>>()
        .map_err(|message| ConfigError {
            path: path.to_path_buf(),
            pos: Pos::default(),
            message,
        })?;
    Ok(Prepared {
        tls_cert,
        upstream_tls,
        config,
        runs,
        signer: Signer::new(&secret),
        secret_source: source,
        admin_token,
    })
}

/// The run book after `config`'s states, or the refused transition as a config error at
/// the experiment's `state:` key.
pub fn check_transitions(
    path: &Path,
    config: &Config,
    book: &RunBook,
) -> Result<RunBook, ConfigError> {
    let states: Vec<(&str, crate::config::State)> = config
        .experiments
        .iter()
        .map(|e| (e.key.as_str(), e.state))
        .collect();
    let now = now_rfc3339();
    let advanced = book.advance(&states, &now).map_err(|refused| {
        let experiment = config
            .experiments
            .iter()
            .find(|e| e.key == refused.experiment);
        ConfigError {
            path: path.to_path_buf(),
            pos: experiment.map_or(Pos::default(), |e| e.state_pos),
            message: format!(
                "experiments.{}.state: {}",
                refused.experiment, refused.refused
            ),
        }
    })?;
    let weights: Vec<ConfigWeights> = config
        .experiments
        .iter()
        .map(|e| ConfigWeights {
            key: &e.key,
            weights: e
                .variants
                .iter()
                .map(|v| (v.name.clone(), v.weight))
                .collect(),
            bandit: e.bandit.is_some(),
        })
        .collect();
    advanced
        .track_weights(&weights, &now)
        .map_err(|limit| ConfigError {
            path: path.to_path_buf(),
            pos: config
                .experiments
                .iter()
                .find(|e| e.key == limit.experiment)
                .map_or(Pos::default(), |e| e.state_pos),
            message: format!("experiments.{}.variants: {limit}", limit.experiment),
        })
}
