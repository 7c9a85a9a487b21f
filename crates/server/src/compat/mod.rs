//! The wire protocols of other log stores and shippers, each mapped onto logpipe's records
//! and sharing the native ingest path (`ingest::accept`): its limits, admission, scopes and
//! durability. docs/INTEGRATIONS.md shows how to point each shipper here.

#[doc(hidden)]
pub mod bench;
mod doc;
pub mod elastic;
pub mod loki;
pub mod loki_query;
pub mod otlp;
pub mod syslog;
pub mod vlogs;

/// The tag `key=value`, built without the formatting machinery (decoders make several per
/// record).
pub(crate) fn tag(key: &str, value: &str) -> String {
    let mut t = String::with_capacity(key.len() + 1 + value.len());
    t.push_str(key);
    t.push('=');
    t.push_str(value);
    t
}
