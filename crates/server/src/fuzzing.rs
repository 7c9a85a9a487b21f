//! Entry points for the server's fuzz targets (`fuzz/`) and the corpus replay test.

use logpipe_model::{AppName, Limits};

use logpipe_formats::{parse_records, text, DecodeCtx};

use crate::ingest::{decode_bytes, Encoding};

/// Record caps of every target: small, so inputs reach them.
const LIMITS: Limits = Limits { max_message_bytes: 4096, max_tags: 16, max_tag_bytes: 128 };

/// An ingest body: the first byte picks the encoding (identity, gzip, zstd), the rest is the
/// body. Decompression stays under its cap; every record accepted is within the limits.
pub fn ingest(data: &[u8]) {
    let Some((&enc, body)) = data.split_first() else { return };
    let enc = match enc % 3 {
        0 => Encoding::Identity,
        1 => Encoding::Gzip,
        _ => Encoding::Zstd,
    };
    const CAP: usize = 1 << 20;
    let Ok(bytes) = decode_bytes(body, enc, CAP) else { return };
    assert!(bytes.len() <= CAP.max(body.len()));
    let text = text(bytes);
    let limits = LIMITS;
    let default_app = AppName::parse("fuzz").expect("valid name");
    if let Ok(records) = parse_records(&text, Some(&default_app), &limits, &|_| Some(0)) {
        for r in &records {
            assert!(r.message.len() <= limits.max_message_bytes && r.tags.len() <= limits.max_tags);
            assert!(r.tags.iter().all(|t| !t.is_empty() && t.len() <= limits.max_tag_bytes));
            assert!(r.ts >= 0, "the retention cutoff holds");
        }
    }
}

/// A query string of the native API: parsed, and what parses compiles or fails cleanly.
pub fn params(data: &[u8]) {
    let Ok(raw) = std::str::from_utf8(data) else { return };
    let extra = ["limit", "order", "cursor", "step", "fill"];
    if let Ok(p) = crate::params::parse(Some(raw), &extra) {
        let _ = logpipe_storage::Filter::compile(&p.query, logpipe_storage::DEFAULT_REGEX_SIZE_LIMIT);
    }
}

/// An Elasticsearch bulk body: decoded, each item answered, every stored record within the
/// limits, and exactly the items reported as created are stored.
pub fn elastic_bulk(data: &[u8]) {
    let limits = LIMITS;
    let default_app = AppName::parse("fuzz").expect("valid name");
    let ctx = DecodeCtx { default_app: Some(&default_app), limits: &limits, cutoff: &|_| None };
    if let Ok((records, items)) = logpipe_formats::elastic::decode_bulk(data, &ctx, 0) {
        assert_eq!(records.len(), items.iter().filter(|i| i.is_ok()).count());
        assert!(records.iter().all(|r| r.message.len() <= LIMITS.max_message_bytes && r.tags.len() <= LIMITS.max_tags));
    }
}

/// An OTLP/HTTP logs request: the first byte picks protobuf or JSON. Every record is stored
/// or counted as rejected, and those stored are within the limits.
pub fn otlp(data: &[u8]) {
    use logpipe_formats::otlp::{decode, Format};
    let Some((&f, body)) = data.split_first() else { return };
    let format = if f % 2 == 0 { Format::Protobuf } else { Format::Json };
    let limits = LIMITS;
    let ctx = DecodeCtx { default_app: None, limits: &limits, cutoff: &|_| None };
    let decoded = decode(body, format, &ctx, 0);
    if let Ok((records, rejected)) = &decoded {
        assert!(rejected.count >= 0);
        assert!(records.iter().all(|r| r.message.len() <= LIMITS.max_message_bytes && r.tags.len() <= LIMITS.max_tags));
    }
    // the two encodings of one request decode to the same records
    if format == Format::Protobuf {
        use prost::Message;
        if let Ok(req) = logpipe_formats::otlp::proto::ExportLogsServiceRequest::decode(body) {
            let json = crate::bench::otlp_json(&req).to_string();
            match decode(json.as_bytes(), Format::Json, &ctx, 0) {
                Ok(from_json) => assert_eq!(Some(&from_json), decoded.as_ref().ok(), "{json}"),
                Err(e) => assert!(e.message.contains("nested deeper"), "{json}: {}", e.message),
            }
        }
    }
}

/// A Loki push: the first byte picks snappy protobuf or JSON. What decodes is within the
/// limits; the label parser never panics.
pub fn loki_push(data: &[u8]) {
    use logpipe_formats::loki::{decode, parse_labels, Format};
    let Some((&f, body)) = data.split_first() else { return };
    if f % 3 == 2 {
        let _ = parse_labels(&String::from_utf8_lossy(body));
        return;
    }
    let format = if f % 3 == 0 { Format::Protobuf } else { Format::Json };
    let limits = LIMITS;
    let ctx = DecodeCtx { default_app: None, limits: &limits, cutoff: &|_| None };
    let labels = ["app".to_string(), "job".to_string()];
    if let Ok(records) = decode(body, format, &labels, &ctx, 1 << 20) {
        assert!(records.iter().all(|r| r.message.len() <= LIMITS.max_message_bytes && r.tags.len() <= LIMITS.max_tags));
    }
}

/// VictoriaLogs JSON lines with fixed field settings: what decodes is within the limits.
pub fn vlogs_jsonline(data: &[u8]) {
    use logpipe_formats::vlogs::{decode, Fields};
    let f = Fields::from_request(Some("_msg_field=msg,_msg&_time_field=t&_stream_fields=s"), &Default::default())
        .expect("valid settings");
    let limits = LIMITS;
    let ctx = DecodeCtx { default_app: None, limits: &limits, cutoff: &|_| None };
    if let Ok(records) = decode(data, &f, &ctx, 0) {
        assert!(records.iter().all(|r| r.message.len() <= LIMITS.max_message_bytes && r.tags.len() <= LIMITS.max_tags));
    }
}

/// A syslog byte stream: framed as a TCP connection would be, each frame parsed. Frames never
/// exceed the limit; what parses is within the record limits.
pub fn syslog(data: &[u8]) {
    use logpipe_formats::syslog::{next_frame, parse};
    let limits = LIMITS;
    let mut buf = bytes::BytesMut::from(data);
    for _ in 0..10_000 {
        match next_frame(&mut buf, 2048, true) {
            Ok(Some(frame)) => {
                assert!(frame.len() <= data.len());
                if let Ok(r) = parse(&frame, 1_740_830_400_000_000_000, &limits) {
                    assert!(r.message.len() <= LIMITS.max_message_bytes && r.tags.len() <= LIMITS.max_tags);
                }
            }
            Ok(None) => break,
            Err(_) => buf.clear(),
        }
    }
}

/// A LogQL query (Loki's query API): what parses prints back to a query that parses to the
/// same tree; its log stages run on the query text itself as a line.
pub fn logql(data: &[u8]) {
    use logpipe_logql::{self as logql, Query};
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(q) = logql::parse(text) else { return };
    let printed = q.to_string();
    let back = logql::parse(&printed).unwrap_or_else(|e| panic!("{printed:?} does not parse back: {e}"));
    // the same tree (compared printed where a NaN literal, unequal to itself, is in it)
    if printed.contains("NaN") {
        assert_eq!(printed, back.to_string());
    } else {
        assert_eq!(q, back, "{text:?} printed as {printed:?}");
    }
    if let Query::Log(l) = &q {
        if let Ok(p) = logql::Pipeline::new(&l.stages) {
            let _ = p.run(text, &mut logql::Labels::new());
        }
    }
}
