//! Elasticsearch's bulk API, enough for shippers that write to Elasticsearch: `POST|PUT /_bulk`
//! and `/{index}/_bulk`, with `index` and `create` actions, and `GET|HEAD /` answering like a
//! cluster so official clients accept the server.
//!
//! Mapping (docs/INTEGRATIONS.md): the app is the action's `_index`, or the index in the path;
//! the message is the first of `message`, `msg`, `log`, `_msg` (a document with none is stored
//! whole as JSON); the time is `@timestamp` (RFC 3339, or epoch milliseconds); every other
//! field becomes tags, nested objects flattened with dots (`http.status=200`), arrays as one
//! tag per element. Unlike the native API a bulk request is not all or nothing: each item
//! succeeds or fails on its own, and `errors` says whether any failed, as Elasticsearch does.

use logpipe_model::{parse_time, AppName, Record};
use serde_json::{json, Value};
use sonic_rs::JsonValueTrait;

use crate::{doc, DecodeCtx, Refused};

/// An action line: exactly one of these is set.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ActionLine {
    index: Option<Meta>,
    create: Option<Meta>,
    update: Option<Meta>,
    delete: Option<Meta>,
}

/// An action's metadata; other keys (`routing`, `pipeline`, `_type` …) are ignored.
#[derive(serde::Deserialize, Clone)]
struct Meta {
    #[serde(rename = "_index")]
    index: Option<String>,
    #[serde(rename = "_id")]
    id: Option<sonic_rs::Value>,
}

/// What one bulk item became.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    action: &'static str,
    index: String,
    id: String,
    /// `Err((status, type, reason))` for an item refused on its own.
    outcome: Result<(), (u16, &'static str, String)>,
}

impl Item {
    pub fn is_ok(&self) -> bool {
        self.outcome.is_ok()
    }
}

fn refuse(status: u16, kind: &'static str, reason: impl Into<String>) -> Result<(), (u16, &'static str, String)> {
    Err((status, kind, reason.into()))
}

/// Decodes a bulk body into the records to store and one [`Item`] per action, in order.
/// A malformed action line fails the whole request, as it does in Elasticsearch; a bad
/// document fails only its item.
pub fn decode_bulk(body: &[u8], ctx: &DecodeCtx, now: i64) -> Result<(Vec<Record>, Vec<Item>), Refused> {
    let text = crate::text(std::borrow::Cow::Borrowed(body));
    let mut lines = text.split('\n').enumerate().filter(|(_, l)| !l.trim().is_empty());
    let (mut records, mut items) = (Vec::new(), Vec::new());
    // shippers repeat one action line for every document, and name a few indices: each
    // distinct line is parsed once, each index checked as an app name once
    let mut last_action: Option<(&str, &'static str, Meta)> = None;
    let mut apps: std::collections::HashMap<String, Result<AppName, String>> = Default::default();
    while let Some((n, line)) = lines.next() {
        let bad_action = |why: String| {
            Refused::bad_request("illegal_argument_exception", format!("malformed action line {}: {why}", n + 1))
                .with("line", (n + 1).into())
        };
        let (action, meta) = match &last_action {
            Some((text, action, meta)) if *text == line => (*action, meta.clone()),
            _ => {
                let (action, meta) = parse_action(line).map_err(bad_action)?;
                last_action = Some((line, action, meta.clone()));
                (action, meta)
            }
        };
        let index = meta.index.or_else(|| ctx.default_app.map(|a| a.as_str().to_string()));
        let id = meta.id.map_or_else(|| generated_id(now, items.len()), |v| doc::tree_text(&v));
        let source = if action == "delete" {
            None
        } else {
            let Some((_, doc)) = lines.next() else {
                return Err(Refused::bad_request(
                    "illegal_argument_exception",
                    format!("the {action} action on line {} has no document after it", n + 1),
                ));
            };
            Some(doc)
        };
        let mut item = Item { action, index: index.clone().unwrap_or_default(), id, outcome: Ok(()) };
        item.outcome = match (action, index, source) {
            ("update" | "delete", _, _) => refuse(
                400,
                "illegal_argument_exception",
                format!("logpipe stores logs append-only: the {action} action is not supported"),
            ),
            (_, None, _) => refuse(400, "action_request_validation_exception", "index is missing"),
            (_, Some(index), Some(doc)) => {
                match apps.entry(index).or_insert_with_key(|index| AppName::parse(index).map_err(|e| e.to_string())) {
                    Err(e) => {
                        let why = format!("index [{}] is not an app name: {e}", item.index);
                        refuse(400, "invalid_index_name_exception", why)
                    }
                    Ok(app) => match document(app.clone(), doc, ctx, now) {
                        Ok(r) => {
                            records.push(r);
                            Ok(())
                        }
                        Err(why) => refuse(400, "document_parsing_exception", why),
                    },
                }
            }
            (_, Some(_), None) => unreachable!("index and create have a document"),
        };
        items.push(item);
    }
    Ok((records, items))
}

/// An action line's action and metadata.
fn parse_action(line: &str) -> Result<(&'static str, Meta), String> {
    crate::check_json_depth(line)?;
    let parsed: ActionLine = sonic_rs::from_str(line).map_err(|e| e.to_string())?;
    Ok(match parsed {
        ActionLine { index: Some(m), create: None, update: None, delete: None } => ("index", m),
        ActionLine { index: None, create: Some(m), update: None, delete: None } => ("create", m),
        ActionLine { index: None, create: None, update: Some(m), delete: None } => ("update", m),
        ActionLine { index: None, create: None, update: None, delete: Some(m) } => ("delete", m),
        _ => return Err("expected one action: index, create, update or delete".into()),
    })
}

/// The id of a document sent without one: the request's time and the item's place, in hex
/// (22 digits, written without the formatting machinery: one per document).
fn generated_id(now: i64, item: usize) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(22);
    for shift in (0..16).rev() {
        s.push(HEX[((now as u64) >> (shift * 4)) as usize & 15] as char);
    }
    for shift in (0..6).rev() {
        s.push(HEX[(item >> (shift * 4)) & 15] as char);
    }
    s
}

