//! Per channel: deliveries per second and the provider's error rate, from the connectors' own
//! Prometheus counters, and the outbox relay's publish rate, from the message-services'
//! `chat4all_outbox_published_total` (only the relay leader publishes; the rate is the sum over
//! instances, so a leadership change mid-interval is counted once). The connectors' counters are (`chat4all_connector_deliveries_total{channel,result}`, one series per
//! result: `sent` (the provider took it), `duplicate` (answered from the ledger, no call),
//! `failed` (the provider rejected it), `held`, `unavailable` (provider down or refusing)).
//!
//! Deliveries per second counts `sent`; the error rate is `(failed + unavailable) / (sent +
//! failed + unavailable)` over the interval (`None` when the provider was not called). Rates are
//! per-instance deltas, so a restarted connector (counter reset) never gives a negative rate.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::runtime::InstanceInfo;

/// Cumulative counts of one connector instance, by channel label.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Counts {
    pub sent: f64,
    pub failed: f64,
    pub unavailable: f64,
}

/// What one instance's `/metrics` page counts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Page {
    /// Connector deliveries, by channel label.
    pub channels: BTreeMap<String, Counts>,
    /// Outbox records published to Kafka (message-service).
    pub outbox_published: f64,
}

/// Instance -> what its page counts.
pub type Scrape = BTreeMap<String, Page>;

/// The rates over an interval.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Rates {
    pub channels: BTreeMap<String, ChannelRate>,
    /// Outbox records the relay published to chat-events per second.
    pub outbox_published_per_second: f64,
}

/// One channel's rates over an interval.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChannelRate {
    pub deliveries_per_second: f64,
    /// Share of provider calls that failed (rejected or unavailable); `None` without calls.
    pub error_rate: Option<f64>,
}

/// The counters of one `/metrics` page.
pub fn parse(text: &str) -> Page {
    let mut out = Page::default();
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let Some((series, value)) = line.rsplit_once(' ') else { continue };
        let Ok(v) = value.trim().parse::<f64>() else { continue };
        let (name, labels) = series.split_once('{').unwrap_or((series, ""));
        if name == "chat4all_outbox_published_total" {
            out.outbox_published += v;
            continue;
        }
        if name != "chat4all_connector_deliveries_total" {
            continue;
        }
        let (Some(channel), Some(result)) = (label(labels, "channel"), label(labels, "result")) else { continue };
        let c = out.channels.entry(channel.to_ascii_lowercase()).or_default();
        match result {
            "sent" => c.sent += v,
            "failed" => c.failed += v,
            "unavailable" => c.unavailable += v,
            _ => {}
        }
    }
    out
}

fn label<'a>(labels: &'a str, name: &str) -> Option<&'a str> {
    let start = labels.find(&format!("{name}=\""))? + name.len() + 2;
    let rest = &labels[start..];
    Some(&rest[..rest.find('"')?])
}

/// Rates between two scrapes `seconds` apart.
pub fn rates(prev: &Scrape, cur: &Scrape, seconds: f64) -> Rates {
    let mut sums: BTreeMap<String, Counts> = BTreeMap::new();
    let mut published = 0.0;
    let delta = |a: f64, b: f64| if b >= a { b - a } else { b };
    for (instance, page) in cur {
        let Some(before) = prev.get(instance) else { continue };
        published += delta(before.outbox_published, page.outbox_published);
        for (channel, c) in &page.channels {
            let p = before.channels.get(channel).copied().unwrap_or_default();
            let s = sums.entry(channel.clone()).or_default();
            s.sent += delta(p.sent, c.sent);
            s.failed += delta(p.failed, c.failed);
            s.unavailable += delta(p.unavailable, c.unavailable);
        }
    }
    let per_second = |n: f64| if seconds > 0.0 { n / seconds } else { 0.0 };
    let channels = sums
        .into_iter()
        .map(|(channel, s)| {
            let calls = s.sent + s.failed + s.unavailable;
            let rate = ChannelRate {
                deliveries_per_second: per_second(s.sent),
                error_rate: (calls > 0.0).then(|| (s.failed + s.unavailable) / calls),
            };
            (channel, rate)
        })
        .collect();
    Rates { channels, outbox_published_per_second: per_second(published) }
}

