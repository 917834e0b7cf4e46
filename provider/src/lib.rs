//! A simulated messaging provider: one process per channel (`whatsapp-provider-1`, ...) serving
//! the providers' HTTP API of [`chat4all_contract::provider`], with fault injection and a record
//! of every request it received, which is the ground truth of the drills and benchmarks.
//!
//! Its storage is its own memory ([`record`]), never the platform's database: what it counts
//! cannot be made right by a check the platform does for it.

pub mod api;
pub mod config;
pub mod faults;
pub mod metrics;
pub mod record;

#[cfg(test)]
mod api_tests;
