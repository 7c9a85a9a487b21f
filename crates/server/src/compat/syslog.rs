//! Syslog over TCP and UDP: RFC 5424 (with or without a BOM before the message; structured
//! data as tags) and RFC 3164, framed by octet counting (RFC 6587), newlines, NULs, or the end
//! of the connection.
//!
//! Mapping (docs/INTEGRATIONS.md): APP-NAME (RFC 3164: the tag before `[pid]:`) is the app,
//! made valid as for OTLP (`-` or none: `syslog`); `host=` the hostname; `level=` the
//! severity's keyword (`emerg` … `debug`); `facility=` the facility's keyword; `procid=`,
//! `msgid=` when given; structured data as `SD-ID.PARAM=value` (`origin.ip=10.0.0.1`). A
//! message whose time cannot be read keeps the time it arrived.
//!
//! Frames are cut on the async runtime; parsing runs on the ingest pool, as for every other
//! protocol. Syslog has no acknowledgement and no authentication: TCP is read no faster than
//! records are made durable (a writer that outruns the server waits in TCP's flow control), UDP datagrams
//! that arrive while the server is overloaded are dropped and counted. Connections and frame
//! sizes are bounded.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use logpipe_model::{AppName, Record};
use logpipe_storage::{Engine, IngestError};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream, UdpSocket};

use crate::now_ns;
use crate::{AppState, Sink};
use logpipe_formats::syslog::{next_frame, parse, Oversized};
pub use logpipe_formats::syslog::{DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_FRAME};

/// Records gathered from one connection before they are submitted.
const BATCH: usize = 1000;

/// Parses `frames` on the ingest pool (never on the async runtime) and submits the records,
/// waiting while the pool or the engine is full (TCP: backpressure) unless `drop_when_full`
/// (UDP). Returns how many were stored.
async fn submit(st: &Arc<AppState>, sink: &Sink, frames: Vec<Vec<u8>>, drop_when_full: bool) -> usize {
    if frames.is_empty() {
        return 0;
    }
    let n_frames = frames.len() as u64;
    let place = loop {
        match st.ingest_pool.admit(axum::http::StatusCode::TOO_MANY_REQUESTS) {
            Ok(p) => break p,
            Err(_) if !drop_when_full => tokio::time::sleep(Duration::from_millis(20)).await,
            Err(_) => {
                st.metrics.rejected.with_label_values(&["syslog", "overloaded"]).inc_by(n_frames);
                return 0;
            }
        }
    };
    let (limits, metrics, cutoff_sink) = (st.cfg.limits, st.metrics.clone(), sink.clone());
    let state = st.clone();
    let parsed = st
        .ingest_pool
        .run(move || {
            let now = now_ns();
            let mut records = Vec::with_capacity(frames.len());
            for f in &frames {
                match parse(f, now, &limits) {
                    Ok(r) if cutoff_sink.retention_cutoff(&state.cfg, &r.app).is_none_or(|c| r.ts >= c) => {
                        records.push(r)
                    }
                    Ok(_) => metrics.rejected.with_label_values(&["syslog", "older_than_retention"]).inc(),
                    Err(_) => metrics.rejected.with_label_values(&["syslog", "bad_message"]).inc(),
                }
            }
            records
        })
        .await;
    drop(place);
    let Ok(records) = parsed else { return 0 };
    let records = within_rate_limits(st, records);
    if records.is_empty() {
        return 0;
    }
    let n = records.len();
    let mut per_app: std::collections::HashMap<AppName, u64> = Default::default();
    for r in &records {
        *per_app.entry(r.app.clone()).or_default() += 1;
    }
    let stored = match sink {
        Sink::Engine(engine) => to_engine(st, engine, records, drop_when_full).await,
        Sink::Bus(bus) => to_bus(st, bus, records, drop_when_full).await,
    };
    if stored {
        for (app, c) in per_app {
            st.metrics.records_ingested.with_label_values(&[app.as_str()]).inc_by(c);
        }
        n
    } else {
        0
    }
}

