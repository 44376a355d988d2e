//! The statistics an experimenter decides with. Pure functions of counts: no I/O, no
//! clocks, no randomness. Each is checked against scipy/statsmodels in `tests` (values
//! from `tests/golden/make_stats_references.py`).
//!
//! Conventions: `a` is the control, `b` the variant; differences are `b − a`; intervals
//! are two-sided at `confidence` (e.g. 0.95).

pub mod analysis;
pub mod bandit;
pub mod strata;
pub mod upstream;

use statrs::distribution::{ChiSquared, ContinuousCDF, Normal, StudentsT};
use statrs::function::beta::ln_beta;

/// Converting devices out of a population.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Proportion {
    pub conversions: u64,
    pub users: u64,
}

impl Proportion {
    pub fn rate(self) -> f64 {
        if self.users == 0 {
            0.0
        } else {
            self.conversions as f64 / self.users as f64
        }
    }

    fn variance_of_rate(self) -> f64 {
        let p = self.rate();
        p * (1.0 - p) / self.users as f64
    }
}

/// An estimate with a two-sided interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Interval {
    pub estimate: f64,
    pub low: f64,
    pub high: f64,
}

fn standard_normal() -> Normal {
    Normal::new(0.0, 1.0).expect("the standard normal is valid")
}

/// The two-sided critical value: z such that P(|Z| > z) = 1 − confidence.
pub fn z_critical(confidence: f64) -> f64 {
    standard_normal().inverse_cdf(1.0 - (1.0 - confidence) / 2.0)
}

fn two_sided_p(z: f64) -> f64 {
    2.0 * standard_normal().sf(z.abs())
}

/// Two-proportion z-test with the pooled variance, two-sided: the same as statsmodels
/// `proportions_ztest([cb, ca], [nb, na])`. `None` when there is no variance to test
/// against (no users, or everyone or no one converted in both arms).
pub fn two_proportion_z(a: Proportion, b: Proportion) -> Option<(f64, f64)> {
    if a.users == 0 || b.users == 0 {
        return None;
    }
    let pooled = (a.conversions + b.conversions) as f64 / (a.users + b.users) as f64;
    let se = (pooled * (1.0 - pooled) * (1.0 / a.users as f64 + 1.0 / b.users as f64)).sqrt();
    if se == 0.0 {
        return None;
    }
    let z = (b.rate() - a.rate()) / se;
    Some((z, two_sided_p(z)))
}

/// Wilson's score interval of one rate (Wilson 1927; statsmodels
/// `proportion_confint(method="wilson")`): never zero-width, never outside [0, 1], right
/// at 0 % and 100 %, where the Wald interval collapses to a point. No users: nothing is
/// known, the interval is all of [0, 1] (the rate itself counts as 0).
pub fn rate_interval(p: Proportion, confidence: f64) -> Interval {
    let (low, high) = wilson(p, z_critical(confidence));
    Interval {
        estimate: p.rate(),
        low,
        high,
    }
}

fn wilson(p: Proportion, z: f64) -> (f64, f64) {
    if p.users == 0 {
        return (0.0, 1.0);
    }
    let (rate, n, z2) = (p.rate(), p.users as f64, z * z);
    let denominator = 1.0 + z2 / n;
    let center = (rate + z2 / (2.0 * n)) / denominator;
    let half = z * (rate * (1.0 - rate) / n + z2 / (4.0 * n * n)).sqrt() / denominator;
    // At 0 or n conversions one bound is exactly 0 or 1; rounding would leave 1e-18.
    let low = if p.conversions == 0 {
        0.0
    } else {
        center - half
    };
    let high = if p.conversions == p.users {
        1.0
    } else {
        center + half
    };
    (low.clamp(0.0, 1.0), high.clamp(0.0, 1.0))
}

