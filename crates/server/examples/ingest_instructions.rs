//! The whole ingest path of N batch files of the bench kit (`loggen.py --batch 1000`): parse
//! and validate each body, submit it to a real engine (WAL append, memtable), then flush it
//! into segments — for instruction counts per record that machine noise does not move:
//!
//!   cargo build --release -p logpipe-server --example ingest_instructions
//!   valgrind --tool=callgrind target/release/examples/ingest_instructions DIR N
//!
//! The WAL is written but not fsynced (fsync is a wait, not instructions) and background
//! merges are off, so the count is what every record costs on its way into a first segment.
//! With `MERGE_EVERY=K`, the memtable is flushed after every K batches and the segments of
//! each partition are then merged into one, once: the count then holds one merge of every
//! record too.

use std::time::Duration;

use logpipe_model::Limits;
use logpipe_server::parse_records;
use logpipe_storage::{Engine, EngineConfig, FsyncMode};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(dir), Some(n)) = (args.next(), args.next().and_then(|n| n.parse::<usize>().ok())) else {
        eprintln!("usage: ingest_instructions BATCH_DIR N");
        std::process::exit(2);
    };
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("batch dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("batch-")))
        .collect();
    files.sort();
    let bodies: Vec<String> = files.iter().take(n).map(|f| std::fs::read_to_string(f).expect("batch")).collect();
    let data = std::env::temp_dir().join(format!("ingest-instructions-{}", std::process::id()));
    let mut cfg = EngineConfig::new(&data);
    cfg.fsync = FsyncMode::Never;
    cfg.maintenance_interval = Duration::from_secs(3600);
    cfg.memtable_flush_interval = Duration::from_secs(3600);
    if let Ok(l) = std::env::var("FLUSH_LEVEL") {
        cfg.flush_level = l.parse().expect("level");
    }
    let merge_every = std::env::var("MERGE_EVERY").ok().map(|k| k.parse::<usize>().expect("MERGE_EVERY"));
    if merge_every.is_some() {
        cfg.max_segments_per_partition = 1;
        cfg.merge_fan_in = usize::MAX;
    }
    let engine = Engine::open(cfg).expect("engine");
    let limits = Limits::default();
    let mut records = 0;
    for (i, body) in bodies.iter().enumerate() {
        let batch = parse_records(body, None, &limits, &|_| None).expect("valid batch");
        records += batch.len();
        engine.ingest(batch).expect("ingest");
        if merge_every.is_some_and(|k| (i + 1) % k.max(1) == 0) {
            engine.flush().expect("flush");
        }
    }
    engine.flush().expect("flush");
    if merge_every.is_some() {
        engine.merge_all().expect("merge");
    }
    engine.close().expect("close");
    drop(engine);
    let segments = dir_bytes(&data.join("partitions"));
    std::fs::remove_dir_all(&data).expect("clean up");
    println!("{records} records ingested and flushed into {segments} bytes of segments");
}

fn dir_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .flatten()
            .map(|e| match e.metadata() {
                Ok(m) if m.is_dir() => dir_bytes(&e.path()),
                Ok(m) => m.len(),
                Err(_) => 0,
            })
            .sum()
    })
}
