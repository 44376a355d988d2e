//! How long do reading the visitor's `device_id` from a browser's `Cookie` header, and
//! verifying its signed assignment cookie (1 and 10 experiments pinned), take?

use std::hint::black_box;

use abproxy::experiments::device::Device;
use abproxy::experiments::sticky::{Assignments, Entry, Signer};
use criterion::{criterion_group, criterion_main, Criterion};
use http::HeaderMap;

const DEVICE: &str = "3f2c8a4e-9b1d-4c7e-8f6a-2d5b9e1c7a40";

fn pinned(n: usize) -> Assignments {
    Assignments {
        entries: (0..n)
            .map(|i| Entry {
                experiment: format!("experiment_{i}"),
                variant: if i % 2 == 0 { "Moon" } else { "Mars" }.to_string(),
                run: 3,
                period: 1,
                goals: if i == 0 {
                    vec!["click".to_string()]
                } else {
                    Vec::new()
                },
            })
            .collect(),
    }
}

fn cookies(c: &mut Criterion) {
    let signer = Signer::new(b"a benchmark secret of 32 bytes!!");
    let mut group = c.benchmark_group("cookies");
    let mut headers = HeaderMap::new();
    headers.insert(
        "cookie",
        format!("_ga=GA1.1.123456789.1700000000; theme=dark; device_id={DEVICE}; session=abc123")
            .parse()
            .unwrap(),
    );
    group.bench_function("device_id from a 4-cookie header", |b| {
        b.iter(|| Device::from_headers(black_box(&headers), "device_id"))
    });
    for n in [1, 10] {
        let (value, kept) = signer.encode(DEVICE, &pinned(n));
        assert_eq!(kept, n);
        group.bench_function(format!("verify the assignment cookie, {n} pinned"), |b| {
            b.iter(|| signer.decode(black_box(DEVICE), black_box(value.as_bytes())))
        });
    }
    group.finish();
}

criterion_group!(benches, cookies);
criterion_main!(benches);
