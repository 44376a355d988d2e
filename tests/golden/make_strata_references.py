#!/usr/bin/env python3
"""Reference values for src/stats/strata.rs (the period-stratified analysis of issue 13),
computed independently with numpy/scipy from the formulas, and with statsmodels for one
period (where the stratified results must be the classical ones).

    python3 tests/golden/make_strata_references.py             # the reference values
    python3 tests/golden/make_strata_references.py --simulate  # the Wald/pooled size figures

prints the Rust constants pasted into src/stats/strata_tests.rs (numpy 2.4.6, scipy 1.17.1,
statsmodels 0.15.0, mpmath 1.3.0).
"""
import sys
import numpy as np
np.set_printoptions(legacy="1.25")
from scipy import stats
from scipy.optimize import brentq
from statsmodels.stats.proportion import (
    confint_proportions_2indep, proportions_ztest, test_proportions_2indep)

CONF = 0.95
TUNED = 5000  # DEFAULT_SEQUENTIAL_TUNING_USERS

# name, periods: [[(conversions, users) per variant] per period], shares per period.
# Control is variant 0, the variant compared is variant 1.
CASES = [
    ("drift", [[(50, 1000), (48, 980)], [(40, 410), (165, 1590)]],
     [[0.5, 0.5], [0.2, 0.8]]),
    ("three_arms", [[(30, 500), (35, 500), (20, 500)], [(12, 120), (100, 700), (20, 180)],
                    [(3, 40), (125, 900), (6, 60)]],
     [[1, 1, 1], [0.15, 0.7, 0.15]], ),
    ("starved_period", [[(20, 300), (25, 310)], [(0, 1), (60, 500)], [(9, 90), (70, 810)]],
     [[0.5, 0.5], [0.01, 0.99], [0.1, 0.9]]),
    ("one_period", [[(100, 1000), (130, 1000)]], [[0.5, 0.5]]),
]
CASES[1] = (CASES[1][0], CASES[1][1], [[1, 1, 1], [0.15, 0.7, 0.15], [0.04, 0.9, 0.06]])


def mixture_ratio(alpha):
    c = 2 * np.log(1 / alpha)
    return brentq(lambda r: r - np.log1p(r) - c, 1e-9, 1e3, xtol=1e-15)


def reference(periods, shares):
    a = np.array(periods, dtype=float)            # [period, variant, (conv, users)]
    conv, users = a[:, :, 0], a[:, :, 1]
    n_p = users.sum(axis=1)
    used = (users[:, 0] >= 2) & (users[:, 1] >= 2)  # both compared arms: 2 devices or more
    w = np.where(used, n_p, 0.0) / n_p[used].sum()
    with np.errstate(invalid="ignore", divide="ignore"):
        y = np.where(users > 0, conv / users, 0.0)
        var_cell = np.where(users > 0, y * (1 - y) / users, 0.0)  # binomial s²
    rate = (w[:, None] * y).sum(axis=0)
    var = (w[:, None] ** 2 * var_cell).sum(axis=0)
    d = rate[1] - rate[0]
    v = var[0] + var[1]
    se = np.sqrt(v)
    z = d / se
    p = 2 * stats.norm.sf(abs(z))
    half = stats.norm.ppf(1 - (1 - CONF) / 2) * se
    pooled = (conv[:, 0] + conv[:, 1]) / (users[:, 0] + users[:, 1])
    with np.errstate(invalid="ignore", divide="ignore"):
        v0_cell = np.where(used, pooled * (1 - pooled) * (1 / users[:, 0] + 1 / users[:, 1]), 0.0)
    z0 = d / np.sqrt((w ** 2 * v0_cell).sum())
    p0 = 2 * stats.norm.sf(abs(z0))
    # mixture SPRT (Johari et al. 2017) on (d, v)
    alpha = 1 - CONF
    m = (users[used, 0] + users[used, 1]).sum()
    tau2 = mixture_ratio(alpha) * v * m / TUNED
    log_lambda = 0.5 * np.log(v / (v + tau2)) + tau2 * d * d / (2 * v * (v + tau2))
    seq_p = min(np.exp(-log_lambda), 1.0)
    seq_half = np.sqrt(v * (v + tau2) / tau2 * (np.log((v + tau2) / v) + 2 * np.log(1 / alpha)))
    # sample-ratio check with periods
    s = np.array(shares, dtype=float)
    s = s / s.sum(axis=1, keepdims=True)
    expected = (n_p[:, None] * s).sum(axis=0)
    chi2, srm_p = stats.chisquare(users.sum(axis=0), expected)
    return (rate[0], var[0], rate[1], var[1], d, se, z, p, d - half, d + half, z0, p0,
            seq_p, d - seq_half, d + seq_half, chi2, srm_p, int(used.sum()))


def lit(x):
    return repr(float(x)) if not isinstance(x, int) else str(x)


print("// name, control rate, control variance, variant rate, variant variance, difference,")
print("// standard error, z, p, interval low, high, pooled z, pooled p, sequential p, low,")
print("// high, SRM χ², SRM p, periods used")
for name, periods, shares in CASES:
    values = reference(periods, shares)
    print(f'("{name}", [{", ".join(lit(x) for x in values[:-1])}], {values[-1]}),')

# One period: the classical tests (statsmodels; its count1 is the variant).
(ca, na), (cb, nb) = CASES[3][1][0]
wald = test_proportions_2indep(cb, nb, ca, na, method="wald", compare="diff")
lo, hi = confint_proportions_2indep(cb, nb, ca, na, method="wald", compare="diff", alpha=1 - CONF)
zp, pp = proportions_ztest([cb, ca], [nb, na])
print(f"// one period, statsmodels: wald z, p, wald interval low, high, pooled z, p")
print(f"[{lit(wald.statistic)}, {lit(wald.pvalue)}, {lit(lo)}, {lit(hi)}, {lit(zp)}, {lit(pp)}]")


