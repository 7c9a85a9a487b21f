//! HTTP-level metrics; storage registers its own next to the code that counts them.

use prometheus::{HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

#[derive(Clone)]
pub struct ServerMetrics {
    pub records_ingested: IntCounterVec,
    pub bytes_ingested: IntCounterVec,
    pub rejected: IntCounterVec,
    pub query_seconds: HistogramVec,
    pub inflight: IntGaugeVec,
    pub tails: IntGauge,
    pub tail_skipped: IntCounter,
    pub idempotent_replays: IntCounter,
    pub resident_bytes: IntGauge,
}

impl ServerMetrics {
    pub fn new(r: &Registry) -> prometheus::Result<ServerMetrics> {
        let m = ServerMetrics {
            records_ingested: IntCounterVec::new(
                Opts::new("logpipe_ingested_records_total", "Records acknowledged, per app."),
                &["app"],
            )?,
            bytes_ingested: IntCounterVec::new(
                Opts::new("logpipe_ingested_bytes_total", "Message and tag bytes acknowledged, per app."),
                &["app"],
            )?,
            rejected: IntCounterVec::new(
                Opts::new("logpipe_rejected_requests_total", "Requests refused, by endpoint and reason."),
                &["endpoint", "reason"],
            )?,
            query_seconds: HistogramVec::new(
                HistogramOpts::new("logpipe_query_seconds", "Query latency, by endpoint.")
                    .buckets(vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
                &["endpoint"],
            )?,
            inflight: IntGaugeVec::new(
                Opts::new("logpipe_pool_admitted", "Requests admitted to a worker pool (running or queued)."),
                &["pool"],
            )?,
            tails: IntGauge::new("logpipe_tails", "Live tails open.")?,
            tail_skipped: IntCounter::new(
                "logpipe_tail_skipped_records_total",
                "Records live tails skipped because their reader fell behind.",
            )?,
            idempotent_replays: IntCounter::new(
                "logpipe_ingest_idempotent_replays_total",
                "Batches acknowledged again under an idempotency key seen within the window, not stored again.",
            )?,
            resident_bytes: IntGauge::new(
                "logpipe_resident_memory_bytes",
                "Resident memory of the process, sampled every 50 ms (see --max-memory-bytes).",
            )?,
        };
        r.register(Box::new(m.resident_bytes.clone()))?;
        r.register(Box::new(m.idempotent_replays.clone()))?;
        r.register(Box::new(m.records_ingested.clone()))?;
        r.register(Box::new(m.bytes_ingested.clone()))?;
        r.register(Box::new(m.rejected.clone()))?;
        r.register(Box::new(m.query_seconds.clone()))?;
        r.register(Box::new(m.inflight.clone()))?;
        r.register(Box::new(m.tails.clone()))?;
        r.register(Box::new(m.tail_skipped.clone()))?;
        Ok(m)
    }
}
