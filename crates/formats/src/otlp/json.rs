//! The OTLP/JSON encoding (lowerCamelCase names; 64-bit integers as strings or numbers; ids as
//! hex; enums as numbers; unknown fields ignored), read in one pass straight into records.
//!
//! No request tree is built: each object is read by a serde visitor that writes into the
//! records being made. Attribute keys and string values are borrowed from the body, so an
//! attribute costs the one allocation of its `key=value` tag. Fields may come in any order: a
//! resource's records wait for the end of its object to learn their app, and a value seen
//! before its key is kept as a [`proto::Value`] until the key comes.
//!
//! Nesting is counted here, so a body nested deeper than [`MAX_JSON_DEPTH`] is refused without
//! a scan of its own beforehand (unknown values are skipped by [`Skip`], which counts too:
//! sonic-rs's own skipping recurses without a limit).

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use super::{app_named, flatten, hex_id, proto, severity_name, store, timestamp, Rejected};
use crate::{DecodeCtx, MAX_JSON_DEPTH};
use logpipe_model::Record;

/// Decodes an OTLP/JSON request into records; records that fail on their own are counted in
/// [`Rejected`]. The error of a body that does not decode at all.
pub(super) fn decode(text: &str, ctx: &DecodeCtx, now: i64) -> Result<(Vec<Record>, Rejected), String> {
    let mut out = Out { ctx, now, records: Vec::new(), rejected: Rejected::default() };
    let mut de = sonic_rs::Deserializer::from_str(text);
    Object(&mut out, 1).deserialize(&mut de).map_err(|e| e.to_string())?;
    de.end().map_err(|e| e.to_string())?;
    Ok((out.records, out.rejected))
}

fn too_deep<E: de::Error>(depth: usize) -> Result<(), E> {
    if depth > MAX_JSON_DEPTH {
        return Err(E::custom(format!("JSON is nested deeper than {MAX_JSON_DEPTH} levels")));
    }
    Ok(())
}

/// A JSON object read key by key.
trait Fields<'de> {
    /// Reads the value of `key` from `map`; `depth` is the object's own.
    fn field<A: MapAccess<'de>>(&mut self, key: &str, map: &mut A, depth: usize) -> Result<(), A::Error>;
}

/// A JSON array read element by element.
trait Items<'de> {
    /// Reads one element; `depth` is the element's own.
    fn item<D: Deserializer<'de>>(&mut self, d: D, depth: usize) -> Result<(), D::Error>;
}

/// An object (or `null`, read as empty) at `depth`, into `T`.
struct Object<'t, T>(&'t mut T, usize);

impl<'de, T: Fields<'de>> DeserializeSeed<'de> for Object<'_, T> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        too_deep(self.1)?;
        d.deserialize_any(self)
    }
}

impl<'de, T: Fields<'de>> Visitor<'de> for Object<'_, T> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object")
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<Str>()? {
            self.0.field(&key.0, &mut map, self.1)?;
        }
        Ok(())
    }
}

/// An array (or `null`, read as empty) at `depth`, into `T`.
struct List<'t, T>(&'t mut T, usize);

impl<'de, T: Items<'de>> DeserializeSeed<'de> for List<'_, T> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        too_deep(self.1)?;
        d.deserialize_any(self)
    }
}

impl<'de, T: Items<'de>> Visitor<'de> for List<'_, T> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array")
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Item(&mut *self.0, self.1 + 1))?.is_some() {}
        Ok(())
    }
}

struct Item<'t, T>(&'t mut T, usize);

impl<'de, T: Items<'de>> DeserializeSeed<'de> for Item<'_, T> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        self.0.item(d, self.1)
    }
}

/// The request: `{"resourceLogs": [...]}`.
struct Out<'c> {
    ctx: &'c DecodeCtx<'c>,
    now: i64,
    records: Vec<Record>,
    rejected: Rejected,
}

