//! Free-form JSON documents (Elasticsearch sources, VictoriaLogs lines), read lazily with
//! sonic-rs: the top-level fields are split out as raw JSON text and each value is parsed only
//! when it is used — no document tree is built, hashed, cloned and dropped per record. The
//! depth check that keeps the recursion safe comes first. Every field left becomes `key=value`
//! tags.

use std::borrow::Cow;

use sonic_rs::{JsonValueTrait, LazyValue};

/// The fields of one JSON object, in document order, each value still raw JSON.
pub struct Doc<'a> {
    fields: Vec<(Cow<'a, str>, LazyValue<'a>)>,
}

/// A JSON object, or why not.
pub fn object(text: &str) -> Result<Doc<'_>, String> {
    crate::check_json_depth(text)?;
    let t = text.trim();
    if !t.starts_with('{') || !t.ends_with('}') {
        return Err("a document must be a JSON object".to_string());
    }
    let mut fields = Vec::with_capacity(8);
    for kv in sonic_rs::to_object_iter(t) {
        fields.push(kv.map_err(|e| e.to_string())?);
    }
    Ok(Doc { fields })
}

impl<'a> Doc<'a> {
    /// Takes the first field named `key` out.
    pub fn remove(&mut self, key: &str) -> Option<LazyValue<'a>> {
        let i = self.fields.iter().position(|(k, _)| k == key)?;
        Some(self.fields.remove(i).1)
    }

    pub fn get(&self, key: &str) -> Option<&LazyValue<'a>> {
        self.fields.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// The fields left, as a compact JSON object.
    pub fn to_json(&self) -> Result<String, String> {
        let mut out = String::from("{");
        for (i, (k, v)) in self.fields.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&sonic_rs::to_string(k.as_ref()).map_err(|e| e.to_string())?);
            out.push(':');
            out.push_str(&text_json(v)?);
        }
        out.push('}');
        Ok(out)
    }

    /// Every field left as tags.
    pub fn tags(&self, out: &mut Vec<String>) -> Result<(), String> {
        for (k, v) in &self.fields {
            flatten(k, v, out)?;
        }
        Ok(())
    }
}

/// A value as compact JSON text.
fn text_json(v: &LazyValue) -> Result<String, String> {
    if v.is_object() || v.is_array() {
        // re-serialized, so the stored text does not depend on the sender's whitespace
        let tree: sonic_rs::Value = sonic_rs::from_str(v.as_raw_str()).map_err(|e| e.to_string())?;
        return sonic_rs::to_string(&tree).map_err(|e| e.to_string());
    }
    Ok(v.as_raw_str().to_string())
}

/// A parsed value as text: a string as it is, anything else as JSON.
pub fn tree_text(v: &sonic_rs::Value) -> String {
    match v.as_str() {
        Some(s) => s.to_string(),
        None => sonic_rs::to_string(v).unwrap_or_default(),
    }
}

/// A value as text: a string as it is, anything else as JSON.
pub fn text(v: &LazyValue) -> Result<String, String> {
    match v.as_str() {
        Some(s) => Ok(s.to_string()),
        None if v.is_str() => Err(format!("bad string {}", v.as_raw_str())),
        None => text_json(v),
    }
}

/// `key=value` tags of a value: objects by dotted path, arrays as one tag per element, `null`
/// dropped.
fn flatten(key: &str, v: &LazyValue, out: &mut Vec<String>) -> Result<(), String> {
    if v.is_null() {
        return Ok(());
    }
    if v.is_array() {
        for e in sonic_rs::to_array_iter(v.as_raw_str()) {
            flatten(key, &e.map_err(|e| e.to_string())?, out)?;
        }
    } else if v.is_object() {
        for kv in sonic_rs::to_object_iter(v.as_raw_str()) {
            let (k, e) = kv.map_err(|e| e.to_string())?;
            let mut path = String::with_capacity(key.len() + 1 + k.len());
            path.push_str(key);
            path.push('.');
            path.push_str(&k);
            flatten(&path, &e, out)?;
        }
    } else {
        let mut tag = String::with_capacity(key.len() + 1 + v.as_raw_str().len());
        tag.push_str(key);
        tag.push('=');
        match v.as_str() {
            Some(s) => tag.push_str(s),
            None if v.is_str() => return Err(format!("bad string {}", v.as_raw_str())),
            // numbers and booleans as sent
            None => tag.push_str(v.as_raw_str()),
        }
        out.push(tag);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_tags_and_text_as_the_tree_gave_them() {
        let mut d =
            object(r#" {"a": {"b": [1, {"c": "x\ny"}], "n": null}, "m": "h\u00e9", "t": true, "o": { "k" : [ ] } } "#)
                .unwrap();
        assert_eq!(text(&d.remove("m").unwrap()).unwrap(), "hé");
        assert!(d.remove("m").is_none());
        assert_eq!(text(d.get("o").unwrap()).unwrap(), r#"{"k":[]}"#, "compact");
        let mut tags = Vec::new();
        d.tags(&mut tags).unwrap();
        assert_eq!(tags, ["a.b=1", "a.b.c=x\ny", "t=true"]);
        assert_eq!(d.to_json().unwrap(), r#"{"a":{"b":[1,{"c":"x\ny"}],"n":null},"t":true,"o":{"k":[]}}"#);
        for bad in ["[1]", "\"s\"", "{\"a\":1", "{\"a\" 1}", "{\"a\":[1,}", "{\"a\":{\"b\":tru}}"] {
            let r = object(bad).and_then(|d| {
                let mut t = Vec::new();
                d.tags(&mut t).map(|_| t)
            });
            assert!(r.is_err(), "{bad}: {r:?}");
        }
    }
}
