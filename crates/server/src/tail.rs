//! `GET /api/v1/tail`: acknowledged records that match a query, as server-sent events, from
//! the moment the stream opens.
//!
//! ```text
//! engine writer ──Acked──▶ broadcast ring ──▶ matcher task ──▶ subscriber buffer ──▶ SSE body
//!                     (TAIL_BACKLOG_GROUPS)    (filters on the     (bounded in bytes)
//!                                               blocking pool)
//! ```
//!
//! Ingest never waits for a reader. A reader that does not keep up loses records in one of two
//! places, and the stream says how many, in order, with a `skipped` event:
//! - its buffer is full: the matching records that did not fit are counted (`records`);
//! - its matcher fell more than the ring's length behind, or the ring's records were over
//!   `TAIL_BACKLOG_BYTES`: the acknowledged records it never examined are counted
//!   (`unexamined`; some of them may not have matched).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use logpipe_model::Record;
use logpipe_query::Pipe;
use logpipe_storage::{Acked, Filter};
use parking_lot::Mutex;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{Notify, OwnedSemaphorePermit};

use crate::auth::Access;
use crate::params;
use crate::query::write_record;
use crate::{ApiError, AppState};

/// How often an idle stream sends a comment, so proxies keep it open and a vanished client is
/// noticed.
const KEEP_ALIVE: Duration = Duration::from_secs(10);

pub async fn tail(
    State(st): State<Arc<AppState>>,
    Extension(access): Extension<Access>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let res = tail_inner(&st, &access, raw).await;
    if let Err(e) = &res {
        st.metrics.rejected.with_label_values(&["tail", e.reason()]).inc();
    }
    res
}

async fn tail_inner(st: &Arc<AppState>, access: &Access, raw: Option<String>) -> Result<Response, ApiError> {
    // where acknowledged batches come from: the engine, or (query node) the ingest nodes'
    // announcements
    let engine = match &st.reader {
        Some(_) => None,
        None if st.cfg.bus.is_some() => return Err(ApiError::no_query_role()),
        None => Some(st.engine()?.clone()),
    };
    let mut p = params::parse(raw.as_deref(), &[])?;
    p.query.app_scope = access.read_scope()?;
    let mut limit = None;
    let mut fields = None;
    for pipe in &p.pipes {
        match pipe {
            Pipe::Limit(n) => limit = Some(*n),
            Pipe::Fields(f) => fields = Some(f.clone()),
            other => {
                return Err(ApiError::bad_request(
                    "bad_query",
                    format!("q: `| {other}` does not fit a live tail; it takes `| limit` and `| fields`"),
                ))
            }
        }
    }
    let place = st.tails.clone().try_acquire_owned().map_err(|_| {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_tails",
            format!("{} live tails are open, the most this server allows (--max-tails)", st.cfg.max_tails),
        )
    })?;
    // compiling a regex is CPU work; it is capped in size, and a tail compiles once
    let filter = Arc::new(Filter::compile(&p.query, st.cfg.engine.regex_size_limit)?);
    let buffer = Arc::new(Buffer::new(st.cfg.tail_buffer_bytes));
    let (rx, next) = match (&engine, &st.reader) {
        (Some(engine), _) => engine.subscribe(),
        (None, Some(reader)) => {
            reader.subscribe_tail().await.map_err(|e| ApiError::unavailable("nats_unreachable", e))?
        }
        (None, None) => unreachable!("checked above"),
    };
    tokio::spawn(matcher(rx, next, filter, buffer.clone()));
    st.metrics.tails.inc();
    let reader = Reader {
        buffer: buffer.clone(),
        _place: place,
        metrics: st.metrics.clone(),
        stop: st.stopping.subscribe(),
        remaining: limit,
        fields,
    };
    let stream = futures_util::stream::unfold(reader, |mut r| async move {
        let ev = r.next().await?;
        Some((Ok::<_, Infallible>(ev), r))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)).into_response())
}

