//! `?limit=&cursor=` of the list endpoints: one parser, one set of error messages.

use serde::Deserialize;

use super::AppError;

/// The raw query, kept as strings so a bad value gets our 400, not the extractor's.
#[derive(Debug, Deserialize)]
pub struct PageQuery {
    pub limit: Option<String>,
    pub cursor: Option<String>,
}

/// A page request: at most `limit` items after the position `after` (0: from the start).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub limit: i64,
    pub after: i64,
}

impl Page {
    pub const DEFAULT_LIMIT: i64 = 50;
    pub const MAX_LIMIT: i64 = 500;

    pub fn parse(q: &PageQuery) -> Result<Self, AppError> {
        let limit = match q.limit.as_deref() {
            None => Self::DEFAULT_LIMIT,
            Some(raw) => match raw.parse::<i64>() {
                Ok(n) if (1..=Self::MAX_LIMIT).contains(&n) => n,
                _ => return Err(AppError::bad_request("limit must be an integer from 1 to 500", Some("limit"))),
            },
        };
        let after = match q.cursor.as_deref() {
            None | Some("") => 0,
            Some(raw) => raw
                .parse::<i64>()
                .map_err(|_| AppError::bad_request("cursor must be a value returned as nextCursor", Some("cursor")))?,
        };
        Ok(Self { limit, after })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(limit: Option<&str>, cursor: Option<&str>) -> PageQuery {
        PageQuery { limit: limit.map(String::from), cursor: cursor.map(String::from) }
    }

    #[test]
    fn defaults_bounds_and_cursor() {
        assert_eq!(Page::parse(&q(None, None)).unwrap(), Page { limit: 50, after: 0 });
        assert_eq!(Page::parse(&q(Some("500"), Some("42"))).unwrap(), Page { limit: 500, after: 42 });
        assert!(Page::parse(&q(Some("0"), None)).is_err());
        assert!(Page::parse(&q(Some("501"), None)).is_err());
        assert!(Page::parse(&q(Some("x"), None)).is_err());
        assert!(Page::parse(&q(None, Some("nope"))).is_err());
        assert_eq!(Page::parse(&q(None, Some(""))).unwrap().after, 0);
    }
}
