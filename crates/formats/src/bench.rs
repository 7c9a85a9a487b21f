//! Every protocol's decoder behind one call, and encoders of sample records into each wire
//! format: for `benches/ingest_decode.rs`, which compares records/s per protocol with native
//! NDJSON. Not part of the API.

use logpipe_model::{AppName, Limits, Record};
use prost::Message;
use serde_json::json;

use crate::DecodeCtx;

/// The wire formats logpipe decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Native,
    ElasticBulk,
    OtlpProtobuf,
    OtlpJson,
    LokiProtobuf,
    LokiJson,
    VlogsJsonline,
    Syslog5424,
}

pub const ALL: [Protocol; 8] = [
    Protocol::Native,
    Protocol::ElasticBulk,
    Protocol::OtlpProtobuf,
    Protocol::OtlpJson,
    Protocol::LokiProtobuf,
    Protocol::LokiJson,
    Protocol::VlogsJsonline,
    Protocol::Syslog5424,
];

/// A sample record: its app, time, message and its `key=value` tags.
pub struct Sample {
    pub app: String,
    pub ts: i64,
    pub message: String,
    pub tags: Vec<(String, String)>,
}

impl Sample {
    /// A sample from a record's parts; a tag `key=value` is split at its first `=`, a bare tag
    /// has an empty value.
    pub fn new(app: &str, ts: i64, message: &str, tags: &[&str]) -> Sample {
        let tags = tags.iter().map(|t| t.split_once('=').unwrap_or((t, ""))).map(|(k, v)| (k.into(), v.into()));
        Sample { app: app.into(), ts, message: message.into(), tags: tags.collect() }
    }
}

/// `samples` in `p`'s wire format (uncompressed, except Loki protobuf, which is snappy).
pub fn encode(p: Protocol, samples: &[Sample]) -> Vec<u8> {
    let obj = |s: &Sample, msg_key: &str, time: serde_json::Value, time_key: &str| {
        let mut m = serde_json::Map::new();
        m.insert(time_key.into(), time);
        m.insert(msg_key.into(), json!(s.message));
        for (k, v) in &s.tags {
            m.insert(k.clone(), json!(v));
        }
        serde_json::Value::Object(m)
    };
    let rfc3339 = |ts: i64| logpipe_model::format_time(ts);
    match p {
        Protocol::Native => samples
            .iter()
            .map(|s| {
                let tags: Vec<String> = s.tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
                json!({"app": s.app, "timestamp": rfc3339(s.ts), "message": s.message, "tags": tags}).to_string() + "\n"
            })
            .collect::<String>()
            .into_bytes(),
        Protocol::ElasticBulk => samples
            .iter()
            .map(|s| {
                format!(
                    "{}\n{}\n",
                    json!({"index": {"_index": s.app}}),
                    obj(s, "message", json!(rfc3339(s.ts)), "@timestamp")
                )
            })
            .collect::<String>()
            .into_bytes(),
        Protocol::VlogsJsonline => samples
            .iter()
            .map(|s| {
                let mut o = obj(s, "_msg", json!(rfc3339(s.ts)), "_time");
                o["app"] = json!(s.app);
                o.to_string() + "\n"
            })
            .collect::<String>()
            .into_bytes(),
        Protocol::Syslog5424 => samples
            .iter()
            .map(|s| {
                let sd: String = s.tags.iter().map(|(k, v)| format!(" {k}=\"{v}\"")).collect();
                format!("<14>1 {} - {} - - [t{sd}] {}\n", rfc3339(s.ts), s.app, s.message)
            })
            .collect::<String>()
            .into_bytes(),
        Protocol::OtlpProtobuf | Protocol::OtlpJson => {
            use crate::otlp::proto;
            let s = |v: &str| Some(proto::AnyValue { value: Some(proto::Value::String(v.to_string())) });
            let kv = |k: &str, v: &str| proto::KeyValue { key: k.to_string(), value: s(v) };
            let records = samples
                .iter()
                .map(|x| proto::LogRecord {
                    time_unix_nano: x.ts as u64,
                    body: s(&x.message),
                    attributes: x.tags.iter().map(|(k, v)| kv(k, v)).collect(),
                    ..Default::default()
                })
                .collect();
            let req = proto::ExportLogsServiceRequest {
                resource_logs: vec![proto::ResourceLogs {
                    resource: Some(proto::Resource { attributes: vec![kv("service.name", &samples[0].app)] }),
                    scope_logs: vec![proto::ScopeLogs { scope: None, log_records: records }],
                }],
            };
            if p == Protocol::OtlpProtobuf {
                return req.encode_to_vec();
            }
            otlp_json(&req).to_string().into_bytes()
        }
        Protocol::LokiProtobuf | Protocol::LokiJson => {
            // one stream per distinct label set, as a shipper batches them
            let mut streams: std::collections::BTreeMap<Vec<(String, String)>, Vec<&Sample>> = Default::default();
            for x in samples {
                let mut labels = x.tags.clone();
                labels.push(("app".into(), x.app.clone()));
                labels.sort();
                streams.entry(labels).or_default().push(x);
            }
            if p == Protocol::LokiJson {
                let streams: Vec<_> = streams
                    .iter()
                    .map(|(labels, xs)| {
                        let labels: serde_json::Map<_, _> = labels.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
                        let values: Vec<_> = xs.iter().map(|x| json!([x.ts.to_string(), x.message])).collect();
                        json!({"stream": labels, "values": values})
                    })
                    .collect();
                return json!({ "streams": streams }).to_string().into_bytes();
            }
            use crate::loki::proto;
            let req = proto::PushRequest {
                streams: streams
                    .iter()
                    .map(|(labels, xs)| proto::Stream {
                        labels: format!(
                            "{{{}}}",
                            labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect::<Vec<_>>().join(", ")
                        ),
                        entries: xs
                            .iter()
                            .map(|x| proto::Entry {
                                timestamp: Some(proto::Timestamp {
                                    seconds: x.ts / 1_000_000_000,
                                    nanos: (x.ts % 1_000_000_000) as i32,
                                }),
                                line: x.message.clone(),
                                structured_metadata: vec![],
                            })
                            .collect(),
                    })
                    .collect(),
            };
            snap::raw::Encoder::new().compress_vec(&req.encode_to_vec()).expect("snappy")
        }
    }
}