/// One document as a record.
fn document(app: AppName, source: &str, ctx: &DecodeCtx, now: i64) -> Result<Record, String> {
    let mut fields = doc::object(source)?;
    let ts = match fields.remove("@timestamp") {
        None => now,
        Some(v) if v.is_null() => now,
        Some(v) if v.is_str() => parse_time(&doc::text(&v)?).map_err(|e| format!("@timestamp: {e}"))?,
        Some(v) if v.is_number() => v
            .as_i64()
            .and_then(|ms| ms.checked_mul(1_000_000))
            .ok_or_else(|| format!("@timestamp: {} is not epoch milliseconds", v.as_raw_str()))?,
        Some(v) => return Err(format!("@timestamp: {} is not a date", v.as_raw_str())),
    };
    if let Some(c) = (ctx.cutoff)(&app).filter(|&c| ts < c) {
        return Err(format!("@timestamp is older than the retention of app {app} (cut-off {c} ns)"));
    }
    let message = match ["message", "msg", "log", "_msg"].iter().find_map(|k| fields.remove(k)) {
        Some(v) => doc::text(&v)?,
        None => fields.to_json()?,
    };
    let mut tags = Vec::new();
    fields.tags(&mut tags)?;
    Record::new(app, ts, message, tags, ctx.limits).map_err(|e| e.to_string())
}

