//! `logpipe inspect`: what a data directory (or, in cluster mode, a bucket) holds, read
//! without a running server.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use logpipe_storage::partition::{day_name, parse_day_name};
use logpipe_storage::segment::{parse_file_name, Segment};

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// Data directory.
    #[arg(long, default_value = crate::serve::DEFAULT_DATA_DIR)]
    data_dir: PathBuf,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Also print where the bytes go: each column compressed and raw, and the bloom filters.
    #[arg(long)]
    columns: bool,
    /// Check everything: every column of every block of every segment and every WAL frame
    /// against its checksum, without changing anything. Damage is listed by file and offset,
    /// and the exit status is 1.
    #[arg(long)]
    verify: bool,
    /// Inspect a cluster's bucket instead: its catalog and segment objects (credentials from
    /// AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY). With --verify every segment object is
    /// downloaded and checked against its checksums and its catalog entry.
    #[arg(long, env = "LOGPIPE_S3_BUCKET")]
    s3_bucket: Option<String>,
    #[arg(long)]
    s3_endpoint: Option<String>,
    #[arg(long)]
    s3_region: Option<String>,
    #[arg(long, default_value = "logpipe")]
    s3_prefix: String,
}

/// Bytes of every segment summed by part: (compressed, raw) per column, then bloom filters.
#[derive(Default)]
struct Breakdown {
    cols: [(u64, u64); 4],
    bloom: u64,
    rows: u64,
}

impl Breakdown {
    fn add(&mut self, s: &Segment) {
        self.rows += s.meta.rows;
        for b in &s.meta.blocks {
            for (acc, c) in self.cols.iter_mut().zip(&b.cols) {
                acc.0 += u64::from(c.len);
                acc.1 += u64::from(c.raw_len);
            }
            self.bloom += b.bloom.words().len() as u64 * 8;
        }
    }

    fn print(&self) {
        let per = |b: u64| b as f64 / self.rows.max(1) as f64;
        println!("{:<12} {:>14} {:>14} {:>10} {:>10}", "PART", "BYTES", "RAW", "B/REC", "RAW B/REC");
        for (name, (c, r)) in ["timestamps", "messages", "tag sets", "tag rows"].iter().zip(self.cols) {
            println!("{name:<12} {c:>14} {r:>14} {:>10.2} {:>10.2}", per(c), per(r));
        }
        println!("{:<12} {:>14} {:>14} {:>10.2}", "bloom", self.bloom, "", per(self.bloom));
    }
}

pub fn run(a: InspectArgs) -> Result<()> {
    if a.s3_bucket.is_some() {
        return bucket(&a);
    }
    let root = a.data_dir.join("partitions");
    let mut rows = Vec::new();
    let mut errors = Vec::new();
    let mut breakdown = Breakdown::default();
    let mut apps: Vec<PathBuf> = list(&root)?;
    apps.sort();
    for app_dir in apps {
        let mut days = list(&app_dir)?;
        days.sort();
        for day_dir in days {
            let Some(day) = day_dir.file_name().and_then(|n| n.to_str()).and_then(parse_day_name) else { continue };
            let (mut segments, mut records, mut bytes, mut blocks) = (0u64, 0u64, 0u64, 0u64);
            for f in list(&day_dir)? {
                if f.file_name().and_then(|n| n.to_str()).and_then(parse_file_name).is_none() {
                    continue;
                }
                match Segment::open(&f) {
                    Ok(s) => {
                        if a.verify {
                            errors.extend(s.verify().iter().map(ToString::to_string));
                        }
                        segments += 1;
                        records += s.meta.rows;
                        bytes += s.file_len;
                        blocks += s.meta.blocks.len() as u64;
                        breakdown.add(&s);
                    }
                    Err(e) => errors.push(e.to_string()),
                }
            }
            let app = app_dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            rows.push((app, day, segments, blocks, records, bytes));
        }
    }
    if a.verify {
        let stats = logpipe_wal::verify(&a.data_dir.join("wal")).context("reading the wal")?;
        for (file, offset, why) in stats.cut {
            errors.push(format!(
                "wal {file} at offset {offset}: {why} (replay drops this frame and the rest of the file)"
            ));
        }
        if let Err(e) = logpipe_storage::idempotency::verify_file(&a.data_dir) {
            errors.push(e);
        }
    }
    let wal: Vec<(String, u64)> = list(&a.data_dir.join("wal"))?
        .into_iter()
        .map(|p| {
            let len = std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
            (p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(), len)
        })
        .collect();
    print(&a, &rows, &wal, &errors, None);
    if a.columns && !a.json {
        breakdown.print();
    }
    if !errors.is_empty() {
        anyhow::bail!("{} damaged part(s) found", errors.len());
    }
    if a.verify {
        eprintln!("verified: every block of every segment, every wal frame and the idempotency keys are intact");
    }
    Ok(())
}

/// (app, day, segments, blocks, records, bytes) of one partition.
type Row = (String, i32, u64, u64, u64, u64);

