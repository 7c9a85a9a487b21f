//! Storage metrics, defined next to the code that counts them and registered into the
//! server's registry.

use prometheus::{Histogram, HistogramOpts, IntCounter, IntGauge, Opts, Registry};

#[derive(Clone)]
pub struct EngineMetrics {
    pub wal_fsync_seconds: Histogram,
    pub wal_group_batches: Histogram,
    pub ingest_queue_depth: IntGauge,
    pub memtable_bytes: IntGauge,
    pub memtable_records: IntGauge,
    pub segments: IntGauge,
    pub partitions: IntGauge,
    pub disk_bytes: IntGauge,
    pub open_segment_files: IntGauge,
    pub segment_file_opens: IntCounter,
    pub flushes: IntCounter,
    pub flush_failures: IntCounter,
    pub merges: IntCounter,
    pub partitions_dropped: IntCounter,
    pub corrupt_files: IntCounter,
}

impl EngineMetrics {
    pub fn new() -> EngineMetrics {
        let buckets = vec![0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0];
        EngineMetrics {
            wal_fsync_seconds: Histogram::with_opts(
                HistogramOpts::new("logpipe_wal_fsync_seconds", "Time taken by one WAL fsync (one group commit).")
                    .buckets(buckets),
            )
            .expect("valid metric"),
            wal_group_batches: Histogram::with_opts(
                HistogramOpts::new("logpipe_wal_group_commit_batches", "Ingest batches made durable by one WAL write.")
                    .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0]),
            )
            .expect("valid metric"),
            ingest_queue_depth: gauge("logpipe_ingest_queue_depth", "Ingest batches waiting for the WAL writer."),
            memtable_bytes: gauge("logpipe_memtable_bytes", "Bytes of acknowledged records not yet in segments."),
            memtable_records: gauge("logpipe_memtable_records", "Acknowledged records not yet in segments."),
            segments: gauge("logpipe_segments", "Segment files on disk."),
            partitions: gauge("logpipe_partitions", "Partitions (app, day) on disk."),
            disk_bytes: gauge("logpipe_disk_bytes", "Bytes of segment files on disk."),
            open_segment_files: gauge(
                "logpipe_open_segment_files",
                "Segment files open now (at most --max-open-segment-files, plus those being read).",
            ),
            segment_file_opens: counter(
                "logpipe_segment_file_opens_total",
                "Segment files opened again after the file cache had closed them.",
            ),
            flushes: counter("logpipe_flushes_total", "Memtable flushes to segments."),
            flush_failures: counter(
                "logpipe_flush_failures_total",
                "Memtable flushes that failed (each is retried while nothing of it is left on disk).",
            ),
            merges: counter("logpipe_merges_total", "Segment merges."),
            partitions_dropped: counter(
                "logpipe_retention_partitions_dropped_total",
                "Partitions deleted by retention.",
            ),
            corrupt_files: counter("logpipe_corrupt_files_total", "Files found corrupt and set aside."),
        }
    }

    pub fn register(&self, r: &Registry) -> prometheus::Result<()> {
        r.register(Box::new(self.wal_fsync_seconds.clone()))?;
        r.register(Box::new(self.wal_group_batches.clone()))?;
        for g in [
            &self.ingest_queue_depth,
            &self.memtable_bytes,
            &self.memtable_records,
            &self.segments,
            &self.partitions,
            &self.disk_bytes,
            &self.open_segment_files,
        ] {
            r.register(Box::new(g.clone()))?;
        }
        for c in [
            &self.segment_file_opens,
            &self.flushes,
            &self.flush_failures,
            &self.merges,
            &self.partitions_dropped,
            &self.corrupt_files,
        ] {
            r.register(Box::new(c.clone()))?;
        }
        Ok(())
    }
}

impl Default for EngineMetrics {
    fn default() -> Self {
        Self::new()
    }
}

fn gauge(name: &str, help: &str) -> IntGauge {
    IntGauge::with_opts(Opts::new(name, help)).expect("valid metric")
}

fn counter(name: &str, help: &str) -> IntCounter {
    IntCounter::with_opts(Opts::new(name, help)).expect("valid metric")
}
