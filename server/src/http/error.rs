use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

/// The one error type of every HTTP handler. Client errors carry a message (and the offending
/// field); internal ones are logged here once and answered with an opaque body.
#[derive(Debug)]
pub struct AppError {
    pub status: StatusCode,
    pub error: String,
    pub field: Option<String>,
}

#[derive(Serialize)]
struct Body<'a> {
    error: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
}

impl AppError {
    pub fn bad_request(error: impl Into<String>, field: Option<&str>) -> Self {
        Self { status: StatusCode::BAD_REQUEST, error: error.into(), field: field.map(str::to_owned) }
    }

    pub fn new(status: StatusCode, error: impl Into<String>) -> Self {
        Self { status, error: error.into(), field: None }
    }

    pub fn not_found(what: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, what)
    }

    pub fn internal(e: impl std::fmt::Display) -> Self {
        tracing::error!(error = %e, "internal error");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
    }
}

impl AppError {
    /// PostgreSQL could not be reached: a 503 the client may retry; the cause is logged here.
    pub fn database_unavailable(cause: impl std::fmt::Display) -> Self {
        tracing::warn!(error = %cause, "database unavailable");
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "database unavailable, try again")
    }
}

impl From<sqlx::Error> for AppError {
    fn from(e: sqlx::Error) -> Self {
        if crate::db::is_unavailable(&e) {
            Self::database_unavailable(e)
        } else {
            Self::internal(e)
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let body = Body { error: &self.error, field: self.field.as_deref() };
        (self.status, Json(body)).into_response()
    }
}