/// Scrapes every running connector's and message-service's `/metrics` (an instance that does
/// not answer is left out).
pub async fn scrape(http: &reqwest::Client, instances: &[InstanceInfo]) -> Scrape {
    let counting = instances
        .iter()
        .filter(|i| i.state.is_alive() && (i.service.ends_with("-connector") || i.service == "message-service"));
    crate::health::metrics_pages(http, counting).await.into_iter().map(|(i, p)| (i.name.clone(), parse(&p))).collect()
}

/// Keeps the previous scrape so each call gives the rates since the last one.
#[derive(Debug, Default)]
pub struct RateTracker {
    last: Option<(std::time::Instant, Scrape)>,
}

impl RateTracker {
    /// The rates since the previous call (`None` on the first call).
    pub fn record(&mut self, scrape: Scrape) -> Option<Rates> {
        let now = std::time::Instant::now();
        let out = self.last.as_ref().map(|(t, prev)| rates(prev, &scrape, now.duration_since(*t).as_secs_f64()));
        self.last = Some((now, scrape));
        out
    }

    /// How long ago the previous scrape was (`None` before the first).
    pub fn age(&self) -> Option<Duration> {
        self.last.as_ref().map(|(t, _)| t.elapsed())
    }

    /// Whether the previous scrape is at least `min` old (a rate over less is mostly noise).
    pub fn ready(&self, min: Duration) -> bool {
        self.last.as_ref().is_some_and(|(t, _)| t.elapsed() >= min)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = r#"# TYPE chat4all_connector_deliveries counter
chat4all_connector_deliveries_total{service="telegram-connector",instance="telegram-connector-1",channel="telegram",result="sent"} 30
chat4all_connector_deliveries_total{service="telegram-connector",instance="telegram-connector-1",channel="telegram",result="failed"} 10
chat4all_connector_deliveries_total{service="telegram-connector",instance="telegram-connector-1",channel="telegram",result="duplicate"} 4
chat4all_connector_deliveries_total{service="telegram-connector",instance="telegram-connector-1",channel="telegram",result="unavailable"} 2
http_requests_total{method="POST",route="/v1/deliveries",status="200"} 9
chat4all_outbox_published_total 12
"#;

    #[test]
    fn parses_the_connector_counters() {
        let c = parse(PAGE);
        assert_eq!(c.channels["telegram"], Counts { sent: 30.0, failed: 10.0, unavailable: 2.0 });
        assert_eq!(c.channels.len(), 1);
        assert_eq!(c.outbox_published, 12.0);
    }

    #[test]
    fn rates_are_deltas_and_survive_a_restart() {
        let scrape = |sent: f64, failed: f64| -> Scrape {
            let channels = [("telegram".to_string(), Counts { sent, failed, unavailable: 0.0 })].into();
            [("telegram-connector-1".to_string(), Page { channels, outbox_published: 0.0 })].into()
        };
        let r = rates(&scrape(10.0, 0.0), &scrape(30.0, 20.0), 2.0).channels;
        assert_eq!(r["telegram"].deliveries_per_second, 10.0);
        assert_eq!(r["telegram"].error_rate, Some(0.5));
        // A restart: the counter went down, it counts from zero.
        let r = rates(&scrape(100.0, 0.0), &scrape(4.0, 0.0), 1.0).channels;
        assert_eq!((r["telegram"].deliveries_per_second, r["telegram"].error_rate), (4.0, Some(0.0)));
        // Nothing called: no error rate.
        let r = rates(&scrape(4.0, 0.0), &scrape(4.0, 0.0), 1.0).channels;
        assert_eq!(r["telegram"].error_rate, None);
        assert!(
            rates(&Scrape::new(), &scrape(1.0, 1.0), 1.0).channels.is_empty(),
            "a new instance counts from its next scrape"
        );
    }

    #[test]
    fn the_publish_rate_sums_the_message_services() {
        let page = |n: f64| Page { channels: BTreeMap::new(), outbox_published: n };
        let prev: Scrape = [("message-service-1".into(), page(100.0)), ("message-service-2".into(), page(0.0))].into();
        // Leadership moved from 1 to 2 within the interval: 1 published 50 more, 2 its first 30.
        let cur: Scrape = [("message-service-1".into(), page(150.0)), ("message-service-2".into(), page(30.0))].into();
        assert_eq!(rates(&prev, &cur, 2.0).outbox_published_per_second, 40.0);
    }
}
