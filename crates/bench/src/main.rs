//! `logpipe-bench`: generate a data set with its expected answers, load it into a server, and
//! run the query set against the server, checking every answer.
//!
//! ```sh
//! logpipe-bench gen --records 5000000 --out /tmp/lb      # batch files, index.txt, manifest.json, expected.json
//! logpipe-bench load /tmp/lb http://127.0.0.1:7171/api/v1/logs
//! logpipe-bench run /tmp/lb http://127.0.0.1:7171 --runs 5 --json /tmp/lb/results.json
//! ```
//!
//! `load` and `run` send `Authorization: Bearer $LOGPIPE_TOKEN` when that variable is set.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use logpipe_bench::gen::{Dataset, Generator};
use logpipe_bench::oracle::{self, Answer};
use logpipe_bench::{client, queries};
use rayon::prelude::*;

#[derive(Parser)]
#[command(name = "logpipe-bench", about = "logpipe's benchmark and correctness kit")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate records into DIR as NDJSON batch files, with index.txt (file, records),
    /// manifest.json (the data set) and expected.json (the oracle's answers).
    Gen {
        #[arg(long, default_value_t = 1_000_000)]
        records: u64,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// RFC 3339 (default 2025-01-01T12:00:00Z).
        #[arg(long)]
        start: Option<String>,
        /// Hours (default 24).
        #[arg(long, default_value_t = 24)]
        span_hours: i64,
        /// Records per batch file.
        #[arg(long, default_value_t = 1000)]
        batch: usize,
        #[arg(long)]
        out: PathBuf,
        /// Skip expected.json.
        #[arg(long)]
        no_oracle: bool,
    },
    /// Compute DIR/expected.json again from DIR/manifest.json.
    Oracle { dir: PathBuf },
    /// POST every batch file of DIR once to URL (the ingest endpoint).
    Load {
        dir: PathBuf,
        url: String,
        #[arg(short, long, default_value_t = 4)]
        connections: usize,
    },
    /// Run the query set against the server at URL and check every answer against DIR/expected.json.
    /// The last line is "N passed, M failed"; the exit status is 1 when any failed.
    Run {
        dir: PathBuf,
        url: String,
        #[arg(long, default_value_t = 5)]
        runs: usize,
        #[arg(long, default_value_t = 1)]
        warmup: usize,
        /// Only these query ids (comma-separated).
        #[arg(long)]
        only: Option<String>,
        /// Write the timings here as JSON.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Print the query set: id, endpoint and parameters.
    Queries,
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Gen { records, seed, start, span_hours, batch, out, no_oracle } => {
            let start = match start {
                Some(s) => chrono::DateTime::parse_from_rfc3339(&s)?.timestamp_nanos_opt().context("start")?,
                None => Dataset::DEFAULT_START,
            };
            let ds = Dataset { records, seed, start, span: span_hours * logpipe_bench::gen::HOUR };
            gen(ds, batch.max(1), &out, !no_oracle)
        }
        Command::Oracle { dir } => {
            let ds = manifest(&dir)?;
            let recs = Generator::new(ds).records(0..ds.records);
            write_expected(&dir, &ds, &recs)
        }
        Command::Load { dir, url, connections } => {
            let (records, secs) = client::load(&dir, &url, connections)?;
            println!("loaded {records} records in {secs:.1} s: {:.0} records/s", records as f64 / secs);
            Ok(())
        }
        Command::Run { dir, url, runs, warmup, only, json } => run(&dir, &url, runs, warmup, only, json),
        Command::Queries => {
            for q in queries::all(&Dataset::new(1_000_000)) {
                let (path, p) = client::request(&q);
                let p: Vec<String> = p.iter().map(|(k, v)| format!("{k}={v}")).collect();
                println!("{:<26} {path}?{}", q.id, p.join("&"));
            }
            Ok(())
        }
    }
}

fn manifest(dir: &Path) -> Result<Dataset> {
    let path = dir.join("manifest.json");
    let text = std::fs::read_to_string(&path).with_context(|| format!("{}", path.display()))?;
    Ok(serde_json::from_str(&text)?)
}

