//! From counts to a report: every goal, every variant against the control, with the
//! verdict a person reads first. Pure: counts in, report out (`stats` does the maths).
//!
//! Input (what `abproxy analyze --counts FILE` reads):
//!
//! ```json
//! {"experiment": "moon_mars", "control": "Moon",
//!  "variants": {"Moon": {"users": 1000, "goals": {"click": {"conversions": 100}}},
//!               "Mars": {"users": 1000, "goals": {"click": {"conversions": 130}}}},
//!  "weights": {"Moon": 50, "Mars": 50}}
//! ```
//!
//! Value goals add `"value_sum"` and `"value_sum_sq"` (per-device values, non-converting
//! devices counting as 0); `weights` (the designed split, for the sample-ratio check)
//! defaults to equal.
//!
//! # Runs with periods
//!
//! A run whose shares of new devices changed (a bandit update, a weight change) has
//! `periods`, oldest first: each with its `number`, `started_at` (RFC 3339 or `null`),
//! its `shares` (one per variant, summing to 1 within [`SHARES_TOLERANCE`]), the bandit's
//! `inputs` (or `null`) and the `counts` of the devices assigned in it, in the format of
//! `variants`. `variants` stays the run's totals:
//!
//! ```json
//! {"experiment": "headline", "control": "A",
//!  "variants": {"A": {"users": 1410, "goals": {"click": {"conversions": 90}}},
//!               "B": {"users": 2570, "goals": {"click": {"conversions": 213}}}},
//!  "periods": [
//!   {"number": 1, "started_at": "2026-11-30T10:00:00Z", "shares": {"A": 0.5, "B": 0.5},
//!    "inputs": null,
//!    "counts": {"A": {"users": 1000, "goals": {"click": {"conversions": 50}}},
//!               "B": {"users": 980, "goals": {"click": {"conversions": 48}}}}},
//!   {"number": 2, "started_at": "2026-11-30T11:00:00Z", "shares": {"A": 0.2, "B": 0.8},
//!    "inputs": {"A": {"users": 1000, "conversions": 50}, "B": {"users": 980, "conversions": 48}},
//!    "counts": {"A": {"users": 410, "goals": {"click": {"conversions": 40}}},
//!               "B": {"users": 1590, "goals": {"click": {"conversions": 165}}}}}]}
//! ```
//!
//! With **two periods or more** the report is stratified by period (`stats::strata`;
//! its module documentation has the formulas and the rules chosen): each row's `rate`
//! is the period-weighted rate; `diff` and `ci_low`/`ci_high` are the stratified
//! difference and its normal interval (not Newcombe's, which has no stratified form);
//! `z`/`p_value` the z-test pooled within each period; the always-valid test and Holm as
//! without periods; `relative_lift` the ratio of the stratified rates;
//! `chance_to_beat_control`/`expected_loss` a normal posterior on the stratified
//! difference (the Beta posteriors are those of the pooled, biased rates); value goals'
//! `mean`, `mean_diff`, its interval and `p_value_welch` the stratified means with
//! Satterthwaite's degrees of freedom (left out where a period with conversions lacks
//! value sums); and `srm_p_value` compares each variant's devices with
//! E_v = Σ_p N_p · share_{p,v} (`weights` is not used). `users` and `conversions` stay the
//! run's totals. The report says so: `stratified: true`, `stratified_periods: N`, and on
//! each compared row `periods_used` and `periods_dropped` (periods where an arm had fewer
//! than two devices, left out of that comparison); the verdicts read `Mars leads Moon
//! (stratified over 3 periods): …`. Devices in `variants` beyond those of the periods
//! (counted before the run had periods) are in the totals but not in the stratified
//! numbers. With one period or none, the report is exactly the one of the totals.
//!
//! The periods are checked whenever there are any: a variant or goal they name must be
//! the run's, the shares must cover the variants, no period may have more conversions
//! than devices, and together they may not hold more devices or conversions than the
//! totals (each refused with an [`AnalysisError`] naming the period and the variant).

use std::cmp::Ordering;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::stats::{self, Proportion, ValueSums};

/// Sample-ratio mismatch is flagged below this p-value.
pub const SRM_THRESHOLD: f64 = 0.001;