/// What the matcher hands the reader, in stream order.
enum Item {
    Record(Record),
    Skipped { records: u64, unexamined: u64 },
}

struct Queue {
    items: VecDeque<Item>,
    bytes: usize,
    reader_gone: bool,
    matcher_gone: bool,
}

/// One subscriber's bounded buffer between its matcher and its HTTP stream.
struct Buffer {
    queue: Mutex<Queue>,
    cap_bytes: usize,
    /// Wakes the reader when items arrive or the matcher stops.
    to_reader: Notify,
    /// Wakes the matcher when the reader has gone.
    to_matcher: Notify,
}

impl Buffer {
    fn new(cap_bytes: usize) -> Buffer {
        Buffer {
            queue: Mutex::new(Queue { items: VecDeque::new(), bytes: 0, reader_gone: false, matcher_gone: false }),
            cap_bytes,
            to_reader: Notify::new(),
            to_matcher: Notify::new(),
        }
    }

    /// Queues what fits; counts the rest (and `unexamined`) into a `Skipped` item in place.
    fn push(&self, records: Vec<Record>, unexamined: u64) {
        let mut q = self.queue.lock();
        if unexamined > 0 {
            q.skip(0, unexamined);
        }
        for r in records {
            let size = r.mem_size();
            if q.bytes + size > self.cap_bytes {
                q.skip(1, 0);
            } else {
                q.bytes += size;
                q.items.push_back(Item::Record(r));
            }
        }
        drop(q);
        self.to_reader.notify_one();
    }
}

impl Queue {
    fn skip(&mut self, records: u64, unexamined: u64) {
        if let Some(Item::Skipped { records: r, unexamined: u }) = self.items.back_mut() {
            *r += records;
            *u += unexamined;
        } else {
            self.items.push_back(Item::Skipped { records, unexamined });
        }
    }
}

