//! chat4all control plane: the local supervisor (`up`), the control API, and the observe/act
//! operations shared by `chat4allctl` and the dashboard.

pub use chat4all_contract as contract;

pub mod admin;
pub mod alerts;
pub mod bench;
pub mod broker;
pub mod cluster;
pub mod control;
pub mod dlq;
pub mod drill;
pub mod error;
pub mod exporter;
pub mod failover;
pub mod health;
pub mod kafka;
pub mod lag;
pub mod load;
pub mod output;
pub mod ownership;
pub mod paths;
pub mod pipeline;
pub mod providers;
pub mod rates;
pub mod repartition;
pub mod runtime;
pub mod sampler;
pub mod signals;
pub mod spec;
pub mod stack;
pub mod stalls;
pub mod timeline;
pub mod view;
pub mod wire;
