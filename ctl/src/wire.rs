//! A minimal Kafka protocol client for the few requests the admin client does not expose:
//! ApiVersions (what the broker supports, e.g. CreatePartitions before a repartition). Requests
//! use header v1 and non-flexible versions only, which every broker since Kafka 0.10 accepts.

use std::time::Duration;

use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Kafka API keys used here.
pub mod api {
    pub const API_VERSIONS: i16 = 18;
    pub const CREATE_PARTITIONS: i16 = 37;
}

#[derive(Debug, Error)]
pub enum WireError {
    #[error("connecting to {addr}: {source}")]
    Connect { addr: String, source: std::io::Error },
    #[error("talking to {addr}: {source}")]
    Io { addr: String, source: std::io::Error },
    #[error("{addr} did not answer within {timeout:?}")]
    Timeout { addr: String, timeout: Duration },
    #[error("malformed response from {addr}: {what}")]
    Malformed { addr: String, what: &'static str },
    #[error("{addr} answered with Kafka error code {code}")]
    Kafka { addr: String, code: i16 },
}

/// Request body builder (big-endian, Kafka's classic encodings).
#[derive(Default)]
pub struct Encoder(Vec<u8>);

impl Encoder {
    pub fn i16(mut self, v: i16) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn i32(mut self, v: i32) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    /// A non-null STRING (int16 length + UTF-8).
    pub fn str(self, s: &str) -> Self {
        let mut e = self.i16(s.len() as i16);
        e.0.extend_from_slice(s.as_bytes());
        e
    }
    pub fn bytes(self) -> Vec<u8> {
        self.0
    }
}

/// Response reader; every read is bounds-checked.
pub struct Decoder<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Decoder<'a> {
    pub fn new(b: &'a [u8]) -> Self {
        Self { b, at: 0 }
    }
    pub fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.b.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(s)
    }
    pub fn i16(&mut self) -> Option<i16> {
        Some(i16::from_be_bytes(self.take(2)?.try_into().ok()?))
    }
    pub fn i32(&mut self) -> Option<i32> {
        Some(i32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }
    /// A nullable STRING (length -1 is null).
    pub fn string(&mut self) -> Option<Option<String>> {
        let len = self.i16()?;
        if len < 0 {
            return Some(None);
        }
        Some(Some(String::from_utf8_lossy(self.take(len as usize)?).into_owned()))
    }
}

/// Sends one request to `addr` and returns the response body (after the correlation id).
pub async fn request(
    addr: &str,
    api_key: i16,
    api_version: i16,
    body: &[u8],
    timeout: Duration,
) -> Result<Vec<u8>, WireError> {
    let fut = async {
        let mut stream =
            TcpStream::connect(addr).await.map_err(|source| WireError::Connect { addr: addr.into(), source })?;
        let correlation = 1;
        let header = Encoder::default().i16(api_key).i16(api_version).i32(correlation).str("chat4allctl").bytes();
        let size = (header.len() + body.len()) as i32;
        let mut frame = Vec::with_capacity(4 + size as usize);
        frame.extend_from_slice(&size.to_be_bytes());
        frame.extend_from_slice(&header);
        frame.extend_from_slice(body);
        let io = |source| WireError::Io { addr: addr.into(), source };
        stream.write_all(&frame).await.map_err(io)?;
        let len = stream.read_i32().await.map_err(io)?;
        if !(4..=64 * 1024 * 1024).contains(&len) {
            return Err(WireError::Malformed { addr: addr.into(), what: "response size" });
        }
        let mut buf = vec![0; len as usize];
        stream.read_exact(&mut buf).await.map_err(io)?;
        if i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) != correlation {
            return Err(WireError::Malformed { addr: addr.into(), what: "correlation id" });
        }
        buf.drain(..4);
        Ok(buf)
    };
    tokio::time::timeout(timeout, fut).await.map_err(|_| WireError::Timeout { addr: addr.into(), timeout })?
}

/// One API the broker supports, with its version range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ApiRange {
    pub key: i16,
    pub min: i16,
    pub max: i16,
}

/// The broker's supported APIs (ApiVersions v0).
pub async fn api_versions(addr: &str, timeout: Duration) -> Result<Vec<ApiRange>, WireError> {
    let body = request(addr, api::API_VERSIONS, 0, &[], timeout).await?;
    parse_api_versions(&body).map_err(|what| match what {
        ParseError::Kafka(code) => WireError::Kafka { addr: addr.into(), code },
        ParseError::Malformed(what) => WireError::Malformed { addr: addr.into(), what },
    })
}

/// Whether the broker supports `api_key` at all.
pub async fn supports(addr: &str, api_key: i16, timeout: Duration) -> Result<bool, WireError> {
    Ok(api_versions(addr, timeout).await?.iter().any(|r| r.key == api_key))
}

#[derive(Debug, PartialEq)]
enum ParseError {
    Kafka(i16),
    Malformed(&'static str),
}

fn parse_api_versions(body: &[u8]) -> Result<Vec<ApiRange>, ParseError> {
    let mut d = Decoder::new(body);
    let code = d.i16().ok_or(ParseError::Malformed("error code"))?;
    if code != 0 {
        return Err(ParseError::Kafka(code));
    }
    let n = d.i32().ok_or(ParseError::Malformed("array length"))?;
    if !(0..=10_000).contains(&n) {
        return Err(ParseError::Malformed("array length"));
    }
    (0..n)
        .map(|_| {
            let mut range = || Some(ApiRange { key: d.i16()?, min: d.i16()?, max: d.i16()? });
            range().ok_or(ParseError::Malformed("api range"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_api_versions() {
        let body = Encoder::default().i16(0).i32(2).i16(18).i16(0).i16(3).i16(37).i16(0).i16(1).bytes();
        assert_eq!(
            parse_api_versions(&body),
            Ok(vec![ApiRange { key: 18, min: 0, max: 3 }, ApiRange { key: 37, min: 0, max: 1 }])
        );
    }

    #[test]
    fn api_versions_errors() {
        assert_eq!(parse_api_versions(&Encoder::default().i16(35).bytes()), Err(ParseError::Kafka(35)));
        assert_eq!(
            parse_api_versions(&Encoder::default().i16(0).i32(1).i16(18).bytes()),
            Err(ParseError::Malformed("api range"))
        );
        assert!(parse_api_versions(&[]).is_err());
    }

    #[test]
    fn decoder_reads_nullable_strings() {
        let b = Encoder::default().str("abc").i16(-1).bytes();
        let mut d = Decoder::new(&b);
        assert_eq!(d.string(), Some(Some("abc".into())));
        assert_eq!(d.string(), Some(None));
        assert_eq!(d.i16(), None);
    }
}
