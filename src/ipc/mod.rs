//! The daemon's unix-socket protocol, shared by both ends: the wire format
//! (`protocol.rs`) and the lean client every `mailtoken token` runs (`client.rs`). The
//! daemon itself (`crate::daemon`) and the credential service (`crate::credential`)
//! both build on it; it knows neither.

pub mod client;
pub mod protocol;
