//! The run book: each experiment's state and numbered runs, kept in
//! `<data_dir>/runs.json` so they survive restarts.
//!
//! Every config that is loaded (start-up, file reload, admin API) is checked against
//! the book: a refused transition refuses the config. An experiment the book has never
//! seen (or that was removed from the config and comes back) adopts its state as is, so
//! a new replica with an empty data directory starts with any valid config.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::State;
use crate::experiments::lifecycle::{self, Refused, RunChange};
use crate::stats::analysis::ArmInputs;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunBook {
    pub experiments: BTreeMap<String, ExperimentRuns>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExperimentRuns {
    /// The state last applied.
    pub state: State,
    /// False once the experiment was removed from the config (history kept).
    pub present: bool,
    /// Oldest first; numbers start at 1.
    pub runs: Vec<Run>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Run {
    pub number: u32,
    /// RFC 3339, UTC.
    pub started_at: String,
    pub ended_at: Option<String>,
    /// Oldest first; numbers start at 1. A new period starts whenever the weights new
    /// devices are hashed by change (a bandit update, a weight change in the config).
    #[serde(default)]
    pub periods: Vec<Period>,
}

/// A stretch of a run with one set of weights.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Period {
    pub number: u32,
    /// RFC 3339, UTC.
    pub started_at: String,
    /// The weights new devices are hashed by, by variant (the config's, or a bandit's
    /// shares in parts per billion); their ratios are the shares.
    pub weights: BTreeMap<String, u32>,
    /// Bandit periods: the run's devices and conversions per variant the weights were
    /// computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inputs: Option<BTreeMap<String, ArmInputs>>,
}

impl ExperimentRuns {
    /// The run devices are counted in: the last one, while the experiment is active.
    pub fn current_run(&self) -> Option<&Run> {
        match self.state {
            State::Active => self.runs.last().filter(|r| r.ended_at.is_none()),
            _ => None,
        }
    }

    pub fn last_run(&self) -> Option<&Run> {
        self.runs.last()
    }

    fn start_run(&mut self, now: &str) {
        let number = self.runs.last().map_or(1, |r| r.number + 1);
        self.runs.push(Run {
            number,
            started_at: now.to_string(),
            ended_at: None,
            periods: Vec::new(),
        });
    }

    fn end_run(&mut self, now: &str) {
        if let Some(run) = self.runs.last_mut().filter(|r| r.ended_at.is_none()) {
            run.ended_at = Some(now.to_string());
        }
    }
}

/// A config whose state change the book refuses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransitionRefused {
    pub experiment: String,
    pub refused: Refused,
}

impl RunBook {
    /// The book after applying the states of `experiments` (key, state) at time `now`.
    pub fn advance(
        &self,
        experiments: &[(&str, State)],
        now: &str,
    ) -> Result<RunBook, TransitionRefused> {
        let mut next = self.clone();
        for (key, entry) in next.experiments.iter_mut() {
            if entry.present && !experiments.iter().any(|(k, _)| k == key) {
                entry.present = false;
                entry.end_run(now);
            }
        }
        for &(key, state) in experiments {
            match next.experiments.get_mut(key) {
                Some(entry) if entry.present => {
                    let change = lifecycle::transition(entry.state, state).map_err(|refused| {
                        TransitionRefused {
                            experiment: key.to_string(),
                            refused,
                        }
                    })?;
                    match change {
                        RunChange::Start => entry.start_run(now),
                        RunChange::End => entry.end_run(now),
                        RunChange::None => {}
                    }
                    entry.state = state;
                }
                Some(entry) => {
                    // Back in the config: adopt its state; numbering continues.
                    entry.present = true;
                    entry.state = state;
                    if state == State::Active {
                        entry.start_run(now);
                    }
                }
                None => {
                    let mut entry = ExperimentRuns {
                        state,
                        present: true,
                        runs: Vec::new(),
                    };
                    if state == State::Active {
                        entry.start_run(now);
                    }
                    next.experiments.insert(key.to_string(), entry);
                }
            }
        }
        Ok(next)
    }

    pub fn get(&self, key: &str) -> Option<&ExperimentRuns> {
        self.experiments.get(key)
    }
}

/// Where the book lives, and its load/save.
pub struct RunStore {
    path: PathBuf,
}

