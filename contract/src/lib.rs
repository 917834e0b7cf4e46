//! The contract between chat4all's services and everything that talks to them.
//!
//! - [`channel`]: the channels delivered to.
//! - [`events`]: records on the Kafka topics and the ops channel.
//! - [`names`]: topic, group and ops-channel key names.
//! - [`group`]: the consumer group protocol.
//! - [`message`]: the message a client posts, and every rule the API checks on it.
//! - [`connector`]: the connectors' delivery API.
//! - [`provider`]: the (simulated) messaging providers' HTTP API.
//! - [`admin`]: the services' admin API (the control plane's only way into their tables).
//! - [`partition`]: which partition a key lands on (Kafka's default partitioner).

pub mod admin;
pub mod channel;
pub mod connector;
pub mod events;
pub mod group;
pub mod message;
pub mod names;
pub mod partition;
pub mod provider;

pub use names::{ops_keys, topics};
