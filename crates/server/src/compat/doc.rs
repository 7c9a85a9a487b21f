//! Free-form JSON documents (Elasticsearch sources, VictoriaLogs lines): parsed by sonic-rs
//! into its own `Value` — several times faster than building a `serde_json::Value` — after
//! the depth check that keeps it safe, and turned into `key=value` tags.

use sonic_rs::{JsonContainerTrait, JsonValueTrait, Object, Value};

/// A JSON object, or why not.
pub(crate) fn object(text: &str) -> Result<Object, String> {
    crate::ingest::check_json_depth(text)?;
    let v: Value = sonic_rs::from_str(text).map_err(|e| e.to_string())?;
    v.into_object().ok_or_else(|| "a document must be a JSON object".to_string())
}

/// A value as text: a string as it is, anything else as JSON.
pub(crate) fn text(v: &Value) -> String {
    match v.as_str() {
        Some(s) => s.to_string(),
        None => sonic_rs::to_string(v).unwrap_or_default(),
    }
}

/// `key=value` tags of a value: objects by dotted path, arrays as one tag per element, `null`
/// dropped.
pub(crate) fn flatten(key: &str, v: &Value, out: &mut Vec<String>) {
    if v.is_null() {
        return;
    }
    if let Some(a) = v.as_array() {
        a.iter().for_each(|e| flatten(key, e, out));
    } else if let Some(o) = v.as_object() {
        o.iter().for_each(|(k, e)| flatten(&format!("{key}.{k}"), e, out));
    } else {
        out.push(format!("{key}={}", text(v)));
    }
}

/// Every field of `o` as tags.
pub(crate) fn tags(o: &Object, out: &mut Vec<String>) {
    for (k, v) in o.iter() {
        flatten(k, v, out);
    }
}