impl<'de> Fields<'de> for Out<'_> {
    fn field<A: MapAccess<'de>>(&mut self, key: &str, map: &mut A, depth: usize) -> Result<(), A::Error> {
        match key {
            "resourceLogs" => map.next_value_seed(List(self, depth + 1)),
            _ => map.next_value_seed(Skip(depth + 1)),
        }
    }
}

impl<'de> Items<'de> for Out<'_> {
    fn item<D: Deserializer<'de>>(&mut self, d: D, depth: usize) -> Result<(), D::Error> {
        let mut rl = ResourceLogs { now: self.now, ..ResourceLogs::default() };
        Object(&mut rl, depth).deserialize(d)?;
        rl.finish(self);
        Ok(())
    }
}

/// A record read, waiting for its resource's app.
struct Pending {
    scope: usize,
    ts: Result<i64, String>,
    message: String,
    tags: Vec<String>,
}

/// One `resourceLogs` element: its resource's tags, each scope's tags, and its records.
#[derive(Default)]
struct ResourceLogs {
    now: i64,
    resource: Attributes,
    scopes: Vec<Vec<String>>,
    pending: Vec<Pending>,
}

impl ResourceLogs {
    /// The records, now that the app is known.
    fn finish(self, out: &mut Out) {
        let app = app_named(self.resource.service_name.as_deref(), out.ctx.default_app);
        let cutoff = (out.ctx.cutoff)(&app);
        for p in self.pending {
            let mut tags = p.tags;
            tags.extend(self.resource.tags.iter().cloned());
            tags.extend(self.scopes[p.scope].iter().cloned());
            match p.ts.and_then(|ts| store(&app, ts, p.message, tags, out.ctx, cutoff)) {
                Ok(r) => out.records.push(r),
                Err(why) => out.rejected.add(why),
            }
        }
    }
}

impl<'de> Fields<'de> for ResourceLogs {
    fn field<A: MapAccess<'de>>(&mut self, key: &str, map: &mut A, depth: usize) -> Result<(), A::Error> {
        match key {
            "resource" => {
                self.resource.service = true;
                map.next_value_seed(Object(&mut self.resource, depth + 1))
            }
            "scopeLogs" => map.next_value_seed(List(self, depth + 1)),
            _ => map.next_value_seed(Skip(depth + 1)),
        }
    }
}

impl<'de> Items<'de> for ResourceLogs {
    fn item<D: Deserializer<'de>>(&mut self, d: D, depth: usize) -> Result<(), D::Error> {
        self.scopes.push(Vec::new());
        let scope = self.scopes.len() - 1;
        Object(&mut ScopeLogs { rl: self, scope }, depth).deserialize(d)
    }
}

/// One `scopeLogs` element: `{"scope": {...}, "logRecords": [...]}`.
struct ScopeLogs<'r> {
    rl: &'r mut ResourceLogs,
    scope: usize,
}

impl<'de> Fields<'de> for ScopeLogs<'_> {
    fn field<A: MapAccess<'de>>(&mut self, key: &str, map: &mut A, depth: usize) -> Result<(), A::Error> {
        match key {
            "scope" => map.next_value_seed(Object(&mut Scope(&mut self.rl.scopes[self.scope]), depth + 1)),
            "logRecords" => map.next_value_seed(List(self, depth + 1)),
            _ => map.next_value_seed(Skip(depth + 1)),
        }
    }
}

impl<'de> Items<'de> for ScopeLogs<'_> {
    fn item<D: Deserializer<'de>>(&mut self, d: D, depth: usize) -> Result<(), D::Error> {
        let mut lr = LogRecord::default();
        Object(&mut lr, depth).deserialize(d)?;
        self.rl.pending.push(lr.finish(self.scope, self.rl.now));
        Ok(())
    }
}

/// `{"name": "...", "attributes": [...]}` into a scope's tags.
struct Scope<'t>(&'t mut Vec<String>);

