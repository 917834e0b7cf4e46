//! A minimal Kafka protocol client for the few requests the admin client does not expose:
//! ApiVersions (what the broker supports, e.g. CreatePartitions before a repartition). Requests
//! use header v1 and non-flexible versions only, which every broker since Kafka 0.10 accepts.

use std::time::Duration;

use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Kafka API keys used here.
pub mod api {
    pub const LIST_OFFSETS: i16 = 2;
    pub const OFFSET_FETCH: i16 = 9;
    pub const FIND_COORDINATOR: i16 = 10;
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
    pub fn i64(mut self, v: i64) -> Self {
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
    pub fn i64(&mut self) -> Option<i64> {
        Some(i64::from_be_bytes(self.take(8)?.try_into().ok()?))
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

const CORRELATION: i32 = 1;
const MAX_RESPONSE: i32 = 64 * 1024 * 1024;

/// A size-prefixed request with header v1.
fn frame(api_key: i16, api_version: i16, body: &[u8]) -> Vec<u8> {
    let header = Encoder::default().i16(api_key).i16(api_version).i32(CORRELATION).str("chat4allctl").bytes();
    let size = (header.len() + body.len()) as i32;
    let mut frame = Vec::with_capacity(4 + size as usize);
    frame.extend_from_slice(&size.to_be_bytes());
    frame.extend_from_slice(&header);
    frame.extend_from_slice(body);
    frame
}

/// Checks the correlation id and strips it.
fn unframe(addr: &str, mut buf: Vec<u8>) -> Result<Vec<u8>, WireError> {
    if buf.len() < 4 || i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) != CORRELATION {
        return Err(WireError::Malformed { addr: addr.into(), what: "correlation id" });
    }
    buf.drain(..4);
    Ok(buf)
}

fn check_size(addr: &str, len: i32) -> Result<usize, WireError> {
    if (4..=MAX_RESPONSE).contains(&len) {
        Ok(len as usize)
    } else {
        Err(WireError::Malformed { addr: addr.into(), what: "response size" })
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
        let io = |source| WireError::Io { addr: addr.into(), source };
        stream.write_all(&frame(api_key, api_version, body)).await.map_err(io)?;
        let len = check_size(addr, stream.read_i32().await.map_err(io)?)?;
        let mut buf = vec![0; len];
        stream.read_exact(&mut buf).await.map_err(io)?;
        unframe(addr, buf)
    };
    tokio::time::timeout(timeout, fut).await.map_err(|_| WireError::Timeout { addr: addr.into(), timeout })?
}

/// [`request`] on a blocking socket, for callers that run on a blocking thread (the observer).
pub fn request_blocking(
    addr: &str,
    api_key: i16,
    api_version: i16,
    body: &[u8],
    timeout: Duration,
) -> Result<Vec<u8>, WireError> {
    use std::io::{Read, Write};
    use std::net::ToSocketAddrs;
    let io = |source| WireError::Io { addr: addr.into(), source };
    let sock = addr
        .to_socket_addrs()
        .map_err(|source| WireError::Connect { addr: addr.into(), source })?
        .next()
        .ok_or(WireError::Malformed { addr: addr.into(), what: "address" })?;
    let mut stream = std::net::TcpStream::connect_timeout(&sock, timeout)
        .map_err(|source| WireError::Connect { addr: addr.into(), source })?;
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    stream.set_write_timeout(Some(timeout)).map_err(io)?;
    let _ = stream.set_nodelay(true);
    stream.write_all(&frame(api_key, api_version, body)).map_err(io)?;
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).map_err(io)?;
    let len = check_size(addr, i32::from_be_bytes(len))?;
    let mut buf = vec![0; len];
    stream.read_exact(&mut buf).map_err(io)?;
    unframe(addr, buf)
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

/// Partitions grouped by topic, as the requests list them.
fn by_topic(partitions: &[(String, i32)]) -> std::collections::BTreeMap<&str, Vec<i32>> {
    let mut m: std::collections::BTreeMap<&str, Vec<i32>> = Default::default();
    for (t, p) in partitions {
        m.entry(t.as_str()).or_default().push(*p);
    }
    m
}

/// Log-end offsets of many partitions in one ListOffsets (v1, timestamp -1 = latest) request to
/// `addr`, which must lead them all. A partition the broker answers with an error is left out.
/// Blocking: called from the observer's blocking thread.
pub fn log_end_offsets(
    addr: &str,
    partitions: &[(String, i32)],
    timeout: Duration,
) -> Result<Vec<(String, i32, i64)>, WireError> {
    let by_topic = by_topic(partitions);
    let mut e = Encoder::default().i32(-1).i32(by_topic.len() as i32);
    for (t, ps) in &by_topic {
        e = e.str(t).i32(ps.len() as i32);
        for p in ps {
            e = e.i32(*p).i64(-1);
        }
    }
    let body = request_blocking(addr, api::LIST_OFFSETS, 1, &e.bytes(), timeout)?;
    parse_list_offsets(&body).ok_or(WireError::Malformed { addr: addr.into(), what: "ListOffsets response" })
}

fn parse_list_offsets(body: &[u8]) -> Option<Vec<(String, i32, i64)>> {
    let mut d = Decoder::new(body);
    let mut out = Vec::new();
    for _ in 0..d.i32()?.max(0) {
        let topic = d.string()??;
        for _ in 0..d.i32()?.max(0) {
            let partition = d.i32()?;
            let code = d.i16()?;
            let _timestamp = d.i64()?;
            let offset = d.i64()?;
            if code == 0 {
                out.push((topic.clone(), partition, offset));
            }
        }
    }
    Some(out)
}

/// The coordinator of `group` (FindCoordinator v0), as `host:port`. Blocking.
pub fn find_coordinator(addr: &str, group: &str, timeout: Duration) -> Result<String, WireError> {
    let body = request_blocking(addr, api::FIND_COORDINATOR, 0, &Encoder::default().str(group).bytes(), timeout)?;
    let mut d = Decoder::new(&body);
    let malformed = || WireError::Malformed { addr: addr.into(), what: "FindCoordinator response" };
    let code = d.i16().ok_or_else(malformed)?;
    if code != 0 {
        return Err(WireError::Kafka { addr: addr.into(), code });
    }
    let _node = d.i32().ok_or_else(malformed)?;
    let host = d.string().flatten().ok_or_else(malformed)?;
    let port = d.i32().ok_or_else(malformed)?;
    Ok(format!("{host}:{port}"))
}

/// Committed offsets of `group` (OffsetFetch v1) from its coordinator; None where nothing is
/// committed. Blocking.
pub fn committed_offsets(
    coordinator: &str,
    group: &str,
    partitions: &[(String, i32)],
    timeout: Duration,
) -> Result<Committed, WireError> {
    let by_topic = by_topic(partitions);
    let mut e = Encoder::default().str(group).i32(by_topic.len() as i32);
    for (t, ps) in &by_topic {
        e = e.str(t).i32(ps.len() as i32);
        for p in ps {
            e = e.i32(*p);
        }
    }
    let body = request_blocking(coordinator, api::OFFSET_FETCH, 1, &e.bytes(), timeout)?;
    match parse_offset_fetch(&body) {
        Some(Ok(v)) => Ok(v),
        Some(Err(code)) => Err(WireError::Kafka { addr: coordinator.into(), code }),
        None => Err(WireError::Malformed { addr: coordinator.into(), what: "OffsetFetch response" }),
    }
}

/// Kafka's NOT_COORDINATOR and COORDINATOR_NOT_AVAILABLE / LOAD_IN_PROGRESS: ask again.
pub fn is_coordinator_moved(e: &WireError) -> bool {
    matches!(e, WireError::Kafka { code: 14..=16, .. } | WireError::Connect { .. } | WireError::Io { .. })
}

/// (topic, partition, committed offset) rows of an OffsetFetch answer.
pub type Committed = Vec<(String, i32, Option<i64>)>;

/// None when malformed, Err(code) when the broker answered with an error.
fn parse_offset_fetch(body: &[u8]) -> Option<Result<Committed, i16>> {
    let mut d = Decoder::new(body);
    let mut out = Vec::new();
    for _ in 0..d.i32()?.max(0) {
        let topic = d.string()??;
        for _ in 0..d.i32()?.max(0) {
            let partition = d.i32()?;
            let offset = d.i64()?;
            let _metadata = d.string()?;
            let code = d.i16()?;
            if code != 0 {
                return Some(Err(code));
            }
            out.push((topic.clone(), partition, (offset >= 0).then_some(offset)));
        }
    }
    Some(Ok(out))
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
    fn parses_list_offsets() {
        let body = Encoder::default()
            .i32(1)
            .str("t")
            .i32(2)
            .i32(0)
            .i16(0)
            .i64(-1)
            .i64(42)
            .i32(1)
            .i16(6)
            .i64(-1)
            .i64(-1)
            .bytes();
        assert_eq!(parse_list_offsets(&body), Some(vec![("t".to_string(), 0, 42)]));
        assert_eq!(parse_list_offsets(&body[..10]), None);
    }

    #[test]
    fn parses_offset_fetch() {
        let body = Encoder::default()
            .i32(1)
            .str("t")
            .i32(2)
            .i32(0)
            .i64(7)
            .i16(-1)
            .i16(0)
            .i32(1)
            .i64(-1)
            .str("")
            .i16(0)
            .bytes();
        assert_eq!(parse_offset_fetch(&body), Some(Ok(vec![("t".into(), 0, Some(7)), ("t".into(), 1, None)])));
        let err = Encoder::default().i32(1).str("t").i32(1).i32(0).i64(-1).i16(-1).i16(16).bytes();
        assert_eq!(parse_offset_fetch(&err), Some(Err(16)));
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
