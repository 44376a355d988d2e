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

/// The most periods a run holds. Enough for hourly bandit updates for 41 days; past it
/// the bandit keeps its last shares, and a weight change in the config is refused, until
/// a new run starts. It bounds the run book, the per-period counters and their metrics.
pub const MAX_PERIODS_PER_RUN: usize = 1_000;

/// A run that already has [`MAX_PERIODS_PER_RUN`] periods.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "run {run} of `{experiment}` has {MAX_PERIODS_PER_RUN} periods, the most a run holds; \
     the weights cannot change again until a new run starts (state inactive, then active)"
)]
pub struct PeriodLimit {
    pub experiment: String,
    pub run: u32,
}

/// What the book needs to know of an experiment's weights: the ones in its config, and
/// whether a bandit owns them (then the config's are only the start of each run).
pub struct ConfigWeights<'a> {
    pub key: &'a str,
    pub weights: BTreeMap<String, u32>,
    pub bandit: bool,
}

impl Run {
    /// The period new devices are assigned in (the last one).
    pub fn current_period(&self) -> Option<&Period> {
        self.periods.last()
    }
}

impl Period {
    /// The shares of new devices: each weight over their sum.
    pub fn shares(&self) -> BTreeMap<String, f64> {
        crate::experiments::assign::shares(&self.weights)
    }
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

    /// The book after the config's weights at `now`: an open run without a period gets
    /// its first (the config's weights); a run whose config weights changed gets a new
    /// period with them, unless a bandit owns the weights (then only a change of the
    /// variants themselves starts one, again from the config's weights).
    pub fn track_weights(
        &self,
        experiments: &[ConfigWeights],
        now: &str,
    ) -> Result<RunBook, PeriodLimit> {
        let mut next = self.clone();
        for e in experiments {
            let Some(run) = next
                .experiments
                .get_mut(e.key)
                .and_then(|entry| entry.runs.last_mut())
                .filter(|run| run.ended_at.is_none())
            else {
                continue;
            };
            let starts = match run.current_period() {
                None => true,
                Some(period) if e.bandit => !period.weights.keys().eq(e.weights.keys()),
                Some(period) => period.weights != e.weights,
            };
            if starts {
                // The first period starts with the run (a run from before periods
                // existed gets its first now).
                let started_at = if run.periods.is_empty() {
                    run.started_at.clone()
                } else {
                    now.to_string()
                };
                push_period(run, e.key, e.weights.clone(), None, started_at)?;
            }
        }
        Ok(next)
    }

    /// The book with a new period of `key`'s open run, with `weights` computed by its
    /// bandit from `inputs`. `None` when the experiment has no open run.
    pub fn start_period(
        &self,
        key: &str,
        weights: BTreeMap<String, u32>,
        inputs: BTreeMap<String, ArmInputs>,
        now: &str,
    ) -> Option<Result<RunBook, PeriodLimit>> {
        let mut next = self.clone();
        let run = next
            .experiments
            .get_mut(key)
            .filter(|entry| entry.current_run().is_some())?
            .runs
            .last_mut()?;
        Some(push_period(run, key, weights, Some(inputs), now.to_string()).map(|()| next))
    }
}

