//! An experiment's results as the proxy knows them: its last run's counts (from the
//! count book) in the `analysis::Counts` shape, with their history for the charts.
//! `GET /api/experiments/{key}/results`, the admin page and `abproxy analyze --admin`
//! all start here, so they always agree.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::counting::book::{CountBook, RunCounts};
use crate::state::runs::Run;
use crate::state::snapshot::Snapshot;
use crate::stats::analysis::{self, Counts, GoalCounts, Settings, VariantCounts};

pub struct ExperimentResults {
    /// The last run (`None`: never active; the counts are then all zero).
    pub run: Option<Run>,
    pub counts: Counts,
    /// The run's counters over time.
    pub history: RunCounts,
}

/// The results of experiment `key` in `snapshot` (`None`: no such experiment).
pub fn collect(
    snapshot: &Snapshot,
    book: &CountBook,
    key: &str,
    now_ms: u64,
) -> Option<ExperimentResults> {
    let experiment = snapshot.config.experiments.iter().find(|e| e.key == key)?;
    let run = snapshot.runs.get(key).and_then(|r| r.last_run()).cloned();
    let history = match &run {
        Some(run) => book.run(key, run.number, now_ms),
        None => RunCounts::default(),
    };
    let mut variants = analysis::indexmap_like::OrderedMap::default();
    for v in &experiment.variants {
        let counted = history.variants.get(&v.name);
        let goals = experiment
            .goals
            .iter()
            .map(|goal| {
                let totals = counted
                    .and_then(|c| c.goals.get(&goal.name))
                    .map(|g| g.totals)
                    .unwrap_or_default();
                let value = goal.value.is_some();
                (
                    goal.name.clone(),
                    GoalCounts {
                        conversions: totals.conversions,
                        value_sum: value.then_some(totals.value_sum),
                        value_sum_sq: value.then_some(totals.value_sum_sq),
                    },
                )
            })
            .collect();
        variants.insert(
            v.name.clone(),
            VariantCounts {
                users: counted.map_or(0, |c| c.totals.assigned),
                goals,
            },
        );
    }
    let weights: BTreeMap<String, f64> = experiment
        .variants
        .iter()
        .map(|v| (v.name.clone(), v.weight as f64))
        .collect();
    Some(ExperimentResults {
        run,
        counts: Counts {
            experiment: key.to_string(),
            control: Some(experiment.control.clone()),
            variants,
            weights: Some(weights),
        },
        history,
    })
}

/// The JSON of `GET /api/experiments/{key}/results`: the report's keys (as
/// `abproxy analyze --format json` prints them), plus `verdicts`, the `run` and the
/// `counts` it was computed from (in the `--counts FILE` format).
pub fn to_json(results: &ExperimentResults, settings: Settings) -> Value {
    let run = results
        .run
        .as_ref()
        .map(|r| json!({ "number": r.number, "started_at": r.started_at, "ended_at": r.ended_at }));
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
    answer["counts"] = serde_json::to_value(&results.counts).expect("counts serialize");
    answer
}
