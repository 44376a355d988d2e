//! How long does one bandit update take: Thompson's P(best) by quadrature, then the
//! floor and the weights, for 2, 10 and 32 variants, with moderate counts (thousands of
//! devices, posteriors overlapping) and huge ones (10⁸–10⁹ devices, narrow posteriors)?

use std::hint::black_box;

use abproxy::stats::bandit::{allocation, shares, weights, Algorithm, ArmCounts};
use criterion::{criterion_group, criterion_main, Criterion};

/// `k` arms with rates spread evenly over 0.10 to 0.10 + `spread`, each with about
/// `users` devices.
fn arms(k: usize, users: u64, spread: f64) -> Vec<ArmCounts> {
    (0..k)
        .map(|i| {
            let rate = 0.10 + spread * i as f64 / k as f64;
            ArmCounts {
                users: users + i as u64 * 7,
                conversions: (rate * users as f64) as u64,
            }
        })
        .collect()
}

fn thompson_update(arms: &[ArmCounts]) -> Vec<u32> {
    weights(&shares(&allocation(Algorithm::Thompson, arms), 0.01))
}

fn bandit(c: &mut Criterion) {
    let mut group = c.benchmark_group("thompson shares");
    for k in [2, 10, 32] {
        // Moderate: overlapping posteriors. Huge, apart: every window separate (most arms
        // drop out). Huge, close: rates 10⁻⁴ apart, overlapping again at 5·10⁸ devices.
        for (label, users, spread) in [
            ("moderate", 5_000, 0.03),
            ("huge apart", 500_000_000, 0.03),
            ("huge close", 500_000_000, 1e-4),
        ] {
            let counts = arms(k, users, spread);
            group.bench_function(format!("{k} arms, {label} counts"), |b| {
                b.iter(|| thompson_update(black_box(&counts)))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bandit);
criterion_main!(benches);
