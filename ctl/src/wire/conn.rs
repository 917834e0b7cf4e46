//! One connection to one broker: size-prefixed frames, a correlation id per request, a deadline
//! per round trip. Blocking: the observer runs on a blocking thread, and the async callers hop
//! onto one (see `super::api_versions`). Encoding and decoding are the `kafka-protocol` crate's;
//! this module only moves bytes and checks that an answer belongs to its question.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::RequestHeader;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use super::exchange::Exchange;

use super::WireError;

/// The client id the broker logs and reports for our requests.
pub const CLIENT_ID: &str = "chat4allctl";
/// Largest answer accepted (a ListOffsets of every partition of a big cluster is far smaller).
const MAX_RESPONSE: usize = 64 * 1024 * 1024;

/// An open connection to `addr`.
pub struct Conn {
    addr: String,
    stream: TcpStream,
    next_correlation: i32,
}

fn io_error(addr: &str, timeout: Duration, source: std::io::Error) -> WireError {
    match source.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
            WireError::Timeout { addr: addr.into(), timeout }
        }
        _ => WireError::Io { addr: addr.into(), source },
    }
}

impl Conn {
    pub fn open(addr: &str, timeout: Duration) -> Result<Self, WireError> {
        let connect = |source| WireError::Connect { addr: addr.into(), source };
        let sock = addr
            .to_socket_addrs()
            .map_err(connect)?
            .next()
            .ok_or_else(|| connect(std::io::Error::other("the address resolves to nothing")))?;
        let stream = TcpStream::connect_timeout(&sock, timeout).map_err(connect)?;
        let _ = stream.set_nodelay(true);
        Ok(Self { addr: addr.into(), stream, next_correlation: 1 })
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Sends `req` as version `version` and decodes the answer, all within `timeout`.
    pub fn send<R: Exchange>(&mut self, req: &R, version: i16, timeout: Duration) -> Result<R::Response, WireError> {
        let correlation = self.next_correlation;
        self.next_correlation = self.next_correlation.wrapping_add(1).max(1);
        let frame = encode_request(req, version, correlation).map_err(|e| WireError::Encode {
            addr: self.addr.clone(),
            api: R::KEY,
            version,
            reason: format!("{e:#}"),
        })?;
        let body = self.round_trip(&frame, timeout).map_err(|e| match e {
            WireError::Malformed { addr, reason, .. } => WireError::Malformed { addr, api: R::KEY, version, reason },
            e => e,
        })?;
        decode_response::<R>(body, version, correlation).map_err(|reason| WireError::Malformed {
            addr: self.addr.clone(),
            api: R::KEY,
            version,
            reason,
        })
    }

    /// Writes one frame and reads one back (without its size prefix).
    fn round_trip(&mut self, frame: &[u8], timeout: Duration) -> Result<Bytes, WireError> {
        let deadline = Instant::now() + timeout;
        let addr = self.addr.clone();
        let remaining = || {
            deadline
                .checked_duration_since(Instant::now())
                .filter(|d| !d.is_zero())
                .ok_or_else(|| WireError::Timeout { addr: addr.clone(), timeout })
        };
        let io = |e| io_error(&self.addr, timeout, e);
        self.stream.set_write_timeout(Some(remaining()?)).map_err(io)?;
        self.stream.write_all(frame).map_err(io)?;
        let mut len = [0u8; 4];
        self.stream.set_read_timeout(Some(remaining()?)).map_err(io)?;
        self.stream.read_exact(&mut len).map_err(io)?;
        let len = i32::from_be_bytes(len);
        let len = usize::try_from(len).ok().filter(|l| (4..=MAX_RESPONSE).contains(l)).ok_or_else(|| {
            WireError::Malformed {
                addr: self.addr.clone(),
                api: -1,
                version: -1,
                reason: format!("response size {len}"),
            }
        })?;
        let mut buf = vec![0; len];
        self.stream.set_read_timeout(Some(remaining()?)).map_err(io)?;
        self.stream.read_exact(&mut buf).map_err(io)?;
        Ok(Bytes::from(buf))
    }
}

/// A size-prefixed request frame: header (of the version the API's version calls for) and body.
pub fn encode_request<R: Exchange>(req: &R, version: i16, correlation: i32) -> anyhow::Result<Vec<u8>> {
    let header = RequestHeader::default()
        .with_request_api_key(R::KEY)
        .with_request_api_version(version)
        .with_correlation_id(correlation)
        .with_client_id(Some(StrBytes::from_static_str(CLIENT_ID)));
    let mut buf = BytesMut::new();
    buf.extend_from_slice(&[0; 4]);
    header.encode(&mut buf, R::header_version(version))?;
    req.encode(&mut buf, version)?;
    let size = i32::try_from(buf.len() - 4)?;
    buf[..4].copy_from_slice(&size.to_be_bytes());
    Ok(buf.to_vec())
}

/// Decodes a response frame (without the size prefix): the header's correlation id must match.
pub fn decode_response<R: Exchange>(mut body: Bytes, version: i16, correlation: i32) -> Result<R::Response, String> {
    use kafka_protocol::messages::ResponseHeader;
    use kafka_protocol::protocol::HeaderVersion;
    let header_version = <R::Response as HeaderVersion>::header_version(version);
    let header = ResponseHeader::decode(&mut body, header_version).map_err(|e| format!("response header: {e:#}"))?;
    if header.correlation_id != correlation {
        return Err(format!("correlation id {} (expected {correlation})", header.correlation_id));
    }
    R::Response::decode(&mut body, version).map_err(|e| format!("{e:#}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse, ResponseHeader};
    use kafka_protocol::protocol::HeaderVersion;

    /// What a broker would send back for `resp` (header, then body; no size prefix).
    fn answer(resp: &ApiVersionsResponse, version: i16, correlation: i32) -> Bytes {
        let mut buf = BytesMut::new();
        ResponseHeader::default()
            .with_correlation_id(correlation)
            .encode(&mut buf, ApiVersionsResponse::header_version(version))
            .unwrap();
        resp.encode(&mut buf, version).unwrap();
        buf.freeze()
    }

    #[test]
    fn a_frame_carries_its_size_key_version_and_correlation() {
        let frame = encode_request(&ApiVersionsRequest::default(), 3, 7).unwrap();
        let size = i32::from_be_bytes(frame[..4].try_into().unwrap()) as usize;
        assert_eq!(size, frame.len() - 4);
        assert_eq!(&frame[4..6], &18i16.to_be_bytes());
        assert_eq!(&frame[6..8], &3i16.to_be_bytes());
        assert_eq!(&frame[8..12], &7i32.to_be_bytes());
    }

    #[test]
    fn an_answer_to_another_question_is_refused() {
        let resp = ApiVersionsResponse::default().with_error_code(0);
        let ok = decode_response::<ApiVersionsRequest>(answer(&resp, 3, 5), 3, 5);
        assert_eq!(ok.unwrap().error_code, 0);
        let wrong = decode_response::<ApiVersionsRequest>(answer(&resp, 3, 6), 3, 5);
        assert!(wrong.unwrap_err().contains("correlation id 6"));
    }

    #[test]
    fn a_truncated_answer_is_an_error_not_a_panic() {
        let resp = ApiVersionsResponse::default();
        let full = answer(&resp, 3, 1);
        for cut in 0..full.len() {
            assert!(decode_response::<ApiVersionsRequest>(full.slice(..cut), 3, 1).is_err(), "cut at {cut}");
        }
    }
}
