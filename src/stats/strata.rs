//! The period-stratified analysis of issue 13: the estimates that stay honest when the
//! weights move during a run. Pure: counts in, numbers out.
//!
//! # Why
//!
//! When the shares change between periods (a bandit update, a manual weight change) and
//! the base rate drifts at the same time, the pooled rates compare different mixtures of
//! periods: the arm that got more of the high-rate period looks better although the arms
//! are identical (Simpson's paradox). Stratifying by period compares the arms within each
//! period and averages the within-period rates with the same weights for both arms, so the
//! drift cancels.
//!
//! # The formulas
//!
//! `periods[p][v]` holds the devices assigned in period p to variant v and their
//! conversions (variants in the experiment's order). N_p = Σ_v n_{p,v} are all the
//! devices of period p (every variant, not only the two compared), W_p = N_p / N.
//!
//! - rate_v = Σ_p W_p · ȳ_{p,v}, Var_v = Σ_p W_p² · s²_{p,v} / n_{p,v};
//! - the difference rate_v − rate_c with the variance Var_v + Var_c (independent arms),
//!   z = difference / √(Var_v + Var_c), its two-sided p-value and the normal interval
//!   difference ± z_{1−α/2} · √(Var_v + Var_c), clipped to [−1, 1];
//! - the always-valid p-value and confidence sequence: the mixture SPRT of
//!   [`super::sequential`], fed this difference and this variance (below);
//! - the sample-ratio check: E_v = Σ_p N_p · share_{p,v} against the devices per variant,
//!   Pearson's χ² ([`super::sample_ratio_mismatch`] with the E_v as weights).
//!
//! # The rules chosen
//!
//! **s² is the binomial ȳ(1 − ȳ)**, not the unbiased ȳ(1 − ȳ)·n/(n − 1). It is what every
//! unstratified function here uses (`Proportion::variance_of_rate`, hence `sequential`),
//! so with one period each result is *exactly* today's, as the issue requires. Its cost:
//! a period's variance is low by the factor (n − 1)/n, i.e. 2 % at 50 devices of an arm
//! in a period, 0.2 % at 500; it matters only for arms with a handful of devices per
//! period (a tiny `min_share` with frequent updates), which then read slightly too
//! significant. With n = 1 the binomial s² is always 0 (the one device is 0 or 1): such a
//! period would claim to know its rate exactly; hence the next rule.
//!
//! **A period is used in a comparison only where both compared arms have at least two
//! devices in it** ([`MIN_DEVICES_PER_PERIOD`]); the weights are renormalised over the
//! periods used: W_p = N_p / Σ_{p used} N_p, the same W_p for both arms. Both arms are
//! therefore averaged over the same population of periods, so the difference is unbiased
//! for that population's average difference (an arm averaged over its own periods only
//! would bring Simpson's bias back). Which periods are used depends on the device counts
//! only, never on conversions, so the choice itself does not bias anything (assignment
//! is independent of the outcome). A period dropped this way is reported
//! (`periods_dropped`). A single arm's rate ([`stratified_rate`]) uses the periods where
//! that arm has two devices or more, so it may differ from the rate inside a comparison
//! when some period starved the other arm.
//!
//! **The z-test comes in two forms.** `test` uses the unpooled variance
//! Var_v + Var_c (the Wald form; with one period it is statsmodels
//! `test_proportions_2indep(method="wald")`). Today's report shows the *pooled*
//! two-proportion z-test ([`super::two_proportion_z`]), whose variance under "no
//! difference" is p̄(1 − p̄)(1/n_c + 1/n_v), p̄ the two arms' rate together. Its stratified
//! form, `pooled_test`, pools within each period:
//! Var₀ = Σ_p W_p² · p̄_p(1 − p̄_p)(1/n_{p,c} + 1/n_{p,v}); with one period it is exactly
//! `two_proportion_z`. The two agree where the arms' rates agree (that is, under the
//! null) and differ otherwise: the unpooled variance is smaller where the arm with fewer
//! devices has the rate nearer 0 or 1, larger in the other case. **Use `pooled_test` for
//! the report's z and p-value**: with one period it reads exactly as today, and it holds
//! α where an arm has few devices per period, where the Wald form runs a little hot. In
//! `strata_tests`' bandit-like plan (six periods of 700 devices, B's share 0.5 → 0.9, the
//! base rate 0.05 → 0.10, so A has ~70 devices per late period) the true rejection rates
//! at α = 0.05 are 0.0506 pooled per period and 0.0548 Wald (0.0537 Wald with the
//! unbiased s²: the small-sample excess is mostly the Wald variance moving with the
//! estimate, not the (n − 1)/n factor), over 40 000 runs of
//! `python3 tests/golden/make_strata_references.py --simulate`. `test` is the issue's
//! formula and goes with the interval (which is around the observed rates, not the
//! null's).
//!
//! **The interval is the normal (Wald) one.** Today's [`super::difference`] is Newcombe's
//! score interval, which has no simple stratified form; with one period the estimate is
//! the same and the interval is statsmodels' `confint_proportions_2indep(method="wald")`,
//! a little narrower than Newcombe's near 0 % or 100 % and with small arms.
//!
//! **The always-valid test** reuses the mixture of `sequential` (its τ² tuning and its
//! threshold) with θ̂ the stratified difference and V = Var_v + Var_c; the tuning's device
//! count is the compared arms' devices in the periods used. With one period it is exactly
//! `sequential`. The mixture's guarantee is for an estimate that moves like a running
//! mean; the stratified estimate re-weights old periods as new devices arrive, so over
//! many periods it is the normal approximation applied to the stratified estimate, no
//! more (the seeded simulation in `strata_tests` reads it after every period and stays
//! within α).
//!
//! **The sample-ratio check is conservative when shares move.** Under a correct split the
//! devices per variant are a sum of per-period multinomials, whose variance
//! Σ_p N_p·share_{p,v}(1 − share_{p,v}) is below the single multinomial's that Pearson's
//! χ² assumes (E_v(1 − E_v/N), by concavity); so the χ² is somewhat smaller than χ²_{K−1}
//! and a correct split is flagged less often than the nominal rate (e.g. 0.5/0.5 then
//! 0.2/0.8 in two equal periods: the χ² is 0.90·χ²₁, flagged at p < 0.001 with chance
//! ~0.0005). With one period it is exactly `sample_ratio_mismatch`.
//!
//! **Value goals are stratified the same way** ([`stratified_welch`]): mean_v = Σ_p W_p ·
//! m_{p,v}, Var_v = Σ_p W_p² · s²_{p,v} / n_{p,v}, with m and s² the period's mean and
//! sample variance (n − 1, as [`super::welch`]) from its sums, over the periods where both
//! arms have two devices or more (a variance needs two). The t-test's degrees of freedom
//! are Satterthwaite's for a linear combination of independent variances (Satterthwaite
//! 1946, "An approximate distribution of estimates of variance components"):
//! df = (Σ a_i)² / Σ a_i² / (n_i − 1) over every (period, arm) cell, a_i = W_p² s²_i / n_i.
//! With one period that is Welch's df, and every result is `welch`'s bit for bit.
//!
//! **The Bayesian numbers use a normal posterior on the stratified difference**
//! ([`normal_chance_to_beat`], [`normal_expected_loss`]). The exact Beta posteriors of
//! today's `chance_to_beat` are those of each arm's *pooled* rate, which is the biased
//! quantity; per period, each rate's posterior under a flat prior is close to
//! N(ȳ, s²/n), and the fixed-weight sum of independent normals is normal, so the
//! posterior of rate_v − rate_c is N(difference, Var_v + Var_c): P(beat) = Φ(d/σ), and
//! the expected loss of choosing the variant, E[max(−D, 0)] for D ~ N(d, σ²), is
//! σ·φ(d/σ) − d·Φ(−d/σ) (the mean of a normal's positive part, as in the "expected
//! improvement" of Jones, Schonlau & Welch 1998, "Efficient global optimization of
//! expensive black-box functions", eq. 15). On the one-period issue example (100/1000 vs
//! 130/1000) they give 0.98236 and 0.0000909 where the exact Beta ones are 0.98217 and
//! 0.0000924 (`strata_tests`): the approximation is good once each arm has a few dozen
//! conversions, and crude below that (it is symmetric where the Beta is skewed).