/// The difference of rates `b − a` with Newcombe's hybrid score interval (Newcombe 1998,
/// "Interval estimation for the difference between independent proportions", method
/// 10): the two Wilson intervals combined, l = d − √((p_b − l_b)² + (u_a − p_a)²),
/// u = d + √((u_b − p_b)² + (p_a − l_a)²). The same as statsmodels
/// `confint_proportions_2indep(cb, nb, ca, na, compare="diff")` (its default method).
/// Sound at every sample size: one device, no conversions or all conversions give a
/// wide interval, not a point. An arm without devices says nothing: the interval is all
/// of [−1, 1] (and the estimate counts that arm's rate as 0; the analysis shows none).
pub fn difference(a: Proportion, b: Proportion, confidence: f64) -> Interval {
    let diff = b.rate() - a.rate();
    if a.users == 0 || b.users == 0 {
        return Interval {
            estimate: diff,
            low: -1.0,
            high: 1.0,
        };
    }
    let z = z_critical(confidence);
    let ((la, ua), (lb, ub)) = (wilson(a, z), wilson(b, z));
    let (pa, pb) = (a.rate(), b.rate());
    Interval {
        estimate: diff,
        low: (diff - (pb - lb).hypot(ua - pa)).max(-1.0),
        high: (diff + (ub - pb).hypot(pa - la)).min(1.0),
    }
}

/// Relative lift `rate_b / rate_a − 1` with the MOVER-R Wilson interval of the ratio
/// (Donner & Zou 2012, "Closed-form confidence intervals for functions of the normal
/// mean and standard deviation"; Fagerland, Lydersen & Laake 2017, "Statistical analysis
/// of contingency tables", §4.7): the ratio's analogue of Newcombe's interval, so it
/// stays wide where the delta method collapsed to a point (no conversions in the
/// variant, everyone converting in both arms). `None` when the control has no devices or
/// no conversions (the ratio is undefined).
pub fn relative_lift(a: Proportion, b: Proportion, confidence: f64) -> Option<Interval> {
    let (pa, pb) = (a.rate(), b.rate());
    if a.users == 0 || b.users == 0 || pa == 0.0 {
        return None;
    }
    let z = z_critical(confidence);
    let ((la, ua), (lb, ub)) = (wilson(a, z), wilson(b, z));
    let product = pa * pb;
    // Each limit is a root of a quadratic; the lower one is written as k / (pa·pb + √D),
    // which stays exact when its leading coefficient ua·(2pa − ua) is zero or negative.
    let k = lb * (2.0 * pb - lb);
    let lower = if pb == 0.0 {
        0.0
    } else {
        k / (product
            + (product * product - ua * (2.0 * pa - ua) * k)
                .max(0.0)
                .sqrt())
    };
    let leading = la * (2.0 * pa - la);
    let upper = (product
        + (product * product - leading * ub * (2.0 * pb - ub))
            .max(0.0)
            .sqrt())
        / leading;
    Some(Interval {
        estimate: pb / pa - 1.0,
        low: lower.max(0.0) - 1.0,
        high: upper - 1.0,
    })
}

/// Sums of a per-device value (non-converting devices count as 0).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ValueSums {
    pub users: u64,
    pub sum: f64,
    pub sum_sq: f64,
}

impl ValueSums {
    pub fn mean(self) -> f64 {
        self.sum / self.users as f64
    }

