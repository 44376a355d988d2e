//! The bandit's allocation rule: from each variant's devices `n_v` and conversions `s_v`
//! in the run to the shares of new devices, exactly as issue 13 states it, so replicas
//! and tests reproduce it. Pure: counts in, numbers out, no randomness.
//!
//! 1. [`allocation`] gives `p` (non-negative, summing to 1) for one [`Algorithm`]:
//!    - `Thompson`: `p_v` = P(variant v has the highest rate) under independent
//!      Beta(1 + s_v, 1 + n_v − s_v) posteriors, by numerical integration (below);
//!    - `Ucb1`: all of `p` on the largest `s_v/n_v + √(2 ln N / n_v)`, N = Σ n_v (Auer,
//!      Cesa-Bianchi & Fischer 2002, "Finite-time analysis of the multiarmed bandit
//!      problem"); a variant without devices goes first (its index is infinite);
//!    - `EpsilonGreedy`: `1 − ε` on the highest `s_v/n_v`, plus `ε/K` on each of the K.
//!
//!    Variants come in name (byte) order; a tie goes to the first of them. A variant
//!    without devices has the rate 0 where a rate is compared. Conversions above the
//!    devices (counts read from replicas at slightly different moments) are capped at
//!    the devices.
//! 2. [`shares`] puts the floor under it: `share_v = f + (1 − K·f)·p_v`, f = `min_share`.
//! 3. [`weights`] turns the shares into integer weights for the assignment hash: parts per
//!    billion, summing to exactly [`WEIGHT_TOTAL`], each within a few 10⁻⁹ of its share.
//!
//! # Thompson's probabilities, by quadrature
//!
//! p_v = ∫ f_v(x) · Π_{u≠v} F_u(x) dx, with f_u, F_u the density and distribution function
//! of arm u's posterior. Random draws would make the shares differ from run to run and
//! replica to replica; this is a fixed computation, so the same counts give the same
//! shares (bit for bit with the same binary; across platforms `exp`/`ln_1p` of the system
//! library may differ in the last bit, moving `p` by ~10⁻¹⁵).
//!
//! - Each posterior lives in its **window**, mean ± k standard deviations clipped to
//!   [0, 1]; outside it the density is taken as 0. k goes from 23 for the most skewed
//!   posteriors (no conversions, or all: the exponential-like Beta(1, b)) down to 7.5 for
//!   near-normal ones (both parameters ≥ 1000), so that the mass left out is below 10⁻¹⁰
//!   (`WINDOW_SDS`). This is what makes huge counts work: at n = 10⁹ a window is ~10⁻⁴
//!   wide, and arms whose windows do not overlap are exactly 0 or 1 for each other.
//! - The windows' edges cut [0, 1] into segments; a segment inside no window is skipped,
//!   one inside some is cut into equal **panels** at most 4 standard deviations wide of the
//!   narrowest posterior whose window holds it, so a narrow arm inside a wide one is
//!   resolved. Each panel gets 16-point Gauss–Legendre.
//! - Densities are computed in log space relative to the posterior's mean,
//!   (α−1)·ln(x/m) + (β−1)·ln((1−x)/(1−m)), with `ln_1p` of the offset, so nothing
//!   overflows or cancels at n = 10⁹; no Beta function is evaluated: each density is
//!   normalised by its own quadrature sum, so its distribution function reaches exactly 1
//!   at its window's end.
//! - F_u at the nodes is the running sum over earlier panels plus the integral from the
//!   panel's start to the node of the panel's degree-15 interpolant of f_u (a fixed
//!   16 × 16 integration matrix), i.e. the same quadrature: no incomplete Beta function,
//!   whose continued fractions converge slowly for huge parameters.
//! - Only panels where the maximum of the posteriors has mass (Π_u F_u rises by 10⁻¹⁵ or
//!   more across it) are summed into the p_v; the others add at most 10⁻¹⁵ each.
//! - The sum of the p_v is 1 up to the quadrature error; it is normalised to 1.
//!
//! Accuracy: within 4·10⁻¹¹ of scipy's adaptive quadrature (`quad` on the same integral
//! with scipy's incomplete Beta function) on the 24 reference sets in `bandit_tests`, from
//! 2 to 10 arms and 0 to 10⁹ devices, zero and all conversions; the contract is 10⁻⁶.
//! Cost (`benches/bandit.rs`, release, rough): ~6 µs for 2 arms, 20–70 µs for 10, and
//! 0.06–0.6 ms for 32 (most for many overlapping posteriors): nothing for an update that
//! runs once per boundary.

use std::sync::OnceLock;

