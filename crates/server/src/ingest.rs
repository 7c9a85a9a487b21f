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
use logpipe_model::{format_time, parse_time, AppName, Limits, Record};
use logpipe_storage::{IdempotencyKey, Stored, MAX_KEY_BYTES};
use rustc_hash::FxHashMap;
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use serde_json::json;

use tokio::sync::OwnedSemaphorePermit;

use crate::admission::Admitted;
use crate::auth::Access;
use crate::{ApiError, AppState, Sink};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireRecord<'a> {
    #[serde(default, borrow)]
    app: Option<Cow<'a, str>>,
    #[serde(default, deserialize_with = "timestamp")]
    timestamp: Option<i64>,
    message: String,
    #[serde(default)]
    tags: Option<Vec<String>>,
}

/// RFC 3339 string, integer nanoseconds, or null (server time).
fn timestamp<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Option<i64>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an RFC 3339 string or integer nanoseconds")
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Ok(Some(v))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            i64::try_from(v).map(Some).map_err(|_| E::custom("timestamp out of range"))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            parse_time(v).map(Some).map_err(E::custom)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D2: Deserializer<'de>>(self, d: D2) -> Result<Self::Value, D2::Error> {
            d.deserialize_any(V)
        }
    }
    d.deserialize_any(V)
}

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
            Ok((parse_records(&text, ctx.default_app, ctx.limits, ctx.cutoff)?, ()))
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

/// What a protocol's decoder is given besides the body.
pub(crate) struct DecodeCtx<'a> {
    /// The app of records that name none (the native `?app=`, an Elasticsearch index in the path).
    pub default_app: Option<&'a AppName>,
    pub limits: &'a Limits,
    /// The oldest timestamp kept for an app, if retention applies.
    pub cutoff: &'a dyn Fn(&AppName) -> Option<i64>,
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
pub(crate) async fn accept<T, F>(
    st: &Arc<AppState>,
    access: Access,
    headers: &HeaderMap,
    body: Body,
    default_app: Option<AppName>,
    decode: F,
) -> Result<(Accepted, T), ApiError>
where
    T: Send + 'static,
    F: FnOnce(&[u8], &DecodeCtx) -> Result<(Vec<Record>, T), ApiError> + Send + 'static,
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
            let (records, extra) = decode(&body, &ctx)?;
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