use statrs::distribution::{Continuous, ContinuousCDF, StudentsT};

use super::{
    mixture_threshold, optimal_mixture_ratio, sample_ratio_mismatch, standard_normal, two_sided_p,
    z_critical, Interval, Proportion, ValueSums,
};

/// The fewest devices an arm needs in a period for the period to count (see the module
/// documentation: with one device the binomial variance is 0).
pub const MIN_DEVICES_PER_PERIOD: u64 = 2;

/// A stratified rate and the variance of its estimate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StratifiedRate {
    pub estimate: f64,
    pub variance: f64,
}

/// A z statistic and its two-sided p-value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ZTest {
    pub z: f64,
    pub p_value: f64,
}

/// The stratified comparison of a variant with the control.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StratifiedDifference {
    /// The control's and the variant's rates, over the periods used.
    pub control: StratifiedRate,
    pub variant: StratifiedRate,
    /// rate_v − rate_c with its normal interval; `None` without variance (every period
    /// used had all or none of both arms convert).
    pub difference: f64,
    pub standard_error: f64,
    pub interval: Option<Interval>,
    /// The z-test with the unpooled variance Var_v + Var_c; `None` without variance.
    pub test: Option<ZTest>,
    /// The z-test with the variance pooled within each period (today's pooled test, per
    /// period); `None` without variance.
    pub pooled_test: Option<ZTest>,
    pub periods_used: usize,
    pub periods_dropped: usize,
}

