//! Prometheus's answers for one experiment and run, made into `analysis::Counts`: the
//! run's totals and, when the run has two periods or more, its periods (issue 13). What
//! `abproxy analyze --prometheus` shows, and what a replica with `counts: prometheus`
//! reads (`state::prometheus` asks the queries). Pure: answers in, counts and warnings
//! out, so the reading is tested on answer text.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::counting::metrics;
use crate::counting::promql::sample_value;
use crate::stats::analysis::{
    indexmap_like::OrderedMap, Counts, GoalCounts, PeriodCounts, VariantCounts,
};

/// How far two replicas' shares of one period may differ before the reader is warned
/// that their periods are not the same.
const SHARES_AGREE_WITHIN: f64 = 1e-6;

/// Prometheus's answers (instant-vector samples) for one experiment and run, summed over
/// the replicas: the run's totals and, per period (the `period` label), the same counts
/// and the shares of new devices (their max and min over the replicas).
#[derive(Default)]
pub struct Answers {
    /// Devices by `variant`.
    pub users: Vec<Value>,
    /// Conversions by `variant, goal`; value sums and sums of squares likewise.
    pub conversions: Vec<Value>,
    pub value_sums: Vec<Value>,
    pub value_squares: Vec<Value>,
    /// The weights in force by `variant` (their max over the replicas).
    pub weights: Vec<Value>,
    /// The same counts by `period` too.
    pub period_users: Vec<Value>,
    pub period_conversions: Vec<Value>,
    pub period_value_sums: Vec<Value>,
    pub period_value_squares: Vec<Value>,
    /// Each variant's share of new devices by `period`: the replicas' largest and
    /// smallest (they agree unless the replicas' periods differ).
    pub share_max: Vec<Value>,
    pub share_min: Vec<Value>,
}

fn empty_variant() -> VariantCounts {
    VariantCounts {
        users: 0,
        goals: BTreeMap::new(),
    }
}

/// `(variant, value)` of a sample labelled by variant.
fn variant_sample(s: &Value) -> Option<(String, f64)> {
    Some((
        s["metric"]["variant"].as_str()?.to_string(),
        sample_value(s)?,
    ))
}

/// `(variant, goal, value)` of a sample labelled by variant and goal.
fn goal_sample(s: &Value) -> Option<(String, String, f64)> {
    Some((
        s["metric"]["variant"].as_str()?.to_string(),
        s["metric"]["goal"].as_str()?.to_string(),
        sample_value(s)?,
    ))
}

/// Counts by variant from the devices, conversions and value sums by variant (and goal).
fn variant_counts(
    users: &[Value],
    conversions: &[Value],
    value_sums: &[Value],
    value_squares: &[Value],
) -> BTreeMap<String, VariantCounts> {
    let mut by_variant: BTreeMap<String, VariantCounts> = BTreeMap::new();
    for (v, n) in users.iter().filter_map(variant_sample) {
        by_variant.entry(v).or_insert_with(empty_variant).users = n as u64;
    }
    for (variant, goal, n) in conversions.iter().filter_map(goal_sample) {
        if let Some(v) = by_variant.get_mut(&variant) {
            v.goals
                .entry(goal)
                .or_insert(GoalCounts {
                    conversions: 0,
                    value_sum: None,
                    value_sum_sq: None,
                })
                .conversions = n as u64;
        }
    }
    for (series, squares) in [(value_sums, false), (value_squares, true)] {
        for (variant, goal, x) in series.iter().filter_map(goal_sample) {
            if let Some(g) = by_variant
                .get_mut(&variant)
                .and_then(|v| v.goals.get_mut(&goal))
            {
                if squares {
                    g.value_sum_sq = Some(x);
                } else {
                    g.value_sum = Some(x);
                }
            }
        }
    }
    by_variant
}