/// An OTLP request in the OTLP/JSON encoding, as the OpenTelemetry SDKs write it: 64-bit
/// integers as decimal strings, ids as hex, bytes as base64, non-finite doubles as strings.
/// Keys come in alphabetical order, so records come before their scope (`logRecords` <
/// `scope`), which the decoder must handle.
pub fn otlp_json(req: &crate::otlp::proto::ExportLogsServiceRequest) -> serde_json::Value {
    use crate::otlp::proto;
    use base64::Engine as _;
    fn kvs(list: &[proto::KeyValue]) -> serde_json::Value {
        list.iter()
            .map(|kv| match &kv.value {
                Some(v) => json!({"key": kv.key, "value": any(v)}),
                None => json!({"key": kv.key}),
            })
            .collect()
    }
    fn any(v: &proto::AnyValue) -> serde_json::Value {
        match &v.value {
            None => json!({}),
            Some(proto::Value::String(s)) => json!({"stringValue": s}),
            Some(proto::Value::Bool(b)) => json!({"boolValue": b}),
            Some(proto::Value::Int(i)) => json!({"intValue": i.to_string()}),
            Some(proto::Value::Double(d)) if d.is_finite() => json!({"doubleValue": d}),
            Some(proto::Value::Double(d)) => {
                let text = if d.is_nan() {
                    "NaN"
                } else if *d > 0.0 {
                    "Infinity"
                } else {
                    "-Infinity"
                };
                json!({ "doubleValue": text })
            }
            Some(proto::Value::Bytes(b)) => {
                json!({"bytesValue": base64::engine::general_purpose::STANDARD.encode(b)})
            }
            Some(proto::Value::Array(a)) => {
                json!({"arrayValue": {"values": a.values.iter().map(any).collect::<Vec<_>>()}})
            }
            Some(proto::Value::Kvlist(l)) => json!({"kvlistValue": {"values": kvs(&l.values)}}),
        }
    }
    let record = |r: &proto::LogRecord| {
        let mut o = json!({
            "timeUnixNano": r.time_unix_nano.to_string(),
            "observedTimeUnixNano": r.observed_time_unix_nano.to_string(),
            "severityNumber": r.severity_number,
            "severityText": r.severity_text,
            "attributes": kvs(&r.attributes),
            "traceId": hex::encode(&r.trace_id),
            "spanId": hex::encode(&r.span_id),
            "eventName": r.event_name,
            "flags": 0,
        });
        if let Some(b) = &r.body {
            o["body"] = any(b);
        }
        o
    };
    let resource_logs: Vec<_> = req
        .resource_logs
        .iter()
        .map(|rl| {
            let scope_logs: Vec<_> = rl
                .scope_logs
                .iter()
                .map(|sl| {
                    let mut o = json!({"logRecords": sl.log_records.iter().map(record).collect::<Vec<_>>()});
                    if let Some(s) = &sl.scope {
                        o["scope"] = json!({"name": s.name, "version": s.version, "attributes": kvs(&s.attributes)});
                    }
                    o
                })
                .collect();
            let mut o = json!({ "scopeLogs": scope_logs });
            if let Some(r) = &rl.resource {
                o["resource"] = json!({"attributes": kvs(&r.attributes), "droppedAttributesCount": 0});
            }
            o
        })
        .collect();
    json!({ "resourceLogs": resource_logs })
}