fn push_period(
    run: &mut Run,
    key: &str,
    weights: BTreeMap<String, u32>,
    inputs: Option<BTreeMap<String, ArmInputs>>,
    started_at: String,
) -> Result<(), PeriodLimit> {
    if run.periods.len() >= MAX_PERIODS_PER_RUN {
        return Err(PeriodLimit {
            experiment: key.to_string(),
            run: run.number,
        });
    }
    run.periods.push(Period {
        number: run.periods.last().map_or(1, |p| p.number + 1),
        started_at,
        weights,
        inputs,
    });
    Ok(())
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

    fn weights(pairs: &[(&str, u32)]) -> BTreeMap<String, u32> {
        pairs.iter().map(|&(n, w)| (n.to_string(), w)).collect()
    }

    fn config<'a>(key: &'a str, w: &[(&str, u32)], bandit: bool) -> ConfigWeights<'a> {
        ConfigWeights {
            key,
            weights: weights(w),
            bandit,
        }
    }

    fn periods(book: &RunBook, key: &str) -> Vec<(u32, String, BTreeMap<String, u32>)> {
        book.get(key)
            .unwrap()
            .runs
            .last()
            .unwrap()
            .periods
            .iter()
            .map(|p| (p.number, p.started_at.clone(), p.weights.clone()))
            .collect()
    }

    #[test]
    fn a_weight_change_starts_a_period_and_a_new_run_starts_over() {
        let w5050 = [("A", 50), ("B", 50)];
        let w2080 = [("A", 20), ("B", 80)];
        let book = RunBook::default().advance(&[("e", Active)], "t1").unwrap();
        let book = book
            .track_weights(&[config("e", &w5050, false)], "t1")
            .unwrap();
        // The same weights again (any reload): nothing new.
        let book = book
            .track_weights(&[config("e", &w5050, false)], "t2")
            .unwrap();
        assert_eq!(periods(&book, "e"), vec![(1, "t1".into(), weights(&w5050))]);
        let book = book
            .track_weights(&[config("e", &w2080, false)], "t3")
            .unwrap();
        assert_eq!(
            periods(&book, "e"),
            vec![
                (1, "t1".into(), weights(&w5050)),
                (2, "t3".into(), weights(&w2080))
            ]
        );
        assert_eq!(
            book.get("e").unwrap().runs[0]
                .current_period()
                .unwrap()
                .shares(),
            [("A".to_string(), 0.2), ("B".to_string(), 0.8)].into()
        );
        // Inactive: no open run, nothing tracked; the next run starts at period 1.
        let book = book.advance(&[("e", Inactive)], "t4").unwrap();
        let book = book
            .track_weights(&[config("e", &w5050, false)], "t4")
            .unwrap();
        assert_eq!(book.get("e").unwrap().runs[0].periods.len(), 2);
        let book = book.advance(&[("e", Active)], "t5").unwrap();
        let book = book
            .track_weights(&[config("e", &w5050, false)], "t5")
            .unwrap();
        assert_eq!(periods(&book, "e"), vec![(1, "t5".into(), weights(&w5050))]);
    }

    #[test]
    fn a_bandits_periods_come_from_its_updates_not_from_the_config() {
        let start = [("A", 1), ("B", 1)];
        let book = RunBook::default().advance(&[("e", Active)], "t1").unwrap();
        let book = book
            .track_weights(&[config("e", &start, true)], "t1")
            .unwrap();
        let inputs: BTreeMap<String, ArmInputs> = [
            (
                "A".to_string(),
                ArmInputs {
                    users: 100,
                    conversions: 5,
                },
            ),
            (
                "B".to_string(),
                ArmInputs {
                    users: 100,
                    conversions: 9,
                },
            ),
        ]
        .into();
        let moved = weights(&[("A", 300_000_000), ("B", 700_000_000)]);
        let book = book
            .start_period("e", moved.clone(), inputs.clone(), "t2")
            .unwrap()
            .unwrap();
        // A config reload with the (burn-in) weights leaves the bandit's period alone.
        let book = book
            .track_weights(&[config("e", &start, true)], "t3")
            .unwrap();
        let run = &book.get("e").unwrap().runs[0];
        assert_eq!(run.periods.len(), 2);
        assert_eq!(run.periods[1].weights, moved);
        assert_eq!(run.periods[1].inputs.as_ref(), Some(&inputs));
        // A new variant: the bandit starts again from the config's weights.
        let three = [("A", 1), ("B", 1), ("C", 1)];
        let book = book
            .track_weights(&[config("e", &three, true)], "t4")
            .unwrap();
        assert_eq!(periods(&book, "e")[2], (3, "t4".into(), weights(&three)));
        // No open run: nothing to start.
        let stopped = book.advance(&[("e", Inactive)], "t5").unwrap();
        assert!(stopped.start_period("e", moved, inputs, "t6").is_none());
    }

    #[test]
    fn a_run_holds_at_most_max_periods() {
        let mut book = RunBook::default().advance(&[("e", Active)], "t").unwrap();
        for i in 0..MAX_PERIODS_PER_RUN as u32 {
            book = book
                .track_weights(&[config("e", &[("A", 1 + i), ("B", 1)], false)], "t")
                .unwrap();
        }
        let err = book
            .track_weights(&[config("e", &[("A", 7_777), ("B", 1)], false)], "t")
            .unwrap_err();
        assert_eq!(
            err,
            PeriodLimit {
                experiment: "e".into(),
                run: 1
            }
        );
        assert!(err.to_string().contains("has 1000 periods"), "{err}");
        let full = book.start_period("e", weights(&[("A", 1)]), BTreeMap::new(), "t");
        assert!(matches!(full, Some(Err(_))));
    }

    #[test]
    fn a_book_from_before_periods_reads_and_gets_its_first_period() {
        let old = r#"{"experiments":{"e":{"state":"active","present":true,
            "runs":[{"number":1,"started_at":"t0","ended_at":null}]}}}"#;
        let book: RunBook = serde_json::from_str(old).unwrap();
        assert!(book.get("e").unwrap().runs[0].periods.is_empty());
        let book = book
            .track_weights(&[config("e", &[("A", 1), ("B", 1)], false)], "t9")
            .unwrap();
        assert_eq!(
            periods(&book, "e"),
            vec![(1, "t0".into(), weights(&[("A", 1), ("B", 1)]))],
            "the first period starts with the run"
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