/// A variant's devices in the run (`users`) and how many of them converted on the
/// bandit's goal (`conversions`).
pub type ArmCounts = super::Proportion;

/// How the allocation is chosen (config `bandit.algorithm`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Algorithm {
    Thompson,
    Ucb1,
    /// `epsilon` in [0, 1] (the config refuses anything else; it is clamped here).
    EpsilonGreedy {
        epsilon: f64,
    },
}

/// The allocation `p` of `algorithm` for arms in variant-name order: one number per arm,
/// non-negative, summing to 1. No arms, no numbers.
pub fn allocation(algorithm: Algorithm, arms: &[ArmCounts]) -> Vec<f64> {
    match algorithm {
        Algorithm::Thompson => thompson(arms),
        Algorithm::Ucb1 => ucb1(arms),
        Algorithm::EpsilonGreedy { epsilon } => epsilon_greedy(arms, epsilon),
    }
}

/// (successes, failures) with conversions capped at the devices.
fn successes_failures(arm: ArmCounts) -> (u64, u64) {
    let successes = arm.conversions.min(arm.users);
    (successes, arm.users - successes)
}

fn all_on(arms: usize, chosen: usize) -> Vec<f64> {
    let mut p = vec![0.0; arms];
    p[chosen] = 1.0;
    p
}

/// UCB1: all on the largest upper confidence bound; an arm without devices first.
pub fn ucb1(arms: &[ArmCounts]) -> Vec<f64> {
    if arms.is_empty() {
        return Vec::new();
    }
    if let Some(untried) = arms.iter().position(|arm| arm.users == 0) {
        return all_on(arms.len(), untried);
    }
    let total: u64 = arms.iter().map(|arm| arm.users).sum();
    let log_total = (total as f64).ln();
    let index = |arm: &ArmCounts| {
        let (successes, _) = successes_failures(*arm);
        let n = arm.users as f64;
        successes as f64 / n + (2.0 * log_total / n).sqrt()
    };
    let mut best = 0;
    for v in 1..arms.len() {
        // Strictly greater: a tie keeps the earlier arm.
        if index(&arms[v]) > index(&arms[best]) {
            best = v;
        }
    }
    all_on(arms.len(), best)
}

/// ε-greedy: `1 − ε` on the highest observed rate, `ε/K` on every arm.
pub fn epsilon_greedy(arms: &[ArmCounts], epsilon: f64) -> Vec<f64> {
    if arms.is_empty() {
        return Vec::new();
    }
    let epsilon = epsilon.clamp(0.0, 1.0);
    // Rates compared exactly, as fractions (s_a·n_b vs s_b·n_a): two different rates at
    // n = 10⁹ can be closer than one f64 step apart. No devices: the rate 0/1.
    let fraction = |arm: &ArmCounts| match successes_failures(*arm) {
        (_, _) if arm.users == 0 => (0u128, 1u128),
        (successes, _) => (successes as u128, arm.users as u128),
    };
    let mut best = 0;
    for v in 1..arms.len() {
        let ((s, n), (best_s, best_n)) = (fraction(&arms[v]), fraction(&arms[best]));
        if s * best_n > best_s * n {
            best = v;
        }
    }
    let explore = epsilon / arms.len() as f64;
    let mut p = vec![explore; arms.len()];
    p[best] += 1.0 - epsilon;
    p
}

/// The floor: `share_v = f + (1 − K·f)·p_v`, f = `min_share`. The config refuses K·f ≥ 1;
/// here f is clamped to [0, 1/K] (at 1/K every share is 1/K).
pub fn shares(p: &[f64], min_share: f64) -> Vec<f64> {
    if p.is_empty() {
        return Vec::new();
    }
    let k = p.len() as f64;
    let floor = min_share.clamp(0.0, 1.0 / k);
    p.iter().map(|&pv| floor + (1.0 - k * floor) * pv).collect()
}

/// The sum of [`weights`]: they are shares in parts per billion (a u32 holds 10⁹, and the
/// assignment's modulus is a u64).
pub const WEIGHT_TOTAL: u32 = 1_000_000_000;

