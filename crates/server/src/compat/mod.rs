//! The HTTP side of the wire protocols of other log stores and shippers: each handler hands
//! its body to the protocol's decoder (`logpipe-formats`) through the native ingest path
//! (`ingest::accept`): its limits, admission, scopes and durability. docs/INTEGRATIONS.md shows how to point each shipper here.

pub mod elastic;
pub mod loki;
pub mod loki_query;
pub mod otlp;
pub mod syslog;
pub mod vlogs;
