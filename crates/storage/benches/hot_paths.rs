//! Micro-benchmarks of the storage hot paths on generated log lines (logpipe-bench's generator,
//! crates/bench), next to the physical references they are bounded by: memchr scan speed and zstd speed.
//!
//!   cargo bench -p logpipe-storage --bench hot_paths

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use logpipe_model::{AppName, Record};
use logpipe_storage::block::{BlockBuilder, BlockOptions};
use logpipe_storage::bloom::{self, Bloom};
use logpipe_storage::segment::{Segment, SegmentWriter};

/// 32,000 records of logpipe-bench's generator (crates/bench), in time order.
fn records() -> Vec<Record> {
    let g = logpipe_bench::gen::Generator::new(logpipe_bench::gen::Dataset::new(32_000));
    let mut recs: Vec<Record> = g
        .records(0..32_000)
        .into_iter()
        .map(|r| Record {
            app: AppName::parse(r.app).unwrap(),
            ts: r.ts,
            message: r.message,
            tags: r.tags.iter().map(|t| t.to_string()).collect(),
        })
        .collect();
    recs.sort_by_key(|r| r.ts);
    recs
}

fn benches(c: &mut Criterion) {
    let recs = records();
    let lines: Vec<String> = recs.iter().map(|r| r.message.clone()).collect();
    let text: Vec<u8> = lines.iter().flat_map(|l| l.bytes().chain(std::iter::once(b'\n'))).collect();
    let block_rows = &recs[..8192];
    let block_bytes: u64 = block_rows.iter().map(|r| r.message.len() as u64).sum();

    let mut g = c.benchmark_group("wal");
    g.throughput(Throughput::Bytes(text.len() as u64));
    g.bench_function("batch_encode_32k_records", |b| b.iter(|| logpipe_storage::batch::encode(&recs)));
    let enc = logpipe_storage::batch::encode(&recs);
    g.bench_function("batch_decode_32k_records", |b| b.iter(|| logpipe_storage::batch::decode(&enc).unwrap()));
    let dir = tempfile::tempdir().unwrap();
    let mut wal = logpipe_wal::Wal::create(dir.path()).unwrap();
    g.bench_function("wal_append_write_no_fsync", |b| {
        b.iter(|| {
            wal.append(&enc).unwrap();
            wal.write().unwrap();
        })
    });
    g.finish();

    let mut g = c.benchmark_group("block");
    g.throughput(Throughput::Bytes(block_bytes));
    for (level, templates) in [(1, false), (1, true), (3, false), (3, true), (9, false), (9, true)] {
        let name = if templates { "_templates" } else { "" };
        g.bench_function(format!("encode_8192_rows_zstd{level}{name}"), |b| {
            let mut builder = BlockBuilder::new(BlockOptions { level, templates, max_rows: 8192 });
            let mut out = Vec::new();
            b.iter(|| {
                for r in block_rows {
                    builder.push(r.ts, &r.message, &r.tags);
                }
                out.clear();
                builder.finish(0, &mut out).unwrap()
            })
        });
    }
    let seg_dir = tempfile::tempdir().unwrap();
    let write = |id, opts| {
        let app = AppName::parse("bench").unwrap();
        let mut w = SegmentWriter::create(seg_dir.path(), id, app, 0, 0, vec![], opts).unwrap();
        for r in block_rows {
            w.push(r.ts, &r.message, &r.tags).unwrap();
        }
        w.finish().unwrap()
    };
    let seg: Segment = write(1, BlockOptions::default());
    let cold: Segment = write(2, BlockOptions { level: 9, templates: true, max_rows: 8192 });
    g.bench_function("read_and_decode_messages_8192_rows", |b| {
        b.iter(|| seg.read_block(0).unwrap().messages().unwrap())
    });
    g.bench_function("read_and_decode_messages_8192_rows_templates", |b| {
        b.iter(|| cold.read_block(0).unwrap().messages().unwrap())
    });
    g.bench_function("read_and_decode_timestamps_8192_rows", |b| {
        b.iter(|| seg.read_block(0).unwrap().timestamps().unwrap())
    });
    let raw_msgs: Vec<u8> = block_rows.iter().flat_map(|r| r.message.bytes()).collect();
    for level in [1, 3] {
        let z = zstd::bulk::compress(&raw_msgs, level).unwrap();
        g.bench_function(format!("reference_zstd{level}_compress"), |b| {
            b.iter(|| zstd::bulk::compress(&raw_msgs, level).unwrap())
        });
        g.bench_function(format!("reference_zstd{level}_decompress"), |b| {
            b.iter(|| zstd::bulk::decompress(&z, raw_msgs.len()).unwrap())
        });
    }
    g.finish();

    let mut g = c.benchmark_group("scan");
    g.throughput(Throughput::Bytes(text.len() as u64));
    let needle = memchr::memmem::Finder::new("orchid-sentinel");
    g.bench_function("reference_memmem_absent_needle", |b| b.iter(|| needle.find(&text)));
    let ip = regex::bytes::Regex::new(r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}").unwrap();
    g.bench_function("regex_ipv4_per_line", |b| b.iter(|| lines.iter().filter(|l| ip.is_match(l.as_bytes())).count()));
    let ci = regex::bytes::Regex::new(r"(?i)fail(ed|ure)").unwrap();
    g.bench_function("regex_ci_alternation_per_line", |b| {
        b.iter(|| lines.iter().filter(|l| ci.is_match(l.as_bytes())).count())
    });
    g.bench_function("tokenize_and_hash", |b| {
        b.iter(|| {
            let mut n = 0u64;
            for l in &lines {
                bloom::for_each_token_hash(l.as_bytes(), |h| n ^= h);
            }
            n
        })
    });
    g.finish();

    // a flush's worth of segments whose time ranges overlap, as under steady ingest: input j
    // holds every 8th row from j, so the merge takes its rows from all inputs in turn
    let mut g = c.benchmark_group("merge");
    let merge_rows = &recs[..8 * 4000];
    g.throughput(Throughput::Elements(merge_rows.len() as u64));
    let key = logpipe_storage::partition::PartitionKey { app: AppName::parse("bench").unwrap(), day: 0 };
    let merge_dir = tempfile::tempdir().unwrap();
    let inputs: Vec<std::sync::Arc<Segment>> = (0..8u64)
        .map(|j| {
            let mut w = SegmentWriter::create(
                merge_dir.path(),
                100 + j,
                key.app.clone(),
                0,
                0,
                vec![],
                BlockOptions::default(),
            )
            .unwrap();
            for r in merge_rows.iter().skip(j as usize).step_by(8) {
                w.push(r.ts, &r.message, &r.tags).unwrap();
            }
            std::sync::Arc::new(w.finish().unwrap())
        })
        .collect();
    let mut next_id = 1000u64;
    g.bench_function("merge_8_overlapping_segments_32000_rows", |b| {
        b.iter(|| {
            next_id += 1;
            let out =
                logpipe_storage::merge_segments(merge_dir.path(), next_id, &key, &inputs, BlockOptions::default())
                    .unwrap();
            std::fs::remove_file(out.path()).unwrap();
            out.meta.rows
        })
    });
    g.finish();

    let mut g = c.benchmark_group("bloom");
    let keys: Vec<u64> = (0..20_000u64).map(|i| bloom::token_hash(format!("token{i}").as_bytes())).collect();
    let filter = Bloom::build(&keys);
    g.throughput(Throughput::Elements(1000));
    g.bench_function("probe_1000_absent_keys", |b| {
        b.iter_batched(
            || (0..1000u64).map(|i| bloom::token_hash(format!("absent{i}").as_bytes())).collect::<Vec<_>>(),
            |probe| probe.iter().filter(|&&k| filter.may_contain(k)).count(),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group! {
    name = hot_paths;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(3));
    targets = benches
}
criterion_main!(hot_paths);
