//! `POST /api/v1/logs`: NDJSON or a JSON array of records, optionally gzip or zstd.
//!
//! A batch is all or nothing: every record is decoded and validated before any is submitted,
//! and the reply is `200 {"accepted": N}` only once the engine has made all N durable.

use std::borrow::Cow;
use std::io::Read;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use http_body_util::BodyExt;
use logpipe_model::{AppName, Record};
use logpipe_storage::{IdempotencyKey, Stored, MAX_KEY_BYTES};
use rustc_hash::FxHashMap;
use serde_json::json;

use tokio::sync::OwnedSemaphorePermit;

use crate::admission::Admitted;
use crate::auth::Access;
use logpipe_formats::{parse_records, text, DecodeCtx};

use crate::{ApiError, AppState, Sink};

pub async fn ingest(
    State(st): State<Arc<AppState>>,
    Extension(access): Extension<Access>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let res = async {
        let default_app = match native_params(raw.as_deref()) {
            Ok(app) => app,
            Err(e) => {
                drain(body).await;
                return Err(e);
            }
        };
        let (accepted, ()) = accept(&st, access, &headers, body, default_app, |body, ctx| {
            let text = text(Cow::Borrowed(body));
            parse_records(&text, ctx.default_app, ctx.limits, ctx.cutoff).map(|r| (r, ()))
        })
        .await?;
        if accepted.duplicate {
            let mut resp = axum::Json(json!({ "accepted": accepted.records, "duplicate": true })).into_response();
            resp.headers_mut().insert("idempotent-replayed", header::HeaderValue::from_static("true"));
            return Ok(resp);
        }
        Ok(axum::Json(json!({ "accepted": accepted.records })).into_response())
    }
    .await;
    if let Err(e) = &res {
        st.metrics.rejected.with_label_values(&["ingest", e.reason()]).inc();
    }
    res
}

/// The native endpoint's one parameter: `?app=`, the app of records that name none.
fn native_params(raw: Option<&str>) -> Result<Option<AppName>, ApiError> {
    let mut default_app = None;
    for (k, v) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        match k.as_ref() {
            "app" => {
                default_app = Some(AppName::parse(&v).map_err(|e| {
                    ApiError::bad_request("bad_parameter", format!("app: {e}")).with("parameter", "app".into())
                })?)
            }
            other => {
                return Err(ApiError::bad_request("bad_parameter", format!("{other}: unknown parameter; expected app"))
                    .with("parameter", other.into()))
            }
        }
    }
    Ok(default_app)
}

/// Bodies up to this size are read and dropped before a refusal is sent, so that clients
/// which write the whole request before reading the answer see the 429, not a broken pipe.
const DRAIN_LIMIT: usize = 16 << 20;

pub(crate) async fn drain(body: Body) {
    let mut body = http_body_util::Limited::new(body, DRAIN_LIMIT);
    while let Some(Ok(_)) = body.frame().await {}
}

/// How a batch was taken.
pub(crate) struct Accepted {
    pub records: u64,
    /// Acknowledged again under an idempotency key already stored: nothing new stored.
    pub duplicate: bool,
}

