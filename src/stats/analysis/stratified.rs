//! The report's numbers when the run has more than one period: every rate, difference,
//! interval, test and sample-ratio check from [`crate::stats::strata`], so that shares
//! that moved during the run (a bandit, a weight change) do not bias the comparison.
//! Validation of the periods is here too; it runs whenever the counts have periods.

use std::collections::BTreeSet;

use super::{AnalysisError, Counts, PeriodCounts, Settings, VariantReport};
use crate::stats::{strata, Proportion, ValueSums};

/// How far a period's shares may sum from 1 (rounding in a hand-written file: thirds
/// written as 0.333 sum to 0.999).
pub const SHARES_TOLERANCE: f64 = 1e-3;

/// The periods are consistent with each other and with the run's totals: they name only
/// the variants and goals of the run, their shares cover the variants and sum to 1,
/// nobody converts twice, and together they hold no more than the totals.
pub(super) fn validate(
    counts: &Counts,
    names: &[&String],
    goals: &BTreeSet<&String>,
) -> Result<(), AnalysisError> {
    let known = |name: &String| names.contains(&name);
    for period in &counts.periods {
        let number = period.number;
        let unknown = |field: &'static str, mut keys: Vec<&String>| {
            keys.retain(|k| !known(k));
            keys.first().map_or(Ok(()), |k| {
                Err(AnalysisError::PeriodUnknownVariant {
                    period: number,
                    field,
                    variant: (*k).clone(),
                })
            })
        };
        unknown("shares", period.shares.keys().collect())?;
        unknown("counts", period.counts.keys().collect())?;
        if let Some(inputs) = &period.inputs {
            unknown("inputs", inputs.keys().collect())?;
        }
        let bad_shares = |reason: String| AnalysisError::BadPeriodShares {
            period: number,
            reason,
        };
        for name in names {
            match period.shares.get(*name) {
                None => return Err(bad_shares(format!("has no share for `{name}`"))),
                Some(&s) if !(0.0..=1.0).contains(&s) => {
                    return Err(bad_shares(format!(
                        "gives `{name}` {s} (a share is between 0 and 1)"
                    )))
                }
                Some(_) => {}
            }
        }
        let sum: f64 = period.shares.values().sum();
        if (sum - 1.0).abs() > SHARES_TOLERANCE {
            return Err(bad_shares(format!("sum to {sum}, not 1")));
        }
        for (variant, v) in &period.counts {
            for (goal, g) in &v.goals {
                if !goals.contains(goal) {
                    return Err(AnalysisError::PeriodUnknownGoal {
                        period: number,
                        goal: goal.clone(),
                    });
                }
                if g.conversions > v.users {
                    return Err(AnalysisError::PeriodMoreConversionsThanUsers {
                        period: number,
                        variant: variant.clone(),
                        goal: goal.clone(),
                        conversions: g.conversions,
                        users: v.users,
                    });
                }
            }
        }
    }
    for (name, total) in counts.variants.iter() {
        let cells = || counts.periods.iter().filter_map(|p| p.counts.get(name));
        let users: u64 = cells().map(|v| v.users).sum();
        if users > total.users {
            return Err(AnalysisError::PeriodUsersAboveTotal {
                variant: name.clone(),
                in_periods: users,
                total: total.users,
            });
        }
        for goal in goals {
            let in_periods: u64 = cells()
                .filter_map(|v| v.goals.get(*goal))
                .map(|g| g.conversions)
                .sum();
            let total = total.goals.get(*goal).map_or(0, |g| g.conversions);
            if in_periods > total {
                return Err(AnalysisError::PeriodConversionsAboveTotal {
                    variant: name.clone(),
                    goal: (*goal).clone(),
                    in_periods,
                    total,
                });
            }
        }
    }
    Ok(())
}

/// A run's periods, read in the order of the report's variants.
pub(super) struct Strata<'a> {
    names: Vec<&'a String>,
    periods: &'a [PeriodCounts],
}

impl<'a> Strata<'a> {
    /// `None` with one period or none: the report then reads the totals, as before
    /// periods existed.
    pub fn new(counts: &'a Counts) -> Option<Self> {
        (counts.periods.len() >= 2).then(|| Strata {
            names: counts.variants.keys().collect(),
            periods: &counts.periods,
        })
    }

    pub fn len(&self) -> usize {
        self.periods.len()
    }

    /// Devices per period and variant.
    fn devices(&self) -> Vec<Vec<u64>> {
        self.periods
            .iter()
            .map(|p| {
                self.names
                    .iter()
                    .map(|n| p.counts.get(*n).map_or(0, |v| v.users))
                    .collect()
            })
            .collect()
    }