impl<'de> Fields<'de> for Scope<'_> {
    fn field<A: MapAccess<'de>>(&mut self, key: &str, map: &mut A, depth: usize) -> Result<(), A::Error> {
        match key {
            "name" => {
                let name = map.next_value::<Str>()?.0;
                if !name.is_empty() {
                    self.0.push(format!("scope.name={name}"));
                }
                Ok(())
            }
            "attributes" => {
                let mut attrs = Attributes { tags: std::mem::take(self.0), ..Attributes::default() };
                let r = map.next_value_seed(List(&mut attrs, depth + 1));
                *self.0 = attrs.tags;
                r
            }
            _ => map.next_value_seed(Skip(depth + 1)),
        }
    }
}

/// A list of attributes (`[{"key": ..., "value": {...}}, ...]`) as `key=value` tags, keys
/// under `prefix.` when inside a map; for a resource (`service`), its `service.name` too.
#[derive(Default)]
struct Attributes {
    tags: Vec<String>,
    prefix: Option<String>,
    service: bool,
    service_name: Option<String>,
}

/// A resource: `{"attributes": [...]}`.
impl<'de> Fields<'de> for Attributes {
    fn field<A: MapAccess<'de>>(&mut self, key: &str, map: &mut A, depth: usize) -> Result<(), A::Error> {
        match key {
            "attributes" => map.next_value_seed(List(self, depth + 1)),
            _ => map.next_value_seed(Skip(depth + 1)),
        }
    }
}

impl<'de> Items<'de> for Attributes {
    fn item<D: Deserializer<'de>>(&mut self, d: D, depth: usize) -> Result<(), D::Error> {
        let mut kv = KeyValue { attrs: self, key: None, early: None };
        Object(&mut kv, depth).deserialize(d)?;
        kv.finish();
        Ok(())
    }
}

/// One attribute. Its value becomes tags as it is read once the key is known; a value that
/// comes first is kept until then.
struct KeyValue<'a, 'de> {
    attrs: &'a mut Attributes,
    key: Option<Cow<'de, str>>,
    early: Option<proto::Value>,
}

impl<'de> KeyValue<'_, 'de> {
    fn full_key(&self) -> Cow<'_, str> {
        let key = self.key.as_deref().unwrap_or("");
        match &self.attrs.prefix {
            Some(p) => Cow::Owned(format!("{p}.{key}")),
            None => Cow::Borrowed(key),
        }
    }

    fn finish(mut self) {
        let Some(v) = self.early.take() else { return };
        let key = self.full_key().into_owned();
        flatten(&key, &v, &mut self.attrs.tags);
        if let proto::Value::String(s) = v {
            if self.attrs.service && key == "service.name" {
                self.attrs.service_name = Some(s);
            }
        }
    }
}

impl<'de> Fields<'de> for KeyValue<'_, 'de> {
    fn field<A: MapAccess<'de>>(&mut self, key: &str, map: &mut A, depth: usize) -> Result<(), A::Error> {
        match key {
            "key" => self.key = Some(map.next_value::<Str>()?.0),
            "value" if self.key.is_some() => {
                let k = self.key.as_deref().unwrap_or("");
                let prefixed;
                let key = match &self.attrs.prefix {
                    Some(p) => {
                        prefixed = format!("{p}.{k}");
                        &prefixed
                    }
                    None => k,
                };
                let tags = &mut self.attrs.tags;
                let before = tags.len();
                let string = map.next_value_seed(TagValue { key, tags, depth: depth + 1 })?;
                if string && self.attrs.service && key == "service.name" {
                    self.attrs.service_name = Some(self.attrs.tags[before][key.len() + 1..].to_string());
                }
            }
            "value" => self.early = map.next_value_seed(ValueSeed(depth + 1))?,
            _ => map.next_value_seed(Skip(depth + 1))?,
        }
        Ok(())
    }
}

/// One `logRecords` element, read.
#[derive(Default)]
struct LogRecord {
    time: u64,
    observed: u64,
    severity_number: i64,
    level: Option<String>,
    message: String,
    attrs: Attributes,
}