/// Integer weights for the assignment hash: `shares` (normalised to their sum) in parts
/// per billion by the largest-remainder method, so they sum to exactly [`WEIGHT_TOTAL`];
/// a positive share never gets 0 (it gets at least 1, taken from the arm that rounding
/// favoured most). Each weight / 10⁹ is within (1 + b)·10⁻⁹ of its share, b the number
/// of positive shares under 10⁻⁹ (raised to one unit, paid for by the others): under a
/// unit of rounding otherwise, and under the rule's 10⁻⁶ with any number of variants
/// below 999. All shares 0 (or none): all weights 0.
pub fn weights(shares: &[f64]) -> Vec<u32> {
    let total: f64 = shares.iter().filter(|s| **s > 0.0).sum();
    if total <= 0.0 || !total.is_finite() {
        return vec![0; shares.len()];
    }
    let scale = WEIGHT_TOTAL as f64 / total;
    let ideal: Vec<f64> = shares.iter().map(|&s| s.max(0.0) * scale).collect();
    let mut weights: Vec<i64> = ideal
        .iter()
        .map(|&x| {
            if x > 0.0 {
                (x.floor() as i64).max(1)
            } else {
                0
            }
        })
        .collect();
    let mut missing = WEIGHT_TOTAL as i64 - weights.iter().sum::<i64>();
    // Hand out the missing units by the largest remainder (ties: the first arm); take any
    // surplus (from positive shares raised to 1) from the largest excess among weights
    // that stay positive.
    let mut order: Vec<usize> = (0..shares.len()).collect();
    if missing > 0 {
        order.sort_by(|&i, &j| {
            let (ri, rj) = (ideal[i] - weights[i] as f64, ideal[j] - weights[j] as f64);
            rj.total_cmp(&ri).then(i.cmp(&j))
        });
        for &v in order.iter().cycle().take(missing as usize) {
            weights[v] += 1;
        }
    } else {
        while missing < 0 {
            order.sort_by(|&i, &j| {
                let (ei, ej) = (weights[i] as f64 - ideal[i], weights[j] as f64 - ideal[j]);
                (weights[j] > 1)
                    .cmp(&(weights[i] > 1))
                    .then(ej.total_cmp(&ei))
                    .then(i.cmp(&j))
            });
            weights[order[0]] -= 1;
            missing += 1;
        }
    }
    weights.into_iter().map(|w| w as u32).collect()
}

/// Posterior windows span the mean ± k standard deviations, k by the smaller Beta
/// parameter (the shape): the mass outside is below 10⁻¹⁰. The most skewed Beta of a
/// given smaller parameter α is the Gamma(α) limit (β → ∞), whose tails set k; checked
/// with scipy for α from 1 to 10⁸ and β/α from 1 to 10⁹ (largest mass outside 3.8·10⁻¹¹).
const WINDOW_SDS: [(f64, f64); 11] = [
    (1000.0, 7.5),
    (300.0, 8.0),
    (100.0, 8.5),
    (50.0, 9.0),
    (20.0, 10.5),
    (10.0, 11.5),
    (6.0, 13.0),
    (4.0, 14.5),
    (3.0, 16.0),
    (2.0, 18.0),
    (1.0, 23.0),
];

fn window_sds(smaller_parameter: f64) -> f64 {
    WINDOW_SDS
        .iter()
        .find(|(shape, _)| smaller_parameter >= *shape)
        .map_or(23.0, |&(_, k)| k)
}
/// Panels are at most this many standard deviations of the narrowest posterior there.
const PANEL_SDS: f64 = 4.0;
/// Gauss–Legendre points per panel.
const NODES: usize = 16;

/// Gauss–Legendre nodes and weights on [−1, 1], and the matrix M with
/// M[j][k] = ∫_{−1}^{t_j} ℓ_k(t) dt (ℓ_k the Lagrange basis on the nodes): the integral
/// from the panel's start to node j of the interpolant through the node values.
struct Quadrature {
    nodes: [f64; NODES],
    weights: [f64; NODES],
    partial: [[f64; NODES]; NODES],
}

fn quadrature() -> &'static Quadrature {
    static RULE: OnceLock<Quadrature> = OnceLock::new();
    RULE.get_or_init(|| {
        let (nodes, weights) = gauss_legendre();
        let lagrange = |k: usize, t: f64| {
            (0..NODES)
                .filter(|&i| i != k)
                .map(|i| (t - nodes[i]) / (nodes[k] - nodes[i]))
                .product::<f64>()
        };
        let mut partial = [[0.0; NODES]; NODES];
        for (j, row) in partial.iter_mut().enumerate() {
            // ℓ_k has degree 15: the same 16-point rule on [−1, t_j] integrates it exactly.
            let half = (nodes[j] + 1.0) / 2.0;
            for (k, entry) in row.iter_mut().enumerate() {
                *entry = half
                    * (0..NODES)
                        .map(|m| weights[m] * lagrange(k, -1.0 + half * (nodes[m] + 1.0)))
                        .sum::<f64>();
            }
        }
        Quadrature {
            nodes,
            weights,
            partial,
        }
    })
}