/// Stores `records` in the engine, waiting while it is full unless `drop_when_full`.
async fn to_engine(st: &AppState, engine: &Arc<Engine>, records: Vec<Record>, drop_when_full: bool) -> bool {
    let n = records.len() as u64;
    let mut pending = records;
    loop {
        // the engine takes the batch by value; TCP offers a refused one again, so keeps a copy
        let retry = (!drop_when_full).then(|| pending.clone());
        match engine.submit(std::mem::take(&mut pending)) {
            Ok(ticket) => match ticket.await {
                Ok(Ok(_)) => return true,
                _ => {
                    st.metrics.rejected.with_label_values(&["syslog", "not_stored"]).inc_by(n);
                    return false;
                }
            },
            Err(
                IngestError::QueueFull(_)
                | IngestError::FlushBehind(_)
                | IngestError::MergeBehind { .. }
                | IngestError::DiskFull { .. }
                | IngestError::NoSpace(_)
                | IngestError::Retrying(_),
            ) if retry.is_some() => {
                pending = retry.unwrap_or_default();
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(_) => {
                st.metrics.rejected.with_label_values(&["syslog", "overloaded"]).inc_by(n);
                return false;
            }
        }
    }
}

/// Cluster mode: publishes `records` to the stream (in parts that fit a message), waiting
/// while JetStream pushes back unless `drop_when_full`.
async fn to_bus(st: &AppState, bus: &Arc<logpipe_cluster::Bus>, records: Vec<Record>, drop_when_full: bool) -> bool {
    let n = records.len() as u64;
    let mut parts = vec![records];
    while let Some(part) = parts.pop() {
        let (part, payload) = match tokio::task::spawn_blocking(move || {
            let p = logpipe_cluster::Bus::encode(&part);
            (part, p)
        })
        .await
        {
            Ok(x) => x,
            Err(_) => return false,
        };
        if bus.check_size(&payload).is_err() && part.len() > 1 {
            let mut part = part;
            let second = part.split_off(part.len() / 2);
            parts.push(second);
            parts.push(part);
            continue;
        }
        loop {
            match bus.publish(payload.clone(), None).await {
                Ok(_) => break,
                Err(logpipe_cluster::BusError::Refused(_) | logpipe_cluster::BusError::Unavailable(_))
                    if !drop_when_full =>
                {
                    tokio::time::sleep(Duration::from_millis(200)).await
                }
                Err(_) => {
                    // what was published before this part stays published: syslog has no
                    // acknowledgement to withdraw
                    st.metrics.rejected.with_label_values(&["syslog", "overloaded"]).inc_by(n);
                    return false;
                }
            }
        }
    }
    true
}

/// The records of the apps within their ingest limits (`--app-records-per-second`, ...). Syslog
/// cannot answer `429`, and one connection often carries many apps (a forwarding rsyslog), so
/// an app over its limit has its records dropped, counted as `app_rate_limited`, while the
/// others' are stored: one flooding app cannot hold the others back.
fn within_rate_limits(st: &AppState, records: Vec<Record>) -> Vec<Record> {
    let Some(limits) = st.rate_limits.as_ref() else { return records };
    let before = records.len();
    // record by record: how the frames fell into reads must not decide what is kept
    let kept: Vec<Record> = records
        .into_iter()
        .filter(|r| {
            let bytes = (r.message.len() + r.tags.iter().map(String::len).sum::<usize>()) as u64;
            limits.admit(&[(&r.app, 1, bytes)]).is_ok()
        })
        .collect();
    if kept.len() < before {
        st.metrics.rejected.with_label_values(&["syslog", "app_rate_limited"]).inc_by((before - kept.len()) as u64);
    }
    kept
}

/// Serves syslog over TCP until `stop` is set.
pub async fn serve_tcp(st: Arc<AppState>, listener: TcpListener, engine: Sink) {
    let places = Arc::new(tokio::sync::Semaphore::new(st.cfg.syslog_max_connections));
    let mut stop = st.stopping.subscribe();
    loop {
        let (sock, _) = tokio::select! {
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(_) => continue,
            },
            _ = stop.wait_for(|s| *s) => return,
        };
        let Ok(place) = places.clone().try_acquire_owned() else {
            st.metrics.rejected.with_label_values(&["syslog", "too_many_connections"]).inc();
            drop(sock);
            continue;
        };
        let (st, engine) = (st.clone(), engine.clone());
        tokio::spawn(async move {
            connection(&st, sock, &engine).await;
            drop(place);
        });
    }
}

async fn connection(st: &Arc<AppState>, mut sock: TcpStream, engine: &Sink) {
    let max = st.cfg.syslog_max_frame;
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut stop = st.stopping.subscribe();
    let mut skipping = false;
    loop {
        let n = tokio::select! {
            r = sock.read_buf(&mut buf) => r.unwrap_or(0),
            _ = stop.wait_for(|s| *s) => 0,
        };
        let eof = n == 0;
        let mut batch = Vec::new();
        loop {
            match next_frame(&mut buf, max, eof) {
                Ok(Some(frame)) => {
                    if std::mem::take(&mut skipping) {
                        continue; // the tail of a frame that was over the limit
                    }
                    batch.push(frame);
                    if batch.len() >= BATCH {
                        submit(st, engine, std::mem::take(&mut batch), false).await;
                    }
                }
                Ok(None) => break,
                Err(how) => {
                    if !std::mem::replace(&mut skipping, false) {
                        st.metrics.rejected.with_label_values(&["syslog", "frame_too_large"]).inc();
                    }
                    match how {
                        Oversized::Dropped => {}
                        Oversized::Unfinished => {
                            buf.clear();
                            skipping = true;
                        }
                        Oversized::Count => {
                            submit(st, engine, batch, false).await;
                            return;
                        }
                    }
                }
            }
        }
        submit(st, engine, batch, false).await;
        if eof {
            return;
        }
    }
}

/// Serves syslog over UDP (one message per datagram) until `stop` is set.
pub async fn serve_udp(st: Arc<AppState>, sock: UdpSocket, engine: Sink) {
    let mut stop = st.stopping.subscribe();
    let mut buf = vec![0u8; 65_536];
    loop {
        let n = tokio::select! {
            r = sock.recv(&mut buf) => match r {
                Ok(n) => n,
                Err(_) => continue,
            },
            _ = stop.wait_for(|s| *s) => return,
        };
        let mut batch = vec![buf[..n].to_vec()];
        // whatever else has arrived goes in the same batch
        while batch.len() < BATCH {
            match sock.try_recv(&mut buf) {
                Ok(n) => batch.push(buf[..n].to_vec()),
                Err(_) => break,
            }
        }
        submit(&st, &engine, batch, true).await;
    }
}
