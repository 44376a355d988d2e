//! The decisions of every experiment, durable in the data directory:
//!
//! - `decisions.jsonl`: every record (each decision, each "would have" of `notify` mode,
//!   each evaluation that could not be made), one JSON object a line, appended and
//!   fsync'd before anything is notified. A damaged line (a torn write at a crash) is
//!   skipped with an error in the log; the others are kept.
//! - `decisions-state.json`: per experiment, what the next evaluation carries (the
//!   breach streaks, what fired in the run, the config after the last decision), replaced
//!   atomically after each evaluation, so a restart goes on where it stopped instead of
//!   firing a decision again.
//!
//! Records are few (each decision fires at most once per run, kind and variant; an
//! evaluation that cannot be made is recorded once per streak), so they are kept in
//! memory whole.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::experiments::decide::DecisionState;

pub const RECORDS_FILE: &str = "decisions.jsonl";
pub const STATE_FILE: &str = "decisions-state.json";

/// One record, as stored, served by `GET /api/experiments/{key}/decisions` and posted to
/// the webhook. The first ten fields are the contract.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecisionRecord {
    /// The evaluation's boundary (RFC 3339): the same on every replica.
    pub at: String,
    pub experiment: String,
    pub run: u32,
    /// `promote`, `guardrail_errors`, `guardrail_latency`, `srm`, `timeout`, or
    /// `no_decision` (the evaluation could not be made: `reason` says why).
    pub kind: String,
    pub variant: Option<String>,
    /// `notify` or `act`.
    pub mode: String,
    /// `rollout`, `rollback`, `pause`, `freeze`, `stop`, `keep`, or `none`.
    pub action: String,
    /// Whether the action is in force: in `act` mode, once its change was written and
    /// applied; never in `notify` mode.
    pub applied: bool,
    pub reason: String,
    /// The figures the rule used.
    pub evidence: Value,
    /// Where a rollout or rollback sends every device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout_variant: Option<String>,
    /// Why an `act` mode change was not applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The same for the same decision on every replica (experiment, run, kind, variant,
    /// boundary): a webhook receiver drops duplicates by it.
    pub id: String,
}

/// An experiment's state, rollout variant and file weights: what a human change alters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigFingerprint {
    pub state: String,
    pub rollout_variant: Option<String>,
    pub weights: BTreeMap<String, u32>,
}

impl ConfigFingerprint {
    pub fn of(e: &crate::config::Experiment) -> ConfigFingerprint {
        ConfigFingerprint {
            state: e.state.as_str().to_string(),
            rollout_variant: e.rollout_variant.clone(),
            weights: e
                .variants
                .iter()
                .map(|v| (v.name.clone(), v.weight))
                .collect(),
        }
    }
}

/// What one experiment's evaluations carry from one to the next, for its current run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ExperimentDecisions {
    pub run: u32,
    pub state: DecisionState,
    /// The experiment as it was right after the last decision of the run (its change
    /// applied, if any): another config later is a human's change, respected.
    pub after_last_decision: Option<ConfigFingerprint>,
    /// An applied sample-ratio freeze: no promotion, no bandit update, to the end of the run.
    pub frozen: bool,
    /// Why the evaluations of the current streak could not be made (recorded once).
    pub unavailable: Option<String>,
}

#[derive(Default, Serialize, Deserialize)]
struct StateFile {
    experiments: BTreeMap<String, ExperimentDecisions>,
}

pub struct DecisionLog {
    dir: PathBuf,
    inner: Mutex<Inner>,
}

struct Inner {
    records: Vec<DecisionRecord>,
    experiments: BTreeMap<String, ExperimentDecisions>,
}

