//! An experiment's results as the proxy knows them: one run's counts (from the count
//! book) in the `analysis::Counts` shape, with their history for the charts. By default
//! the last run; any earlier run by its number, so a new run (a restart, or the
//! inactive → active → rollout detour) never hides the one before it.
//! `GET /api/experiments/{key}/results[?run=N]`, the admin page and `abproxy analyze
//! --admin [--run N]` all start here, so they always agree.

use serde_json::{json, Value};

use crate::counting::book::RunCounts;
use crate::state::runs::Run;
use crate::state::snapshot::Snapshot;
use crate::stats::analysis::{self, Counts, Settings};

pub struct ExperimentResults {
    /// The run shown (`None`: never active; the counts are then all zero).
    pub run: Option<Run>,
    /// Every run of the experiment, oldest first (what a run selector offers).
    pub runs: Vec<Run>,
    /// The run devices are counted in now (the experiment is active), if any.
    pub current_run: Option<u32>,
    pub counts: Counts,
    /// The shown run's counters over time.
    pub history: RunCounts,
    /// The experiment's bandit and what its updater last did (bandit experiments only).
    pub bandit: Option<(crate::config::Bandit, crate::state::bandit::BanditStatus)>,
    /// The experiment's `decide` settings and every decision record (oldest first), when
    /// it has a `decide` block or any record.
    pub decisions: Option<(
        Option<crate::config::Decide>,
        Vec<crate::state::decision_log::DecisionRecord>,
    )>,
}

impl ExperimentResults {
    /// Whether the run shown is the one devices are counted in now.
    pub fn shows_current_run(&self) -> bool {
        self.current_run.is_some() && self.current_run == self.run.as_ref().map(|r| r.number)
    }

    /// The number of the experiment's latest run (0 before the first).
    pub fn latest_run(&self) -> u32 {
        self.runs.last().map_or(0, |r| r.number)
    }
}

/// Why there are no results to show.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResultsError {
    #[error("no experiment `{0}`")]
    UnknownExperiment(String),
    #[error("experiment `{key}` has no run {run} ({})", runs_phrase(.runs))]
    NoSuchRun {
        key: String,
        run: u32,
        runs: Vec<u32>,
    },
}