impl LogRecord {
    fn finish(mut self, scope: usize, now: i64) -> Pending {
        let level = self.level.filter(|l| !l.is_empty()).or_else(|| {
            let n = i32::try_from(self.severity_number).unwrap_or(0);
            severity_name(n).map(str::to_string)
        });
        if let Some(l) = level {
            self.attrs.tags.push(crate::tag("level", &l));
        }
        Pending { scope, ts: timestamp(self.time, self.observed, now), message: self.message, tags: self.attrs.tags }
    }
}

impl<'de> Fields<'de> for LogRecord {
    fn field<A: MapAccess<'de>>(&mut self, key: &str, map: &mut A, depth: usize) -> Result<(), A::Error> {
        let int = |i: Int| i.0.unwrap_or(0);
        match key {
            "timeUnixNano" => self.time = int(map.next_value()?) as u64,
            "observedTimeUnixNano" => self.observed = int(map.next_value()?) as u64,
            "severityNumber" => self.severity_number = int(map.next_value()?),
            "severityText" => self.level = Some(map.next_value::<Str>()?.0.into_owned()),
            "body" => {
                self.message = match map.next_value_seed(ValueSeed(depth + 1))? {
                    None => String::new(),
                    Some(proto::Value::String(s)) => s,
                    Some(v) => super::to_json(&v).to_string(),
                }
            }
            "attributes" => map.next_value_seed(List(&mut self.attrs, depth + 1))?,
            "traceId" | "spanId" => {
                let name = if key == "traceId" { "trace_id" } else { "span_id" };
                let id = map.next_value::<Str>()?.0;
                if let Some(tag) = hex_id(name, &id).map_err(|e| de::Error::custom(format!("{key}: {e}")))? {
                    self.attrs.tags.push(tag);
                }
            }
            "eventName" => {
                let name = map.next_value::<Str>()?.0;
                if !name.is_empty() {
                    self.attrs.tags.push(format!("event.name={name}"));
                }
            }
            _ => map.next_value_seed(Skip(depth + 1))?,
        }
        Ok(())
    }
}

/// What an `AnyValue` holds, by kind, in the order that decides when a sender sets several.
#[derive(Default)]
struct Found<'de> {
    string: Option<Cow<'de, str>>,
    bool: Option<bool>,
    int: Option<i64>,
    double: Option<f64>,
    /// tags of an array or map (tag mode), or its value (value mode)
    array: Option<Nested>,
    kvlist: Option<Nested>,
    bytes: Option<Vec<u8>>,
}

enum Nested {
    Tags(Vec<String>),
    Value(proto::Value),
}

impl<'de> Found<'de> {
    /// Reads the `AnyValue` object's fields; an array or map becomes tags under `key` if one
    /// is given, else a value.
    fn read<A: MapAccess<'de>>(map: &mut A, key: Option<&str>, depth: usize) -> Result<Found<'de>, A::Error> {
        use base64::Engine as _;
        let mut f = Found::default();
        while let Some(field) = map.next_key::<Str>()? {
            match &*field.0 {
                "stringValue" => f.string = Some(map.next_value::<Str>()?.0),
                "boolValue" => f.bool = Some(map.next_value()?),
                "intValue" => f.int = map.next_value::<Int>()?.0,
                "doubleValue" => f.double = map.next_value::<Float>()?.0,
                "arrayValue" => {
                    let mut values = Values { key, tags: Vec::new(), values: Vec::new() };
                    map.next_value_seed(Object(&mut values, depth + 1))?;
                    f.array = Some(match key {
                        Some(_) => Nested::Tags(values.tags),
                        None => Nested::Value(proto::Value::Array(proto::ArrayValue { values: values.values })),
                    });
                }
                "kvlistValue" => {
                    let mut kvs = KvList { key, attrs: Attributes::default(), values: Vec::new() };
                    kvs.attrs.prefix = key.map(str::to_string);
                    map.next_value_seed(Object(&mut kvs, depth + 1))?;
                    f.kvlist = Some(match key {
                        Some(_) => Nested::Tags(kvs.attrs.tags),
                        None => Nested::Value(proto::Value::Kvlist(proto::KeyValueList { values: kvs.values })),
                    });
                }
                "bytesValue" => {
                    let b = map.next_value::<Str>()?.0;
                    f.bytes = base64::engine::general_purpose::STANDARD.decode(b.as_bytes()).ok();
                }
                _ => map.next_value_seed(Skip(depth + 1))?,
            }
        }
        Ok(f)
    }

