//! Grafana Loki's push API: `POST /loki/api/v1/push`, JSON (optionally gzip) or protobuf
//! compressed with snappy (with or without `Content-Encoding: snappy`). Answers `204`.
//!
//! Mapping (docs/INTEGRATIONS.md): every stream label becomes a tag (`env=prod`), and so does
//! each entry's structured metadata; the app is the value of the first of the app labels
//! (`--loki-app-label`, by default `app`, then `service_name`, then `job`) made a valid app
//! name, else `unknown_service`; the line is the message; the entry's timestamp is the time.
//! A push is all or nothing, as Loki's is for a malformed one: any bad entry fails it (`400`).

use logpipe_model::{AppName, Record};
use prost::Message;
use serde_json::Value;

use http::StatusCode;

use crate::{json_value, sanitize_app, DecodeCtx, Refused};

/// The protobuf messages of Loki's `push.proto` (`logproto.PushRequest`).
pub mod proto {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PushRequest {
        #[prost(message, repeated, tag = "1")]
        pub streams: Vec<Stream>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Stream {
        /// The label set in Prometheus text form: `{app="web", env="prod"}`.
        #[prost(string, tag = "1")]
        pub labels: String,
        #[prost(message, repeated, tag = "2")]
        pub entries: Vec<Entry>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Entry {
        #[prost(message, optional, tag = "1")]
        pub timestamp: Option<Timestamp>,
        #[prost(string, tag = "2")]
        pub line: String,
        #[prost(message, repeated, tag = "3")]
        pub structured_metadata: Vec<LabelPair>,
    }

    /// `google.protobuf.Timestamp`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Timestamp {
        #[prost(int64, tag = "1")]
        pub seconds: i64,
        #[prost(int32, tag = "2")]
        pub nanos: i32,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct LabelPair {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(string, tag = "2")]
        pub value: String,
    }
}

/// The labels that name the app, in order, when none is configured.
pub const DEFAULT_APP_LABELS: [&str; 3] = ["app", "service_name", "job"];

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Format {
    /// Snappy-compressed protobuf.
    Protobuf,
    Json,
}

/// Decodes a push body into records, all or nothing.
pub fn decode(
    body: &[u8],
    format: Format,
    app_labels: &[String],
    ctx: &DecodeCtx,
    cap: usize,
) -> Result<Vec<Record>, Refused> {
    let bad = |m: String| Refused::bad_request("bad_push", m);
    let streams: Vec<JsonStream> = match format {
        Format::Protobuf => {
            let len = snap::raw::decompress_len(body).map_err(|e| bad(format!("body is not snappy: {e}")))?;
            if len > cap {
                return Err(Refused::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "body_too_large",
                    format!("decompressed body is over the limit of {cap} bytes"),
                ));
            }
            let raw =
                snap::raw::Decoder::new().decompress_vec(body).map_err(|e| bad(format!("body is not snappy: {e}")))?;
            let req = proto::PushRequest::decode(&raw[..]).map_err(|e| bad(format!("not a Loki PushRequest: {e}")))?;
            let mut out = Vec::with_capacity(req.streams.len());
            for s in req.streams {
                let labels = parse_labels(&s.labels).map_err(|e| bad(format!("stream labels {:?}: {e}", s.labels)))?;
                let entries = s
                    .entries
                    .into_iter()
                    .map(|e| {
                        let t = e.timestamp.unwrap_or_default();
                        let ts = t.seconds.checked_mul(1_000_000_000).and_then(|s| s.checked_add(i64::from(t.nanos)));
                        let ts = ts.ok_or_else(|| bad(format!("timestamp {}s is out of range", t.seconds)))?;
                        let meta = e.structured_metadata.into_iter().map(|p| (p.name, p.value)).collect();
                        Ok((ts, e.line, meta))
                    })
                    .collect::<Result<_, Refused>>()?;
                out.push((labels, entries));
            }
            out
        }
        Format::Json => from_json(body).map_err(bad)?,
    };
    let mut records = Vec::new();
    for (labels, entries) in streams {
        let app = app_labels
            .iter()
            .find_map(|l| labels.iter().find(|(k, _)| k == l).map(|(_, v)| sanitize_app(v)))
            .or_else(|| ctx.default_app.cloned())
            .unwrap_or_else(|| AppName::parse("unknown_service").expect("a valid name"));
        let cutoff = (ctx.cutoff)(&app);
        let tags: Vec<String> = labels.iter().map(|(k, v)| super::tag(k, v)).collect();
        for (i, (ts, line, meta)) in entries.into_iter().enumerate() {
            let at = |m: String| bad(format!("stream {app}, entry {i}: {m}"));
            if let Some(c) = cutoff.filter(|&c| ts < c) {
                return Err(at(format!("timestamp {ts} is older than the retention of app {app} (cut-off {c})")));
            }
            let mut t = tags.clone();
            t.extend(meta.iter().map(|(k, v)| super::tag(k, v)));
            records.push(Record::new(app.clone(), ts, line, t, ctx.limits).map_err(|e| at(e.to_string()))?);
        }
    }
    Ok(records)
}

