#!/usr/bin/env python3
"""Reference values for src/stats, from scipy/statsmodels (an independent implementation).

    python3 tests/golden/make_stats_references.py

prints the Rust constants pasted into src/stats/tests.rs (scipy 1.17.1, statsmodels 0.15.0).
"""
import numpy as np
np.set_printoptions(legacy="1.25")  # plain float literals
from scipy import stats, integrate
from scipy.optimize import brentq
from statsmodels.stats.proportion import (
    confint_proportions_2indep, proportion_confint, proportions_ztest)

# (conversions_a, users_a, conversions_b, users_b): A is the control.
CASES = [
    ("basic", 100, 1000, 130, 1000),
    ("zero_control", 0, 500, 7, 500),
    ("all_converted", 200, 200, 190, 200),
    ("tiny", 1, 12, 3, 10),
    ("huge", 51_234, 1_000_000, 51_900, 1_000_000),
    ("unequal", 45, 300, 400, 2700),
]

def wilson(x, n, conf=0.95):
    return proportion_confint(x, n, alpha=1 - conf, method="wilson")

def newcombe(ca, na, cb, nb, conf=0.95):
    """Newcombe's hybrid score interval of rate_b - rate_a: statsmodels' default method
    ('newcomb'); its count1 is b, so the difference is b - a."""
    lo, hi = confint_proportions_2indep(cb, nb, ca, na, compare="diff", alpha=1 - conf)
    return cb / nb - ca / na, lo, hi

def lift(ca, na, cb, nb, conf=0.95):
    """MOVER-R Wilson interval of rate_b / rate_a (Donner & Zou 2012; Fagerland, Lydersen
    & Laake 2017, section 4.7), minus 1. Solved here numerically from its defining
    equations (brentq), not from the closed form the Rust code uses."""
    pa, pb = ca / na, cb / nb
    if pa == 0:
        return None
    la, ua = wilson(ca, na, conf)
    lb, ub = wilson(cb, nb, conf)
    ratio = pb / pa
    lower_eq = lambda t: (pb - t * pa) - np.sqrt((pb - lb) ** 2 + t * t * (ua - pa) ** 2)
    upper_eq = lambda t: (t * pa - pb) - np.sqrt((ub - pb) ** 2 + t * t * (pa - la) ** 2)
    low = 0.0 if lower_eq(0.0) <= 0 else brentq(lower_eq, 0.0, ratio, xtol=1e-15)
    top = max(2 * ratio, 1.0)
    while upper_eq(top) < 0:
        top *= 2
    high = brentq(upper_eq, ratio, top, xtol=1e-15)
    return ratio - 1, low - 1, high - 1

def prob_b_beats_a(ca, na, cb, nb):
    a = stats.beta(1 + ca, 1 + na - ca)
    b = stats.beta(1 + cb, 1 + nb - cb)
    f = lambda x: b.pdf(x) * a.cdf(x)
    lo = min(a.ppf(1e-12), b.ppf(1e-12)); hi = max(a.ppf(1 - 1e-12), b.ppf(1 - 1e-12))
    return integrate.quad(f, lo, hi, limit=500, epsabs=1e-13, epsrel=1e-11)[0]

def expected_loss_choosing_b(ca, na, cb, nb):
    # E[max(pA - pB, 0)]
    a = stats.beta(1 + ca, 1 + na - ca)
    b = stats.beta(1 + cb, 1 + nb - cb)
    lo = min(a.ppf(1e-12), b.ppf(1e-12)); hi = max(a.ppf(1 - 1e-12), b.ppf(1 - 1e-12))
    inner = lambda y: integrate.quad(lambda x: (x - y) * a.pdf(x), y, hi, limit=200)[0]
    return integrate.quad(lambda y: b.pdf(y) * inner(y), lo, hi, limit=200, epsabs=1e-14)[0]

print("// proportions: (name, ca, na, cb, nb, z, p, diff, ci_low, ci_high, lift, lift_low, lift_high, p_beat, loss)")
for name, ca, na, cb, nb in CASES:
    if ca + cb == 0 or ca + cb == na + nb:
        z, p = float("nan"), float("nan")
    else:
        z, p = proportions_ztest([cb, ca], [nb, na])
    d, lo, hi = newcombe(ca, na, cb, nb)
    l = lift(ca, na, cb, nb) or (float("nan"),) * 3
    beat = prob_b_beats_a(ca, na, cb, nb) if na + nb < 100_000 else float("nan")
    loss = expected_loss_choosing_b(ca, na, cb, nb) if na + nb < 10_000 else float("nan")
    print(f'("{name}", {ca}, {na}, {cb}, {nb}, {z!r}, {p!r}, {d!r}, {lo!r}, {hi!r}, {l[0]!r}, {l[1]!r}, {l[2]!r}, {beat!r}, {loss!r}),')

