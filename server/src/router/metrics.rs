use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::metrics::{latency_histogram, ChannelResultLabels};

#[derive(Clone)]
pub struct RouterMetrics {
    pub events: Counter,
    pub malformed: Counter,
    pub deliveries: Family<ChannelResultLabels, Counter>,
    pub dedup_skipped: Counter,
    pub dead_lettered: Counter,
    pub retries: Counter,
    pub batch_seconds: Histogram,
    pub end_to_end_seconds: Histogram,
}

impl RouterMetrics {
    pub fn register(reg: &mut Registry) -> Self {
        let m = Self {
            events: Counter::default(),
            malformed: Counter::default(),
            deliveries: Family::default(),
            dedup_skipped: Counter::default(),
            dead_lettered: Counter::default(),
            retries: Counter::default(),
            batch_seconds: latency_histogram(),
            end_to_end_seconds: latency_histogram(),
        };
        reg.register("chat4all_router_events", "chat-events routed", m.events.clone());
        reg.register("chat4all_router_malformed_events", "Unparseable events sent to the DLQ", m.malformed.clone());
        reg.register(
            "chat4all_router_deliveries",
            "Recipient deliveries by channel and result: delivered = handed to deliveries-<channel> (the \
             connector delivers it), failed = unresolvable recipient, dead-lettered",
            m.deliveries.clone(),
        );
        reg.register(
            "chat4all_router_dedup_skipped",
            "Recipients of redelivered events skipped because they were routed already",
            m.dedup_skipped.clone(),
        );
        reg.register("chat4all_router_dead_lettered", "Events published to chat-events-dlq", m.dead_lettered.clone());
        reg.register(
            "chat4all_router_handoff_retries",
            "Hand-off rounds repeated because the broker did not acknowledge every record",
            m.retries.clone(),
        );
        reg.register("chat4all_router_batch_seconds", "Time to route one batch", m.batch_seconds.clone());
        reg.register(
            "chat4all_router_end_to_end_seconds",
            "From message acceptance to hand-off to the channel's topic",
            m.end_to_end_seconds.clone(),
        );
        m
    }
}