/// An arm's devices in a period, for the weights (rates and value sums alike).
trait Devices {
    fn devices(&self) -> u64;
}

impl Devices for Proportion {
    fn devices(&self) -> u64 {
        self.users
    }
}

impl Devices for ValueSums {
    fn devices(&self) -> u64 {
        self.users
    }
}

fn period_devices<T: Devices>(period: &[T]) -> u64 {
    period.iter().map(Devices::devices).sum()
}

/// The weights W_p over the periods that `used` keeps, renormalised to sum to 1; 0 for
/// the others. `None` when no period is kept.
fn weights<T: Devices>(periods: &[Vec<T>], used: impl Fn(&[T]) -> bool) -> Option<Vec<f64>> {
    let devices: Vec<u64> = periods
        .iter()
        .map(|period| {
            if used(period) {
                period_devices(period)
            } else {
                0
            }
        })
        .collect();
    let total: u64 = devices.iter().sum();
    if total == 0 {
        return None;
    }
    Some(devices.iter().map(|&n| n as f64 / total as f64).collect())
}

fn arm(period: &[Proportion], index: usize) -> Proportion {
    period.get(index).copied().unwrap_or(Proportion {
        conversions: 0,
        users: 0,
    })
}

fn has_enough(period: &[Proportion], index: usize) -> bool {
    arm(period, index).users >= MIN_DEVICES_PER_PERIOD
}

fn rate_over(periods: &[Vec<Proportion>], weights: &[f64], index: usize) -> StratifiedRate {
    let mut estimate = 0.0;
    let mut variance = 0.0;
    for (period, &w) in periods.iter().zip(weights) {
        if w == 0.0 {
            continue;
        }
        let a = arm(period, index);
        estimate += w * a.rate();
        variance += w * w * a.variance_of_rate();
    }
    StratifiedRate { estimate, variance }
}

/// Variant `index`'s stratified rate over the periods where it has at least
/// [`MIN_DEVICES_PER_PERIOD`] devices. `None` when it has no such period.
pub fn stratified_rate(periods: &[Vec<Proportion>], index: usize) -> Option<StratifiedRate> {
    let w = weights(periods, |period| has_enough(period, index))?;
    Some(rate_over(periods, &w, index))
}

/// The stratified comparison of variant `variant` with the control `control` (indices
/// into each period) at `confidence`. `None` when no period has at least
/// [`MIN_DEVICES_PER_PERIOD`] devices in both arms.
pub fn stratified_difference(
    periods: &[Vec<Proportion>],
    control: usize,
    variant: usize,
    confidence: f64,
) -> Option<StratifiedDifference> {
    let w = weights(periods, |period| {
        has_enough(period, control) && has_enough(period, variant)
    })?;
    let (c, v) = (
        rate_over(periods, &w, control),
        rate_over(periods, &w, variant),
    );
    let difference = v.estimate - c.estimate;
    let variance = v.variance + c.variance;
    let standard_error = variance.sqrt();
    let mut null_variance = 0.0;
    for (period, &weight) in periods.iter().zip(&w) {
        if weight == 0.0 {
            continue;
        }
        let (a, b) = (arm(period, control), arm(period, variant));
        // The same expression, in the same order, as `two_proportion_z`.
        let pooled = (a.conversions + b.conversions) as f64 / (a.users + b.users) as f64;
        null_variance += weight
            * weight
            * (pooled * (1.0 - pooled) * (1.0 / a.users as f64 + 1.0 / b.users as f64));
    }
    let z_test = |se: f64| {
        (se > 0.0).then(|| {
            let z = difference / se;
            ZTest {
                z,
                p_value: two_sided_p(z),
            }
        })
    };
    let half = z_critical(confidence) * standard_error;
    let used = w.iter().filter(|&&x| x > 0.0).count();
    // Periods without a device at all are no period to drop.
    let with_devices = periods.iter().filter(|p| period_devices(p) > 0).count();
    Some(StratifiedDifference {
        control: c,
        variant: v,
        difference,
        standard_error,
        interval: (standard_error > 0.0).then(|| Interval {
            estimate: difference,
            low: (difference - half).max(-1.0),
            high: (difference + half).min(1.0),
        }),
        test: z_test(standard_error),
        pooled_test: z_test(null_variance.sqrt()),
        periods_used: used,
        periods_dropped: with_devices - used,
    })
}

