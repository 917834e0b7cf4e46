//! Version negotiation: ApiVersions once per broker address, then every request at the highest
//! version both the crate and that broker support.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};
use kafka_protocol::protocol::{Message, StrBytes, VersionRange};

use super::{code, pool, WireError};

/// One API the broker supports, with its version range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ApiRange {
    pub key: i16,
    pub min: i16,
    pub max: i16,
}

type Cache = Mutex<HashMap<String, Arc<Vec<ApiRange>>>>;

fn cache() -> &'static Cache {
    static CACHE: OnceLock<Cache> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

/// Forgets what `addr` supports (it restarted, perhaps as another version).
pub fn forget(addr: &str) {
    cache().lock().unwrap_or_else(|e| e.into_inner()).remove(addr);
}

/// The ranges of `addr`, from the cache or asked.
fn ranges(addr: &str, timeout: Duration) -> Result<Arc<Vec<ApiRange>>, WireError> {
    if let Some(r) = cache().lock().unwrap_or_else(|e| e.into_inner()).get(addr) {
        return Ok(r.clone());
    }
    Ok(Arc::new(fetch(addr, timeout)?))
}

/// The version of `R` to send to `addr`: the highest both sides support, at least `min`.
pub fn negotiate<R: super::exchange::Exchange>(addr: &str, min: i16, timeout: Duration) -> Result<i16, WireError> {
    let ranges = ranges(addr, timeout)?;
    pick(addr, R::KEY, R::VERSIONS, min, &ranges)
}

/// The highest common version of `key` that is at least `min`.
pub fn pick(addr: &str, key: i16, ours: VersionRange, min: i16, theirs: &[ApiRange]) -> Result<i16, WireError> {
    let ours = VersionRange { min: ours.min.max(min), max: ours.max };
    let unsupported =
        |theirs: String| WireError::Unsupported { addr: addr.into(), api: key, ours: ours.to_string(), theirs };
    let Some(r) = theirs.iter().find(|r| r.key == key) else {
        return Err(unsupported("none".into()));
    };
    let common = ours.intersect(&VersionRange { min: r.min, max: r.max });
    if common.is_empty() {
        return Err(unsupported(format!("{}..{}", r.min, r.max)));
    }
    Ok(common.max)
}

/// Asks `addr` for its ranges and caches them. ApiVersions itself goes out at the crate's
/// highest version; a broker that does not know that version answers UNSUPPORTED_VERSION in the
/// v0 layout (KIP-511), which every broker understands, so we ask again at v0.
pub fn fetch(addr: &str, timeout: Duration) -> Result<Vec<ApiRange>, WireError> {
    let newest = ApiVersionsRequest::VERSIONS.max;
    let resp = match pool::with_conn(addr, timeout, |c| c.send(&request(newest), newest, timeout)) {
        Ok(r) if r.error_code == code::UNSUPPORTED_VERSION => None,
        // A v0-layout answer need not decode as a newer version.
        Err(WireError::Malformed { .. }) => None,
        Ok(r) => Some(r),
        Err(e) => return Err(e),
    };
    let resp = match resp {
        Some(r) => r,
        None => pool::with_conn(addr, timeout, |c| c.send(&request(0), 0, timeout))?,
    };
    if resp.error_code != 0 {
        return Err(WireError::kafka(addr, resp.error_code, Some("ApiVersions".to_string()), None));
    }
    let ranges = to_ranges(&resp);
    cache().lock().unwrap_or_else(|e| e.into_inner()).insert(addr.into(), Arc::new(ranges.clone()));
    Ok(ranges)
}

fn request(version: i16) -> ApiVersionsRequest {
    let r = ApiVersionsRequest::default();
    if version >= 3 {
        r.with_client_software_name(StrBytes::from_static_str("chat4allctl"))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")))
    } else {
        r
    }
}

