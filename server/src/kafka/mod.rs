//! Kafka clients: common configuration, the idempotent producer, the batch-consuming group
//! member every consumer runs as, and topic creation.

mod admin;
mod consumer;
mod member;
mod producer;

pub use admin::{ensure_topics, TopicSpec};
pub use consumer::{BatchConsumer, ConsumerSpec, ConsumerTuning, GroupProtocol};
pub use member::{BatchWork, Batching, GroupMember};
pub use producer::{OutRecord, Producer, REQUEST_ID_HEADER};

use rdkafka::ClientConfig;

/// Settings shared by every client of a service.
pub fn base_config(bootstrap: &str, client_id: &str) -> ClientConfig {
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", bootstrap)
        .set("client.id", client_id)
        // Reconnect quickly after a broker restart (librdkafka backs off up to 10 s by default).
        .set("reconnect.backoff.ms", "100")
        .set("reconnect.backoff.max.ms", "2000")
        .set("log_level", "4");
    cfg
}

/// The consumer's member id as the group coordinator knows it (empty before the first join).
pub fn member_id<C: rdkafka::consumer::ConsumerContext>(consumer: &rdkafka::consumer::BaseConsumer<C>) -> String {
    use rdkafka::consumer::Consumer;
    // SAFETY: `native_ptr` is valid for the consumer's lifetime; librdkafka returns a newly
    // allocated C string (or NULL) that we copy and release with rd_kafka_mem_free.
    unsafe {
        let rk = consumer.client().native_ptr();
        let ptr = rdkafka::bindings::rd_kafka_memberid(rk);
        if ptr.is_null() {
            return String::new();
        }
        let id = std::ffi::CStr::from_ptr(ptr).to_string_lossy().into_owned();
        rdkafka::bindings::rd_kafka_mem_free(rk as *mut _, ptr as *mut _);
        id
    }
}