    /// The value that wins, as a protobuf value.
    fn value(self) -> Option<proto::Value> {
        use proto::Value as V;
        let nested = |n: Nested| match n {
            Nested::Value(v) => v,
            Nested::Tags(_) => unreachable!("value mode reads no tags"),
        };
        (self.string.map(|s| V::String(s.into_owned())))
            .or(self.bool.map(V::Bool))
            .or(self.int.map(V::Int))
            .or(self.double.map(V::Double))
            .or(self.array.map(nested))
            .or(self.kvlist.map(nested))
            .or(self.bytes.map(V::Bytes))
    }
}

/// An `AnyValue` read as tags `key=value`; whether it was a string.
struct TagValue<'k, 't> {
    key: &'k str,
    tags: &'t mut Vec<String>,
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for TagValue<'_, '_> {
    type Value = bool;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        too_deep(self.depth)?;
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for TagValue<'_, '_> {
    type Value = bool;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an OTLP AnyValue object")
    }
    fn visit_unit<E>(self) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        let f = Found::read(&mut map, Some(self.key), self.depth)?;
        let key = self.key;
        let tag = |v: fmt::Arguments| format!("{key}={v}");
        let pushed = if let Some(s) = f.string {
            self.tags.push(crate::tag(key, &s));
            return Ok(true);
        } else if let Some(b) = f.bool {
            tag(format_args!("{b}"))
        } else if let Some(i) = f.int {
            tag(format_args!("{i}"))
        } else if let Some(d) = f.double {
            tag(format_args!("{d}"))
        } else if let Some(Nested::Tags(t)) = f.array.or(f.kvlist) {
            self.tags.extend(t);
            return Ok(false);
        } else if let Some(b) = f.bytes {
            tag(format_args!("{}", hex::encode(b)))
        } else {
            return Ok(false);
        };
        self.tags.push(pushed);
        Ok(false)
    }
}

/// An `AnyValue` read as a protobuf value (a body, or an attribute value before its key).
struct ValueSeed(usize);

impl<'de> DeserializeSeed<'de> for ValueSeed {
    type Value = Option<proto::Value>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        too_deep(self.0)?;
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed {
    type Value = Option<proto::Value>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an OTLP AnyValue object")
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        Ok(Found::read(&mut map, None, self.0)?.value())
    }
}

/// An `arrayValue`: `{"values": [AnyValue, ...]}`, as tags under `key` or as values.
struct Values<'k> {
    key: Option<&'k str>,
    tags: Vec<String>,
    values: Vec<proto::AnyValue>,
}

impl<'de> Fields<'de> for Values<'_> {
    fn field<A: MapAccess<'de>>(&mut self, key: &str, map: &mut A, depth: usize) -> Result<(), A::Error> {
        match key {
            "values" => map.next_value_seed(List(self, depth + 1)),
            _ => map.next_value_seed(Skip(depth + 1)),
        }
    }
}

impl<'de> Items<'de> for Values<'_> {
    fn item<D: Deserializer<'de>>(&mut self, d: D, depth: usize) -> Result<(), D::Error> {
        match self.key {
            Some(key) => TagValue { key, tags: &mut self.tags, depth }.deserialize(d).map(drop),
            None => {
                let value = ValueSeed(depth).deserialize(d)?;
                self.values.push(proto::AnyValue { value });
                Ok(())
            }
        }
    }
}