/// Elasticsearch's answer to a bulk request.
pub fn bulk_response(items: &[Item], took_ms: u64) -> Value {
    let mut seq = 0u64;
    let items: Vec<Value> = items
        .iter()
        .map(|it| {
            let body = match &it.outcome {
                Ok(()) => {
                    seq += 1;
                    json!({
                        "_index": it.index, "_id": it.id, "_version": 1, "result": "created",
                        "_shards": {"total": 1, "successful": 1, "failed": 0},
                        "_seq_no": seq - 1, "_primary_term": 1, "status": 201,
                    })
                }
                Err((status, kind, reason)) => json!({
                    "_index": it.index, "_id": it.id, "status": status,
                    "error": {"type": kind, "reason": reason},
                }),
            };
            json!({ it.action: body })
        })
        .collect();
    let errors =
        items.iter().any(|i| i.as_object().and_then(|o| o.values().next()).is_some_and(|b| b["error"].is_object()));
    json!({ "took": took_ms, "errors": errors, "items": items })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::StatusCode;
    use logpipe_model::Limits;

    fn decode(body: &str, default: Option<&str>) -> Result<(Vec<Record>, Vec<Item>), Refused> {
        let app = default.map(|a| AppName::parse(a).unwrap());
        let limits = Limits::default();
        let ctx = DecodeCtx { default_app: app.as_ref(), limits: &limits, cutoff: &|_| None };
        decode_bulk(body.as_bytes(), &ctx, 7)
    }

    #[test]
    fn index_and_create_with_nested_fields_and_times() {
        let body = concat!(
            "{\"index\":{\"_index\":\"Web\",\"_id\":\"a1\"}}\n",
            "{\"@timestamp\":\"2025-01-01T00:00:00.5Z\",\"message\":\"GET /\",\"http\":{\"status\":200,\"ok\":true},\"tags\":[\"x\",\"y\"],\"gone\":null}\n",
            "\n",
            "{\"create\":{}}\n",
            "{\"@timestamp\":1735689600123,\"msg\":\"m2\"}",
        );
        let (records, items) = decode(body, Some("db")).unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].app.as_str(), "web");
        assert_eq!(records[0].ts, 1_735_689_600_500_000_000);
        assert_eq!(records[0].message, "GET /");
        assert_eq!(records[0].tags, ["http.ok=true", "http.status=200", "tags=x", "tags=y"]);
        assert_eq!(
            (records[1].app.as_str(), records[1].ts, records[1].message.as_str()),
            ("db", 1_735_689_600_123_000_000, "m2")
        );
        assert_eq!((items[0].action, items[0].id.as_str()), ("index", "a1"));
        assert_eq!(items[1].action, "create");
        assert!(items.iter().all(|i| i.outcome.is_ok()));
    }

    #[test]
    fn items_fail_on_their_own_and_requests_as_a_whole() {
        let body = concat!(
            "{\"index\":{\"_index\":\"ok\"}}\n{\"message\":\"fine\"}\n",
            "{\"index\":{}}\n{\"message\":\"no index\"}\n",
            "{\"index\":{\"_index\":\"../etc\"}}\n{\"message\":\"bad index\"}\n",
            "{\"index\":{\"_index\":\"ok\"}}\n[1,2]\n",
            "{\"index\":{\"_index\":\"ok\"}}\n{\"@timestamp\":\"soon\",\"message\":\"x\"}\n",
            "{\"delete\":{\"_index\":\"ok\",\"_id\":\"1\"}}\n",
            "{\"update\":{\"_index\":\"ok\",\"_id\":\"1\"}}\n{\"doc\":{}}\n",
            "{\"index\":{\"_index\":\"ok\"}}\n{\"no_message\":1}\n",
        );
        let (records, items) = decode(body, None).unwrap();
        let kinds: Vec<Option<&str>> = items.iter().map(|i| i.outcome.as_ref().err().map(|e| e.1)).collect();
        assert_eq!(
            kinds,
            [
                None,
                Some("action_request_validation_exception"),
                Some("invalid_index_name_exception"),
                Some("document_parsing_exception"),
                Some("document_parsing_exception"),
                Some("illegal_argument_exception"),
                Some("illegal_argument_exception"),
                None
            ]
        );
        assert_eq!(records.len(), 2);
        assert_eq!(records[1].message, "{\"no_message\":1}", "a document without a message is kept whole");
        let resp = bulk_response(&items, 1);
        assert_eq!(resp["errors"], true);
        assert_eq!(resp["items"][1]["index"]["status"], 400);
        assert_eq!(resp["items"][0]["index"]["status"], 201);
        // the whole request fails on a malformed action or a missing document
        for bad in ["{\"index\":{}\n{}\n", "{\"frob\":{}}\n{}\n", "[1]\n", "{\"index\":{\"_index\":\"a\"}}\n"] {
            assert_eq!(decode(bad, None).unwrap_err().status, StatusCode::BAD_REQUEST, "{bad}");
        }
    }
}
