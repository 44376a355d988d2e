//! What a scrape of `/metrics` reads from the count book: each experiment's counts for
//! its last run, as metric families built afresh per scrape (the counts live in the
//! durable count book, not in prometheus counters; see `counting::metrics`).

use prometheus::{IntGaugeVec, Opts, Registry};

use crate::counting::metrics::{
    int_counter_vec, registered, ASSIGNMENTS, CONVERSIONS, CONVERSION_VALUE_SUM,
    CONVERSION_VALUE_SUM_SQUARES, EXPERIMENT_RUN, EXPOSURES,
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
        let float_counter = |name: &str, help: &str| {
            registered(
                &registry,
                prometheus::CounterVec::new(
                    Opts::new(name, help),
                    &["experiment", "variant", "goal"],
                )
                .expect("valid metric definition"),
            )
        };
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
        );
        let value_sum_squares = float_counter(
            CONVERSION_VALUE_SUM_SQUARES,
            "Value goals: sum of squares of the converting devices' values, for the variance.",
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
            for variant in &plan.variants {
                let name = variant.name.as_str();
                let totals = variant.counts.totals();
                exposures
                    .with_label_values(&[key, name])
                    .inc_by(totals.exposures);
                assignments
                    .with_label_values(&[key, name])
                    .inc_by(totals.assigned);
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
