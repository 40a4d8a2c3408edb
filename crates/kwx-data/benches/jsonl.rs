//! JSONL throughput: streaming read, read + validate, and write, in MB/s of JSONL.
//!
//! `cargo bench -p kwx-data --bench jsonl`. The input is generated in memory (about 16 MiB of
//! SFT rows shaped like the dataset builder's: a Korean sentence or two and five labels), so the
//! numbers measure parsing and checking, not the disk.
#![allow(missing_docs)] // criterion_group! generates undocumented items

use std::hint::black_box;
use std::io::Write;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kwx_data::jsonl::{JsonlReader, JsonlWriter, SftRecord, SftValidator, ValidationConfig};

const TARGET_BYTES: usize = 16 << 20;

fn dataset() -> Vec<u8> {
    let mut out = Vec::with_capacity(TARGET_BYTES + 1024);
    let mut row = 0usize;
    while out.len() < TARGET_BYTES {
        let record = SftRecord {
            text: format!(
                "{row}번 제품: 이 의약품은 해열 진통 소염 작용이 있으며 두통, 치통, 생리통에 \
                 쓴다. 임산부와 수유부는 의사와 상의한다. 아세트아미노펜 {}mg 함유.",
                row % 1000
            ),
            labels: ["해열", "진통", "소염", "두통", "임산부"]
                .map(String::from)
                .to_vec(),
        };
        serde_json::to_writer(&mut out, &record).expect("serializable");
        out.push(b'\n');
        row += 1;
    }
    out
}

fn bench(c: &mut Criterion) {
    let data = dataset();
    let records: Vec<SftRecord> = JsonlReader::new(data.as_slice(), "bench.jsonl")
        .collect::<Result<_, _>>()
        .expect("generated data parses");
    let mut group = c.benchmark_group("jsonl");
    group.throughput(Throughput::Bytes(data.len() as u64));
    group.sample_size(20);

    group.bench_function("read", |b| {
        b.iter(|| {
            let reader = JsonlReader::<_, SftRecord>::new(black_box(data.as_slice()), "bench");
            reader
                .map(|r| r.map(|r| r.labels.len()))
                .sum::<Result<usize, _>>()
        })
    });

    group.bench_function("read+validate", |b| {
        let config = ValidationConfig::default();
        b.iter(|| {
            let mut reader = JsonlReader::<_, SftRecord>::new(black_box(data.as_slice()), "bench");
            let mut validator = SftValidator::new(&config);
            for item in reader.numbered() {
                let (line, record) = item.expect("valid");
                validator.check(line, &record);
            }
            validator.report().rows_kept
        })
    });

    group.bench_function("write", |b| {
        let mut buf = Vec::with_capacity(data.len() + 1024);
        b.iter(|| {
            buf.clear();
            let mut writer = JsonlWriter::new(&mut buf, "bench");
            for record in &records {
                writer.push(record).expect("in memory");
            }
            writer
                .into_inner()
                .expect("in memory")
                .flush()
                .expect("in memory");
            black_box(buf.len())
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