impl DecisionLog {
    /// Read both files of `dir` (missing ones are empty).
    pub fn open(dir: &Path) -> std::io::Result<DecisionLog> {
        let records_path = dir.join(RECORDS_FILE);
        let records = match std::fs::read_to_string(&records_path) {
            Ok(text) => {
                if !text.is_empty() && !text.ends_with('\n') {
                    // A torn last line: end it, so the next record starts a line of its own.
                    std::fs::OpenOptions::new()
                        .append(true)
                        .open(&records_path)?
                        .write_all(b"\n")?;
                }
                parse_records(&text, &records_path)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        let experiments = match std::fs::read(dir.join(STATE_FILE)) {
            Ok(bytes) => {
                serde_json::from_slice::<StateFile>(&bytes)
                    .map_err(|e| {
                        std::io::Error::new(
                            std::io::ErrorKind::InvalidData,
                            format!("{}: {e}", dir.join(STATE_FILE).display()),
                        )
                    })?
                    .experiments
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(e),
        };
        Ok(DecisionLog {
            dir: dir.to_path_buf(),
            inner: Mutex::new(Inner {
                records,
                experiments,
            }),
        })
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every record of experiment `key`, oldest first.
    pub fn records(&self, key: &str) -> Vec<DecisionRecord> {
        self.inner()
            .records
            .iter()
            .filter(|r| r.experiment == key)
            .cloned()
            .collect()
    }

    /// What the evaluations of `key` carry, for run `run` (a fresh state for a new run).
    pub fn experiment(&self, key: &str, run: u32) -> ExperimentDecisions {
        match self.inner().experiments.get(key) {
            Some(e) if e.run == run => e.clone(),
            _ => ExperimentDecisions {
                run,
                ..ExperimentDecisions::default()
            },
        }
    }

    /// Whether run `run` of `key` is frozen by an applied sample-ratio decision.
    pub fn frozen(&self, key: &str, run: u32) -> bool {
        self.inner()
            .experiments
            .get(key)
            .is_some_and(|e| e.run == run && e.frozen)
    }

    /// Append `record` to the file (fsync'd) and to memory. A failed write is returned
    /// for the log; the record is kept in memory all the same, so the API and the page
    /// still show it until a restart.
    pub fn append(&self, record: &DecisionRecord) -> std::io::Result<()> {
        let mut inner = self.inner();
        inner.records.push(record.clone());
        let mut line = serde_json::to_vec(record).map_err(std::io::Error::other)?;
        line.push(b'\n');
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(RECORDS_FILE))?;
        file.write_all(&line)?;
        file.sync_data()
    }

    /// Keep `decisions` as what `key`'s next evaluation carries: in memory at once, and in
    /// the file (replaced atomically). A failed write is returned for the log, but memory
    /// keeps the new state all the same: a streak must go on counting and a decision that
    /// fired must not fire again because the disk refused a write (a restart then goes on
    /// from the last state that was written).
    pub fn save_experiment(
        &self,
        key: &str,
        decisions: ExperimentDecisions,
    ) -> std::io::Result<()> {
        let mut inner = self.inner();
        inner.experiments.insert(key.to_string(), decisions);
        let bytes = serde_json::to_vec_pretty(&StateFile {
            experiments: inner.experiments.clone(),
        })
        .map_err(std::io::Error::other)?;
        crate::util::fsutil::write_atomically(&self.dir.join(STATE_FILE), &bytes, None)
    }
}

/// The good lines of a records file; a damaged one is logged and skipped.
fn parse_records(text: &str, path: &Path) -> Vec<DecisionRecord> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .filter_map(|(n, line)| match serde_json::from_str(line) {
            Ok(record) => Some(record),
            Err(e) => {
                tracing::error!(
                    "{}:{}: skipped a damaged decision record: {e}",
                    path.display(),
                    n + 1
                );
                None
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(experiment: &str, kind: &str) -> DecisionRecord {
        DecisionRecord {
            at: "2026-12-02T05:00:00Z".into(),
            experiment: experiment.into(),
            run: 2,
            kind: kind.into(),
            variant: Some("Mars".into()),
            mode: "act".into(),
            action: "rollback".into(),
            applied: true,
            reason: "because".into(),
            evidence: serde_json::json!({"variant": 0.3}),
            rollout_variant: Some("Moon".into()),
            error: None,
            id: "abc".into(),
        }
    }

    #[test]
    fn records_and_state_survive_a_reopen_and_a_torn_line_loses_only_itself() {
        let dir = tempfile::tempdir().unwrap();
        let log = DecisionLog::open(dir.path()).unwrap();
        log.append(&record("moon_mars", "guardrail_errors"))
            .unwrap();
        log.append(&record("other", "promote")).unwrap();
        let mut carried = log.experiment("moon_mars", 2);
        carried.frozen = true;
        carried.state.last_eval_ms = Some(7);
        log.save_experiment("moon_mars", carried.clone()).unwrap();
        // A crash in the middle of a write leaves half a line.
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join(RECORDS_FILE))
            .unwrap();
        file.write_all(br#"{"at":"2026-12-02T06:00:00Z","experi"#)
            .unwrap();
        drop(log);

        let log = DecisionLog::open(dir.path()).unwrap();
        log.append(&record("other", "timeout")).unwrap();
        let log = DecisionLog::open(dir.path()).unwrap();
        assert_eq!(
            log.records("moon_mars"),
            vec![record("moon_mars", "guardrail_errors")]
        );
        assert_eq!(
            log.records("other").len(),
            2,
            "the record after the torn line is kept"
        );
        assert_eq!(log.experiment("moon_mars", 2), carried);
        assert!(log.frozen("moon_mars", 2));
        // A new run starts from nothing.
        assert!(!log.frozen("moon_mars", 3));
        assert_eq!(
            log.experiment("moon_mars", 3).state,
            DecisionState::default()
        );
    }
}