/// The Gauss–Legendre rule's nodes (ascending) and weights: Newton's method on the
/// Legendre polynomial from Chebyshev-like starting points (Numerical Recipes' `gauleg`).
fn gauss_legendre() -> ([f64; NODES], [f64; NODES]) {
    let (mut nodes, mut weights) = ([0.0; NODES], [0.0; NODES]);
    let n = NODES as f64;
    for i in 0..NODES.div_ceil(2) {
        let mut z = (std::f64::consts::PI * (i as f64 + 0.75) / (n + 0.5)).cos();
        let mut derivative = 0.0;
        for _ in 0..100 {
            let (mut p1, mut p2) = (1.0, 0.0);
            for j in 0..NODES {
                let p3 = p2;
                p2 = p1;
                p1 = ((2.0 * j as f64 + 1.0) * z * p2 - j as f64 * p3) / (j as f64 + 1.0);
            }
            derivative = n * (z * p1 - p2) / (z * z - 1.0);
            let step = p1 / derivative;
            z -= step;
            if step.abs() < 1e-16 {
                break;
            }
        }
        let weight = 2.0 / ((1.0 - z * z) * derivative * derivative);
        nodes[i] = -z;
        nodes[NODES - 1 - i] = z;
        weights[i] = weight;
        weights[NODES - 1 - i] = weight;
    }
    (nodes, weights)
}

/// One arm's Beta(1 + s, 1 + f) posterior.
struct Posterior {
    successes: f64,
    failures: f64,
    mean: f64,
    sd: f64,
    low: f64,
    high: f64,
}

impl Posterior {
    fn new(arm: ArmCounts) -> Posterior {
        let (s, f) = successes_failures(arm);
        let (alpha, beta) = (1.0 + s as f64, 1.0 + f as f64);
        let total = alpha + beta;
        let mean = alpha / total;
        let sd = (mean * (beta / total) / (total + 1.0)).sqrt();
        let half_window = window_sds(alpha.min(beta)) * sd;
        Posterior {
            successes: s as f64,
            failures: f as f64,
            mean,
            sd,
            low: (mean - half_window).max(0.0),
            high: (mean + half_window).min(1.0),
        }
    }

    /// The density at x ∈ (0, 1) up to a constant factor: exp of
    /// s·ln(x/m) + f·ln((1−x)/(1−m)), which is O(1) near the mean at any n.
    fn unnormalised_density(&self, x: f64) -> f64 {
        let offset = x - self.mean;
        let mut log = 0.0;
        if self.successes > 0.0 {
            log += self.successes * (offset / self.mean).ln_1p();
        }
        if self.failures > 0.0 {
            log += self.failures * (-offset / (1.0 - self.mean)).ln_1p();
        }
        log.exp()
    }
}

/// A stretch of [0, 1] integrated with one rule, and the arms whose windows hold it.
struct Panel {
    start: f64,
    half_width: f64,
    /// `active[first..last]` (in `panels`' list) are the arms whose windows hold it.
    first: usize,
    last: usize,
}

/// The panels, in ascending order, and the list their `first..last` index into.
fn panels(posteriors: &[Posterior]) -> (Vec<Panel>, Vec<usize>) {
    let mut edges: Vec<f64> = posteriors.iter().flat_map(|p| [p.low, p.high]).collect();
    edges.sort_by(f64::total_cmp);
    edges.dedup();
    let (mut out, mut active) = (Vec::new(), Vec::new());
    for pair in edges.windows(2) {
        let (start, end) = (pair[0], pair[1]);
        let first = active.len();
        let mut narrowest = f64::INFINITY;
        for (u, posterior) in posteriors.iter().enumerate() {
            if posterior.low <= start && posterior.high >= end {
                active.push(u);
                narrowest = narrowest.min(posterior.sd);
            }
        }
        let last = active.len();
        if last == first || end <= start {
            continue;
        }
        let count = ((end - start) / (PANEL_SDS * narrowest)).ceil().max(1.0) as usize;
        let width = (end - start) / count as f64;
        for i in 0..count {
            out.push(Panel {
                start: start + i as f64 * width,
                half_width: width / 2.0,
                first,
                last,
            });
        }
    }
    (out, active)
}

/// A panel where the maximum of the posteriors has less mass than this (the rise of
/// Π_u F_u across it) adds nothing to any p_v worth computing: at most this per panel.
const NEGLIGIBLE_MASS: f64 = 1e-15;

