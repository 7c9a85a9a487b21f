//! OpenTelemetry OTLP/HTTP logs: `POST /v1/logs`, protobuf (`application/x-protobuf`) or
//! JSON (`application/json`), optionally gzip.
//!
//! Mapping (docs/INTEGRATIONS.md): the app is the resource attribute `service.name` (made a
//! valid app name: lowercased, other characters as `_`); the body is the message (a
//! non-string body as JSON); the severity becomes `level=` (its text, else the name of its
//! number's range); resource, scope and record attributes become tags (`key=value`, maps
//! flattened with dots, arrays one tag per element), with `scope.name=`, `trace_id=` and
//! `span_id=` (hex); the time is `timeUnixNano`, else `observedTimeUnixNano` (0 is absent),
//! else the time it arrived. A record that cannot be stored (over a size cap, older than
//! retention) is rejected on its own and counted in the answer's `partial_success`, as the
//! OTLP specification asks.

use logpipe_model::{AppName, Record};
use prost::Message;
use serde_json::Value;

use crate::{DecodeCtx, Refused};

mod json;

/// The protobuf messages of `opentelemetry/proto/collector/logs/v1` and the types they use,
/// field for field as the published `.proto` files number them (only what logs need).
pub mod proto {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ExportLogsServiceRequest {
        #[prost(message, repeated, tag = "1")]
        pub resource_logs: Vec<ResourceLogs>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ExportLogsServiceResponse {
        #[prost(message, optional, tag = "1")]
        pub partial_success: Option<ExportLogsPartialSuccess>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ExportLogsPartialSuccess {
        #[prost(int64, tag = "1")]
        pub rejected_log_records: i64,
        #[prost(string, tag = "2")]
        pub error_message: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ResourceLogs {
        #[prost(message, optional, tag = "1")]
        pub resource: Option<Resource>,
        #[prost(message, repeated, tag = "2")]
        pub scope_logs: Vec<ScopeLogs>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Resource {
        #[prost(message, repeated, tag = "1")]
        pub attributes: Vec<KeyValue>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ScopeLogs {
        #[prost(message, optional, tag = "1")]
        pub scope: Option<InstrumentationScope>,
        #[prost(message, repeated, tag = "2")]
        pub log_records: Vec<LogRecord>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct InstrumentationScope {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(string, tag = "2")]
        pub version: String,
        #[prost(message, repeated, tag = "3")]
        pub attributes: Vec<KeyValue>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct LogRecord {
        #[prost(fixed64, tag = "1")]
        pub time_unix_nano: u64,
        #[prost(fixed64, tag = "11")]
        pub observed_time_unix_nano: u64,
        #[prost(int32, tag = "2")]
        pub severity_number: i32,
        #[prost(string, tag = "3")]
        pub severity_text: String,
        #[prost(message, optional, tag = "5")]
        pub body: Option<AnyValue>,
        #[prost(message, repeated, tag = "6")]
        pub attributes: Vec<KeyValue>,
        #[prost(bytes = "vec", tag = "9")]
        pub trace_id: Vec<u8>,
        #[prost(bytes = "vec", tag = "10")]
        pub span_id: Vec<u8>,
        #[prost(string, tag = "12")]
        pub event_name: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct KeyValue {
        #[prost(string, tag = "1")]
        pub key: String,
        #[prost(message, optional, tag = "2")]
        pub value: Option<AnyValue>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct AnyValue {
        #[prost(oneof = "Value", tags = "1, 2, 3, 4, 5, 6, 7")]
        pub value: Option<Value>,
    }

    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Value {
        #[prost(string, tag = "1")]
        String(String),
        #[prost(bool, tag = "2")]
        Bool(bool),
        #[prost(int64, tag = "3")]
        Int(i64),
        #[prost(double, tag = "4")]
        Double(f64),
        #[prost(message, tag = "5")]
        Array(ArrayValue),
        #[prost(message, tag = "6")]
        Kvlist(KeyValueList),
        #[prost(bytes = "vec", tag = "7")]
        Bytes(Vec<u8>),
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ArrayValue {
        #[prost(message, repeated, tag = "1")]
        pub values: Vec<AnyValue>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct KeyValueList {
        #[prost(message, repeated, tag = "1")]
        pub values: Vec<KeyValue>,
    }
}

use proto::{AnyValue, ExportLogsServiceRequest, KeyValue, LogRecord};

/// How the request was encoded; the answer is encoded the same way.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Format {
    Protobuf,
    Json,
}

/// What was rejected record by record.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Rejected {
    pub count: i64,
    pub first_error: String,
}

impl Rejected {
    fn add(&mut self, why: String) {
        if self.count == 0 {
            self.first_error = why;
        }
        self.count += 1;
    }
}

/// Decodes a request body into records; records that fail on their own are counted in
/// [`Rejected`]. A body that does not decode at all is a `400`.
pub fn decode(body: &[u8], format: Format, ctx: &DecodeCtx, now: i64) -> Result<(Vec<Record>, Rejected), Refused> {
    let req = match format {
        Format::Protobuf => ExportLogsServiceRequest::decode(body)
            .map_err(|e| Refused::bad_request("bad_otlp", format!("not an OTLP logs request: {e}")))?,
        Format::Json => {
            let bad = |m: String| Refused::bad_request("bad_otlp", format!("not an OTLP/JSON logs request: {m}"));
            let text = std::str::from_utf8(body).map_err(|e| bad(e.to_string()))?;
            return json::decode(text, ctx, now).map_err(bad);
        }
    };
    let (mut records, mut rejected) = (Vec::new(), Rejected::default());
    // by value: messages and texts move into the records instead of being copied
    for rl in req.resource_logs {
        let resource = rl.resource.as_ref().map_or(&[][..], |r| &r.attributes[..]);
        let app = app_of(resource, ctx.default_app);
        let mut resource_tags = Vec::new();
        attributes(resource, &mut resource_tags);
        let cutoff = (ctx.cutoff)(&app);
        for sl in rl.scope_logs {
            let mut scope_tags = resource_tags.clone();
            if let Some(scope) = &sl.scope {
                if !scope.name.is_empty() {
                    scope_tags.push(format!("scope.name={}", scope.name));
                }
                attributes(&scope.attributes, &mut scope_tags);
            }
            for lr in sl.log_records {
                match record(&app, lr, &scope_tags, ctx, now, cutoff) {
                    Ok(r) => records.push(r),
                    Err(why) => rejected.add(why),
                }
            }
        }
    }
    Ok((records, rejected))
}

fn record(
    app: &AppName,
    lr: LogRecord,
    scope_tags: &[String],
    ctx: &DecodeCtx,
    now: i64,
    cutoff: Option<i64>,
) -> Result<Record, String> {
    let ts = timestamp(lr.time_unix_nano, lr.observed_time_unix_nano, now)?;
    let mut tags = Vec::with_capacity(scope_tags.len() + lr.attributes.len() + 1);
    tags.extend_from_slice(scope_tags);
    let level = Some(lr.severity_text.as_str()).filter(|t| !t.is_empty()).or(severity_name(lr.severity_number));
    if let Some(level) = level {
        tags.push(super::tag("level", level));
    }
    attributes(&lr.attributes, &mut tags);
    if lr.trace_id.iter().any(|&b| b != 0) {
        tags.push(format!("trace_id={}", hex::encode(&lr.trace_id)));
    }
    if lr.span_id.iter().any(|&b| b != 0) {
        tags.push(format!("span_id={}", hex::encode(&lr.span_id)));
    }
    if !lr.event_name.is_empty() {
        tags.push(format!("event.name={}", lr.event_name));
    }
    let message = match lr.body.and_then(|b| b.value) {
        None => String::new(),
        Some(proto::Value::String(s)) => s,
        Some(v) => to_json(&v).to_string(),
    };
    store(app, ts, message, tags, ctx, cutoff)
}

/// A record's time: `timeUnixNano`, else `observedTimeUnixNano` (0 is absent), else `now`.
fn timestamp(time: u64, observed: u64, now: i64) -> Result<i64, String> {
    [time, observed]
        .into_iter()
        .find(|&t| t != 0)
        .map_or(Ok(now), |t| i64::try_from(t).map_err(|_| format!("time {t} is out of range")))
}

/// The record, unless it is older than the app's retention or over a cap.
fn store(
    app: &AppName,
    ts: i64,
    message: String,
    tags: Vec<String>,
    ctx: &DecodeCtx,
    cutoff: Option<i64>,
) -> Result<Record, String> {
    if let Some(c) = cutoff.filter(|&c| ts < c) {
        return Err(format!("time {ts} is older than the retention of app {app} (cut-off {c})"));
    }
    Record::new(app.clone(), ts, message, tags, ctx.limits).map_err(|e| e.to_string())
}

/// The name of the range a severity number falls in.
fn severity_name(number: i32) -> Option<&'static str> {
    let name = match number {
        1..=4 => "TRACE",
        5..=8 => "DEBUG",
        9..=12 => "INFO",
        13..=16 => "WARN",
        17..=20 => "ERROR",
        21..=24 => "FATAL",
        _ => return None,
    };
    Some(name)
}

/// The tag `name=<hex>` of a trace or span id given as hex (OTLP/JSON); none for an empty or
/// all-zero id.
fn hex_id(name: &str, hex: &str) -> Result<Option<String>, String> {
    if !hex.len().is_multiple_of(2) || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("not hex: {hex:?}"));
    }
    if hex.bytes().all(|b| b == b'0') {
        return Ok(None);
    }
    Ok(Some(format!("{name}={}", hex.to_ascii_lowercase())))
}

/// The app of a resource: `service.name` made a valid app name, else the endpoint's default,
/// else `unknown_service` (what the OpenTelemetry SDKs report without one).
fn app_of(resource: &[KeyValue], default: Option<&AppName>) -> AppName {
    let name = resource.iter().find(|kv| kv.key == "service.name").and_then(|kv| match &kv.value {
        Some(AnyValue { value: Some(proto::Value::String(s)) }) => Some(s.as_str()),
        _ => None,
    });
    app_named(name, default)
}

/// The app of a `service.name`, else the endpoint's default, else `unknown_service`.
fn app_named(name: Option<&str>, default: Option<&AppName>) -> AppName {
    match (name, default) {
        (Some(n), _) => sanitize_app(n),
        (None, Some(d)) => d.clone(),
        (None, None) => AppName::parse("unknown_service").expect("a valid name"),
    }
}

/// `name` as an app name: lowercased, every character outside `[a-z0-9._-]` as `_`, at most
/// 64 bytes, starting with a letter or digit (`unknown_service:python` → `unknown_service_python`).
pub fn sanitize_app(name: &str) -> AppName {
    let mut s: String = name
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') { c } else { '_' })
        .collect();
    s.truncate(logpipe_model::MAX_APP_LEN);
    let trimmed = s.trim_start_matches(|c: char| !c.is_ascii_alphanumeric());
    AppName::parse(trimmed).unwrap_or_else(|_| AppName::parse("unknown_service").expect("a valid name"))
}

/// `key=value` tags of attributes.
fn attributes(kvs: &[KeyValue], out: &mut Vec<String>) {
    for kv in kvs {
        if let Some(v) = kv.value.as_ref().and_then(|v| v.value.as_ref()) {
            flatten(&kv.key, v, out);
        }
    }
}

fn flatten(key: &str, v: &proto::Value, out: &mut Vec<String>) {
    match v {
        proto::Value::String(s) => out.push(super::tag(key, s)),
        proto::Value::Bool(b) => out.push(format!("{key}={b}")),
        proto::Value::Int(i) => out.push(format!("{key}={i}")),
        proto::Value::Double(d) => out.push(format!("{key}={d}")),
        proto::Value::Bytes(b) => out.push(format!("{key}={}", hex::encode(b))),
        proto::Value::Array(a) => {
            a.values.iter().filter_map(|v| v.value.as_ref()).for_each(|v| flatten(key, v, out));
        }
        proto::Value::Kvlist(l) => {
            for kv in &l.values {
                if let Some(v) = kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                    flatten(&format!("{key}.{}", kv.key), v, out);
                }
            }
        }
    }
}

/// A non-string body as JSON: maps as objects, arrays as arrays, bytes as hex.
fn to_json(v: &proto::Value) -> Value {
    let any = |a: &AnyValue| a.value.as_ref().map_or(Value::Null, to_json);
    match v {
        proto::Value::String(s) => Value::String(s.clone()),
        proto::Value::Bool(b) => Value::Bool(*b),
        proto::Value::Int(i) => Value::from(*i),
        proto::Value::Double(d) => serde_json::Number::from_f64(*d).map_or(Value::Null, Value::Number),
        proto::Value::Bytes(b) => Value::String(hex::encode(b)),
        proto::Value::Array(a) => Value::Array(a.values.iter().map(any).collect()),
        proto::Value::Kvlist(l) => Value::Object(
            l.values.iter().map(|kv| (kv.key.clone(), kv.value.as_ref().map_or(Value::Null, any))).collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use logpipe_model::Limits;

    fn kv(k: &str, v: proto::Value) -> KeyValue {
        KeyValue { key: k.into(), value: Some(AnyValue { value: Some(v) }) }
    }

    fn run(body: &[u8], format: Format) -> Result<(Vec<Record>, Rejected), Refused> {
        let limits = Limits { max_message_bytes: 100, ..Limits::default() };
        let ctx = DecodeCtx { default_app: None, limits: &limits, cutoff: &|_| None };
        decode(body, format, &ctx, 42)
    }

    #[test]
    fn protobuf_maps_resource_scope_record_and_rejects_on_its_own() {
        let s = |x: &str| proto::Value::String(x.into());
        let req = ExportLogsServiceRequest {
            resource_logs: vec![proto::ResourceLogs {
                resource: Some(proto::Resource {
                    attributes: vec![kv("service.name", s("Checkout:API")), kv("host.name", s("h1"))],
                }),
                scope_logs: vec![proto::ScopeLogs {
                    scope: Some(proto::InstrumentationScope { name: "lib".into(), ..Default::default() }),
                    log_records: vec![
                        LogRecord {
                            time_unix_nano: 0,
                            observed_time_unix_nano: 7,
                            severity_number: 17,
                            body: Some(AnyValue { value: Some(s("boom")) }),
                            attributes: vec![
                                kv("n", proto::Value::Int(3)),
                                kv(
                                    "m",
                                    proto::Value::Kvlist(proto::KeyValueList {
                                        values: vec![kv("a", proto::Value::Bool(true))],
                                    }),
                                ),
                            ],
                            trace_id: vec![0xab; 16],
                            span_id: vec![0; 8],
                            ..Default::default()
                        },
                        LogRecord {
                            time_unix_nano: 5,
                            severity_text: "Warning".into(),
                            body: Some(AnyValue {
                                value: Some(proto::Value::Array(proto::ArrayValue {
                                    values: vec![AnyValue { value: Some(proto::Value::Int(1)) }],
                                })),
                            }),
                            ..Default::default()
                        },
                        LogRecord { body: Some(AnyValue { value: Some(s(&"x".repeat(101))) }), ..Default::default() },
                    ],
                }],
            }],
        };
        let (records, rejected) = run(&req.encode_to_vec(), Format::Protobuf).unwrap();
        // the same request in the JSON encoding decodes to the same records
        let json = crate::bench::otlp_json(&req).to_string();
        assert_eq!(run(json.as_bytes(), Format::Json).unwrap(), (records.clone(), Rejected { ..rejected.clone() }));
        assert_eq!(records.len(), 2);
        let r = &records[0];
        assert_eq!((r.app.as_str(), r.ts, r.message.as_str()), ("checkout_api", 7, "boom"));
        assert_eq!(
            r.tags,
            [
                "host.name=h1",
                "level=ERROR",
                "m.a=true",
                "n=3",
                "scope.name=lib",
                "service.name=Checkout:API",
                &format!("trace_id={}", "ab".repeat(16)),
            ]
        );
        assert_eq!((records[1].ts, records[1].message.as_str()), (5, "[1]"));
        assert!(records[1].tags.contains(&"level=Warning".to_string()));
        assert_eq!(rejected.count, 1);
        assert!(rejected.first_error.contains("over the limit"), "{}", rejected.first_error);
        assert!(run(b"\xff\xff\xff", Format::Protobuf).is_err());
    }

    #[test]
    fn json_encoding_with_string_integers_and_hex_ids() {
        let body = r#"{"resourceLogs":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"web"}}]},
            "scopeLogs":[{"scope":{"name":"s"},"logRecords":[
              {"timeUnixNano":"1735689600000000001","severityNumber":9,"body":{"stringValue":"hi"},
               "traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174",
               "attributes":[{"key":"k","value":{"intValue":"12"}},{"key":"d","value":{"doubleValue":1.5}},{"key":"arr","value":{"arrayValue":{"values":[{"stringValue":"a"},{"stringValue":"b"}]}}}],
               "unknownField":1},
              {"observedTimeUnixNano":1735689600000000002,"body":{"kvlistValue":{"values":[{"key":"x","value":{"boolValue":false}}]}}}
            ]}]}]}"#;
        let (records, rejected) = run(body.as_bytes(), Format::Json).unwrap();
        assert_eq!(rejected, Rejected::default());
        assert_eq!(
            (records[0].app.as_str(), records[0].ts, records[0].message.as_str()),
            ("web", 1735689600000000001, "hi")
        );
        assert_eq!(
            records[0].tags,
            [
                "arr=a",
                "arr=b",
                "d=1.5",
                "k=12",
                "level=INFO",
                "scope.name=s",
                "service.name=web",
                "span_id=eee19b7ec3c1b174",
                "trace_id=5b8efff798038103d269b633813fc60c"
            ]
        );
        assert_eq!((records[1].ts, records[1].message.as_str()), (1735689600000000002, "{\"x\":false}"));
        assert!(run(b"{\"resourceLogs\":[{\"scopeLogs\":[{\"logRecords\":[{\"traceId\":\"zz\"}]}]}]}", Format::Json)
            .is_err());
        assert!(run(b"[", Format::Json).is_err());
        // no service.name: the SDKs' own default
        let (r, _) = run(b"{\"resourceLogs\":[{\"scopeLogs\":[{\"logRecords\":[{}]}]}]}", Format::Json).unwrap();
        assert_eq!((r[0].app.as_str(), r[0].ts), ("unknown_service", 42));
    }

    #[test]
    fn json_fields_in_any_order_escapes_and_nulls() {
        // the resource after its records, the value before its key, the scope after its records
        let body = r#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"stringValue":"a\nb"},
              "attributes":[{"value":{"stringValue":"v1"},"key":"k1"},{"key":"k\"2","value":{"kvlistValue":{"values":[
                {"value":{"intValue":7},"key":"in"},{"key":"arr","value":{"arrayValue":{"values":[{"boolValue":true},{}]}}}]}}},
                {"key":"n","value":null},{"key":"x","value":{"unknownValue":[[[1]]],"stringValue":"s"}}],
              "severityText":null,"traceId":"","spanId":null,"droppedAttributesCount":0}],
            "scope":{"name":"lib","attributes":[{"key":"sa","value":{"doubleValue":"NaN"}}]}}],
          "resource":{"attributes":[{"value":{"stringValue":"Shop"},"key":"service.name"}]}}]}"#;
        let (records, rejected) = run(body.as_bytes(), Format::Json).unwrap();
        assert_eq!(rejected, Rejected::default());
        let r = &records[0];
        assert_eq!((r.app.as_str(), r.ts, r.message.as_str()), ("shop", 42, "a\nb"));
        assert_eq!(
            r.tags,
            ["k\"2.arr=true", "k\"2.in=7", "k1=v1", "sa=NaN", "scope.name=lib", "service.name=Shop", "x=s"]
        );
        // null for every list and object reads as empty
        let (r, _) = run(br#"{"resourceLogs":[{"resource":null,"scopeLogs":[{"scope":null,"logRecords":[{"attributes":null,"body":null}]}]}]}"#, Format::Json).unwrap();
        assert_eq!((r[0].message.as_str(), r[0].tags.len()), ("", 0));
        assert_eq!(run(br#"{"resourceLogs":null}"#, Format::Json).unwrap().0.len(), 0);
    }

    #[test]
    fn json_nested_too_deep_is_refused_without_overflowing() {
        let deep = |open: &str, close: &str, n: usize| format!("{}1{}", open.repeat(n), close.repeat(n));
        for body in [
            // in a field nobody reads, in a body, in an attribute, at the top
            format!(r#"{{"resourceLogs":[{{"x":{}}}]}}"#, deep("[", "]", 100_000)),
            format!(
                r#"{{"resourceLogs":[{{"scopeLogs":[{{"logRecords":[{{"body":{}}}]}}]}}]}}"#,
                deep(r#"{"arrayValue":{"values":["#, "]}}", 20_000)
            ),
            format!(
                r#"{{"resourceLogs":[{{"scopeLogs":[{{"logRecords":[{{"attributes":[{{"key":"k","value":{}}}]}}]}}]}}]}}"#,
                deep(r#"{"kvlistValue":{"values":[{"key":"k","value":"#, "}]}}", 20_000)
            ),
            deep(r#"{"a":"#, "}", 100_000),
        ] {
            let e = run(body.as_bytes(), Format::Json).unwrap_err();
            assert!(e.message.contains("nested deeper than 32"), "{}", e.message);
        }
        // 31 levels pass: arrays in arrays in an attribute
        let mut v = r#"{"stringValue":"leaf"}"#.to_string();
        for _ in 0..7 {
            v = format!(r#"{{"arrayValue":{{"values":[{v}]}}}}"#);
        }
        let body = format!(
            r#"{{"resourceLogs":[{{"scopeLogs":[{{"logRecords":[{{"attributes":[{{"key":"k","value":{v}}}]}}]}}]}}]}}"#
        );
        assert_eq!(run(body.as_bytes(), Format::Json).unwrap().0[0].tags, ["k=leaf"]);
    }

    #[test]
    fn app_names_are_made_valid() {
        for (raw, want) in
            [("unknown_service:python", "unknown_service_python"), ("--Web", "web"), ("::", "unknown_service")]
        {
            assert_eq!(sanitize_app(raw).as_str(), want, "{raw}");
        }
        assert_eq!(sanitize_app(&"a".repeat(100)).as_str().len(), 64);
    }
}