/// The always-valid p-value and confidence sequence of the stratified difference: the
/// mixture SPRT of [`super::sequential`] with θ̂ = rate_v − rate_c and V = Var_v + Var_c,
/// tuned on the two arms' devices in the periods used. The same shape and `None` cases
/// as `sequential` (plus: no period usable).
pub fn stratified_sequential(
    periods: &[Vec<Proportion>],
    control: usize,
    variant: usize,
    confidence: f64,
    tuned_for_users: u64,
) -> Option<(f64, Interval)> {
    let d = stratified_difference(periods, control, variant, confidence)?;
    let v = d.variant.variance + d.control.variance;
    if v <= 0.0 {
        return None;
    }
    let users: u64 = periods
        .iter()
        .filter(|p| has_enough(p, control) && has_enough(p, variant))
        .map(|p| arm(p, control).users + arm(p, variant).users)
        .sum();
    Some(mixture(d.difference, v, users, confidence, tuned_for_users))
}

/// `sequential`'s mixture SPRT on an estimate `theta` with variance `v` from `users`
/// devices, in the same order of operations, so one period gives its numbers bit for bit.
fn mixture(
    theta: f64,
    v: f64,
    users: u64,
    confidence: f64,
    tuned_for_users: u64,
) -> (f64, Interval) {
    let alpha = 1.0 - confidence;
    let v_tuned = v * users as f64 / tuned_for_users.max(1) as f64;
    let tau2 = optimal_mixture_ratio(alpha) * v_tuned;
    let log_lambda = 0.5 * (v / (v + tau2)).ln() + tau2 * theta * theta / (2.0 * v * (v + tau2));
    let p_value = (-log_lambda).exp().min(1.0);
    let half = mixture_threshold(v, tau2, alpha);
    (
        p_value,
        Interval {
            estimate: theta,
            low: (theta - half).max(-1.0),
            high: (theta + half).min(1.0),
        },
    )
}

/// The sample-ratio check with periods: `devices[p][v]` assigned in period p to variant v,
/// `shares[p][v]` the weights in force in period p (any scale; normalised per period).
/// E_v = Σ_p N_p · share_{p,v}, then Pearson's χ² of Σ_p devices[p][v] against the E_v
/// ([`super::sample_ratio_mismatch`]). Devices in a variant whose share was 0 in their
/// period are a mismatch beyond doubt (χ² = ∞, p = 0). `None` as `sample_ratio_mismatch`
/// gives it, or when the periods and shares do not line up, or a period with devices has
/// no positive weight.
pub fn stratified_sample_ratio_mismatch(
    devices: &[Vec<u64>],
    shares: &[Vec<f64>],
) -> Option<(f64, f64)> {
    let arms = devices.first()?.len();
    if devices.len() != shares.len()
        || devices.iter().any(|d| d.len() != arms)
        || shares.iter().any(|s| s.len() != arms)
    {
        return None;
    }
    let mut observed = vec![0u64; arms];
    let mut expected = vec![0.0f64; arms];
    for (period, weights) in devices.iter().zip(shares) {
        let n_p: u64 = period.iter().sum();
        if n_p == 0 {
            continue;
        }
        let total: f64 = weights.iter().sum();
        if total <= 0.0 || weights.iter().any(|&w| w < 0.0) {
            return None;
        }
        for v in 0..arms {
            if weights[v] == 0.0 && period[v] > 0 {
                return Some((f64::INFINITY, 0.0));
            }
            observed[v] += period[v];
            expected[v] += n_p as f64 * (weights[v] / total);
        }
    }
    sample_ratio_mismatch(&observed, &expected)
}

