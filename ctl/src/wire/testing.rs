//! Helpers of the wire tests: messages as the broker and we would see them.

use bytes::BytesMut;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

/// Encodes and decodes `m` as version `v`, as the broker and we would.
pub fn wire<M: Encodable + Decodable>(m: &M, v: i16) -> M {
    let mut b = BytesMut::new();
    m.encode(&mut b, v).expect("encodable test message");
    M::decode(&mut b.freeze(), v).expect("decodable test message")
}

pub fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.into())
}
