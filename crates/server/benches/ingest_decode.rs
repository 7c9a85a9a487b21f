//! Ingest decoding (parse + validate) on bench-kit records: native NDJSON against plain
//! serde_json, and every other protocol's decoder on the same 2,000 records.
//!
//!   cargo bench -p logpipe-server --bench ingest_decode

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

/// The logpipe binary's allocator: decoding allocates many small strings.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use logpipe_model::Limits;
use logpipe_server::bench::{decode, encode, hdfs_samples, ALL};

/// 2,000 native records shaped like loggen.py's, from the real loghub lines of the bench kit.
fn body() -> String {
    let dir =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/bench/data/loghub/HDFS_2k.log");
    let text = std::fs::read_to_string(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    text.lines()
        .enumerate()
        .map(|(i, l)| {
            serde_json::json!({
                "app": "hdfs",
                "timestamp": format!("2025-01-01T13:{:02}:{:02}.{:09}Z", i / 60 % 60, i % 60, i * 7919 % 1_000_000_000),
                "tags": ["level=INFO".to_string(), format!("host=node-{}", i % 300), "env=prod", "region=us-west-2"],
                "message": l,
            })
            .to_string()
                + "\n"
        })
        .collect()
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
    let samples = hdfs_samples();
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