# Welch t-test on per-device values given sums (non-converters count as 0).
print("// welch: (n_a, sum_a, sumsq_a, n_b, sum_b, sumsq_b, t, df, p, diff, ci_low, ci_high)")
rng = np.random.default_rng(7)
for na, nb, pa, pb in [(400, 420, 0.1, 0.13), (50, 60, 0.3, 0.2)]:
    xa = np.where(rng.random(na) < pa, rng.gamma(2.0, 20.0, na), 0.0)
    xb = np.where(rng.random(nb) < pb, rng.gamma(2.0, 22.0, nb), 0.0)
    t, p = stats.ttest_ind(xb, xa, equal_var=False)
    va, vb = xa.var(ddof=1) / na, xb.var(ddof=1) / nb
    df = (va + vb) ** 2 / (va**2 / (na - 1) + vb**2 / (nb - 1))
    diff = xb.mean() - xa.mean()
    q = stats.t.ppf(0.975, df)
    print(f"({na}, {xa.sum()!r}, {(xa**2).sum()!r}, {nb}, {xb.sum()!r}, {(xb**2).sum()!r}, {t!r}, {df!r}, {p!r}, {diff!r}, {diff - q*np.sqrt(va+vb)!r}, {diff + q*np.sqrt(va+vb)!r}),")

# Sample-ratio mismatch: Pearson chi-square of observed counts against weights.
print("// srm: (observed, weights, chi2, p)")
for obs, w in [([5000, 5000], [1, 1]), ([5100, 4900], [1, 1]), ([2400, 7600], [1, 3]), ([1000, 1100, 900], [1, 1, 1]), ([10, 30], [1, 3]), ([4850, 5150], [1, 1])]:
    exp = np.array(w) / sum(w) * sum(obs)
    chi2, p = stats.chisquare(obs, exp)
    print(f"(&{obs}, &{w}, {chi2!r}, {p!r}),")

# Sample size per arm for two proportions (the formula).
print("// sample size: (baseline, mde, alpha, power, n_per_arm_unrounded)")
for p1, mde, alpha, power in [(0.10, 0.02, 0.05, 0.8), (0.05, 0.01, 0.05, 0.9), (0.30, 0.05, 0.01, 0.8), (0.5, 0.001, 0.05, 0.8)]:
    p2 = p1 + mde
    pbar = (p1 + p2) / 2
    za, zb = stats.norm.ppf(1 - alpha / 2), stats.norm.ppf(power)
    n = (za * np.sqrt(2 * pbar * (1 - pbar)) + zb * np.sqrt(p1 * (1 - p1) + p2 * (1 - p2))) ** 2 / (p2 - p1) ** 2
    print(f"({p1}, {mde}, {alpha}, {power}, {n!r}),")

# Holm step-down adjustment.
from statsmodels.stats.multitest import multipletests
print("// holm: (raw, adjusted)")
for raw in [[0.01, 0.04, 0.03], [0.5, 0.001], [0.02, 0.02, 0.02, 0.2]]:
    print(f"(&{raw}, &{list(multipletests(raw, method='holm')[1])}),")

# Mixture SPRT (Johari et al. 2017), normal mixture N(0, tau2) on the difference, with
# tau2 = r*(alpha) * V(at `tuned` devices in the same split), r* the root of
# r = ln(1 + r) + 2 ln(1/alpha).
print("// sequential: (ca, na, cb, nb, confidence, tuned_for, p_value, ci_low, ci_high)")
for ca, na, cb, nb, conf, tuned in [(100, 1000, 130, 1000, 0.95, 5000), (520, 5000, 600, 5000, 0.95, 5000), (30, 400, 33, 380, 0.9, 2000)]:
    alpha = 1 - conf
    pa, pb = ca / na, cb / nb
    v = pa * (1 - pa) / na + pb * (1 - pb) / nb
    r = brentq(lambda r: r - np.log1p(r) - 2 * np.log(1 / alpha), 1e-9, 1e6)
    tau2 = r * v * (na + nb) / tuned
    theta = pb - pa
    lam = np.sqrt(v / (v + tau2)) * np.exp(tau2 * theta**2 / (2 * v * (v + tau2)))
    half = np.sqrt(v * (v + tau2) / tau2 * (np.log((v + tau2) / v) + 2 * np.log(1 / alpha)))
    print(f"({ca}, {na}, {cb}, {nb}, {conf}, {tuned}, {min(1.0, 1 / lam)!r}, {theta - half!r}, {theta + half!r}),")