/// Receives acknowledged batches, keeps what matches, and fills the buffer, until the reader
/// goes or the engine stops.
/// `next` is the number of the first record acknowledged after subscribing.
async fn matcher(
    mut rx: tokio::sync::broadcast::Receiver<Arc<Acked>>,
    mut next: u64,
    filter: Arc<Filter>,
    buffer: Arc<Buffer>,
) {
    loop {
        let got = tokio::select! {
            got = rx.recv() => got,
            _ = buffer.to_matcher.notified() => break,
        };
        let batch = match got {
            Ok(b) => b,
            // counted from the sequence numbers when the next batch arrives
            Err(RecvError::Lagged(_)) => continue,
            Err(RecvError::Closed) => break,
        };
        // groups lost to the ring, and records left out when the backlog was full
        let unexamined = batch.first.saturating_sub(next) + (batch.count - batch.records.len() as u64);
        next = next.max(batch.first + batch.count);
        let f = filter.clone();
        // matching (a regex over a large batch) is CPU work: off the async runtime
        let matched = tokio::task::spawn_blocking(move || {
            batch.records.iter().filter(|r| f.record_matches(r)).cloned().collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
        if buffer.queue.lock().reader_gone {
            break;
        }
        if !matched.is_empty() || unexamined > 0 {
            buffer.push(matched, unexamined);
        }
    }
    buffer.queue.lock().matcher_gone = true;
    buffer.to_reader.notify_one();
}

/// The HTTP side of one tail: turns buffered items into events. Dropping it (the client went
/// away, or the stream ended) stops the matcher and frees the tail's place.
struct Reader {
    buffer: Arc<Buffer>,
    _place: OwnedSemaphorePermit,
    metrics: crate::metrics::ServerMetrics,
    stop: tokio::sync::watch::Receiver<bool>,
    remaining: Option<usize>,
    fields: Option<Vec<String>>,
}

impl Reader {
    async fn next(&mut self) -> Option<Event> {
        loop {
            if self.remaining == Some(0) || *self.stop.borrow() {
                return None;
            }
            // one item at a time: what the client has not read stays counted in the buffer
            let (item, matcher_gone) = {
                let mut q = self.buffer.queue.lock();
                let item = q.items.pop_front();
                if let Some(Item::Record(r)) = &item {
                    q.bytes -= r.mem_size();
                }
                (item, q.matcher_gone)
            };
            match item {
                Some(Item::Record(r)) => {
                    if let Some(n) = &mut self.remaining {
                        *n -= 1;
                    }
                    let mut line = Vec::with_capacity(256);
                    write_record(&mut line, &r, self.fields.as_deref());
                    line.pop(); // the newline
                    return Some(Event::default().data(String::from_utf8_lossy(&line)));
                }
                Some(Item::Skipped { records, unexamined }) => {
                    self.metrics.tail_skipped.inc_by(records + unexamined);
                    let data = serde_json::json!({"records": records, "unexamined": unexamined});
                    return Some(Event::default().event("skipped").data(data.to_string()));
                }
                None if matcher_gone => return None,
                None => {
                    tokio::select! {
                        _ = self.buffer.to_reader.notified() => {}
                        changed = self.stop.changed() => if changed.is_err() { return None },
                    }
                }
            }
        }
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.buffer.queue.lock().reader_gone = true;
        self.buffer.to_matcher.notify_one();
        self.metrics.tails.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use logpipe_model::AppName;
    use logpipe_storage::{Query, DEFAULT_REGEX_SIZE_LIMIT};

    fn batch(first: u64, n: u64) -> Arc<Acked> {
        let app = AppName::parse("web").unwrap();
        let records = (first..first + n)
            .map(|i| Record { app: app.clone(), ts: i as i64, message: format!("m{i}"), tags: vec![] })
            .collect();
        Arc::new(Acked::new(first, n, records))
    }

    #[tokio::test]
    async fn a_matcher_that_falls_behind_the_ring_counts_what_it_never_examined() {
        let (tx, rx) = tokio::sync::broadcast::channel(4);
        let filter = Arc::new(Filter::compile(&Query::default(), DEFAULT_REGEX_SIZE_LIMIT).unwrap());
        let buffer = Arc::new(Buffer::new(1 << 20));
        // seven groups into a ring of four before the matcher runs: it misses the first three,
        // and says so
        for i in 0..5 {
            tx.send(batch(i * 10, 10)).unwrap();
        }
        // a group whose records the backlog had no room for
        tx.send(Arc::new(Acked::new(50, 4, Vec::new()))).unwrap();
        tx.send(batch(54, 1)).unwrap();
        drop(tx);
        matcher(rx, 0, filter, buffer.clone()).await;
        let q = buffer.queue.lock();
        let seen: Vec<String> = q
            .items
            .iter()
            .map(|it| match it {
                Item::Record(r) => r.message.clone(),
                Item::Skipped { records, unexamined } => format!("skipped {records}/{unexamined}"),
            })
            .collect();
        let mut want = vec!["skipped 0/30".to_string()];
        want.extend((30..50).map(|i| format!("m{i}")));
        want.extend(["skipped 0/4".to_string(), "m54".to_string()]);
        assert_eq!(seen, want);
        assert!(q.matcher_gone);
    }

    #[test]
    fn a_full_buffer_counts_skipped_records_in_place() {
        let app = AppName::parse("web").unwrap();
        let r = |i: i64| Record { app: app.clone(), ts: i, message: "x".repeat(100), tags: vec![] };
        let one = r(0).mem_size();
        let buffer = Buffer::new(one * 2);
        buffer.push(vec![r(1), r(2), r(3), r(4)], 0);
        buffer.push(vec![r(5)], 7);
        let q = buffer.queue.lock();
        let kinds: Vec<String> = q
            .items
            .iter()
            .map(|it| match it {
                Item::Record(r) => r.ts.to_string(),
                Item::Skipped { records, unexamined } => format!("skipped {records}/{unexamined}"),
            })
            .collect();
        assert_eq!(kinds, ["1", "2", "skipped 3/7"]);
    }
}
