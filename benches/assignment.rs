//! How long does assigning a device take (SHA-256 of `device_id:experiment`, then the
//! weighted pick), for one experiment and for ten?

use std::hint::black_box;

use abproxy::experiments::assign::WeightTable;
use criterion::{criterion_group, criterion_main, Criterion};

fn assignment(c: &mut Criterion) {
    let table = WeightTable::new([("Moon", 50), ("Mars", 50)]).expect("weights above 0");
    let keys: Vec<String> = (0..10).map(|i| format!("experiment_{i}")).collect();
    let device = "3f2c8a4e-9b1d-4c7e-8f6a-2d5b9e1c7a40";
    let mut group = c.benchmark_group("assignment");
    group.bench_function("1 experiment", |b| {
        b.iter(|| table.assign(black_box(device.as_bytes()), black_box(&keys[0])))
    });
    group.bench_function("10 experiments", |b| {
        b.iter(|| {
            keys.iter()
                .map(|key| table.assign(black_box(device.as_bytes()), key))
                .sum::<usize>()
        })
    });
    group.finish();
}

criterion_group!(benches, assignment);
criterion_main!(benches);
