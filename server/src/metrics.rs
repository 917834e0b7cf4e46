//! Prometheus metrics (prometheus-client, OpenMetrics text). Bounded labels only: route
//! templates, channels, statuses; never raw paths or ids.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub method: String,
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ChannelLabels {
    pub channel: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ChannelResultLabels {
    pub channel: String,
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: String,
}

pub fn latency_histogram() -> Histogram {
    // 0.25 ms .. ~8 s
    Histogram::new(exponential_buckets(0.00025, 2.0, 16))
}

/// HTTP server metrics, shared by every service.
#[derive(Clone)]
pub struct HttpMetrics {
    pub requests: Family<HttpLabels, Counter>,
    pub duration: Family<HttpLabels, Histogram, fn() -> Histogram>,
}

impl HttpMetrics {
    pub fn register(reg: &mut Registry) -> Self {
        let requests = Family::<HttpLabels, Counter>::default();
        let duration = Family::<HttpLabels, Histogram, fn() -> Histogram>::new_with_constructor(latency_histogram);
        reg.register("http_requests", "HTTP requests served", requests.clone());
        reg.register("http_request_duration_seconds", "HTTP request latency by route template", duration.clone());
        Self { requests, duration }
    }
}

/// The errors family of this process's `KafkaMetrics`, for librdkafka's error callbacks, which
/// have no other way to reach it (one service per process, so one registry).
static KAFKA_ERRORS: std::sync::OnceLock<Family<KindLabels, Counter>> = std::sync::OnceLock::new();

/// Counts one Kafka client error of `kind` (`client`: librdkafka's error callback; `produce`: a
/// failed send) in `chat4all_kafka_client_errors_total`, once `KafkaMetrics` is registered.
pub fn record_kafka_error(kind: &str) {
    if let Some(errors) = KAFKA_ERRORS.get() {
        errors.get_or_create(&KindLabels { kind: kind.to_string() }).inc();
    }
}

/// Kafka client errors seen by a service, by kind (produce, consume, commit).
#[derive(Clone)]
pub struct KafkaMetrics {
    pub errors: Family<KindLabels, Counter>,
    pub rebalances: Family<KindLabels, Counter>,
    pub assigned_partitions: Gauge,
}

impl KafkaMetrics {
    pub fn register(reg: &mut Registry) -> Self {
        let m =
            Self { errors: Family::default(), rebalances: Family::default(), assigned_partitions: Gauge::default() };
        reg.register("chat4all_kafka_client_errors", "Kafka client errors by kind", m.errors.clone());
        let _ = KAFKA_ERRORS.set(m.errors.clone());
        reg.register(
            "chat4all_rebalances",
            "Rebalance callbacks seen by this instance, by kind (assigned, revoked, lost)",
            m.rebalances.clone(),
        );
        reg.register(
            "chat4all_assigned_partitions",
            "Partitions currently assigned to this instance",
            m.assigned_partitions.clone(),
        );
        m
    }
}

/// A registry whose every metric carries the service and instance labels.
pub fn registry(common: &crate::config::Common) -> Registry {
    Registry::with_labels(
        [("service".into(), common.service.clone().into()), ("instance".into(), common.instance.clone().into())]
            .into_iter(),
    )
}

/// Encodes the registry as OpenMetrics text.
pub fn encode(reg: &Registry) -> String {
    let mut out = String::with_capacity(4096);
    if prometheus_client::encoding::text::encode(&mut out, reg).is_err() {
        out.clear();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The only registration of `KafkaMetrics` in this test binary, so the callbacks' family is
    /// this registry's.
    #[test]
    fn kafka_errors_from_callbacks_reach_the_registered_counter() {
        let mut reg = Registry::default();
        let _m = KafkaMetrics::register(&mut reg);
        record_kafka_error("produce");
        record_kafka_error("produce");
        record_kafka_error("client");
        let text = encode(&reg);
        assert!(text.contains("chat4all_kafka_client_errors_total{kind=\"produce\"} 2"), "{text}");
        assert!(text.contains("chat4all_kafka_client_errors_total{kind=\"client\"} 1"), "{text}");
    }
}
