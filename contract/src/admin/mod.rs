//! The services' admin API: what the control plane (`chat4allctl`, the dashboard, the tests)
//! asks of the service that owns a table, instead of writing the table itself.
//!
//! Every admin endpoint requires `Authorization: Bearer <token>`, the stack's control token
//! (`control.token` in the data directory; the supervisor hands it to every service as
//! [`ADMIN_TOKEN_ENV`]). A service started without a token answers its admin endpoints `503`.

pub mod api_keys;
pub mod deliveries;
pub mod dlq;
pub mod pipeline;
pub mod relay;

/// The environment variable (and `--admin-token` flag) that carries the control token.
pub const ADMIN_TOKEN_ENV: &str = "CHAT4ALL_ADMIN_TOKEN";

/// Body of every admin error answer (`{"error": ...}`), as the services' other errors.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ErrorBody {
    pub error: String,
}
