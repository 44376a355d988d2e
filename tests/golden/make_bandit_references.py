#!/usr/bin/env python3
"""Reference values for Thompson sampling's allocation in src/stats/bandit.rs, from scipy
(an independent implementation of the same integral).

    python3 tests/golden/make_bandit_references.py

prints the Rust constant pasted into src/stats/bandit_tests.rs (Python 3.11.7, scipy 1.17.1).

p_v = P(arm v has the highest rate) under independent Beta(1 + s_v, 1 + n_v - s_v)
posteriors = integral of f_v(x) * prod_{u != v} F_u(x) dx. Here: scipy.stats.beta's pdf and
cdf (Boost's incomplete Beta function, not the Rust code's quadrature of the densities),
integrated by scipy.integrate.quad (adaptive Gauss-Kronrod) in standardised units
z = (x - mean_v) / sd_v over mean_v +- 30 sd_v (the Rust code uses 20), with `points=` at
every arm's mean +- k sd, so that quad sees the narrow posteriors of huge counts. The
values are not normalised (the Rust code normalises); their sum is checked to be 1.
"""
import math
import sys

import scipy
from scipy import integrate, stats

# (name, [(users, conversions), ...]) in variant-name order.
CASES = [
    ("two_moderate", [(1000, 100), (1000, 130)]),
    ("two_equal", [(500, 50), (500, 50)]),
    ("two_zero_conversions", [(100, 0), (200, 0)]),
    ("two_without_devices", [(0, 0), (0, 0)]),
    ("two_tiny", [(3, 1), (1, 0)]),
    ("two_all_converted", [(40, 40), (50, 49)]),
    ("two_unequal_sizes", [(20, 5), (50_000, 5_000)]),
    ("three_issue_rates", [(1000, 100), (1000, 120), (1000, 150)]),
    ("three_equal", [(100, 10), (100, 10), (100, 10)]),
    ("two_million", [(1_000_000, 100_000), (1_000_000, 100_500)]),
    ("two_ten_million_close", [(10_000_000, 1_000_000), (10_000_000, 1_000_300)]),
    ("two_billion_overlapping", [(1_000_000_000, 100_000_000), (1_000_000_000, 100_010_000)]),
    ("two_billion_apart", [(1_000_000_000, 100_000_000), (1_000_000_000, 120_000_000)]),
    ("narrow_inside_wide", [(100, 10), (1_000_000_000, 100_000_000)]),
    ("billion_zero_conversions", [(1_000_000_000, 0), (1_000_000_000, 1)]),
    ("billion_near_one", [(1_000_000_000, 999_999_000), (1_000_000_000, 999_999_100)]),
    ("three_billion_partial", [(1_000_000_000, 50_000_000), (1_000_000_000, 50_010_000),
                               (1_000_000_000, 49_990_000)]),
    ("mixed_sizes_huge", [(1_000_000, 100_000), (100_000_000, 10_001_000), (5_000, 520)]),
    ("ten_moderate", [(500, 40 + 3 * i) for i in range(10)]),
    ("ten_equal", [(300, 30)] * 10),
    ("ten_huge_close", [(100_000_000, 10_000_000 + 2_000 * (i % 4)) for i in range(10)]),
    ("ten_mixed", [(0, 0), (10, 1), (100, 12), (1000, 110), (5, 0), (10_000, 1_050),
                   (200, 30), (1, 1), (50, 2), (100_000, 10_400)]),
    ("five_zero_conversions", [(10, 0), (50, 0), (100, 0), (1000, 0), (0, 0)]),
    ("four_all_converted", [(10, 10), (20, 20), (30, 29), (5, 5)]),
]


def posterior(users, conversions):
    a, b = 1 + conversions, 1 + users - conversions
    mean = a / (a + b)
    sd = math.sqrt(a * b / ((a + b) ** 2 * (a + b + 1)))
    return a, b, mean, sd


def p_best(arms):
    post = [posterior(n, s) for n, s in arms]
    out = []
    for v, (a, b, mean, sd) in enumerate(post):
        low = max(0.0, mean - 30 * sd)
        high = min(1.0, mean + 30 * sd)
        zlow, zhigh = (low - mean) / sd, (high - mean) / sd
        hints = sorted({(m + k * s - mean) / sd
                        for (_, _, m, s) in post for k in range(-12, 13, 2)
                        if zlow < (m + k * s - mean) / sd < zhigh})

        def integrand(z):
            x = mean + sd * z
            value = stats.beta.pdf(x, a, b) * sd
            for u, (au, bu, _, _) in enumerate(post):
                if u != v:
                    value *= stats.beta.cdf(x, au, bu)
            return value

        value, error = integrate.quad(integrand, zlow, zhigh, points=hints or None,
                                      limit=2000, epsabs=1e-14, epsrel=1e-13)
        assert error < 1e-9, (arms, v, error)
        out.append(value)
    assert abs(sum(out) - 1) < 1e-9, (arms, sum(out))
    return out


def main():
    print(f"// python {sys.version.split()[0]}, scipy {scipy.__version__}")
    print("const THOMPSON_REFERENCES: &[Reference] = &[")
    for name, arms in CASES:
        p = p_best(arms)
        counts = ", ".join(f"({n}, {s})" for n, s in arms)
        values = ", ".join(repr(float(x)) for x in p)
        print(f'    ("{name}", &[{counts}], &[{values}]),')
    print("];")


if __name__ == "__main__":
    main()