/// The ingest path every protocol shares: the write scope, body caps, `Content-Encoding`
/// (gzip, zstd), readiness, the memory limits and a place in the ingest pool, then — on an
/// ingest worker — `decode` over the decompressed body, each app's write scope and rate
/// limit, and submission; returns once the batch is durable. `decode` gives the records to
/// store (all or nothing) and whatever the protocol needs for its answer.
pub(crate) async fn accept<T, E, F>(
    st: &Arc<AppState>,
    access: Access,
    headers: &HeaderMap,
    body: Body,
    default_app: Option<AppName>,
    decode: F,
) -> Result<(Accepted, T), ApiError>
where
    T: Send + 'static,
    E: Into<ApiError>,
    F: FnOnce(&[u8], &DecodeCtx) -> Result<(Vec<Record>, T), E> + Send + 'static,
{
    if let Err(e) = access.check_may_write() {
        drain(body).await;
        return Err(e);
    }
    let cap = st.cfg.max_body_bytes;
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("request body is over the limit of {cap} bytes"),
        )
    };
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    if declared.is_some_and(|n| n > cap) {
        return Err(too_large());
    }
    let key = idempotency_key(headers, &access)?;
    let (encoding, sink, _memory, _place) = match admit(st, headers, declared) {
        Ok(a) => a,
        Err(e) => {
            drain(body).await;
            return Err(e);
        }
    };
    let bytes = http_body_util::Limited::new(body, cap).collect().await.map_err(|e| {
        if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
            too_large()
        } else {
            ApiError::bad_request("bad_body", format!("cannot read request body: {e}"))
        }
    })?;
    let bytes = bytes.to_bytes();
    let record_limits = st.cfg.limits;
    let limits = st.rate_limits.clone();
    let state = st.clone();
    let (submitted, per_app, n, extra) = st
        .ingest_pool
        .run(move || -> Result<_, ApiError> {
            let body = decode_bytes(&bytes, encoding, cap)?;
            // what the batch said, independent of its encoding: the default app and the body
            let key = key.map(|key| {
                let mut h = xxhash_rust::xxh3::Xxh3::new();
                h.update(default_app.as_ref().map_or("", |a| a.as_str()).as_bytes());
                h.update(b"\n");
                h.update(&body);
                IdempotencyKey { key, body_hash: h.digest() }
            });
            let cutoff = |app: &AppName| sink.retention_cutoff(&state.cfg, app);
            let ctx = DecodeCtx { default_app: default_app.as_ref(), limits: &record_limits, cutoff: &cutoff };
            let (records, extra) = decode(&body, &ctx).map_err(Into::into)?;
            let n = records.len();
            let mut per_app: FxHashMap<AppName, (u64, u64)> = FxHashMap::default();
            for r in &records {
                if !per_app.contains_key(&r.app) {
                    // all or nothing: one app this token may not write refuses the batch
                    access.check_write(&r.app)?;
                }
                let e = per_app.entry(r.app.clone()).or_default();
                e.0 += 1;
                e.1 += (r.message.len() + r.tags.iter().map(String::len).sum::<usize>()) as u64;
            }
            if let Some(limits) = &limits {
                let batch: Vec<(&AppName, u64, u64)> = per_app.iter().map(|(a, &(r, b))| (a, r, b)).collect();
                limits.admit(&batch)?;
            }
            let submitted = match sink {
                _ if records.is_empty() => None,
                Sink::Engine(engine) => Some(Submitted::Engine(engine.submit_keyed(records, key)?)),
                Sink::Bus(bus) => {
                    // encoded here, on the ingest pool; the publish itself is awaited outside it
                    let payload = logpipe_cluster::Bus::encode(&records);
                    bus.check_size(&payload)?;
                    // JetStream drops a message whose id it has seen within its duplicate window
                    let id = key.map(|k| {
                        format!("{:032x}-{:016x}", xxhash_rust::xxh3::xxh3_128(k.key.as_bytes()), k.body_hash)
                    });
                    Some(Submitted::Bus(bus, payload, id))
                }
            };
            Ok((submitted, per_app, n, extra))
        })
        .await??;
    let Some(submitted) = submitted else { return Ok((Accepted { records: 0, duplicate: false }, extra)) };
    let stored = match submitted {
        Submitted::Engine(ticket) => ticket.await.unwrap_or(Err(logpipe_storage::IngestError::Closed))?,
        Submitted::Bus(bus, payload, id) => match bus.publish(payload, id).await? {
            // the first publish stored the same body (the id covers it): the same records
            p if p.duplicate => Stored::Again { records: n as u64 },
            _ => Stored::New,
        },
    };
    if let Stored::Again { records } = stored {
        st.metrics.idempotent_replays.inc();
        return Ok((Accepted { records, duplicate: true }, extra));
    }
    for (app, (recs, bytes)) in per_app {
        st.metrics.records_ingested.with_label_values(&[app.as_str()]).inc_by(recs);
        st.metrics.bytes_ingested.with_label_values(&[app.as_str()]).inc_by(bytes);
    }
    Ok((Accepted { records: n as u64, duplicate: false }, extra))
}