/// UTF-8 text of `b`; the fast validation path first, replacement only when it fails.
pub(crate) fn text(b: Cow<'_, [u8]>) -> Cow<'_, str> {
    match b {
        Cow::Borrowed(b) => match std::str::from_utf8(b) {
            Ok(s) => Cow::Borrowed(s),
            Err(_) => String::from_utf8_lossy(b),
        },
        Cow::Owned(v) => match String::from_utf8(v) {
            Ok(s) => Cow::Owned(s),
            Err(e) => Cow::Owned(String::from_utf8_lossy(e.as_bytes()).into_owned()),
        },
    }
}

/// Deepest nesting of JSON arrays and objects accepted in a body (a record needs 2, an array
/// of records 3).
pub(crate) const MAX_JSON_DEPTH: usize = 32;

/// Refuses JSON nested deeper than [`MAX_JSON_DEPTH`] before it is parsed: sonic-rs recurses
/// without a limit when it skips a value it does not want, so `{"app":[[[[…` a hundred
/// thousand deep would overflow the stack and abort the server (found by the `ingest` fuzz
/// target). A line with fewer opening brackets than the limit is passed at the cost of a count.
pub(crate) fn check_json_depth(text: &str) -> Result<(), String> {
    let b = text.as_bytes();
    // `[` (0x5b) and `{` (0x7b) differ only in bit 0x20: one compare per byte, counted in
    // bytes over chunks that cannot overflow one, which the compiler turns into a vector loop
    // (this count runs over every byte of every line)
    let opening: usize =
        b.chunks(255).map(|chunk| usize::from(chunk.iter().fold(0u8, |n, &c| n + u8::from(c | 0x20 == b'{')))).sum();
    if opening <= MAX_JSON_DEPTH {
        return Ok(());
    }
    let (mut depth, mut i) = (0usize, 0usize);
    while i < b.len() {
        match b[i] {
            b'"' => {
                // strings are most of the bytes: short ones (keys) byte by byte, past 16 bytes
                // jump from quote or backslash to the next one
                i += 1;
                let mut plain = 0;
                loop {
                    if plain < 16 {
                        match b.get(i) {
                            // unterminated: the parser refuses it
                            None => return Ok(()),
                            Some(b'"') => {
                                i += 1;
                                break;
                            }
                            Some(b'\\') => i += 2,
                            Some(_) => {
                                i += 1;
                                plain += 1;
                            }
                        }
                        continue;
                    }
                    match memchr::memchr2(b'"', b'\\', b.get(i..).unwrap_or_default()) {
                        None => return Ok(()),
                        Some(k) if b[i + k] == b'\\' => i += k + 2,
                        Some(k) => {
                            i += k + 1;
                            break;
                        }
                    }
                }
                continue;
            }
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_JSON_DEPTH {
                    return Err(format!("JSON is nested deeper than {MAX_JSON_DEPTH} levels"));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    Ok(())
}

/// A JSON document of a compatibility protocol as a `serde_json::Value`, parsed by sonic-rs
/// (several times faster than serde_json here) after the depth check that keeps it safe.
pub(crate) fn json_value(text: &str) -> Result<serde_json::Value, String> {
    check_json_depth(text)?;
    sonic_rs::from_str(text).map_err(|e| e.to_string())
}

/// Parses and validates every record of a body (NDJSON or a JSON array); the first bad one
/// fails the batch. `cutoff` gives the oldest timestamp kept for an app, if any.
pub fn parse_records(
    body: &str,
    default_app: Option<&AppName>,
    limits: &Limits,
    cutoff: &dyn Fn(&AppName) -> Option<i64>,
) -> Result<Vec<Record>, ApiError> {
    let now = crate::now_ns();
    // most batches name a handful of apps: parse each name and look up its retention once
    let mut apps: FxHashMap<String, (AppName, Option<i64>)> = FxHashMap::default();
    let default_app = default_app.map(|d| (d.clone(), cutoff(d)));
    let mut check = |w: WireRecord| -> Result<Record, String> {
        let (app, cut) = match (&w.app, &default_app) {
            (Some(a), _) => match apps.get(a.as_ref()) {
                Some((app, cut)) => (app.clone(), *cut),
                None => {
                    let app = AppName::parse(a).map_err(|e| e.to_string())?;
                    let cut = cutoff(&app);
                    apps.insert(a.to_string(), (app.clone(), cut));
                    (app, cut)
                }
            },
            (None, Some((d, cut))) => (d.clone(), *cut),
            (None, None) => return Err("missing app: set it in the record or with ?app=".into()),
        };
        let ts = w.timestamp.unwrap_or(now);
        if let Some(c) = cut.filter(|&c| ts < c) {
            return Err(format!(
                "timestamp {} is older than the retention of app {app} (records before {} are not kept)",
                format_time(ts),
                format_time(c)
            ));
        }
        Record::new(app, ts, w.message, w.tags.unwrap_or_default(), limits).map_err(|e| e.to_string())
    };
    let trimmed = body.trim_start();
    let mut out = Vec::new();
    if trimmed.starts_with('[') {
        check_json_depth(trimmed).map_err(|m| ApiError::bad_request("bad_record", m))?;
        let items: Vec<serde_json::Value> = serde_json::from_str(trimmed)
            .map_err(|e| ApiError::bad_request("bad_record", format!("body is not a JSON array of records: {e}")))?;
        for (i, v) in items.into_iter().enumerate() {
            let bad =
                |m: String| ApiError::bad_request("bad_record", format!("index {i}: {m}")).with("index", i.into());
            let w = WireRecord::deserialize(&v).map_err(|e| bad(e.to_string()))?;
            out.push(check(w).map_err(bad)?);
        }
    } else {
        for (i, line) in body.split('\n').enumerate() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let n = i + 1;
            let bad = |m: String| ApiError::bad_request("bad_record", format!("line {n}: {m}")).with("line", n.into());
            // sonic-rs: a SIMD JSON parser behind the same serde types, several times faster
            // than serde_json on this, the hottest loop of ingest
            check_json_depth(line).map_err(bad)?;
            let w: WireRecord = sonic_rs::from_str(line).map_err(|e| bad(e.to_string()))?;
            out.push(check(w).map_err(bad)?);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<Vec<Record>, ApiError> {
        parse_records(body, None, &Limits::default(), &|_| None)
    }

    #[test]
    fn ndjson_and_arrays() {
        let r = parse("{\"app\":\"A\",\"timestamp\":\"2025-01-01T00:00:00+01:00\",\"message\":\"m\",\"tags\":[\"b\",\"a\"]}\n\n{\"app\":\"b\",\"timestamp\":5,\"message\":\"x\"}").unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].app.as_str(), "a");
        assert_eq!(r[0].ts, 1_735_686_000_000_000_000);
        assert_eq!(r[0].tags, ["a", "b"]);
        assert_eq!(r[1].ts, 5);
        let a = parse("[{\"app\":\"a\",\"message\":\"m\",\"timestamp\":null}]").unwrap();
        assert_eq!(a.len(), 1);
    }

    #[test]
    fn deep_nesting_is_refused_before_parsing() {
        for n in [33, 100_000] {
            let deep = format!("{}{}", "[".repeat(n), "]".repeat(n));
            for body in [
                format!("{{\"app\":{deep},\"message\":\"x\"}}"),
                format!("{{\"app\":\"a\",\"message\":\"x\",\"extra\":{deep}}}"),
                format!("[{{\"app\":\"a\",\"message\":\"x\",\"tags\":{deep}}}]"),
                // an escaped backslash ends in a real closing quote
                format!("{{\"app\":\"a\",\"message\":\"x\\\\\",\"extra\":{deep}}}"),
            ] {
                let e = parse(&body).unwrap_err();
                assert!(e.message.contains("nested deeper than 32"), "{n}: {}", e.message);
            }
        }
        // brackets inside strings are text, however many
        let msg = "[".repeat(1000);
        let ok = parse(&format!("{{\"app\":\"a\",\"message\":\"{msg}\\\"{msg}\",\"tags\":[\"k=[{{\"]}}")).unwrap();
        assert_eq!(ok[0].message.len(), 2001);
    }

    #[test]
    fn errors_name_the_line_or_index() {
        let e = parse("{\"app\":\"a\",\"message\":\"m\"}\n{\"app\":\"a\",\"message\":5}").unwrap_err();
        assert!(e.message.starts_with("line 2:"), "{}", e.message);
        let e = parse("[{\"app\":\"a\",\"message\":\"m\"},{\"app\":\"a\"}]").unwrap_err();
        assert!(e.message.starts_with("index 1:"), "{}", e.message);
        for bad in [
            "{\"message\":\"no app\"}",
            "{\"app\":\"a\",\"message\":\"m\",\"timestamp\":\"soon\"}",
            "{\"app\":\"a\",\"message\":\"m\",\"timestamp\":1.5}",
            "{\"app\":\"a\",\"message\":\"m\",\"level\":\"x\"}",
            "{\"app\":\"a\",\"message\":\"m\",\"tags\":\"x\"}",
            "not json",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
