//! The api-gateway's API keys, as the control plane manages them. Only a key's SHA-256 is
//! stored; the key itself is in the answer to its creation and nowhere else.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// `GET` -> [`KeyList`]; `POST` [`CreateKey`] -> [`CreatedKey`] (`409` when the name exists);
/// `DELETE {API_KEYS_PATH}/{name}` -> [`KeySummary`] (`404` when no active key has the name).
pub const API_KEYS_PATH: &str = "/v1/admin/api-keys";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateKey {
    /// Unique (revoked keys keep their name): 1-64 letters, digits, '-', '_', '.'.
    pub name: String,
    /// Sustained requests per second; absent: the gateway's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_per_second: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
}

impl CreateKey {
    /// The request's problem, if it has one (answered `400`).
    pub fn problem(&self) -> Option<String> {
        let n = &self.name;
        let ok = !n.is_empty()
            && n.len() <= 64
            && n.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !ok {
            return Some(format!("invalid key name {n:?}: 1-64 characters of letters, digits, '-', '_', '.'"));
        }
        if self.rate_per_second.is_some_and(|r| !(r.is_finite() && r > 0.0)) {
            return Some("ratePerSecond must be a positive number of requests per second".into());
        }
        if self.burst == Some(0) || self.burst.is_some_and(|b| b > i32::MAX as u32) {
            return Some(format!("burst must be 1..={}", i32::MAX));
        }
        None
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeySummary {
    pub name: String,
    /// The key's first characters, to recognise it.
    pub prefix: String,
    pub rate_per_second: Option<f64>,
    pub burst: Option<i32>,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreatedKey {
    /// The key: shown this once.
    pub key: String,
    #[serde(flatten)]
    pub summary: KeySummary,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyList {
    pub keys: Vec<KeySummary>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_requests_are_checked() {
        let ok = CreateKey { name: "bench-1.a_b".into(), rate_per_second: Some(5.0), burst: Some(10) };
        assert_eq!(ok.problem(), None);
        for bad in [
            CreateKey { name: "".into(), ..ok.clone() },
            CreateKey { name: "a b".into(), ..ok.clone() },
            CreateKey { name: "x".repeat(65), ..ok.clone() },
            CreateKey { rate_per_second: Some(0.0), ..ok.clone() },
            CreateKey { rate_per_second: Some(f64::NAN), ..ok.clone() },
            CreateKey { burst: Some(0), ..ok.clone() },
        ] {
            assert!(bad.problem().is_some(), "{bad:?}");
        }
    }
}