# Independence of two experiments' assignments: Pearson chi-square on the contingency
# table, no continuity correction.
print("// independence: (table, chi2, p)")
for table in [[[250, 240], [260, 250]], [[300, 100], [100, 300]], [[10, 20, 30], [20, 20, 20]]]:
    chi2, p, dof, _ = stats.chi2_contingency(table, correction=False)
    print(f"(&{table}, {chi2!r}, {p!r}),")

# Intervals at every sample size, down to one device and no conversions (src/stats/interval_tests.rs).
EDGE_CASES = [
    (0, 2, 1, 1), (1, 1, 0, 2), (0, 1, 0, 1), (1, 1, 1, 1), (0, 1, 1, 1),
    (0, 100, 0, 100), (100, 100, 100, 100), (0, 50, 50, 50), (3, 7, 0, 20),
    (0, 500, 7, 500), (1, 12, 3, 10), (5000, 10000, 4900, 10000),
    (51234, 1000000, 51900, 1000000), (45, 300, 400, 2700), (2, 3, 1_000, 1_000_000),
    (0, 1_000_000, 1, 1_000_000),
]
print("// newcombe: (ca, na, cb, nb, confidence, low, high)")
for conf in [0.95, 0.9, 0.99]:
    for ca, na, cb, nb in EDGE_CASES:
        _, lo, hi = newcombe(ca, na, cb, nb, conf)
        print(f"({ca}, {na}, {cb}, {nb}, {conf}, {lo!r}, {hi!r}),")

print("// wilson: (conversions, users, confidence, low, high)")
for x, n in [(0, 1), (1, 1), (0, 2), (1, 2), (0, 100), (100, 100), (130, 1000), (3, 40), (7, 500), (51900, 1000000), (1, 1_000_000)]:
    for conf in [0.95, 0.99]:
        lo, hi = wilson(x, n, conf)
        print(f"({x}, {n}, {conf}, {lo!r}, {hi!r}),")

print("// lift: (ca, na, cb, nb, confidence, lift, low, high)")
for conf in [0.95, 0.9]:
    for ca, na, cb, nb in EDGE_CASES:
        l = lift(ca, na, cb, nb, conf)
        if l is not None:
            print(f"({ca}, {na}, {cb}, {nb}, {conf}, {l[0]!r}, {l[1]!r}, {l[2]!r}),")

# Planning: devices per arm for the fixed-horizon z-test with Bonferroni's alpha / (arms - 1)
# (the formula above), and for the always-valid test the verdict uses: the smallest n per
# arm at which one reading at n rejects with the given power, P(|d_hat| > c_n) with
# d_hat ~ N(mde, V_n), V_n = (p1 q1 + p2 q2) / n, c_n the mixture SPRT's threshold at
# alpha / (arms - 1) with tau2 tuned as in `sequential` at alpha = 1 - confidence.
def sequential_power(n, p1, mde, alpha, comparisons, tuned):
    p2 = p1 + mde
    r = brentq(lambda r: r - np.log1p(r) - 2 * np.log(1 / alpha), 1e-9, 1e6)
    v = (p1 * (1 - p1) + p2 * (1 - p2)) / n
    tau2 = r * v * 2 * n / tuned
    c = np.sqrt(v * (v + tau2) / tau2 * (np.log((v + tau2) / v) + 2 * np.log(comparisons / alpha)))
    sd = np.sqrt(v)
    return stats.norm.cdf((mde - c) / sd) + stats.norm.cdf((-mde - c) / sd)

print("// plan: (baseline, mde, alpha, power, arms, tuned_for, fixed_n_per_arm, sequential_n_per_arm), unrounded")
for p1, mde, alpha, power, arms, tuned in [(0.10, 0.02, 0.05, 0.8, 2, 5000), (0.10, 0.02, 0.05, 0.8, 3, 5000), (0.10, 0.02, 0.05, 0.8, 5, 5000), (0.05, 0.01, 0.05, 0.9, 2, 20000), (0.30, -0.05, 0.01, 0.8, 4, 5000)]:
    m = arms - 1
    p2 = p1 + mde
    pbar = (p1 + p2) / 2
    za, zb = stats.norm.ppf(1 - alpha / m / 2), stats.norm.ppf(power)
    fixed = (za * np.sqrt(2 * pbar * (1 - pbar)) + zb * np.sqrt(p1 * (1 - p1) + p2 * (1 - p2))) ** 2 / mde ** 2
    seq = brentq(lambda n: sequential_power(n, p1, mde, alpha, m, tuned) - power, 10, 1e9, xtol=1e-9)
    print(f"({p1}, {mde}, {alpha}, {power}, {arms}, {tuned}, {fixed!r}, {seq!r}),")
