//! The wire protocols of other log stores and shippers, each mapped onto logpipe's records
//! and sharing the native ingest path (`ingest::accept`): its limits, admission, scopes and
//! durability. docs/INTEGRATIONS.md shows how to point each shipper here.

#[doc(hidden)]
pub mod bench;
mod doc;
pub mod elastic;
pub mod logql;
pub mod loki;
pub mod loki_query;
pub mod otlp;
pub mod syslog;
pub mod vlogs;