/// Σ a_k·b_k over the panel's nodes, four at a time (the inner loop of every Thompson
/// update; in debug builds, where the simulations run, a loop step costs more than the
/// arithmetic). The order of the sums is fixed, so the result is too.
fn dot(a: &[f64; NODES], b: &[f64; NODES]) -> f64 {
    let mut sums = [0.0; 4];
    let mut k = 0;
    while k < NODES {
        sums[0] += a[k] * b[k];
        sums[1] += a[k + 1] * b[k + 1];
        sums[2] += a[k + 2] * b[k + 2];
        sums[3] += a[k + 3] * b[k + 3];
        k += 4;
    }
    (sums[0] + sums[1]) + (sums[2] + sums[3])
}

/// Thompson sampling's allocation: P(arm v has the highest rate), by quadrature (see the
/// module documentation).
pub fn thompson(arms: &[ArmCounts]) -> Vec<f64> {
    match arms.len() {
        0 => return Vec::new(),
        1 => return vec![1.0],
        _ => {}
    }
    let rule = quadrature();
    let posteriors: Vec<Posterior> = arms.iter().map(|&arm| Posterior::new(arm)).collect();
    let (panels, active) = panels(&posteriors);

    // Pass 1, per panel and active arm (a "slot"): the unnormalised density at the nodes
    // (kept for pass 2) and the arm's running total at the panel's start and end; the
    // final totals normalise the densities.
    let mut densities: Vec<f64> = Vec::new();
    let (mut at_start, mut at_end) = (Vec::new(), Vec::new());
    let mut mass = vec![0.0; arms.len()];
    for panel in &panels {
        let middle = panel.start + panel.half_width;
        for &u in &active[panel.first..panel.last] {
            at_start.push(mass[u]);
            let mut sum = 0.0;
            for j in 0..NODES {
                let x = middle + panel.half_width * rule.nodes[j];
                let density = posteriors[u].unnormalised_density(x);
                densities.push(density);
                sum += rule.weights[j] * density;
            }
            mass[u] += panel.half_width * sum;
            at_end.push(mass[u]);
        }
    }

    // Pass 2: where the maximum has mass, F_u at the nodes (the running total plus the
    // interpolant's integral from the panel's start), and f_v · Π_{u≠v} F_u into p_v.
    // Arms whose windows end below the panel have F = 1 and drop out of the product.
    let highest_low = posteriors.iter().map(|q| q.low).fold(0.0, f64::max);
    let mut p = vec![0.0; arms.len()];
    let (mut density_at, mut cdf_at, mut prefix) = (Vec::new(), Vec::new(), Vec::new());
    let mut next_slot = 0;
    for panel in &panels {
        let here = &active[panel.first..panel.last];
        let first_slot = next_slot;
        next_slot += here.len();
        if highest_low >= panel.start + 2.0 * panel.half_width {
            continue; // some window lies wholly above: Π_u F_u = 0 all through the panel
        }
        let (mut rise_from, mut rise_to) = (1.0, 1.0);
        for (a, &u) in here.iter().enumerate() {
            rise_from *= at_start[first_slot + a] / mass[u];
            rise_to *= at_end[first_slot + a] / mass[u];
        }
        if rise_to - rise_from < NEGLIGIBLE_MASS {
            continue;
        }
        density_at.clear();
        density_at.resize(here.len() * NODES, 0.0);
        cdf_at.clear();
        cdf_at.resize(here.len() * NODES, 0.0);
        for (a, &u) in here.iter().enumerate() {
            let slot = first_slot + a;
            let values: &[f64; NODES] = densities[slot * NODES..(slot + 1) * NODES]
                .try_into()
                .expect("a slot holds one value per node");
            for j in 0..NODES {
                density_at[a * NODES + j] = values[j] / mass[u];
                let cumulative = at_start[slot] + panel.half_width * dot(&rule.partial[j], values);
                cdf_at[a * NODES + j] = (cumulative / mass[u]).clamp(0.0, 1.0);
            }
        }
        // Π_{u≠v} F_u from prefix and suffix products (no division by a zero F_v).
        for j in 0..NODES {
            prefix.clear();
            prefix.push(1.0);
            for a in 0..here.len() {
                let last = prefix[a];
                prefix.push(last * cdf_at[a * NODES + j]);
            }
            let weight = panel.half_width * rule.weights[j];
            let mut suffix = 1.0;
            for a in (0..here.len()).rev() {
                p[here[a]] += weight * density_at[a * NODES + j] * prefix[a] * suffix;
                suffix *= cdf_at[a * NODES + j];
            }
        }
    }
    let total: f64 = p.iter().sum();
    if total > 0.0 {
        for pv in &mut p {
            *pv /= total;
        }
    }
    p
}