fn fail<T>(p: Protocol) -> impl FnOnce(crate::Refused) -> T {
    move |e| panic!("{p:?}: {}", e.message)
}

/// Decodes `body` as `p`; the records.
pub fn decode(p: Protocol, body: &[u8]) -> Vec<Record> {
    let limits = Limits::default();
    let default = AppName::parse("default").expect("valid");
    let ctx = DecodeCtx { default_app: Some(&default), limits: &limits, cutoff: &|_| None };
    match p {
        Protocol::Native => crate::parse_records(std::str::from_utf8(body).expect("utf-8"), None, &limits, &|_| None)
            .unwrap_or_else(fail(p)),
        Protocol::ElasticBulk => crate::elastic::decode_bulk(body, &ctx, 0).unwrap_or_else(fail(p)).0,
        Protocol::OtlpProtobuf => {
            crate::otlp::decode(body, crate::otlp::Format::Protobuf, &ctx, 0).unwrap_or_else(fail(p)).0
        }
        Protocol::OtlpJson => crate::otlp::decode(body, crate::otlp::Format::Json, &ctx, 0).unwrap_or_else(fail(p)).0,
        Protocol::LokiProtobuf | Protocol::LokiJson => {
            let f = if p == Protocol::LokiJson { crate::loki::Format::Json } else { crate::loki::Format::Protobuf };
            crate::loki::decode(body, f, &["app".to_string()], &ctx, 1 << 30).unwrap_or_else(fail(p))
        }
        Protocol::VlogsJsonline => {
            let f = crate::vlogs::Fields::from_request(None, &Default::default()).unwrap_or_else(fail(p));
            crate::vlogs::decode(body, &f, &ctx, 0).unwrap_or_else(fail(p))
        }
        Protocol::Syslog5424 => {
            let mut buf = bytes::BytesMut::from(body);
            let mut out = Vec::new();
            while let Ok(Some(frame)) = crate::syslog::next_frame(&mut buf, 1 << 20, true) {
                out.push(crate::syslog::parse(&frame, 0, &limits).expect("a syslog line"));
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every protocol carries the same records: app, time, message and tags come out equal.
    #[test]
    fn every_protocol_round_trips_the_samples() {
        let samples: Vec<Sample> = (0..50)
            .map(|i| Sample {
                app: "hdfs".into(),
                ts: 1_735_689_600_000_000_000 + i * 1_000_001,
                message: format!("Receiving block blk_{i} src: /10.0.0.{i}"),
                tags: vec![("level".into(), "INFO".into()), ("host".into(), format!("node-{}", i % 3))],
            })
            .collect();
        let native = decode(Protocol::Native, &encode(Protocol::Native, &samples));
        assert_eq!(native.len(), 50);
        let key = |r: &Record| (r.app.clone(), r.ts, r.message.clone());
        let mut want: Vec<_> = native.iter().map(key).collect();
        want.sort();
        for p in ALL {
            let got = decode(p, &encode(p, &samples));
            let mut keys: Vec<_> = got.iter().map(key).collect();
            keys.sort();
            assert_eq!(keys, want, "{p:?}");
            for r in &got {
                for t in ["level=INFO", "host=node-"] {
                    assert!(r.tags.iter().any(|x| x.contains(t)), "{p:?}: {t} in {:?}", r.tags);
                }
            }
        }
    }
}
