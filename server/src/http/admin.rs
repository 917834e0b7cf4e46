//! The admin endpoints' guard: `Authorization: Bearer <control token>`.
//!
//! The control plane reaches a service's tables only through that service's admin endpoints; the
//! token keeps them to whoever can read the stack's `control.token`.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;

use super::AppError;

/// The control token; `Debug` never shows it.
#[derive(Clone, Default)]
pub struct AdminToken(Option<Arc<str>>);

impl AdminToken {
    pub fn new(token: Option<String>) -> Self {
        Self(token.map(|t| t.trim().to_string()).filter(|t| !t.is_empty()).map(Arc::from))
    }

    /// Whether `header` (an `Authorization` value) carries this token.
    fn admits(&self, header: Option<&str>) -> Result<(), AppError> {
        let Some(expected) = self.0.as_deref() else {
            return Err(AppError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "admin endpoints are disabled: the service was started without a control token (CHAT4ALL_ADMIN_TOKEN)",
            ));
        };
        let given = header.and_then(|h| h.strip_prefix("Bearer ")).map(str::trim);
        match given {
            Some(t) if constant_time_eq(t.as_bytes(), expected.as_bytes()) => Ok(()),
            Some(_) => Err(AppError::new(StatusCode::UNAUTHORIZED, "wrong control token")),
            None => Err(AppError::new(
                StatusCode::UNAUTHORIZED,
                "admin endpoints need Authorization: Bearer <control token>",
            )),
        }
    }
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "AdminToken(<set>)" } else { "AdminToken(<none>)" })
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `router` with every route behind the control token.
pub fn guard<S: Clone + Send + Sync + 'static>(router: Router<S>, token: &AdminToken) -> Router<S> {
    router.layer(axum::middleware::from_fn_with_state(token.clone(), check))
}

async fn check(State(token): State<AdminToken>, req: Request, next: Next) -> Response {
    let header = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    match token.admits(header) {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_checked_and_never_shown() {
        let t = AdminToken::new(Some("s3cret".into()));
        assert!(t.admits(Some("Bearer s3cret")).is_ok());
        assert_eq!(t.admits(Some("Bearer nope")).unwrap_err().status, StatusCode::UNAUTHORIZED);
        assert_eq!(t.admits(Some("s3cret")).unwrap_err().status, StatusCode::UNAUTHORIZED);
        assert_eq!(t.admits(None).unwrap_err().status, StatusCode::UNAUTHORIZED);
        assert!(!format!("{t:?}").contains("s3cret"));
        let none = AdminToken::new(Some("  ".into()));
        assert_eq!(none.admits(Some("Bearer ")).unwrap_err().status, StatusCode::SERVICE_UNAVAILABLE);
    }
}
