//! The provider's Prometheus series (bounded labels: endpoint, fault, outcome).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub endpoint: String,
    pub fault: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: String,
}

#[derive(Clone, Default)]
pub struct Metrics {
    pub requests: Family<RequestLabels, Counter>,
    pub items: Family<OutcomeLabels, Counter>,
    pub record_entries: Gauge,
}

impl Metrics {
    pub fn register(reg: &mut Registry) -> Self {
        let m = Self::default();
        reg.register(
            "chat4all_provider_requests",
            "Send requests received, by endpoint (send, batch) and injected fault",
            m.requests.clone(),
        );
        reg.register(
            "chat4all_provider_items",
            "Request items by outcome (accepted, replayed, rejected, failed)",
            m.items.clone(),
        );
        reg.register("chat4all_provider_record_entries", "Entries in the in-memory record", m.record_entries.clone());
        m
    }
}

/// A registry whose every series carries service, instance and channel.
pub fn registry(service: &str, instance: &str, channel: &str) -> Registry {
    Registry::with_labels(
        [
            ("service".into(), service.to_string().into()),
            ("instance".into(), instance.to_string().into()),
            ("channel".into(), channel.to_string().into()),
        ]
        .into_iter(),
    )
}

pub fn encode(reg: &Registry) -> String {
    let mut out = String::with_capacity(2048);
    if prometheus_client::encoding::text::encode(&mut out, reg).is_err() {
        out.clear();
    }
    out
}