/// The experiment's counts from Prometheus's answers, and the warnings to print. The
/// periods are filled only when there are two or more (one period is the run's totals).
pub fn counts_from(
    key: &str,
    control: &str,
    run: u32,
    answers: &Answers,
) -> Result<(Counts, Vec<String>), String> {
    let mut by_variant = variant_counts(
        &answers.users,
        &answers.conversions,
        &answers.value_sums,
        &answers.value_squares,
    );
    if by_variant.is_empty() {
        return Err(format!(
            "Prometheus has no {} series for `{key}` in run {run}",
            metrics::ASSIGNMENTS
        ));
    }
    // The control first, then the others by name.
    let mut variants = OrderedMap::default();
    if let Some(c) = by_variant.remove(control) {
        variants.insert(control.to_string(), c);
    }
    for (name, v) in by_variant {
        variants.insert(name, v);
    }
    let weights: BTreeMap<String, f64> = answers
        .weights
        .iter()
        .filter_map(variant_sample)
        .filter(|(name, _)| variants.get(name).is_some())
        .collect();
    let (periods, warnings) = periods_from(answers);
    Ok((
        Counts {
            experiment: key.to_string(),
            control: Some(control.to_string()),
            weights: (weights.len() == variants.len()).then_some(weights),
            periods,
            variants,
        },
        warnings,
    ))
}

/// The samples of `series` by their `period` label (a number; others are ignored).
fn by_period(series: &[Value]) -> BTreeMap<u32, Vec<Value>> {
    let mut periods: BTreeMap<u32, Vec<Value>> = BTreeMap::new();
    for s in series {
        if let Some(p) = s["metric"]["period"].as_str().and_then(|p| p.parse().ok()) {
            periods.entry(p).or_default().push(s.clone());
        }
    }
    periods
}