/// The stratified comparison of a value goal's mean per device (see the module
/// documentation).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StratifiedMeans {
    /// The control's and the variant's means, over the periods used.
    pub control: StratifiedRate,
    pub variant: StratifiedRate,
    pub difference: f64,
    pub standard_error: f64,
    /// Satterthwaite's degrees of freedom, Student's t and its two-sided p-value.
    pub df: f64,
    pub t: f64,
    pub p_value: f64,
    pub interval: Interval,
    pub periods_used: usize,
    pub periods_dropped: usize,
}

fn value_cell(period: &[ValueSums], index: usize) -> ValueSums {
    period.get(index).copied().unwrap_or(ValueSums {
        users: 0,
        sum: 0.0,
        sum_sq: 0.0,
    })
}

/// Arm `index`'s stratified mean and, per period used, its a_i = W_p² s² / n and n.
fn mean_over(
    periods: &[Vec<ValueSums>],
    weights: &[f64],
    index: usize,
) -> (StratifiedRate, Vec<(f64, u64)>) {
    let (mut estimate, mut variance, mut cells) = (0.0, 0.0, Vec::new());
    for (period, &w) in periods.iter().zip(weights) {
        if w == 0.0 {
            continue;
        }
        let a = value_cell(period, index);
        let share = w * w * (a.variance() / a.users as f64);
        estimate += w * a.mean();
        variance += share;
        cells.push((share, a.users));
    }
    (StratifiedRate { estimate, variance }, cells)
}

/// Arm `index`'s stratified mean per device over the periods where it has at least
/// [`MIN_DEVICES_PER_PERIOD`] devices. `None` when it has no such period.
pub fn stratified_mean(periods: &[Vec<ValueSums>], index: usize) -> Option<StratifiedRate> {
    let w = weights(periods, |p| {
        value_cell(p, index).users >= MIN_DEVICES_PER_PERIOD
    })?;
    Some(mean_over(periods, &w, index).0)
}

/// The stratified t-test and interval of mean_variant − mean_control at `confidence`
/// (`welch` per period, combined). `None` when no period has two devices in both arms,
/// or there is no variance at all.
pub fn stratified_welch(
    periods: &[Vec<ValueSums>],
    control: usize,
    variant: usize,
    confidence: f64,
) -> Option<StratifiedMeans> {
    let enough = |p: &[ValueSums], i: usize| value_cell(p, i).users >= MIN_DEVICES_PER_PERIOD;
    let w = weights(periods, |p| enough(p, control) && enough(p, variant))?;
    let ((c, c_cells), (v, v_cells)) = (
        mean_over(periods, &w, control),
        mean_over(periods, &w, variant),
    );
    // In `welch`'s order of operations, so that one period gives its numbers bit for bit.
    let se2 = c.variance + v.variance;
    if se2 <= 0.0 {
        return None;
    }
    let denominator: f64 = c_cells
        .iter()
        .chain(&v_cells)
        .map(|&(a, n)| a * a / (n as f64 - 1.0))
        .sum();
    let df = se2 * se2 / denominator;
    let difference = v.estimate - c.estimate;
    let t = difference / se2.sqrt();
    let dist = StudentsT::new(0.0, 1.0, df).ok()?;
    let p_value = 2.0 * dist.sf(t.abs());
    let half = dist.inverse_cdf(1.0 - (1.0 - confidence) / 2.0) * se2.sqrt();
    let used = w.iter().filter(|&&x| x > 0.0).count();
    let with_devices = periods
        .iter()
        .filter(|p| p.iter().any(|arm| arm.users > 0))
        .count();
    Some(StratifiedMeans {
        control: c,
        variant: v,
        difference,
        standard_error: se2.sqrt(),
        df,
        t,
        p_value,
        interval: Interval {
            estimate: difference,
            low: difference - half,
            high: difference + half,
        },
        periods_used: used,
        periods_dropped: with_devices - used,
    })
}

/// P(rate_variant > rate_control) under the normal posterior N(`difference`,
/// `standard_error`²) of the stratified difference: Φ(d/σ). `None` without variance.
pub fn normal_chance_to_beat(difference: f64, standard_error: f64) -> Option<f64> {
    (standard_error > 0.0).then(|| standard_normal().cdf(difference / standard_error))
}

/// The expected loss of choosing the variant, E[max(rate_control − rate_variant, 0)],
/// under the same normal posterior: σ·φ(d/σ) − d·Φ(−d/σ). `None` without variance.
pub fn normal_expected_loss(difference: f64, standard_error: f64) -> Option<f64> {
    (standard_error > 0.0).then(|| {
        let z = difference / standard_error;
        let normal = standard_normal();
        (standard_error * normal.pdf(z) - difference * normal.cdf(-z)).max(0.0)
    })
}
