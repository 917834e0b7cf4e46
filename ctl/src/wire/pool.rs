//! Idle connections kept per broker address, so that a `--watch` refresh or a describe of many
//! groups does not pay a TCP handshake per request. A connection that failed is dropped; a
//! request that failed on a kept connection (the broker may have closed it while idle, or
//! restarted) is sent once more on a fresh one.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use super::conn::Conn;
use super::{versions, WireError};

/// Idle connections kept per address (the observer sends one request at a time per broker).
const IDLE_PER_ADDR: usize = 2;

type Idle = Mutex<HashMap<String, Vec<Conn>>>;

fn idle() -> &'static Idle {
    static IDLE: OnceLock<Idle> = OnceLock::new();
    IDLE.get_or_init(Default::default)
}

fn take(addr: &str) -> Option<Conn> {
    idle().lock().unwrap_or_else(|e| e.into_inner()).get_mut(addr)?.pop()
}

fn put(conn: Conn) {
    let mut idle = idle().lock().unwrap_or_else(|e| e.into_inner());
    let list = idle.entry(conn.addr().to_string()).or_default();
    if list.len() < IDLE_PER_ADDR {
        list.push(conn);
    }
}

/// Runs `f` on a connection to `addr` (a kept one, else a new one) and keeps the connection for
/// the next request when `f` succeeded or failed with a well-formed Kafka error.
pub fn with_conn<T>(
    addr: &str,
    timeout: Duration,
    mut f: impl FnMut(&mut Conn) -> Result<T, WireError>,
) -> Result<T, WireError> {
    if let Some(mut conn) = take(addr) {
        match f(&mut conn) {
            Ok(v) => {
                put(conn);
                return Ok(v);
            }
            // The kept connection may simply be stale: try once on a fresh one.
            Err(WireError::Io { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    let mut conn = Conn::open(addr, timeout).inspect_err(|_| versions::forget(addr))?;
    let v = f(&mut conn)?;
    put(conn);
    Ok(v)
}