fn runs_phrase(runs: &[u32]) -> String {
    match runs {
        [] => "it has never been active".to_string(),
        [one] => format!("its only run is {one}"),
        _ => format!(
            "its runs are {}",
            runs.iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// The `run` query parameter (of the results API and the admin page): a run number.
pub fn parse_run(value: &str) -> Result<u32, String> {
    // Digits only: `+1`, ` 1` or `1.0` are not what a run selector sends.
    match value.parse::<u32>() {
        Ok(n) if value.bytes().all(|b| b.is_ascii_digit()) => Ok(n),
        _ => Err(format!(
            "run: `{value}` is not a run number (1, 2, …; see `runs` in GET /api/experiments)"
        )),
    }
}

/// The results of experiment `key` in `snapshot`, for run `run` (default: the last).
pub fn collect(
    snapshot: &Snapshot,
    app: &crate::state::app::App,
    key: &str,
    run: Option<u32>,
    now_ms: u64,
) -> Result<ExperimentResults, ResultsError> {
    let experiment = snapshot
        .config
        .experiments
        .iter()
        .find(|e| e.key == key)
        .ok_or_else(|| ResultsError::UnknownExperiment(key.to_string()))?;
    let record = snapshot.runs.get(key);
    let runs: Vec<Run> = record.map(|r| r.runs.clone()).unwrap_or_default();
    let shown = match run {
        None => runs.last().cloned(),
        Some(n) => Some(
            runs.iter()
                .find(|r| r.number == n)
                .cloned()
                .ok_or_else(|| ResultsError::NoSuchRun {
                    key: key.to_string(),
                    run: n,
                    runs: runs.iter().map(|r| r.number).collect(),
                })?,
        ),
    };
    let (counts, history) =
        crate::state::run_counts::local(&app.counts.book, experiment, shown.as_ref(), now_ms);
    Ok(ExperimentResults {
        run: shown,
        runs,
        current_run: record.and_then(|r| r.current_run()).map(|r| r.number),
        counts,
        history,
        bandit: experiment
            .bandit
            .clone()
            .map(|b| (b, app.bandit_status(key))),
        decisions: {
            let records = app.decisions.records(key);
            (experiment.decide.is_some() || !records.is_empty())
                .then(|| (experiment.decide.clone(), records))
        },
    })
}

/// `bandit` of the results: its settings and what its updater last did.
fn bandit_json(b: &crate::config::Bandit, status: &crate::state::bandit::BanditStatus) -> Value {
    use crate::config::BanditAlgorithm;
    let (algorithm, epsilon) = match b.algorithm {
        BanditAlgorithm::Thompson => ("thompson", None),
        BanditAlgorithm::Ucb1 => ("ucb1", None),
        BanditAlgorithm::EpsilonGreedy { epsilon } => ("epsilon_greedy", Some(epsilon)),
    };
    json!({
        "algorithm": algorithm,
        "goal": b.goal,
        "update_every_seconds": b.update_every.as_secs_f64(),
        "burn_in": b.burn_in,
        "min_share": b.min_share,
        "epsilon": epsilon,
        "counts": b.counts.as_str(),
        "status": status,
    })
}

fn run_json(r: &Run) -> Value {
    json!({ "number": r.number, "started_at": r.started_at, "ended_at": r.ended_at })
}

/// The JSON of `GET /api/experiments/{key}/results`: the report's keys (as
/// `abproxy analyze --format json` prints them), plus `verdicts`, the `run` shown, every
/// run (`runs`, to ask for another with `?run=N`) and the `counts` it was computed from
/// (in the `--counts FILE` format).
pub fn to_json(results: &ExperimentResults, settings: Settings) -> Value {
    let run = results.run.as_ref().map(run_json);
    let mut answer = match analysis::analyze(&results.counts, settings) {
        Ok(report) => {
            let verdicts: serde_json::Map<String, Value> = report
                .goals
                .iter()
                .map(|(goal, g)| (goal.clone(), json!(g.verdicts)))
                .collect();
            let mut value = serde_json::to_value(&report).expect("a report serializes");
            value["verdicts"] = Value::Object(verdicts);
            value
        }
        Err(err) => json!({
            "experiment": results.counts.experiment,
            "control": results.counts.control,
            "error": err.to_string(),
        }),
    };
    answer["confidence"] = json!(settings.confidence);
    answer["run"] = run.unwrap_or(Value::Null);
    answer["runs"] = Value::Array(results.runs.iter().map(run_json).collect());
    answer["counts"] = serde_json::to_value(&results.counts).expect("counts serialize");
    answer["periods"] = serde_json::to_value(&results.counts.periods).expect("periods serialize");
    answer["bandit"] = results
        .bandit
        .as_ref()
        .map_or(Value::Null, |(bandit, status)| bandit_json(bandit, status));
    answer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_numbers_are_plain_digits() {
        assert_eq!(parse_run("1"), Ok(1));
        assert_eq!(parse_run("12"), Ok(12));
        for bad in ["", "x", "-1", "+1", " 1", "1.0", "99999999999"] {
            let err = parse_run(bad).unwrap_err();
            assert!(err.contains("is not a run number"), "{bad}: {err}");
        }
    }

    #[test]
    fn a_missing_run_names_the_runs_there_are() {
        let missing = |runs: Vec<u32>| {
            ResultsError::NoSuchRun {
                key: "moon_mars".into(),
                run: 3,
                runs,
            }
            .to_string()
        };
        assert_eq!(
            missing(vec![1, 2]),
            "experiment `moon_mars` has no run 3 (its runs are 1, 2)"
        );
        assert_eq!(
            missing(vec![1]),
            "experiment `moon_mars` has no run 3 (its only run is 1)"
        );
        assert_eq!(
            missing(vec![]),
            "experiment `moon_mars` has no run 3 (it has never been active)"
        );
    }
}