fn to_ranges(resp: &ApiVersionsResponse) -> Vec<ApiRange> {
    resp.api_keys.iter().map(|k| ApiRange { key: k.api_key, min: k.min_version, max: k.max_version }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::sync::atomic::{AtomicUsize, Ordering};

    use bytes::BytesMut;
    use kafka_protocol::messages::api_versions_response::ApiVersion;
    use kafka_protocol::messages::{LeaveGroupRequest, ListOffsetsRequest, ResponseHeader};
    use kafka_protocol::protocol::{Encodable, HeaderVersion};

    /// A broker that knows ApiVersions only at v0 (and ListOffsets 1..10): it answers a newer
    /// ApiVersions with UNSUPPORTED_VERSION in the v0 layout, as KIP-511 says. Counts requests.
    fn old_broker() -> (String, Arc<AtomicUsize>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let seen = Arc::new(AtomicUsize::new(0));
        let counter = seen.clone();
        std::thread::spawn(move || {
            for mut conn in listener.incoming().flatten() {
                let mut size = [0u8; 4];
                while conn.read_exact(&mut size).is_ok() {
                    let mut frame = vec![0; i32::from_be_bytes(size) as usize];
                    conn.read_exact(&mut frame).unwrap();
                    counter.fetch_add(1, Ordering::SeqCst);
                    let version = i16::from_be_bytes([frame[2], frame[3]]);
                    let correlation = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
                    let range = |k: i16, min: i16, max: i16| {
                        ApiVersion::default().with_api_key(k).with_min_version(min).with_max_version(max)
                    };
                    let resp = ApiVersionsResponse::default()
                        .with_error_code(if version > 0 { code::UNSUPPORTED_VERSION } else { 0 })
                        .with_api_keys(vec![range(18, 0, 0), range(2, 1, 10)]);
                    let mut out = BytesMut::new();
                    ResponseHeader::default()
                        .with_correlation_id(correlation)
                        .encode(&mut out, ApiVersionsResponse::header_version(0))
                        .unwrap();
                    resp.encode(&mut out, 0).unwrap();
                    conn.write_all(&(out.len() as i32).to_be_bytes()).unwrap();
                    conn.write_all(&out).unwrap();
                }
            }
        });
        (addr, seen)
    }

    #[test]
    fn an_old_broker_is_asked_again_at_v0_and_remembered() {
        let (addr, seen) = old_broker();
        let t = Duration::from_secs(2);
        let ranges = fetch(&addr, t).unwrap();
        assert!(ranges.contains(&ApiRange { key: 2, min: 1, max: 10 }), "{ranges:?}");
        assert_eq!(seen.load(Ordering::SeqCst), 2, "one refused newer ApiVersions, one at v0");
        assert_eq!(negotiate::<ListOffsetsRequest>(&addr, 0, t).unwrap(), 10);
        assert_eq!(seen.load(Ordering::SeqCst), 2, "the ranges came from the cache");
        forget(&addr);
        assert_eq!(negotiate::<ListOffsetsRequest>(&addr, 0, t).unwrap(), 10);
        assert_eq!(seen.load(Ordering::SeqCst), 4, "forgotten, asked again");
    }

    #[test]
    fn nobody_listening_is_a_connect_error() {
        let addr = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().to_string()
        };
        assert!(matches!(fetch(&addr, Duration::from_secs(1)), Err(WireError::Connect { .. })));
    }

    const KAFKA_4: [ApiRange; 2] = [ApiRange { key: 2, min: 1, max: 10 }, ApiRange { key: 13, min: 0, max: 5 }];

    #[test]
    fn picks_the_highest_common_version() {
        assert_eq!(pick("b", 2, ListOffsetsRequest::VERSIONS, 0, &KAFKA_4).unwrap(), 10);
        let old = [ApiRange { key: 2, min: 0, max: 5 }];
        assert_eq!(pick("b", 2, ListOffsetsRequest::VERSIONS, 0, &old).unwrap(), 5);
    }

    #[test]
    fn a_minimum_the_broker_does_not_reach_is_unsupported() {
        let old = [ApiRange { key: 13, min: 0, max: 2 }];
        let e = pick("b", 13, LeaveGroupRequest::VERSIONS, 3, &old).unwrap_err();
        assert!(e.to_string().contains("only at versions 0..2"), "{e}");
        assert_eq!(pick("b", 13, LeaveGroupRequest::VERSIONS, 3, &KAFKA_4).unwrap(), 5);
    }

    #[test]
    fn an_api_the_broker_lacks_is_unsupported() {
        assert!(matches!(
            pick("b", 69, VersionRange { min: 0, max: 1 }, 0, &KAFKA_4),
            Err(WireError::Unsupported { .. })
        ));
    }

    #[test]
    fn a_broker_with_only_removed_versions_is_unsupported() {
        // A pre-KIP-896 client range against a broker that dropped it, the other way round.
        let e = pick("b", 2, VersionRange { min: 0, max: 0 }, 0, &KAFKA_4).unwrap_err();
        assert!(matches!(e, WireError::Unsupported { .. }));
    }
}
