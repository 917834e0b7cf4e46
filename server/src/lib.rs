//! chat4all platform services. One binary (`chat4all-server <service>`), one module per service,
//! and the pieces they share: configuration, the database, Kafka clients, wire formats, HTTP
//! plumbing, metrics and graceful shutdown.

pub mod ceiling;
pub mod config;
pub mod connector;
pub mod db;
pub mod dead_letters;
pub mod file;
pub mod gateway;
pub mod http;
pub mod kafka;
pub mod message;
pub mod metrics;
pub mod ops;
pub mod probe;
pub mod retry;
pub mod router;
pub mod shutdown;
pub mod telemetry;
pub mod user;

// The contract with the console lives in its own crate; these paths stay for the services.
pub use chat4all_contract::{channel, events};