    /// The sample-ratio check's p-value against each period's shares.
    pub fn sample_ratio_mismatch(&self) -> Option<f64> {
        let shares: Vec<Vec<f64>> = self
            .periods
            .iter()
            .map(|p| {
                self.names
                    .iter()
                    .map(|n| p.shares.get(*n).copied().unwrap_or(0.0))
                    .collect()
            })
            .collect();
        strata::stratified_sample_ratio_mismatch(&self.devices(), &shares).map(|(_, p)| p)
    }

    fn proportions(&self, goal: &str) -> Vec<Vec<Proportion>> {
        self.periods
            .iter()
            .map(|p| {
                self.names
                    .iter()
                    .map(|n| {
                        p.counts.get(*n).map_or(
                            Proportion {
                                conversions: 0,
                                users: 0,
                            },
                            |v| Proportion {
                                conversions: v.goals.get(goal).map_or(0, |g| g.conversions),
                                users: v.users,
                            },
                        )
                    })
                    .collect()
            })
            .collect()
    }

    /// A value goal's sums per period and variant. A cell without the goal, or without
    /// conversions, sums to 0; `None` when a cell has conversions but no value sums
    /// (the means cannot be stratified).
    fn values(&self, goal: &str) -> Option<Vec<Vec<ValueSums>>> {
        self.periods
            .iter()
            .map(|p| {
                self.names
                    .iter()
                    .map(|n| {
                        let Some(v) = p.counts.get(*n) else {
                            return Some(ValueSums {
                                users: 0,
                                sum: 0.0,
                                sum_sq: 0.0,
                            });
                        };
                        match v.goals.get(goal) {
                            Some(g) if g.conversions > 0 => Some(ValueSums {
                                users: v.users,
                                sum: g.value_sum?,
                                sum_sq: g.value_sum_sq?,
                            }),
                            g => Some(ValueSums {
                                users: v.users,
                                sum: g.and_then(|g| g.value_sum).unwrap_or(0.0),
                                sum_sq: g.and_then(|g| g.value_sum_sq).unwrap_or(0.0),
                            }),
                        }
                    })
                    .collect()
            })
            .collect()
    }

    fn periods_with_devices(&self) -> usize {
        self.devices()
            .iter()
            .filter(|p| p.iter().any(|&n| n > 0))
            .count()
    }

    /// Fills `row` (variant `index`, `users`, `conversions` and the pooled rate already
    /// set) with the stratified numbers: for every row the rate (and the mean of a value
    /// goal, `has_values[index]`), and for a variant the comparison with `control`.
    pub fn fill(
        &self,
        goal: &str,
        (control, index): (usize, usize),
        has_values: &[bool],
        row: &mut VariantReport,
        settings: Settings,
    ) {
        let proportions = self.proportions(goal);
        let values = self.values(goal);
        // An arm without two devices in any period keeps its pooled rate (a row has a
        // rate): there is no stratified one, and nothing to compare either. Its mean,
        // like a mean whose periods lack value sums, is left out rather than pooled.
        if let Some(r) = strata::stratified_rate(&proportions, index) {
            row.rate = r.estimate;
        }
        if has_values[index] {
            row.mean = values
                .as_ref()
                .and_then(|v| strata::stratified_mean(v, index))
                .map(|m| m.estimate);
        }
        if index == control {
            return;
        }
        let Some(d) =
            strata::stratified_difference(&proportions, control, index, settings.confidence)
        else {
            (row.periods_used, row.periods_dropped) = (Some(0), Some(self.periods_with_devices()));
            return;
        };
        (row.periods_used, row.periods_dropped) = (Some(d.periods_used), Some(d.periods_dropped));
        row.diff = Some(d.difference);
        if let Some(ci) = d.interval {
            (row.ci_low, row.ci_high) = (Some(ci.low), Some(ci.high));
        }
        row.relative_lift =
            (d.control.estimate > 0.0).then(|| d.variant.estimate / d.control.estimate - 1.0);
        if let Some(t) = d.pooled_test {
            (row.z, row.p_value) = (Some(t.z), Some(t.p_value));
        }
        if let Some((p, ci)) = strata::stratified_sequential(
            &proportions,
            control,
            index,
            settings.confidence,
            settings.sequential_tuned_for,
        ) {
            (
                row.p_value_sequential,
                row.ci_low_sequential,
                row.ci_high_sequential,
            ) = (Some(p), Some(ci.low), Some(ci.high));
        }
        row.chance_to_beat_control = strata::normal_chance_to_beat(d.difference, d.standard_error);
        row.expected_loss = strata::normal_expected_loss(d.difference, d.standard_error);
        if has_values[control] && has_values[index] {
            if let Some(m) = values
                .as_ref()
                .and_then(|v| strata::stratified_welch(v, control, index, settings.confidence))
            {
                (
                    row.mean_diff,
                    row.mean_ci_low,
                    row.mean_ci_high,
                    row.p_value_welch,
                ) = (
                    Some(m.difference),
                    Some(m.interval.low),
                    Some(m.interval.high),
                    Some(m.p_value),
                );
            }
        }
    }
}