    /// Sample variance (n − 1).
    pub fn variance(self) -> f64 {
        let n = self.users as f64;
        ((self.sum_sq - self.sum * self.sum / n) / (n - 1.0)).max(0.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Welch {
    pub t: f64,
    pub df: f64,
    pub p_value: f64,
    pub difference: Interval,
}

/// Welch's t-test and interval on the difference of means (scipy
/// `ttest_ind(b, a, equal_var=False)`). `None` with fewer than two users in an arm or
/// no variance at all.
pub fn welch(a: ValueSums, b: ValueSums, confidence: f64) -> Option<Welch> {
    if a.users < 2 || b.users < 2 {
        return None;
    }
    let (va, vb) = (a.variance() / a.users as f64, b.variance() / b.users as f64);
    let se2 = va + vb;
    if se2 <= 0.0 {
        return None;
    }
    let df = se2 * se2 / (va * va / (a.users as f64 - 1.0) + vb * vb / (b.users as f64 - 1.0));
    let diff = b.mean() - a.mean();
    let t = diff / se2.sqrt();
    let dist = StudentsT::new(0.0, 1.0, df).ok()?;
    let p_value = 2.0 * dist.sf(t.abs());
    let half = dist.inverse_cdf(1.0 - (1.0 - confidence) / 2.0) * se2.sqrt();
    Some(Welch {
        t,
        df,
        p_value,
        difference: Interval {
            estimate: diff,
            low: diff - half,
            high: diff + half,
        },
    })
}

/// Sample-ratio mismatch: Pearson's χ² of the assigned counts against the configured
/// weights (scipy `chisquare`). `None` with fewer than two arms or no devices.
pub fn sample_ratio_mismatch(observed: &[u64], weights: &[f64]) -> Option<(f64, f64)> {
    let total: u64 = observed.iter().sum();
    let weight_total: f64 = weights.iter().sum();
    if observed.len() < 2 || observed.len() != weights.len() || total == 0 || weight_total <= 0.0 {
        return None;
    }
    let mut chi2 = 0.0;
    for (&o, &w) in observed.iter().zip(weights) {
        let expected = total as f64 * w / weight_total;
        if expected > 0.0 {
            chi2 += (o as f64 - expected).powi(2) / expected;
        } else if o > 0 {
            // Devices in a zero-weight arm: a mismatch beyond any doubt.
            return Some((f64::INFINITY, 0.0));
        }
    }
    let arms = weights.iter().filter(|&&w| w > 0.0).count();
    let dist = ChiSquared::new((arms.max(2) - 1) as f64).ok()?;
    Some((chi2, dist.sf(chi2)))
}

/// Are two experiments' assignments independent? Pearson's χ² on the contingency table
/// (rows: one experiment's variants, columns: the other's), no continuity correction
/// (scipy `chi2_contingency(table, correction=False)`). `None` for a table with an empty
/// row or column, or smaller than 2×2.
pub fn independence(table: &[Vec<u64>]) -> Option<(f64, f64)> {
    let rows = table.len();
    let cols = table.first()?.len();
    if rows < 2 || cols < 2 || table.iter().any(|r| r.len() != cols) {
        return None;
    }
    let row_sums: Vec<f64> = table.iter().map(|r| r.iter().sum::<u64>() as f64).collect();
    let col_sums: Vec<f64> = (0..cols)
        .map(|c| table.iter().map(|r| r[c]).sum::<u64>() as f64)
        .collect();
    let total: f64 = row_sums.iter().sum();
    if row_sums.iter().chain(&col_sums).any(|&s| s == 0.0) {
        return None;
    }
    let mut chi2 = 0.0;
    for (r, row) in table.iter().enumerate() {
        for (c, &observed) in row.iter().enumerate() {
            let expected = row_sums[r] * col_sums[c] / total;
            chi2 += (observed as f64 - expected).powi(2) / expected;
        }
    }
    let dist = ChiSquared::new(((rows - 1) * (cols - 1)) as f64).ok()?;
    Some((chi2, dist.sf(chi2)))
}

/// Devices per arm (unrounded) to detect `baseline → baseline + mde` with the
/// fixed-horizon two-sided z-test at `alpha`, read once at the end, with the given `power`
/// (with k comparisons against the control, pass Bonferroni's alpha / k):
/// n = (z₁₋α/₂·√(2p̄(1−p̄)) + z₁₋β·√(p₁(1−p₁)+p₂(1−p₂)))² / (p₂−p₁)².
pub fn sample_size_per_arm(baseline: f64, mde: f64, alpha: f64, power: f64) -> f64 {
    let (p1, p2) = (baseline, baseline + mde);
    let pbar = (p1 + p2) / 2.0;
    let n = standard_normal();
    let za = n.inverse_cdf(1.0 - alpha / 2.0);
    let zb = n.inverse_cdf(power);
    let numerator =
        za * (2.0 * pbar * (1.0 - pbar)).sqrt() + zb * (p1 * (1.0 - p1) + p2 * (1.0 - p2)).sqrt();
    numerator * numerator / (mde * mde)
}

/// What `abproxy plan` sizes: detect `baseline → baseline + mde` (absolute) at two-sided
/// `alpha` with `power`, in each of `comparisons` comparisons with the control.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Design {
    pub baseline: f64,
    pub mde: f64,
    pub alpha: f64,
    pub power: f64,
    pub comparisons: u64,
}

impl Design {
    /// The fixed-horizon z-test's size (`sample_size_per_arm`) at Bonferroni's
    /// alpha / comparisons.
    pub fn fixed_horizon_per_arm(self) -> f64 {
        let per_comparison = self.alpha / self.comparisons.max(1) as f64;
        sample_size_per_arm(self.baseline, self.mde, per_comparison, self.power)
    }

    /// The always-valid test's size (`sequential_sample_size_per_arm`).
    pub fn sequential_per_arm(self, tuned_for_users: u64) -> f64 {
        sequential_sample_size_per_arm(
            self.baseline,
            self.mde,
            self.alpha,
            self.power,
            self.comparisons,
            tuned_for_users,
        )
    }
}

/// Holm's step-down adjustment of p-values (statsmodels `multipletests(method="holm")`),
/// in the input order.
pub fn holm(p_values: &[f64]) -> Vec<f64> {
    let m = p_values.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&i, &j| p_values[i].total_cmp(&p_values[j]));
    let mut adjusted = vec![0.0; m];
    let mut running = 0.0f64;
    for (rank, &i) in order.iter().enumerate() {
        running = running.max(((m - rank) as f64 * p_values[i]).min(1.0));
        adjusted[i] = running;
    }
    adjusted
}

/// P(Y > X) for X ~ Beta(ax, bx), Y ~ Beta(ay, by) with a whole-number `ay`: Evan Miller's
/// closed form, Σᵢ₌₀^{ay−1} B(ax+i, bx+by) / ((by+i)·B(1+i, by)·B(ax, bx)).
fn beta_exceeds(ax: f64, bx: f64, ay: f64, by: f64) -> f64 {
    let base = ln_beta(ax, bx);
    let terms = ay as u64;
    let mut total = 0.0;
    for i in 0..terms {
        let i = i as f64;
        total += (ln_beta(ax + i, bx + by) - (by + i).ln() - ln_beta(1.0 + i, by) - base).exp();
    }
    total.clamp(0.0, 1.0)
}

fn posterior(p: Proportion) -> (f64, f64) {
    (
        1.0 + p.conversions as f64,
        1.0 + (p.users - p.conversions) as f64,
    )
}

/// With Beta(1, 1) priors, the probability that the variant's rate beats the control's,
/// exactly (no simulation). The sum runs over the smaller arm's conversions.
pub fn chance_to_beat(a: Proportion, b: Proportion) -> f64 {
    let ((aa, ba), (ab, bb)) = (posterior(a), posterior(b));
    if ab <= aa {
        beta_exceeds(aa, ba, ab, bb)
    } else {
        1.0 - beta_exceeds(ab, bb, aa, ba)
    }
}

/// With Beta(1, 1) priors, the expected loss of choosing the variant:
/// E[max(rate_a − rate_b, 0)] = E\[pa\]·P(A⁺ > B) − E\[pb\]·P(A > B⁺), where A⁺ and B⁺ have
/// one more success (Stucchio's closed form).
pub fn expected_loss(a: Proportion, b: Proportion) -> f64 {
    let ((aa, ba), (ab, bb)) = (posterior(a), posterior(b));
    let p_gt = |ax: f64, bx: f64, ay: f64, by: f64| {
        // P(X > Y) = 1 − P(Y > X); sum over whichever alpha is smaller.
        if ay <= ax {
            1.0 - beta_exceeds(ax, bx, ay, by)
        } else {
            beta_exceeds(ay, by, ax, bx)
        }
    };
    let mean_a = aa / (aa + ba);
    let mean_b = ab / (ab + bb);
    (mean_a * p_gt(aa + 1.0, ba, ab, bb) - mean_b * p_gt(aa, ba, ab + 1.0, bb)).max(0.0)
}

/// The mixture-SPRT tuning: the mixing variance τ² is set so the always-valid interval
/// is narrowest when the two arms together hold `tuned_for_users` devices.
pub const DEFAULT_SEQUENTIAL_TUNING_USERS: u64 = 5_000;

/// An always-valid p-value and confidence sequence for `rate_b − rate_a` (mixture SPRT
/// with a normal mixture N(0, τ²) on the difference, normal approximation; Johari et al.,
/// "Always valid inference", 2017). Valid however often it is looked at: the chance
/// that it ever shows p < α under no difference is at most α.
pub fn sequential(
    a: Proportion,
    b: Proportion,
    confidence: f64,
    tuned_for_users: u64,
) -> Option<(f64, Interval)> {
    if a.users == 0 || b.users == 0 {
        return None;
    }
    let v = a.variance_of_rate() + b.variance_of_rate();
    if v <= 0.0 {
        return None;
    }
    let alpha = 1.0 - confidence;
    // The variance the estimate would have with `tuned_for_users` devices in the same split.
    let users = (a.users + b.users) as f64;
    let v_tuned = v * users / tuned_for_users.max(1) as f64;
    let tau2 = optimal_mixture_ratio(alpha) * v_tuned;
    let theta = b.rate() - a.rate();
    let log_lambda = 0.5 * (v / (v + tau2)).ln() + tau2 * theta * theta / (2.0 * v * (v + tau2));
    let p_value = (-log_lambda).exp().min(1.0);
    let half = mixture_threshold(v, tau2, alpha);
    // A difference of rates lies in [−1, 1], however wide the small-sample interval.
    Some((
        p_value,
        Interval {
            estimate: theta,
            low: (theta - half).max(-1.0),
            high: (theta + half).min(1.0),
        },
    ))
}

/// The |θ̂| beyond which the mixture SPRT's p-value is below `level` (Λ > 1/level), which
/// is also the half-width of its confidence sequence at `level`:
/// √(V(V+τ²)/τ² · (ln((V+τ²)/V) + 2·ln(1/level))).
fn mixture_threshold(v: f64, tau2: f64, level: f64) -> f64 {
    (v * (v + tau2) / tau2 * (((v + tau2) / v).ln() + 2.0 * (1.0 / level).ln())).sqrt()
}

/// The chance that the always-valid test, read once at `per_arm` devices in each of the
/// two arms compared, shows p < `alpha / comparisons` (Bonferroni, the first step of the
/// Holm adjustment the verdict applies) when the rates really are `baseline` and
/// `baseline + mde`. The mixture is tuned as `sequential` tunes it at `alpha` (= 1 −
/// confidence). With the true variance V = (p₁q₁ + p₂q₂)/n and θ̂ ~ N(mde, V):
/// Φ((mde − c)/√V) + Φ((−mde − c)/√V), c the test's threshold.
pub fn sequential_power(
    baseline: f64,
    mde: f64,
    alpha: f64,
    comparisons: u64,
    tuned_for_users: u64,
    per_arm: f64,
) -> f64 {
    let (p1, p2) = (baseline, baseline + mde);
    let v = (p1 * (1.0 - p1) + p2 * (1.0 - p2)) / per_arm;
    let tau2 = optimal_mixture_ratio(alpha) * v * 2.0 * per_arm / tuned_for_users.max(1) as f64;
    let c = mixture_threshold(v, tau2, alpha / comparisons.max(1) as f64);
    let (normal, sd) = (standard_normal(), v.sqrt());
    normal.cdf((mde - c) / sd) + normal.cdf((-mde - c) / sd)
}

/// Devices per arm (unrounded) at which `sequential_power` reaches `power`: the size at
/// which the verdict, read then, says "significant" with that chance. Reading it earlier
/// as well only adds chances to stop sooner (the test is valid at every look). Solved by
/// bisection; the power rises with n over the range that matters (power above ½).
pub fn sequential_sample_size_per_arm(
    baseline: f64,
    mde: f64,
    alpha: f64,
    power: f64,
    comparisons: u64,
    tuned_for_users: u64,
) -> f64 {
    let reaches =
        |n: f64| sequential_power(baseline, mde, alpha, comparisons, tuned_for_users, n) >= power;
    let (mut low, mut high) = (1.0f64, 2.0f64);
    if reaches(low) {
        return low;
    }
    while !reaches(high) {
        if high > 1e15 {
            return f64::INFINITY; // no realistic experiment gets there
        }
        (low, high) = (high, 2.0 * high);
    }
    while high - low > 1e-9 * high {
        let mid = 0.5 * (low + high);
        if reaches(mid) {
            high = mid;
        } else {
            low = mid;
        }
    }
    high
}

/// r = τ²/V minimising the interval's width at the tuning point: the root of
/// r = ln(1 + r) + 2·ln(1/α).
fn optimal_mixture_ratio(alpha: f64) -> f64 {
    let c = 2.0 * (1.0 / alpha).ln();
    let mut r = c + 1.0;
    for _ in 0..50 {
        r = (1.0 + r).ln() + c;
    }
    r
}

#[cfg(test)]
mod bandit_tests;
#[cfg(test)]
mod interval_tests;
#[cfg(test)]
mod strata_tests;
#[cfg(test)]
mod tests;