/// A `kvlistValue`: `{"values": [KeyValue, ...]}`, as tags under `key.` or as values.
struct KvList<'k> {
    key: Option<&'k str>,
    attrs: Attributes,
    values: Vec<proto::KeyValue>,
}

impl<'de> Fields<'de> for KvList<'_> {
    fn field<A: MapAccess<'de>>(&mut self, key: &str, map: &mut A, depth: usize) -> Result<(), A::Error> {
        match key {
            "values" => map.next_value_seed(List(self, depth + 1)),
            _ => map.next_value_seed(Skip(depth + 1)),
        }
    }
}

impl<'de> Items<'de> for KvList<'_> {
    fn item<D: Deserializer<'de>>(&mut self, d: D, depth: usize) -> Result<(), D::Error> {
        if self.key.is_some() {
            return self.attrs.item(d, depth);
        }
        let mut kv = OwnedKeyValue::default();
        Object(&mut kv, depth).deserialize(d)?;
        self.values.push(proto::KeyValue { key: kv.key, value: Some(proto::AnyValue { value: kv.value }) });
        Ok(())
    }
}

/// An attribute inside a map read as a value.
#[derive(Default)]
struct OwnedKeyValue {
    key: String,
    value: Option<proto::Value>,
}

impl<'de> Fields<'de> for OwnedKeyValue {
    fn field<A: MapAccess<'de>>(&mut self, key: &str, map: &mut A, depth: usize) -> Result<(), A::Error> {
        match key {
            "key" => self.key = map.next_value::<Str>()?.0.into_owned(),
            "value" => self.value = map.next_value_seed(ValueSeed(depth + 1))?,
            _ => map.next_value_seed(Skip(depth + 1))?,
        }
        Ok(())
    }
}

/// A string, borrowed from the body when it has no escapes; `null` reads as empty.
struct Str<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Str<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Str<'de>, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Str<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Owned(s.to_string())))
            }
            fn visit_string<E>(self, s: String) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Owned(s)))
            }
            fn visit_unit<E>(self) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Borrowed("")))
            }
        }
        d.deserialize_any(V)
    }
}

/// A 64-bit integer: a number, or a decimal string (`None` when the string is not one).
struct Int(Option<i64>);

impl<'de> Deserialize<'de> for Int {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Int, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Int;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an integer or a decimal string")
            }
            fn visit_i64<E>(self, v: i64) -> Result<Int, E> {
                Ok(Int(Some(v)))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Int, E> {
                Ok(Int(Some(v as i64)))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Int, E> {
                Ok(Int(Some(v as i64)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Int, E> {
                Ok(Int(s.parse::<i64>().ok().or_else(|| s.parse::<u64>().ok().map(|u| u as i64))))
            }
            fn visit_unit<E>(self) -> Result<Int, E> {
                Ok(Int(None))
            }
        }
        d.deserialize_any(V)
    }
}

/// A double: a number, or a string (`"1.5"`, `"NaN"`); `None` when the string is not one.
struct Float(Option<f64>);

impl<'de> Deserialize<'de> for Float {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Float, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Float;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number or a string")
            }
            fn visit_i64<E>(self, v: i64) -> Result<Float, E> {
                Ok(Float(Some(v as f64)))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Float, E> {
                Ok(Float(Some(v as f64)))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Float, E> {
                Ok(Float(Some(v)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Float, E> {
                Ok(Float(s.parse().ok()))
            }
            fn visit_unit<E>(self) -> Result<Float, E> {
                Ok(Float(None))
            }
        }
        d.deserialize_any(V)
    }
}

/// Any value, read and dropped, counting its nesting.
struct Skip(usize);

impl<'de> DeserializeSeed<'de> for Skip {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        too_deep(self.0)?;
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Skip {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Skip(self.0 + 1))?.is_some() {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map.next_key::<de::IgnoredAny>()?.is_some() {
            map.next_value_seed(Skip(self.0 + 1))?;
        }
        Ok(())
    }
}