/// The `Idempotency-Key` header, if any: 1 to 256 visible ASCII characters, kept apart per
/// token (two tokens may use the same key for different batches).
fn idempotency_key(headers: &HeaderMap, access: &Access) -> Result<Option<String>, ApiError> {
    let Some(v) = headers.get("idempotency-key") else { return Ok(None) };
    let bad = || {
        ApiError::bad_request(
            "bad_idempotency_key",
            format!("Idempotency-Key: 1 to {MAX_KEY_BYTES} visible ASCII characters (no spaces)"),
        )
    };
    let key = v.to_str().map_err(|_| bad())?;
    if key.is_empty() || key.len() > MAX_KEY_BYTES || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(bad());
    }
    Ok(Some(format!("{}\u{0}{key}", access.name.as_deref().unwrap_or(""))))
}

type Admission = (Encoding, Sink, OwnedSemaphorePermit, Admitted);

/// A batch handed on: to the engine (resolves once durable), or encoded for the stream.
enum Submitted {
    Engine(logpipe_storage::IngestTicket),
    Bus(Arc<logpipe_cluster::Bus>, Vec<u8>, Option<String>),
}

/// Everything checked before the body is read: encoding, readiness, memory and a place in
/// the ingest pool.
fn admit(st: &Arc<AppState>, headers: &HeaderMap, declared: Option<usize>) -> Result<Admission, ApiError> {
    let encoding =
        match headers.get(header::CONTENT_ENCODING).map(|v| v.to_str().unwrap_or("?").trim().to_ascii_lowercase()) {
            None => Encoding::Identity,
            Some(e) if e.is_empty() || e == "identity" => Encoding::Identity,
            Some(e) if e == "gzip" || e == "x-gzip" => Encoding::Gzip,
            Some(e) if e == "zstd" => Encoding::Zstd,
            Some(e) => {
                return Err(ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported_encoding",
                    format!("content-encoding {e:?} is not supported; use gzip, zstd or none"),
                ))
            }
        };
    let sink = st.sink()?;
    // Reserve memory for the raw body before reading it; a body of unknown length reserves the cap.
    let kib = (declared.unwrap_or(st.cfg.max_body_bytes) / 1024 + 1).min(u32::MAX as usize) as u32;
    let in_flight_kib = (st.cfg.ingest_memory_bytes / 1024).saturating_sub(st.ingest_memory.available_permits());
    st.memory.check((in_flight_kib as u64 + kib as u64) * 1024)?;
    let memory = st.ingest_memory.clone().try_acquire_many_owned(kib).map_err(|_| {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "ingest_memory_full",
            "ingest bodies in flight are over the memory budget",
        )
    })?;
    let place = st.ingest_pool.admit(StatusCode::TOO_MANY_REQUESTS)?;
    Ok((encoding, sink, memory, place))
}

#[derive(Clone, Copy)]
pub(crate) enum Encoding {
    Identity,
    Gzip,
    Zstd,
}

/// Decompresses the body, capped at `cap` bytes of output. Identity bodies are borrowed.
pub(crate) fn decode_bytes(raw: &[u8], enc: Encoding, cap: usize) -> Result<Cow<'_, [u8]>, ApiError> {
    let mut out = Vec::new();
    let res = match enc {
        Encoding::Identity => return Ok(Cow::Borrowed(raw)),
        Encoding::Gzip => flate2::read::MultiGzDecoder::new(raw).take(cap as u64 + 1).read_to_end(&mut out),
        Encoding::Zstd => match zstd::stream::read::Decoder::new(raw) {
            Ok(d) => d.take(cap as u64 + 1).read_to_end(&mut out),
            Err(e) => Err(e),
        },
    };
    res.map_err(|e| ApiError::bad_request("bad_encoding", format!("body does not decompress: {e}")))?;
    if out.len() > cap {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("decompressed body is over the limit of {cap} bytes"),
        ));
    }
    Ok(Cow::Owned(out))
}