/// A stream's labels and its entries (time, line, structured metadata), however it came.
type JsonStream = (Vec<(String, String)>, Vec<(i64, String, Vec<(String, String)>)>);

/// `{"streams":[{"stream":{"label":"value"},"values":[["<ns>","line",{"meta":"v"}]]}]}`.
fn from_json(body: &[u8]) -> Result<Vec<JsonStream>, String> {
    let text = std::str::from_utf8(body).map_err(|e| e.to_string())?;
    let v = json_value(text).map_err(|e| format!("not a Loki push: {e}"))?;
    let streams = v.get("streams").and_then(Value::as_array).ok_or("expected {\"streams\": [...]}")?;
    let pairs = |v: Option<&Value>, what: &str| -> Result<Vec<(String, String)>, String> {
        match v {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Object(m)) => m
                .iter()
                .map(|(k, v)| match v {
                    Value::String(s) => Ok((k.clone(), s.clone())),
                    other => Err(format!("{what} {k}: {other} is not a string")),
                })
                .collect(),
            Some(other) => Err(format!("{what}: {other} is not an object")),
        }
    };
    let mut out = Vec::with_capacity(streams.len());
    for s in streams {
        let mut labels = pairs(s.get("stream"), "label")?;
        labels.sort();
        let values = s.get("values").and_then(Value::as_array).ok_or("a stream needs \"values\"")?;
        let mut entries = Vec::with_capacity(values.len());
        for e in values {
            let e = e.as_array().filter(|e| (2..=3).contains(&e.len())).ok_or("a value is [\"<ns>\", \"line\"]")?;
            let ts = match &e[0] {
                Value::String(s) => s.parse::<i64>().map_err(|_| format!("timestamp {s:?} is not nanoseconds"))?,
                Value::Number(n) => n.as_i64().ok_or_else(|| format!("timestamp {n} is not nanoseconds"))?,
                other => return Err(format!("timestamp {other} is not nanoseconds")),
            };
            // a line is a string; some clients send an object (loki-logger-handler with
            // message_in_json_format=False): stored as its JSON text
            let line = match &e[1] {
                Value::String(s) => s.clone(),
                Value::Object(_) => e[1].to_string(),
                other => return Err(format!("line {other} is not a string")),
            };
            entries.push((ts, line, pairs(e.get(2), "structured metadata")?));
        }
        out.push((labels, entries));
    }
    Ok(out)
}

