//! What a scrape of `/metrics` reads from the count book: each experiment's counts for
//! its last run, as metric families built afresh per scrape (the counts live in the
//! durable count book, not in prometheus counters; see `counting::metrics`).

use prometheus::{IntGaugeVec, Opts, Registry};

use prometheus::GaugeVec;

use crate::counting::metrics::{
    int_counter_vec, registered, ASSIGNMENTS, CONVERSIONS, CONVERSION_VALUE_SUM,
    CONVERSION_VALUE_SUM_SQUARES, EXPERIMENT_PERIOD, EXPERIMENT_RUN, EXPOSURES, PERIOD_ASSIGNMENTS,
    PERIOD_CONVERSIONS, PERIOD_CONVERSION_VALUE_SUM, PERIOD_CONVERSION_VALUE_SUM_SQUARES,
    PERIOD_SHARE,
};
use crate::state::snapshot::Snapshot;

/// The experiment counts as metric families, read from the count book through the
/// snapshot's plans (each experiment's last run; zeros before its first).
impl Snapshot {
    pub fn count_families(&self, replica: &str) -> Vec<prometheus::proto::MetricFamily> {
        let snapshot = self;
        let registry = Registry::new();
        let int_counter = |name: &str, help: &str, labels: &[&str]| {
            int_counter_vec(&registry, name, help, labels)
        };
        let float_counter = |name: &str, help: &str, labels: &[&str]| {
            registered(
                &registry,
                prometheus::CounterVec::new(Opts::new(name, help), labels)
                    .expect("valid metric definition"),
            )
        };
        const GOAL_LABELS: &[&str] = &["experiment", "variant", "goal"];
        const PERIOD_LABELS: &[&str] = &["experiment", "variant", "period"];
        const PERIOD_GOAL_LABELS: &[&str] = &["experiment", "variant", "goal", "period"];
        let exposures = int_counter(
            EXPOSURES,
            "Requests served under an active experiment, by assigned variant (last run).",
            &["experiment", "variant"],
        );
        let assignments = int_counter(
        ASSIGNMENTS,
        "Devices newly assigned to a variant in the experiment's last run (the analysis population).",
        &["experiment", "variant"],
    );
        let conversions = int_counter(
            CONVERSIONS,
            "Devices of the last run's population reaching a goal (once per device, goal and run).",
            &["experiment", "variant", "goal"],
        );
        let value_sum = float_counter(
            CONVERSION_VALUE_SUM,
            "Value goals: sum of the converting devices' values (the first conversion's value).",
            GOAL_LABELS,
        );
        let value_sum_squares = float_counter(
            CONVERSION_VALUE_SUM_SQUARES,
            "Value goals: sum of squares of the converting devices' values, for the variance.",
            GOAL_LABELS,
        );
        let period = registered(
            &registry,
            IntGaugeVec::new(
                Opts::new(
                    EXPERIMENT_PERIOD,
                    "The period of the last run new devices are assigned in (0: never active); a new one starts whenever their weights change.",
                ),
                &["experiment"],
            )
            .expect("valid gauge definition"),
        );
        let period_assignments = int_counter(
            PERIOD_ASSIGNMENTS,
            "Devices newly assigned to a variant in one period of the last run.",
            PERIOD_LABELS,
        );
        let period_conversions = int_counter(
            PERIOD_CONVERSIONS,
            "Devices assigned in one period of the last run reaching a goal (once per device, goal and run).",
            PERIOD_GOAL_LABELS,
        );
        let period_value_sum = float_counter(
            PERIOD_CONVERSION_VALUE_SUM,
            "Value goals: sum of the values of converting devices assigned in one period of the last run.",
            PERIOD_GOAL_LABELS,
        );
        let period_value_sum_squares = float_counter(
            PERIOD_CONVERSION_VALUE_SUM_SQUARES,
            "Value goals: sum of squares of the values of converting devices assigned in one period of the last run.",
            PERIOD_GOAL_LABELS,
        );
        let period_share = registered(
            &registry,
            GaugeVec::new(
                Opts::new(
                    PERIOD_SHARE,
                    "The share (0–1) of new devices a variant got in one period of the last run.",
                ),
                PERIOD_LABELS,
            )
            .expect("valid gauge definition"),
        );
        let run = registered(
        &registry,
        IntGaugeVec::new(
            Opts::new(
                EXPERIMENT_RUN,
                "The run the count metrics of an experiment are for (0: never active); a new run starts them again from 0; `control` is the variant the analysis compares with; `replica` identifies the data directory the counts come from.",
            ),
            &["experiment", "control", "replica"],
        )
        .expect("valid gauge definition"),
    );
        for plan in &snapshot.experiments {
            let key = plan.key.as_str();
            run.with_label_values(&[key, plan.variants[plan.control].name.as_str(), replica])
                .set(plan.counts_run.unwrap_or(0) as i64);
            period
                .with_label_values(&[key])
                .set(plan.counts_run.map_or(0, |_| plan.period) as i64);
            let book_periods = plan
                .counts_run
                .and_then(|n| snapshot.runs.get(key)?.runs.iter().find(|r| r.number == n))
                .map(|r| r.periods.as_slice())
                .unwrap_or_default();
            for p in book_periods {
                let number = p.number.to_string();
                for (variant, share) in p.shares() {
                    period_share
                        .with_label_values(&[key, variant.as_str(), number.as_str()])
                        .set(share);
                }
            }
            for variant in &plan.variants {
                let name = variant.name.as_str();
                let totals = variant.counts.totals();
                exposures
                    .with_label_values(&[key, name])
                    .inc_by(totals.exposures);
                assignments
                    .with_label_values(&[key, name])
                    .inc_by(totals.assigned);
                for (number, counters) in (1u32..).zip(&variant.periods) {
                    let number = number.to_string();
                    let labels = [key, name, number.as_str()];
                    period_assignments
                        .with_label_values(&labels)
                        .inc_by(counters.counts.totals().assigned);
                    for (goal, counts) in plan.goals.iter().zip(&counters.goals) {
                        let labels = [key, name, goal.name.as_str(), number.as_str()];
                        let totals = counts.totals();
                        period_conversions
                            .with_label_values(&labels)
                            .inc_by(totals.conversions);
                        if goal.value.is_some() {
                            period_value_sum
                                .with_label_values(&labels)
                                .inc_by(totals.value_sum);
                            period_value_sum_squares
                                .with_label_values(&labels)
                                .inc_by(totals.value_sum_sq);
                        }
                    }
                }
                for (goal, counts) in plan.goals.iter().zip(&variant.goals) {
                    let labels = [key, name, goal.name.as_str()];
                    let totals = counts.totals();
                    conversions
                        .with_label_values(&labels)
                        .inc_by(totals.conversions);
                    if goal.value.is_some() {
                        value_sum
                            .with_label_values(&labels)
                            .inc_by(totals.value_sum);
                        value_sum_squares
                            .with_label_values(&labels)
                            .inc_by(totals.value_sum_sq);
                    }
                }
            }
        }
        registry.gather()
    }
}
