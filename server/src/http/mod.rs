//! HTTP plumbing shared by every service: errors, /health, /metrics, request metrics, serving.

mod admin;
mod error;
mod health;
mod page;
mod server;

pub use admin::{guard, AdminToken};
pub use error::AppError;
pub use health::{Check, Health};
pub use page::{Page, PageQuery};
pub use server::{ops_routes, serve, track_metrics, OpsState};