impl RunStore {
    pub fn new(data_dir: &Path) -> RunStore {
        RunStore {
            path: data_dir.join("runs.json"),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The saved book, or an empty one when none was saved yet.
    pub fn load(&self) -> std::io::Result<RunBook> {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                std::io::Error::other(format!(
                    "{} is not a valid run book: {e}",
                    self.path.display()
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(RunBook::default()),
            Err(e) => Err(e),
        }
    }

    pub fn save(&self, book: &RunBook) -> std::io::Result<()> {
        let json = serde_json::to_vec_pretty(book).map_err(std::io::Error::other)?;
        crate::util::fsutil::write_atomically(&self.path, &json, None)
    }
}

/// Now, as the book writes times.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use State::*;

    fn runs(book: &RunBook, key: &str) -> Vec<(u32, String, Option<String>)> {
        book.get(key)
            .unwrap()
            .runs
            .iter()
            .map(|r| (r.number, r.started_at.clone(), r.ended_at.clone()))
            .collect()
    }

    #[test]
    fn inactive_active_inactive_active_makes_two_runs() {
        let book = RunBook::default()
            .advance(&[("e", Inactive)], "t0")
            .unwrap();
        assert!(runs(&book, "e").is_empty());
        let book = book.advance(&[("e", Active)], "t1").unwrap();
        assert_eq!(book.get("e").unwrap().current_run().unwrap().number, 1);
        let book = book.advance(&[("e", Active)], "t1b").unwrap();
        let book = book.advance(&[("e", Inactive)], "t2").unwrap();
        assert!(book.get("e").unwrap().current_run().is_none());
        let book = book.advance(&[("e", Active)], "t3").unwrap();
        assert_eq!(
            runs(&book, "e"),
            vec![(1, "t1".into(), Some("t2".into())), (2, "t3".into(), None)]
        );
        assert_eq!(book.get("e").unwrap().current_run().unwrap().number, 2);
    }

    #[test]
    fn rollout_ends_the_run_and_reactivation_restarts() {
        let book = RunBook::default().advance(&[("e", Active)], "t1").unwrap();
        let book = book.advance(&[("e", Rollout)], "t2").unwrap();
        assert!(book.get("e").unwrap().current_run().is_none());
        assert_eq!(runs(&book, "e"), vec![(1, "t1".into(), Some("t2".into()))]);
        let book = book.advance(&[("e", Active)], "t3").unwrap();
        assert_eq!(book.get("e").unwrap().current_run().unwrap().number, 2);
    }

    #[test]
    fn refused_transitions_name_the_experiment() {
        let book = RunBook::default()
            .advance(&[("a", Active), ("e", Inactive)], "t0")
            .unwrap();
        let err = book
            .advance(&[("a", Active), ("e", Rollout)], "t1")
            .unwrap_err();
        assert_eq!(err.experiment, "e");
        assert_eq!(
            err.refused,
            Refused {
                from: Inactive,
                to: Rollout
            }
        );
    }

    #[test]
    fn new_and_returning_experiments_adopt_their_state() {
        let book = RunBook::default().advance(&[("e", Rollout)], "t0").unwrap();
        assert_eq!(book.get("e").unwrap().state, Rollout);
        let book = book.advance(&[("e", Active)], "t1").unwrap();
        let book = book.advance(&[], "t2").unwrap();
        let e = book.get("e").unwrap();
        assert!(!e.present);
        assert_eq!(
            e.runs[0].ended_at.as_deref(),
            Some("t2"),
            "removal ends the run"
        );
        let book = book.advance(&[("e", Active)], "t3").unwrap();
        assert_eq!(
            book.get("e").unwrap().current_run().unwrap().number,
            2,
            "numbering continues"
        );
    }

    #[test]
    fn store_round_trip_and_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = RunStore::new(dir.path());
        assert_eq!(store.load().unwrap(), RunBook::default());
        let book = RunBook::default().advance(&[("e", Active)], "t1").unwrap();
        store.save(&book).unwrap();
        assert_eq!(store.load().unwrap(), book);
        std::fs::write(store.path(), b"{not json").unwrap();
        assert!(store
            .load()
            .unwrap_err()
            .to_string()
            .contains("not a valid run book"));
    }
}