/// The table (or JSON) of partitions, then the WAL files, then what is damaged; `extra` goes
/// into the JSON object (the bucket's catalog).
fn print(a: &InspectArgs, rows: &[Row], wal: &[(String, u64)], errors: &[String], extra: Option<serde_json::Value>) {
    if a.json {
        let parts: Vec<_> = rows
            .iter()
            .map(|(app, day, s, b, r, by)| {
                serde_json::json!({"app": app, "day": day_name(*day), "segments": s, "blocks": b, "records": r, "bytes": by})
            })
            .collect();
        let wal: Vec<_> = wal.iter().map(|(n, l)| serde_json::json!({"file": n, "bytes": l})).collect();
        let mut out = serde_json::json!({"partitions": parts, "wal": wal, "errors": errors});
        if let Some(extra) = extra {
            out["catalog"] = extra;
        }
        println!("{out}");
        return;
    }
    if let Some(extra) = extra {
        println!("catalog {extra}");
    }
    println!(
        "{:<24} {:<10} {:>8} {:>8} {:>12} {:>14} {:>8}",
        "APP", "DAY", "SEGMENTS", "BLOCKS", "RECORDS", "BYTES", "B/REC"
    );
    let (mut tr, mut tb) = (0u64, 0u64);
    for (app, day, s, b, r, by) in rows {
        tr += r;
        tb += by;
        println!(
            "{app:<24} {:<10} {s:>8} {b:>8} {r:>12} {by:>14} {:>8.1}",
            day_name(*day),
            *by as f64 / (*r).max(1) as f64
        );
    }
    println!("{:<24} {:<10} {:>8} {:>8} {tr:>12} {tb:>14} {:>8.1}", "TOTAL", "", "", "", tb as f64 / tr.max(1) as f64);
    for (n, l) in wal {
        println!("wal {n} {l} bytes");
    }
    for e in errors {
        println!("error: {e}");
    }
}

/// `inspect --s3-bucket`: the newest catalog, by app and day; with --verify every segment
/// object downloaded and checked.
fn bucket(a: &InspectArgs) -> Result<()> {
    use logpipe_cluster::catalog::{s3_store, Catalog, S3Config};
    let cfg = S3Config {
        endpoint: a.s3_endpoint.clone(),
        bucket: a.s3_bucket.clone().unwrap_or_default(),
        region: a.s3_region.clone(),
        access_key_id: None,
        secret_access_key: None,
    };
    let catalog = Catalog::new(s3_store(&cfg).context("object storage")?, &a.s3_prefix);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let tmp = tempfile_dir()?;
    let result = rt.block_on(async {
        let snap = catalog.load().await.context("reading the catalog")?;
        let mut parts: std::collections::BTreeMap<(String, i32), Row> = Default::default();
        let mut errors = Vec::new();
        for e in &snap.segments {
            let day = parse_day_name(&e.day).unwrap_or(0);
            let row = parts.entry((e.app.clone(), day)).or_insert_with(|| (e.app.clone(), day, 0, 0, 0, 0));
            row.2 += 1;
            row.4 += e.records;
            row.5 += e.bytes;
            if a.verify {
                let path = tmp.join("segment.seg");
                let checked = async {
                    let bytes = catalog.get_object(&e.key).await.map_err(|err| err.to_string())?;
                    std::fs::write(&path, &bytes).map_err(|err| err.to_string())?;
                    let seg = Segment::open(&path).map_err(|err| err.to_string())?;
                    row.3 += seg.meta.blocks.len() as u64;
                    let mut damage: Vec<String> = seg.verify().iter().map(ToString::to_string).collect();
                    if seg.meta.rows != e.records || seg.file_len != e.bytes {
                        damage.push(format!(
                            "holds {} records in {} bytes; the catalog lists {} in {}",
                            seg.meta.rows, seg.file_len, e.records, e.bytes
                        ));
                    }
                    Ok::<_, String>(damage)
                };
                match checked.await {
                    Ok(damage) => errors.extend(damage.into_iter().map(|d| format!("{}: {d}", e.key))),
                    Err(why) => errors.push(format!("{}: {why}", e.key)),
                }
            }
        }
        let extra = serde_json::json!({
            "version": snap.version,
            "segments": snap.segments.len(),
            "stream_sequences_stored": snap.stored.len(),
            "stored_ranges": snap.stored.ranges().len(),
            "objects_awaiting_deletion": snap.garbage.len(),
        });
        let rows: Vec<Row> = parts.into_values().collect();
        print(a, &rows, &[], &errors, Some(extra));
        anyhow::Ok(errors)
    });
    let _ = std::fs::remove_dir_all(&tmp);
    let errors = result?;
    if !errors.is_empty() {
        anyhow::bail!("{} damaged part(s) found", errors.len());
    }
    if a.verify {
        eprintln!("verified: every block of every segment object is intact and matches the catalog");
    }
    Ok(())
}

/// A private scratch directory for downloaded segments.
fn tempfile_dir() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("logpipe-inspect-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

fn list(dir: &Path) -> Result<Vec<PathBuf>> {
    match std::fs::read_dir(dir) {
        Ok(rd) => Ok(rd.filter_map(|e| e.ok().map(|e| e.path())).collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e).with_context(|| format!("reading {}", dir.display())),
    }
}