/// The run's periods from the per-period answers, oldest first, when there are two or
/// more; and a warning for each period whose replicas' shares differ (they then hashed
/// new devices differently: a bandit with `counts: local` on each replica). Such a
/// period is stratified with each variant's largest share, renormalised to sum to 1.
fn periods_from(answers: &Answers) -> (Vec<PeriodCounts>, Vec<String>) {
    let (users, conversions, sums, squares, share_max, share_min) = (
        by_period(&answers.period_users),
        by_period(&answers.period_conversions),
        by_period(&answers.period_value_sums),
        by_period(&answers.period_value_squares),
        by_period(&answers.share_max),
        by_period(&answers.share_min),
    );
    let numbers: std::collections::BTreeSet<u32> =
        users.keys().chain(share_max.keys()).copied().collect();
    if numbers.len() < 2 {
        return (Vec::new(), Vec::new());
    }
    let none = Vec::new();
    let of = |map: &'_ BTreeMap<u32, Vec<Value>>, p: u32| -> Vec<Value> {
        map.get(&p).unwrap_or(&none).clone()
    };
    let mut warnings = Vec::new();
    let periods = numbers
        .into_iter()
        .map(|number| {
            let mut shares: BTreeMap<String, f64> = of(&share_max, number)
                .iter()
                .filter_map(variant_sample)
                .collect();
            let lowest: BTreeMap<String, f64> = of(&share_min, number)
                .iter()
                .filter_map(variant_sample)
                .collect();
            let differing: Vec<String> = shares
                .iter()
                .filter_map(|(v, &max)| {
                    let min = lowest.get(v).copied().unwrap_or(max);
                    (max - min > SHARES_AGREE_WITHIN).then(|| format!("{v} {min} to {max}"))
                })
                .collect();
            if !differing.is_empty() {
                warnings.push(format!(
                    "period {number}: the replicas' shares of new devices differ ({}): their periods are not the same (a bandit on several replicas needs `counts: prometheus`); stratifying with the largest shares, renormalised",
                    differing.join(", ")
                ));
                let total: f64 = shares.values().sum();
                if total > 0.0 {
                    shares.values_mut().for_each(|s| *s /= total);
                }
            }
            PeriodCounts {
                number,
                started_at: None,
                shares,
                inputs: None,
                counts: variant_counts(
                    &of(&users, number),
                    &of(&conversions, number),
                    &of(&sums, number),
                    &of(&squares, number),
                ),
            }
        })
        .collect();
    (periods, warnings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::counting::promql::instant_vector;
    use crate::stats::analysis;

    /// Prometheus's answer text to an instant query: one sample per `(labels, value)`.
    fn answer(samples: &[(&str, &str)]) -> Vec<Value> {
        let result: Vec<String> = samples
            .iter()
            .map(|(labels, value)| {
                format!(r#"{{"metric": {{{labels}}}, "value": [1764633600.123, "{value}"]}}"#)
            })
            .collect();
        let text = format!(
            r#"{{"status": "success", "data": {{"resultType": "vector", "result": [{}]}}}}"#,
            result.join(", ")
        );
        instant_vector("q", serde_json::from_str(&text).unwrap()).unwrap()
    }

    const DRIFT_SHARES: [(&str, &str); 4] = [
        (r#""variant": "A", "period": "1""#, "0.5"),
        (r#""variant": "B", "period": "1""#, "0.5"),
        (r#""variant": "A", "period": "2""#, "0.2"),
        (r#""variant": "B", "period": "2""#, "0.8"),
    ];

    /// The answers for the `drift` run of `tests/it/analyze.rs` (`WITH_PERIODS`): two
    /// variants, one goal, two periods; the replicas' smallest shares as given.
    fn drift_answers(share_min: &[(&str, &str)]) -> Answers {
        Answers {
            users: answer(&[(r#""variant": "A""#, "1410"), (r#""variant": "B""#, "2570")]),
            conversions: answer(&[
                (r#""variant": "A", "goal": "click""#, "90"),
                (r#""variant": "B", "goal": "click""#, "213"),
            ]),
            weights: answer(&[(r#""variant": "A""#, "20"), (r#""variant": "B""#, "80")]),
            period_users: answer(&[
                (r#""variant": "A", "period": "1""#, "1000"),
                (r#""variant": "B", "period": "1""#, "980"),
                (r#""variant": "A", "period": "2""#, "410"),
                (r#""variant": "B", "period": "2""#, "1590"),
            ]),
            period_conversions: answer(&[
                (r#""variant": "A", "goal": "click", "period": "1""#, "50"),
                (r#""variant": "B", "goal": "click", "period": "1""#, "48"),
                (r#""variant": "A", "goal": "click", "period": "2""#, "40"),
                (r#""variant": "B", "goal": "click", "period": "2""#, "165"),
            ]),
            share_max: answer(&DRIFT_SHARES),
            share_min: answer(share_min),
            ..Default::default()
        }
    }

    fn counts(answers: &Answers) -> (Counts, Vec<String>) {
        counts_from("headline", "A", 1, answers).unwrap()
    }

    #[test]
    fn per_period_answers_fill_the_periods() {
        let (counts, warnings) = counts(&drift_answers(&DRIFT_SHARES));
        assert_eq!(warnings, Vec::<String>::new());
        assert_eq!(counts.periods.len(), 2);
        let second = &counts.periods[1];
        assert_eq!(second.number, 2);
        assert_eq!(second.shares, [("A".into(), 0.2), ("B".into(), 0.8)].into());
        assert_eq!(second.counts["B"].users, 1590);
        assert_eq!(second.counts["B"].goals["click"].conversions, 165);
        // The same report as the counts file with these periods.
        let file: Counts = serde_json::from_value(serde_json::json!({
            "experiment": "headline", "control": "A",
            "variants": {"A": {"users": 1410, "goals": {"click": {"conversions": 90}}},
                         "B": {"users": 2570, "goals": {"click": {"conversions": 213}}}},
            "weights": {"A": 20, "B": 80},
            "periods": [
                {"number": 1, "shares": {"A": 0.5, "B": 0.5},
                 "counts": {"A": {"users": 1000, "goals": {"click": {"conversions": 50}}},
                            "B": {"users": 980, "goals": {"click": {"conversions": 48}}}}},
                {"number": 2, "shares": {"A": 0.2, "B": 0.8},
                 "counts": {"A": {"users": 410, "goals": {"click": {"conversions": 40}}},
                            "B": {"users": 1590, "goals": {"click": {"conversions": 165}}}}}]
        }))
        .unwrap();
        let report = |c: &Counts| {
            let r = analysis::analyze(c, analysis::Settings::default()).unwrap();
            serde_json::to_string(&r).unwrap()
        };
        assert_eq!(report(&counts), report(&file));
        assert!(report(&counts).contains(r#""stratified":true"#));
    }

    #[test]
    fn replicas_whose_shares_differ_get_a_warning_and_are_stratified_anyway() {
        let mut differing = DRIFT_SHARES;
        differing[2].1 = "0.1"; // A's share in period 2 on another replica
        differing[3].1 = "0.7"; // and B's
        let (counts_differing, warnings) = counts(&drift_answers(&differing));
        assert_eq!(
            warnings,
            ["period 2: the replicas' shares of new devices differ (A 0.1 to 0.2, B 0.7 to 0.8): their periods are not the same (a bandit on several replicas needs `counts: prometheus`); stratifying with the largest shares, renormalised"]
        );
        // The largest shares, 0.2 and 0.8, already sum to 1.
        assert_eq!(counts_differing.periods[1].shares["B"], 0.8);
        // A difference within 1e-6 is rounding, not a difference.
        let mut close = DRIFT_SHARES;
        close[3].1 = "0.7999995";
        let (_, warnings) = counts(&drift_answers(&close));
        assert!(warnings.is_empty(), "{warnings:?}");
        // Largest shares that do not sum to 1 are renormalised, so the run is still
        // analysed, stratified.
        let mut answers = drift_answers(&differing);
        answers.share_max = answer(&[
            (r#""variant": "A", "period": "1""#, "0.5"),
            (r#""variant": "B", "period": "1""#, "0.5"),
            (r#""variant": "A", "period": "2""#, "0.3"),
            (r#""variant": "B", "period": "2""#, "0.8"),
        ]);
        let (renormalised, _) = counts(&answers);
        let shares = &renormalised.periods[1].shares;
        assert!((shares["A"] - 0.3 / 1.1).abs() < 1e-15, "{shares:?}");
        assert!((shares["B"] - 0.8 / 1.1).abs() < 1e-15, "{shares:?}");
        let report = analysis::analyze(&renormalised, analysis::Settings::default()).unwrap();
        assert!(report.stratified);
    }

    #[test]
    fn one_period_or_none_leaves_the_periods_out() {
        let mut answers = drift_answers(&DRIFT_SHARES[..2]);
        answers.period_users = answer(&[
            (r#""variant": "A", "period": "1""#, "1410"),
            (r#""variant": "B", "period": "1""#, "2570"),
        ]);
        answers.share_max = answer(&DRIFT_SHARES[..2]);
        answers.period_conversions = Vec::new();
        let (one, warnings) = counts(&answers);
        assert!(one.periods.is_empty() && warnings.is_empty());
        // No per-period series at all (a proxy from before periods): the same.
        let mut answers = drift_answers(&[]);
        answers.period_users = Vec::new();
        answers.period_conversions = Vec::new();
        answers.share_max = Vec::new();
        let (none, _) = counts(&answers);
        assert!(none.periods.is_empty());
        assert_eq!(
            none.weights,
            Some([("A".into(), 20.0), ("B".into(), 80.0)].into())
        );
        assert_eq!(none.variants.get("B").unwrap().users, 2570);
    }

    #[test]
    fn per_period_value_sums_are_read() {
        let mut answers = drift_answers(&DRIFT_SHARES);
        let labels = r#""variant": "B", "goal": "click", "period": "2""#;
        answers.period_value_sums = answer(&[(labels, "1234.5")]);
        answers.period_value_squares = answer(&[(labels, "99999.25")]);
        let (with_values, _) = counts(&answers);
        let click = &with_values.periods[1].counts["B"].goals["click"];
        assert_eq!(
            (click.value_sum, click.value_sum_sq),
            (Some(1234.5), Some(99999.25))
        );
    }
}
