//! The wire formats logpipe takes records in, decoded and validated without I/O: its native
//! NDJSON, Elasticsearch `_bulk`, OTLP logs (protobuf and JSON), Loki push (protobuf and
//! JSON), VictoriaLogs JSON lines and syslog (RFC 5424 and 3164, and TCP framing). Each
//! decoder turns a body into records or a [`Refused`] that says why; the HTTP server
//! (`logpipe-server`) routes, admits and submits, and turns a refusal into its status.

use std::borrow::Cow;

use http::StatusCode;
use logpipe_model::{AppName, Limits};

#[doc(hidden)]
pub mod bench;
pub mod doc;
pub mod elastic;
pub mod loki;
pub mod native;
pub mod otlp;
pub mod syslog;
pub mod vlogs;

pub use native::parse_records;
pub use otlp::sanitize_app;

/// Why a body was refused: the HTTP status, a stable code, a message, and an optional
/// extra field for the error object (the line or index of a bad record).
#[derive(Debug)]
pub struct Refused {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub detail: Option<(&'static str, serde_json::Value)>,
}

impl Refused {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Refused {
        Refused { status, code, message: message.into(), detail: None }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Refused {
        Refused::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn with(mut self, key: &'static str, value: serde_json::Value) -> Refused {
        self.detail = Some((key, value));
        self
    }
}

/// What a protocol's decoder is given besides the body.
pub struct DecodeCtx<'a> {
    /// The app of records that name none (the native `?app=`, an Elasticsearch index in the path).
    pub default_app: Option<&'a AppName>,
    pub limits: &'a Limits,
    /// The oldest timestamp kept for an app, if retention applies.
    pub cutoff: &'a dyn Fn(&AppName) -> Option<i64>,
}

/// The tag `key=value`, built without the formatting machinery (decoders make several per
/// record).
pub fn tag(key: &str, value: &str) -> String {
    let mut t = String::with_capacity(key.len() + 1 + value.len());
    t.push_str(key);
    t.push('=');
    t.push_str(value);
    t
}

/// Now, in ns since the epoch: the time of records that carry none.
pub fn now_ns() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i64)
}

/// UTF-8 text of `b`; the fast validation path first, replacement only when it fails.
pub fn text(b: Cow<'_, [u8]>) -> Cow<'_, str> {
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
pub const MAX_JSON_DEPTH: usize = 32;

/// Refuses JSON nested deeper than [`MAX_JSON_DEPTH`] before it is parsed: sonic-rs recurses
/// without a limit when it skips a value it does not want, so `{"app":[[[[…` a hundred
/// thousand deep would overflow the stack and abort the server (found by the `ingest` fuzz
/// target). A line with fewer opening brackets than the limit is passed at the cost of a count.
pub fn check_json_depth(text: &str) -> Result<(), String> {
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
pub fn json_value(text: &str) -> Result<serde_json::Value, String> {
    check_json_depth(text)?;
    sonic_rs::from_str(text).map_err(|e| e.to_string())
}