/// Below this many devices in the variant or in the control the verdict says "not
/// enough data" instead of reading the tests: one device then moves a rate by ten points
/// or more, and the z-test and the always-valid test are normal approximations that mean
/// little with so few. The table and the JSON still show the (wide, honest) Newcombe
/// interval from one device on.
pub const MIN_DEVICES_PER_VARIANT: u64 = 10;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Counts {
    pub experiment: String,
    /// Defaults to the first variant in the file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub control: Option<String>,
    pub variants: indexmap_like::OrderedMap<VariantCounts>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weights: Option<BTreeMap<String, f64>>,
    /// The run's periods, oldest first: a new one starts whenever the shares of new
    /// devices change (a bandit update, a weight change). `variants` above are the run's
    /// totals, the sums over the periods. With more than one period the analysis is
    /// stratified by period (`stats::strata`); with one or none it reads `variants`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub periods: Vec<PeriodCounts>,
}

/// One period of a run: the shares new devices were hashed by, what a bandit computed
/// them from, and the devices assigned in it with their conversions.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PeriodCounts {
    pub number: u32,
    /// RFC 3339, UTC.
    #[serde(default)]
    pub started_at: Option<String>,
    /// By variant, summing to 1.
    pub shares: BTreeMap<String, f64>,
    /// A bandit period: per variant the run's devices and conversions on the bandit's
    /// goal that the shares were computed from. `null` for other periods.
    #[serde(default)]
    pub inputs: Option<BTreeMap<String, ArmInputs>>,
    /// The devices assigned in this period, by variant, and their conversions.
    pub counts: BTreeMap<String, VariantCounts>,
}

/// A variant's counts as a bandit update read them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ArmInputs {
    pub users: u64,
    pub conversions: u64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct VariantCounts {
    pub users: u64,
    #[serde(default)]
    pub goals: BTreeMap<String, GoalCounts>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GoalCounts {
    pub conversions: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_sum: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_sum_sq: Option<f64>,
}

/// Settings of an analysis.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub confidence: f64,
    /// See `stats::sequential`.
    pub sequential_tuned_for: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            confidence: 0.95,
            sequential_tuned_for: stats::DEFAULT_SEQUENTIAL_TUNING_USERS,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub experiment: String,
    pub control: String,
    /// True when the run had more than one period and every number is stratified by
    /// period (`stratified_periods` of them); both keys are left out otherwise.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub stratified: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stratified_periods: Option<usize>,
    pub srm_p_value: Option<f64>,
    pub goals: BTreeMap<String, GoalReport>,
}

#[derive(Debug, Clone, Serialize)]
pub struct GoalReport {
    pub variants: indexmap_like::OrderedMap<VariantReport>,
    /// One line per non-control variant, what a person reads first.
    #[serde(skip)]
    pub verdicts: Vec<String>,
}

/// A variant's row. Control rows carry only users, conversions, rate (and mean).
#[derive(Debug, Clone, Default, Serialize)]
pub struct VariantReport {
    pub users: u64,
    pub conversions: u64,
    pub rate: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diff: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ci_low: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ci_high: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relative_lift: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub z: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p_value: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p_value_holm: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p_value_sequential: Option<f64>,
    /// Holm-adjusted across the comparisons with the control, as `p_value_holm`; what
    /// the verdict's "significant" reads.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p_value_sequential_holm: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ci_low_sequential: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ci_high_sequential: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chance_to_beat_control: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected_loss: Option<f64>,
    /// Value goals: mean per device, and Welch's test against the control.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mean: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mean_diff: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mean_ci_low: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mean_ci_high: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p_value_welch: Option<f64>,
    /// Stratified reports: the periods this comparison used, and those left out because
    /// an arm had fewer than two devices in them (`stats::strata`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub periods_used: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub periods_dropped: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnalysisError {
    #[error("control `{0}` is not one of the variants")]
    UnknownControl(String),
    #[error("an experiment needs at least two variants to compare")]
    TooFewVariants,
    #[error("variant `{variant}`, goal `{goal}`: {conversions} conversions out of {users} users")]
    MoreConversionsThanUsers {
        variant: String,
        goal: String,
        conversions: u64,
        users: u64,
    },
    #[error("`weights` must name exactly the variants, each with a weight ≥ 0")]
    BadWeights,
    #[error("period {period}: `{field}` names `{variant}`, which is not one of the variants")]
    PeriodUnknownVariant {
        period: u32,
        field: &'static str,
        variant: String,
    },
    #[error("period {period}: `shares` {reason} (the shares of new devices: one per variant, summing to 1)")]
    BadPeriodShares { period: u32, reason: String },
    #[error("period {period}: goal `{goal}` is not one of the run's goals")]
    PeriodUnknownGoal { period: u32, goal: String },
    #[error("period {period}, variant `{variant}`, goal `{goal}`: {conversions} conversions out of {users} users")]
    PeriodMoreConversionsThanUsers {
        period: u32,
        variant: String,
        goal: String,
        conversions: u64,
        users: u64,
    },
    #[error(
        "variant `{variant}`: its periods hold {in_periods} users, more than its {total} in all"
    )]
    PeriodUsersAboveTotal {
        variant: String,
        in_periods: u64,
        total: u64,
    },
    #[error("variant `{variant}`, goal `{goal}`: its periods hold {in_periods} conversions, more than its {total} in all")]
    PeriodConversionsAboveTotal {
        variant: String,
        goal: String,
        in_periods: u64,
        total: u64,
    },
}