/// A label set in Prometheus text form, `{a="x", b="y\"z"}`, as sorted pairs.
pub fn parse_labels(s: &str) -> Result<Vec<(String, String)>, String> {
    let inner = s.trim().strip_prefix('{').and_then(|r| r.strip_suffix('}')).ok_or("expected {name=\"value\", ...}")?;
    let mut out = Vec::new();
    let mut chars = inner.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let mut name = String::new();
        while let Some(&c) = chars.peek() {
            if c.is_ascii_alphanumeric() || c == '_' || c == '.' {
                name.push(c);
                chars.next();
            } else {
                break;
            }
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if name.is_empty() || chars.next() != Some('=') {
            return Err("expected name=\"value\"".into());
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.next() != Some('"') {
            return Err(format!("label {name}: expected a quoted value"));
        }
        let mut value = String::new();
        loop {
            match chars.next() {
                None => return Err(format!("label {name}: value is not closed")),
                Some('"') => break,
                Some('\\') => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some('t') => value.push('\t'),
                    Some(c @ ('\\' | '"')) => value.push(c),
                    other => return Err(format!("label {name}: unknown escape \\{}", other.unwrap_or(' '))),
                },
                Some(c) => value.push(c),
            }
        }
        out.push((name, value));
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use logpipe_model::Limits;

    fn run(body: &[u8], format: Format) -> Result<Vec<Record>, Refused> {
        let limits = Limits::default();
        let ctx = DecodeCtx { default_app: None, limits: &limits, cutoff: &|_| None };
        let labels: Vec<String> = DEFAULT_APP_LABELS.iter().map(|s| s.to_string()).collect();
        decode(body, format, &labels, &ctx, 1 << 20)
    }

    #[test]
    fn labels_parse_with_escapes_and_spacing() {
        assert_eq!(
            parse_labels(r#"{job="varlogs", app = "We b",x="a\"b\\c\n"}"#).unwrap(),
            [("app".into(), "We b".into()), ("job".into(), "varlogs".into()), ("x".into(), "a\"b\\c\n".into())]
        );
        assert_eq!(parse_labels("{}").unwrap(), vec![]);
        for bad in ["", "app=\"x\"", "{app=x}", "{app=\"x}", "{=\"x\"}", "{a=\"\\q\"}"] {
            assert!(parse_labels(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn json_and_snappy_protobuf_give_the_same_records() {
        let json = r#"{"streams":[{"stream":{"service_name":"Checkout","env":"prod"},"values":[
            ["1735689600000000001","first"],["1735689600000000002","second",{"trace_id":"abc"}]]},
            {"stream":{"job":"j","app":"web"},"values":[[1735689600000000003,"third"]]}]}"#;
        let from_json = run(json.as_bytes(), Format::Json).unwrap();
        let req = proto::PushRequest {
            streams: vec![
                proto::Stream {
                    labels: r#"{service_name="Checkout", env="prod"}"#.into(),
                    entries: vec![
                        proto::Entry {
                            timestamp: Some(proto::Timestamp { seconds: 1735689600, nanos: 1 }),
                            line: "first".into(),
                            structured_metadata: vec![],
                        },
                        proto::Entry {
                            timestamp: Some(proto::Timestamp { seconds: 1735689600, nanos: 2 }),
                            line: "second".into(),
                            structured_metadata: vec![proto::LabelPair {
                                name: "trace_id".into(),
                                value: "abc".into(),
                            }],
                        },
                    ],
                },
                proto::Stream {
                    labels: r#"{job="j",app="web"}"#.into(),
                    entries: vec![proto::Entry {
                        timestamp: Some(proto::Timestamp { seconds: 1735689600, nanos: 3 }),
                        line: "third".into(),
                        structured_metadata: vec![],
                    }],
                },
            ],
        };
        let body = snap::raw::Encoder::new().compress_vec(&req.encode_to_vec()).unwrap();
        let from_proto = run(&body, Format::Protobuf).unwrap();
        assert_eq!(from_json, from_proto);
        assert_eq!(from_json.len(), 3);
        assert_eq!((from_json[0].app.as_str(), from_json[0].ts), ("checkout", 1735689600000000001));
        assert_eq!(from_json[1].tags, ["env=prod", "service_name=Checkout", "trace_id=abc"]);
        assert_eq!((from_json[2].app.as_str(), from_json[2].message.as_str()), ("web", "third"), "app before job");
    }

    #[test]
    fn bad_pushes_are_refused_whole() {
        for bad in [
            "{}",
            "{\"streams\":[{\"stream\":{\"app\":\"a\"}}]}",
            "{\"streams\":[{\"stream\":{\"app\":1},\"values\":[]}]}",
            "{\"streams\":[{\"stream\":{},\"values\":[[\"x\",\"line\"]]}]}",
            "{\"streams\":[{\"stream\":{},\"values\":[[\"1\"]]}]}",
            "{\"streams\":[{\"stream\":{},\"values\":[[\"1\",2]]}]}",
        ] {
            assert!(run(bad.as_bytes(), Format::Json).is_err(), "{bad}");
        }
        assert!(run(b"not snappy", Format::Protobuf).is_err());
        let object_line = r#"{"streams":[{"stream":{"app":"a"},"values":[["1",{"message":"m"},{"k":"v"}]]}]}"#;
        assert_eq!(run(object_line.as_bytes(), Format::Json).unwrap()[0].message, "{\"message\":\"m\"}");
        // a snappy body that claims more than the cap is refused before it is inflated
        let big = snap::raw::Encoder::new().compress_vec(&vec![0u8; 2 << 20]).unwrap();
        assert_eq!(run(&big, Format::Protobuf).unwrap_err().status, StatusCode::PAYLOAD_TOO_LARGE);
    }
}
