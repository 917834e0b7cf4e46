//! Per channel: deliveries per second and the provider's error rate, from the connectors' own
//! Prometheus counters (`chat4all_connector_deliveries_total{channel,result}`, one series per
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

/// Instance -> channel label -> counts.
pub type Scrape = BTreeMap<String, BTreeMap<String, Counts>>;

/// One channel's rates over an interval.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChannelRate {
    pub deliveries_per_second: f64,
    /// Share of provider calls that failed (rejected or unavailable); `None` without calls.
    pub error_rate: Option<f64>,
}

/// The connector counters on one `/metrics` page, by channel label.
pub fn parse(text: &str) -> BTreeMap<String, Counts> {
    let mut out: BTreeMap<String, Counts> = BTreeMap::new();
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let Some((series, value)) = line.rsplit_once(' ') else { continue };
        let Ok(v) = value.trim().parse::<f64>() else { continue };
        let Some((name, labels)) = series.split_once('{') else { continue };
        if name != "chat4all_connector_deliveries_total" {
            continue;
        }
        let (Some(channel), Some(result)) = (label(labels, "channel"), label(labels, "result")) else { continue };
        let c = out.entry(channel.to_ascii_lowercase()).or_default();
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

/// Rates between two scrapes `seconds` apart, per channel label.
pub fn rates(prev: &Scrape, cur: &Scrape, seconds: f64) -> BTreeMap<String, ChannelRate> {
    let mut sums: BTreeMap<String, Counts> = BTreeMap::new();
    let delta = |a: f64, b: f64| if b >= a { b - a } else { b };
    for (instance, channels) in cur {
        let Some(before) = prev.get(instance) else { continue };
        for (channel, c) in channels {
            let p = before.get(channel).copied().unwrap_or_default();
            let s = sums.entry(channel.clone()).or_default();
            s.sent += delta(p.sent, c.sent);
            s.failed += delta(p.failed, c.failed);
            s.unavailable += delta(p.unavailable, c.unavailable);
        }
    }
    sums.into_iter()
        .map(|(channel, s)| {
            let calls = s.sent + s.failed + s.unavailable;
            let rate = ChannelRate {
                deliveries_per_second: if seconds > 0.0 { s.sent / seconds } else { 0.0 },
                error_rate: (calls > 0.0).then(|| (s.failed + s.unavailable) / calls),
            };
            (channel, rate)
        })
        .collect()
}

/// Scrapes every running connector's `/metrics` (a connector that does not answer is left out).
pub async fn scrape(http: &reqwest::Client, instances: &[InstanceInfo]) -> Scrape {
    let connectors = instances.iter().filter(|i| i.state.is_alive() && i.service.ends_with("-connector"));
    crate::health::metrics_pages(http, connectors).await.into_iter().map(|(i, p)| (i.name.clone(), parse(&p))).collect()
}

/// Keeps the previous scrape so each call gives the rates since the last one.
#[derive(Debug, Default)]
pub struct RateTracker {
    last: Option<(std::time::Instant, Scrape)>,
}

impl RateTracker {
    /// The rates since the previous call (`None` on the first call).
    pub fn record(&mut self, scrape: Scrape) -> Option<BTreeMap<String, ChannelRate>> {
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
"#;

    #[test]
    fn parses_the_connector_counters() {
        let c = parse(PAGE);
        assert_eq!(c["telegram"], Counts { sent: 30.0, failed: 10.0, unavailable: 2.0 });
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn rates_are_deltas_and_survive_a_restart() {
        let scrape = |sent: f64, failed: f64| -> Scrape {
            [(
                "telegram-connector-1".to_string(),
                [("telegram".to_string(), Counts { sent, failed, unavailable: 0.0 })].into(),
            )]
            .into()
        };
        let r = rates(&scrape(10.0, 0.0), &scrape(30.0, 20.0), 2.0);
        assert_eq!(r["telegram"].deliveries_per_second, 10.0);
        assert_eq!(r["telegram"].error_rate, Some(0.5));
        // A restart: the counter went down, it counts from zero.
        let r = rates(&scrape(100.0, 0.0), &scrape(4.0, 0.0), 1.0);
        assert_eq!((r["telegram"].deliveries_per_second, r["telegram"].error_rate), (4.0, Some(0.0)));
        // Nothing called: no error rate.
        let r = rates(&scrape(4.0, 0.0), &scrape(4.0, 0.0), 1.0);
        assert_eq!(r["telegram"].error_rate, None);
        assert!(rates(&Scrape::new(), &scrape(1.0, 1.0), 1.0).is_empty(), "a new instance counts from its next scrape");
    }
}
