//! Ingest decoding (parse + validate) on records of logpipe-bench's generator: native NDJSON against plain
//! serde_json, and every other protocol's decoder on the same 2,000 records.
//!
//!   cargo bench -p logpipe-server --bench ingest_decode

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

/// The logpipe binary's allocator: decoding allocates many small strings.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use logpipe_model::Limits;
use logpipe_server::bench::{decode, encode, Sample, ALL};

/// 2,000 records of logpipe-bench's generator (crates/bench).
fn records() -> Vec<logpipe_bench::gen::Record> {
    logpipe_bench::gen::Generator::new(logpipe_bench::gen::Dataset::new(2_000)).records(0..2_000)
}

/// The records as native NDJSON.
fn body() -> String {
    let mut out = String::new();
    for r in records() {
        r.write_ndjson(&mut out);
        out.push('\n');
    }
    out
}

fn benches(c: &mut Criterion) {
    let body = body();
    let mut g = c.benchmark_group("ingest");
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.bench_function("parse_records_2000_ndjson", |b| {
        b.iter(|| logpipe_server::parse_records(&body, None, &Limits::default(), &|_| None).unwrap())
    });
    g.bench_function("reference_serde_json_value_per_line", |b| {
        b.iter(|| body.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()).collect::<Vec<_>>())
    });
    g.finish();

    // the same records in every wire format, records/s per protocol
    let samples: Vec<Sample> = records().iter().map(|r| Sample::new(r.app, r.ts, &r.message, &r.tags)).collect();
    let mut g = c.benchmark_group("protocol");
    g.throughput(Throughput::Elements(samples.len() as u64));
    for p in ALL {
        let body = encode(p, &samples);
        assert_eq!(decode(p, &body).len(), samples.len(), "{p:?}");
        g.bench_function(format!("{p:?}"), |b| b.iter(|| decode(p, &body)));
    }
    g.finish();
}

criterion_group! {
    name = ingest;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(3));
    targets = benches
}
criterion_main!(ingest);