fn gen(ds: Dataset, batch: usize, out: &Path, with_oracle: bool) -> Result<()> {
    let started = Instant::now();
    std::fs::create_dir_all(out)?;
    for e in std::fs::read_dir(out)? {
        let p = e?.path();
        if p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("batch-")) {
            std::fs::remove_file(p)?;
        }
    }
    let recs = Generator::new(ds).records(0..ds.records);
    let generated = started.elapsed().as_secs_f64();
    let files: Vec<(String, usize)> = recs
        .par_chunks(batch)
        .enumerate()
        .map(|(i, chunk)| -> Result<(String, usize)> {
            let name = format!("batch-{i:06}.ndjson");
            let mut text = String::with_capacity(chunk.len() * 256);
            for r in chunk {
                r.write_ndjson(&mut text);
                text.push('\n');
            }
            std::fs::write(out.join(&name), text)?;
            Ok((name, chunk.len()))
        })
        .collect::<Result<_>>()?;
    let mut index = std::io::BufWriter::new(std::fs::File::create(out.join("index.txt"))?);
    for (name, n) in &files {
        writeln!(index, "{name}\t{n}")?;
    }
    index.flush()?;
    std::fs::write(out.join("manifest.json"), serde_json::to_string_pretty(&ds)?)?;
    eprintln!(
        "generated {} records in {generated:.1} s, wrote {} files in {:.1} s",
        ds.records,
        files.len(),
        started.elapsed().as_secs_f64() - generated
    );
    if with_oracle {
        write_expected(out, &ds, &recs)?;
    }
    Ok(())
}

fn write_expected(dir: &Path, ds: &Dataset, recs: &[logpipe_bench::gen::Record]) -> Result<()> {
    let started = Instant::now();
    let answers = oracle::answers(&queries::all(ds), recs);
    std::fs::write(dir.join("expected.json"), serde_json::to_string(&answers)?)?;
    eprintln!("oracle: {} answers in {:.1} s", answers.len(), started.elapsed().as_secs_f64());
    Ok(())
}

fn run(dir: &Path, url: &str, runs: usize, warmup: usize, only: Option<String>, json: Option<PathBuf>) -> Result<()> {
    let ds = manifest(dir)?;
    let text = std::fs::read_to_string(dir.join("expected.json")).context("expected.json (run `gen` first)")?;
    let expected: std::collections::BTreeMap<String, Answer> = serde_json::from_str(&text)?;
    let only: Option<Vec<String>> = only.map(|s| s.split(',').map(str::to_owned).collect());
    let url = url.trim_end_matches('/');
    let mut outcomes = Vec::new();
    for q in queries::all(&ds) {
        if only.as_ref().is_some_and(|o| !o.iter().any(|id| id == q.id)) {
            continue;
        }
        let Some(want) = expected.get(q.id) else { bail!("expected.json has no answer for {}", q.id) };
        let o = client::run_query(url, &q, want, warmup, runs);
        match &o.error {
            None => println!("{:<26} {:>9.2} ms  (min {:.2}, max {:.2})  ok", o.id, o.median_ms, o.min_ms, o.max_ms),
            Some(e) => println!("{:<26} FAIL {e}", o.id),
        }
        outcomes.push(o);
    }
    let passed = outcomes.iter().filter(|o| o.error.is_none()).count();
    let medians: Vec<f64> = outcomes.iter().filter(|o| o.error.is_none()).map(|o| o.median_ms.max(0.001)).collect();
    let geomean = (medians.iter().map(|m| m.ln()).sum::<f64>() / medians.len().max(1) as f64).exp();
    println!("geometric mean of the medians: {geomean:.2} ms over {} queries", medians.len());
    if let Some(path) = json {
        let doc = serde_json::json!({ "records": ds.records, "geomean_ms": geomean, "results": outcomes });
        std::fs::write(path, serde_json::to_string_pretty(&doc)?)?;
    }
    println!("{passed} passed, {} failed", outcomes.len() - passed);
    if passed < outcomes.len() {
        std::process::exit(1);
    }
    Ok(())
}