pub fn analyze(counts: &Counts, settings: Settings) -> Result<Report, AnalysisError> {
    analyze_with(counts, settings, Posteriors::Exact)
}

/// [`analyze`] without the exact Beta posteriors of a report without periods
/// (`chance_to_beat_control` and `expected_loss` left out): their closed forms sum one
/// term per conversion of an arm, over 90 % of the time of an analysis of a few thousand
/// conversions, and the decision rule (`experiments::decide`) reads neither. For the
/// simulations that analyse a run at every evaluation (`experiments::decide_simulation`);
/// every other figure is the one [`analyze`] gives.
pub fn analyze_without_posteriors(
    counts: &Counts,
    settings: Settings,
) -> Result<Report, AnalysisError> {
    analyze_with(counts, settings, Posteriors::Skipped)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Posteriors {
    Exact,
    Skipped,
}

fn analyze_with(
    counts: &Counts,
    settings: Settings,
    posteriors: Posteriors,
) -> Result<Report, AnalysisError> {
    let names: Vec<&String> = counts.variants.keys().collect();
    if names.len() < 2 {
        return Err(AnalysisError::TooFewVariants);
    }
    let control = counts.control.clone().unwrap_or_else(|| names[0].clone());
    let control_counts = counts
        .variants
        .get(&control)
        .ok_or_else(|| AnalysisError::UnknownControl(control.clone()))?;
    for (name, v) in counts.variants.iter() {
        for (goal, g) in &v.goals {
            if g.conversions > v.users {
                return Err(AnalysisError::MoreConversionsThanUsers {
                    variant: name.clone(),
                    goal: goal.clone(),
                    conversions: g.conversions,
                    users: v.users,
                });
            }
        }
    }
    let weights: Vec<f64> = match &counts.weights {
        None => vec![1.0; names.len()],
        Some(w) => {
            if w.len() != names.len() || w.values().any(|&x| !(x >= 0.0)) {
                return Err(AnalysisError::BadWeights);
            }
            names
                .iter()
                .map(|n| w.get(*n).copied().ok_or(AnalysisError::BadWeights))
                .collect::<Result<_, _>>()?
        }
    };
    let goal_names: std::collections::BTreeSet<&String> = counts
        .variants
        .values()
        .flat_map(|v| v.goals.keys())
        .collect();
    stratified::validate(counts, &names, &goal_names)?;
    let strata = stratified::Strata::new(counts);
    let srm_p_value = match &strata {
        // Each period's shares replace the weights: they are what new devices were
        // hashed by.
        Some(strata) => strata.sample_ratio_mismatch(),
        None => {
            let observed: Vec<u64> = counts.variants.values().map(|v| v.users).collect();
            stats::sample_ratio_mismatch(&observed, &weights).map(|(_, p)| p)
        }
    };
    let mut goals = BTreeMap::new();
    for goal in goal_names {
        goals.insert(
            goal.clone(),
            goal_report(
                counts,
                &control,
                control_counts,
                goal,
                srm_p_value,
                settings,
                strata.as_ref(),
                posteriors,
            ),
        );
    }
    Ok(Report {
        experiment: counts.experiment.clone(),
        control,
        stratified: strata.is_some(),
        stratified_periods: strata.as_ref().map(|s| s.len()),
        srm_p_value,
        goals,
    })
}

// The figures every goal of one analysis shares, passed as they are rather than bundled
// for this one private call.
#[allow(clippy::too_many_arguments)]
fn goal_report(
    counts: &Counts,
    control: &str,
    control_counts: &VariantCounts,
    goal: &str,
    srm_p_value: Option<f64>,
    settings: Settings,
    strata: Option<&stratified::Strata>,
    posteriors: Posteriors,
) -> GoalReport {
    let proportion = |v: &VariantCounts| Proportion {
        conversions: v.goals.get(goal).map_or(0, |g| g.conversions),
        users: v.users,
    };
    let values = |v: &VariantCounts| {
        let g = v.goals.get(goal)?;
        Some(ValueSums {
            users: v.users,
            sum: g.value_sum?,
            sum_sq: g.value_sum_sq?,
        })
    };
    let a = proportion(control_counts);
    let mut variants = indexmap_like::OrderedMap::default();
    let mut verdicts = Vec::new();
    let control_index = counts
        .variants
        .keys()
        .position(|n| n == control)
        .unwrap_or(0);
    let has_values: Vec<bool> = counts
        .variants
        .values()
        .map(|v| values(v).is_some())
        .collect();
    for (index, (name, v)) in counts.variants.iter().enumerate() {
        let b = proportion(v);
        let mut row = VariantReport {
            users: b.users,
            conversions: b.conversions,
            rate: b.rate(),
            ..Default::default()
        };
        row.mean = values(v).filter(|s| s.users > 0).map(|s| s.mean());
        if let Some(strata) = strata {
            strata.fill(
                goal,
                (control_index, index),
                &has_values,
                &mut row,
                settings,
            );
        // An arm without devices has no rate: nothing to compare (the keys are left out).
        } else if name != control && a.users > 0 && b.users > 0 {
            let d = stats::difference(a, b, settings.confidence);
            (row.diff, row.ci_low, row.ci_high) = (Some(d.estimate), Some(d.low), Some(d.high));
            row.relative_lift = stats::relative_lift(a, b, settings.confidence).map(|l| l.estimate);
            if let Some((z, p)) = stats::two_proportion_z(a, b) {
                (row.z, row.p_value) = (Some(z), Some(p));
            }
            if let Some((p, ci)) =
                stats::sequential(a, b, settings.confidence, settings.sequential_tuned_for)
            {
                (
                    row.p_value_sequential,
                    row.ci_low_sequential,
                    row.ci_high_sequential,
                ) = (Some(p), Some(ci.low), Some(ci.high));
            }
            if posteriors == Posteriors::Exact {
                row.chance_to_beat_control = Some(stats::chance_to_beat(a, b));
                row.expected_loss = Some(stats::expected_loss(a, b));
            }
            if let (Some(sa), Some(sb)) = (values(control_counts), values(v)) {
                if let Some(w) = stats::welch(sa, sb, settings.confidence) {
                    (
                        row.mean_diff,
                        row.mean_ci_low,
                        row.mean_ci_high,
                        row.p_value_welch,
                    ) = (
                        Some(w.difference.estimate),
                        Some(w.difference.low),
                        Some(w.difference.high),
                        Some(w.p_value),
                    );
                }
            }
        }
        variants.insert(name.clone(), row);
    }
    // Holm across every comparison with the control, for the z-test and for the
    // always-valid test (Holm holds for always-valid p-values too: each is valid at any
    // stopping time). A comparison without a p-value (no variance yet) still counts in
    // the family, as p = 1.
    let compared: Vec<String> = variants
        .keys()
        .filter(|n| n.as_str() != control)
        .cloned()
        .collect();
    let adjust = |p_of: fn(&VariantReport) -> Option<f64>| {
        let raw: Vec<f64> = compared
            .iter()
            .map(|n| variants.get(n).and_then(p_of).unwrap_or(1.0))
            .collect();
        stats::holm(&raw)
    };
    let fixed = adjust(|r| r.p_value);
    let sequential = adjust(|r| r.p_value_sequential);
    for (i, name) in compared.iter().enumerate() {
        if let Some(row) = variants.get_mut(name) {
            row.p_value_holm = row.p_value.map(|_| fixed[i]);
            row.p_value_sequential_holm = row.p_value_sequential.map(|_| sequential[i]);
        }
    }
    let control_row = variants.get(control).cloned().unwrap_or_default();
    for (name, row) in variants.iter() {
        if name != control {
            verdicts.push(verdict(
                (name, row),
                (control, &control_row),
                srm_p_value,
                settings,
            ));
        }
    }
    GoalReport { variants, verdicts }
}

/// One line per variant, what a person reads first:
///
/// - `Mars beats Moon: +3.0 pts [+0.2, +5.8], p = 0.001; significant` (or `loses to`):
///   only when the always-valid (sequential) p-value, Holm-adjusted across the
///   comparisons with the control, is below 1 − confidence, so the verdict stays honest
///   however often it is read;
/// - `Mars leads Moon: …; keep collecting` (or `trails`, `ties`) otherwise, with
///   `(significant only if this is the single planned look)` when only the fixed-horizon
///   z-test is below 1 − confidence;
/// - `Mars vs Moon: not enough data yet (…)` below `MIN_DEVICES_PER_VARIANT` in either arm;
/// - a sample-ratio mismatch comes first, and then nothing is called a win;
/// - a stratified report names the comparison `Mars leads Moon (stratified over 3
///   periods): …`.
pub fn verdict(
    (name, row): (&str, &VariantReport),
    (control, control_row): (&str, &VariantReport),
    srm_p_value: Option<f64>,
    settings: Settings,
) -> String {
    let alpha = 1.0 - settings.confidence;
    let mismatch = srm_p_value.filter(|&p| p < SRM_THRESHOLD);
    let lead = mismatch.map_or(String::new(), |p| {
        format!(
            "Sample-ratio mismatch ({}) — do not trust this comparison. ",
            p_is(p)
        )
    });
    let strata = stratified_over(row);
    if row.users.min(control_row.users) < MIN_DEVICES_PER_VARIANT {
        return format!(
            "{lead}{name} vs {control}{strata}: not enough data yet (devices: {name} {}, {control} {}; a verdict needs at least {MIN_DEVICES_PER_VARIANT} in each)",
            row.users, control_row.users
        );
    }
    let (Some(diff), Some(low), Some(high)) = (row.diff, row.ci_low, row.ci_high) else {
        return format!("{lead}{name} vs {control}{strata}: not enough data yet");
    };
    let significant = mismatch.is_none() && row.p_value_sequential_holm.is_some_and(|p| p < alpha);
    let relation = match (
        significant,
        diff.partial_cmp(&0.0).unwrap_or(Ordering::Equal),
    ) {
        (true, Ordering::Greater) => "beats",
        (true, _) => "loses to",
        (false, Ordering::Greater) => "leads",
        (false, Ordering::Less) => "trails",
        (false, Ordering::Equal) => "ties",
    };
    let mut p = row.p_value.map_or("p = n/a".to_string(), p_is);
    if let Some(holm) = row.p_value_holm.filter(|&h| Some(h) != row.p_value) {
        p.push_str(&format!(" (Holm {})", format_p(holm)));
    }
    let conclusion = if mismatch.is_some() {
        ""
    } else if significant {
        "; significant"
    } else if row.p_value_holm.is_some_and(|p| p < alpha) {
        "; keep collecting (significant only if this is the single planned look)"
    } else {
        "; keep collecting"
    };
    format!(
        "{lead}{name} {relation} {control}{strata}: {} pts [{}, {}], {p}{conclusion}",
        points(diff),
        points(low),
        points(high)
    )
}

/// ` (stratified over 3 periods)`, ` (stratified over 2 of 3 periods)` when a period was
/// left out of the comparison; nothing for a report without periods.
fn stratified_over(row: &VariantReport) -> String {
    let (Some(used), Some(dropped)) = (row.periods_used, row.periods_dropped) else {
        return String::new();
    };
    let all = used + dropped;
    let noun = if all == 1 { "period" } else { "periods" };
    if dropped == 0 {
        format!(" (stratified over {used} {noun})")
    } else {
        format!(" (stratified over {used} of {all} {noun})")
    }
}

/// A difference of rates in percentage points, signed, one decimal (`+3.0`, `-0.4`).
fn points(x: f64) -> String {
    let rounded = (1000.0 * x).round() / 10.0;
    // No "-0.0" for a difference that rounds to nothing.
    format!("{:+.1}", if rounded == 0.0 { 0.0 } else { rounded })
}

/// `p = 0.035`, or `p < 0.001`.
fn p_is(p: f64) -> String {
    if p < 0.001 {
        "p < 0.001".to_string()
    } else {
        format!("p = {p:.3}")
    }
}

/// A p-value for a table cell: `0.035`, or `< 0.001`.
pub fn format_p(p: f64) -> String {
    if p < 0.001 {
        "< 0.001".to_string()
    } else {
        format!("{p:.3}")
    }
}

/// A string-keyed map that keeps insertion order (variants in the order the file lists
/// them), serialised as a JSON object.
pub mod indexmap_like;
mod stratified;
mod table;

pub use table::render_table;

pub use stratified::SHARES_TOLERANCE;

#[cfg(test)]
mod stratified_tests;
#[cfg(test)]
mod tests;
