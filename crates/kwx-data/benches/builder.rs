//! Dataset generation speed: examples per second from the bundled dictionary.
#![allow(missing_docs)] // criterion_group! generates undocumented items

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kwx_data::builder::DatasetBuilder;
use kwx_data::dictionary::Dictionary;

fn bench(c: &mut Criterion) {
    let dictionary = Dictionary::bundled();
    let mut group = c.benchmark_group("dataset_builder");
    group.sample_size(10);
    let n = 20_000;
    group.throughput(Throughput::Elements(n as u64));
    group.bench_function("bundled_20k_examples", |b| {
        b.iter(|| {
            black_box(
                DatasetBuilder::new(dictionary)
                    .seed(7)
                    .n(n)
                    .build()
                    .expect("build"),
            )
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