def simulate(runs=40_000, seed=1):
    """Rejection rates at alpha = 0.05 of the stratified tests for two identical arms in
    strata_tests' bandit-like plan (devices, base rate, B's share per period), numpy's own
    generator: how far the Wald form runs hot with small arms per period."""
    plan = [(700, 0.05, 0.5), (700, 0.05, 0.6), (700, 0.05, 0.7),
            (700, 0.10, 0.8), (700, 0.10, 0.9), (700, 0.10, 0.9)]
    rng = np.random.default_rng(seed)
    n_p = np.array([x[0] for x in plan]); rate = np.array([x[1] for x in plan])
    nb = rng.binomial(n_p, np.array([x[2] for x in plan]), size=(runs, len(plan)))
    na = n_p - nb
    ya, yb = rng.binomial(na, rate) / na, rng.binomial(nb, rate) / nb
    w = n_p / n_p.sum()
    d = (w * (yb - ya)).sum(axis=1)
    reject = lambda v: (2 * stats.norm.sf(abs(d / np.sqrt(v))) < 0.05).mean()
    wald = reject((w ** 2 * (ya * (1 - ya) / na + yb * (1 - yb) / nb)).sum(axis=1))
    unbiased = reject((w ** 2 * (ya * (1 - ya) / (na - 1) + yb * (1 - yb) / (nb - 1))).sum(axis=1))
    pooled = (ya * na + yb * nb) / n_p
    per_period = reject((w ** 2 * pooled * (1 - pooled) * (1 / na + 1 / nb)).sum(axis=1))
    print(f"{runs} runs: Wald {wald}, Wald with unbiased s2 {unbiased}, pooled per period {per_period}")


if "--simulate" in sys.argv:
    simulate()


# Value goals: per period, per arm (devices, value sum, sum of squares); control 0,
# variant 1. Reference from the period means and sample variances (n - 1), Satterthwaite's
# degrees of freedom for the combination, scipy's Student t.
VALUE_CASES = [
    ("revenue_drift", [[(300, 1200.5, 65000.2), (310, 1500.25, 90000.75)],
                       [(120, 900.0, 40000.0), (480, 4100.5, 210000.0)]]),
    ("revenue_starved", [[(300, 1200.5, 65000.2), (310, 1500.25, 90000.75)],
                         [(1, 0.0, 0.0), (200, 1000.0, 50000.0)],
                         [(120, 900.0, 40000.0), (480, 4100.5, 210000.0)]]),
]


def value_reference(periods):
    a = np.array(periods, dtype=float)            # [period, arm, (n, sum, sum_sq)]
    n, s, ss = a[:, :, 0], a[:, :, 1], a[:, :, 2]
    used = (n[:, 0] >= 2) & (n[:, 1] >= 2)
    n_p = n.sum(axis=1)
    w = np.where(used, n_p, 0.0) / n_p[used].sum()
    with np.errstate(invalid="ignore", divide="ignore"):  # a dropped one-device cell
        m = s / n
        var = (ss - n * m ** 2) / (n - 1)
    cell = w[:, None] ** 2 * var / n              # a_i per (period, arm)
    cell = np.where(used[:, None], cell, 0.0)
    mean = (np.where(used[:, None], w[:, None] * m, 0.0)).sum(axis=0)
    v = cell.sum()
    df = v ** 2 / (cell ** 2 / np.where(used[:, None], n - 1, 1)).sum()
    d = mean[1] - mean[0]
    t = d / np.sqrt(v)
    p = 2 * stats.t.sf(abs(t), df)
    half = stats.t.ppf(1 - (1 - CONF) / 2, df) * np.sqrt(v)
    return (mean[0], cell[:, 0].sum(), mean[1], cell[:, 1].sum(), d, df, t, p,
            d - half, d + half, int(used.sum()))


print("// value goals: name, control mean, its variance, variant mean, its variance,")
print("// difference, df, t, p, interval low, high, periods used")
for name, periods in VALUE_CASES:
    values = value_reference(periods)
    print(f'("{name}", [{", ".join(lit(x) for x in values[:-1])}], {values[-1]}),')

# The normal posterior's P(beat) and expected loss, by numerical integration of the
# density (mpmath, 40 digits; scipy's quad loses the far tail) rather than the closed
# forms: (difference, standard error).
import mpmath
mpmath.mp.dps = 40
print("// normal posterior: difference, standard error, P(beat), expected loss")
for d, se in [(0.03, np.sqrt(0.1 * 0.9 / 1000 + 0.13 * 0.87 / 1000)), (-0.01, 0.02),
              (0.0, 0.005), (0.002614273977020909, 0.009618518195869181), (0.08, 0.01)]:
    md, ms = mpmath.mpf(d), mpmath.mpf(se)
    pdf = lambda x: mpmath.npdf(x, md, ms)
    beat = mpmath.quad(pdf, [0, md, mpmath.inf])
    cuts = [c for c in (md - 10 * ms, md - 5 * ms, md) if c < 0]
    loss = mpmath.quad(lambda x: -x * pdf(x), [-mpmath.inf] + cuts + [0])
    # The closed form at 40 digits (no cancellation there) agrees: the integral converged.
    z = md / ms
    closed = ms * mpmath.npdf(z) - md * mpmath.ncdf(-z)
    assert abs(loss - closed) <= 1e-15 * closed, (d, se, loss, closed)
    print(f"({lit(d)}, {lit(se)}, {lit(float(beat))}, {lit(float(loss))}),")
