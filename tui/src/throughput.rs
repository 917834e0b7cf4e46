//! Throughput from the services' Prometheus counters: messages accepted by the API
//! (`http_requests_total` of `POST /api/v1/messages` answered 202), events routed
//! (`chat4all_router_events_total`) and deliveries handed to connectors
//! (`chat4all_router_deliveries_total{result="delivered"}`). Rates are per-instance deltas,
//! so an instance that restarts (counter reset) or disappears does not produce a negative rate.

use std::collections::{BTreeMap, VecDeque};

/// Cumulative counters of one instance.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Counters {
    pub accepted: f64,
    pub routed: f64,
    pub delivered: f64,
}

/// Messages per second over one interval.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Rates {
    pub accepted: f64,
    pub routed: f64,
    pub delivered: f64,
}

/// Sums the counters this module reads from one `/metrics` page (OpenMetrics text).
pub fn parse(text: &str) -> Counters {
    let mut c = Counters::default();
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let Some((series, value)) = line.rsplit_once(' ') else { continue };
        let Ok(v) = value.trim().parse::<f64>() else { continue };
        let (name, labels) = match series.split_once('{') {
            Some((n, l)) => (n, l),
            None => (series, ""),
        };
        match name {
            "http_requests_total"
                if labels.contains("method=\"POST\"")
                    && labels.contains("route=\"/api/v1/messages\"")
                    && labels.contains("status=\"202\"") =>
            {
                c.accepted += v
            }
            "chat4all_router_events_total" => c.routed += v,
            "chat4all_router_deliveries_total" if labels.contains("result=\"delivered\"") => c.delivered += v,
            _ => {}
        }
    }
    c
}

/// Rates between two scrapes `seconds` apart. An instance missing from `prev` counts from its
/// next scrape; a counter that went down (restart) counts from zero.
pub fn rates(prev: &BTreeMap<String, Counters>, cur: &BTreeMap<String, Counters>, seconds: f64) -> Rates {
    if seconds <= 0.0 {
        return Rates::default();
    }
    let delta = |a: f64, b: f64| if b >= a { b - a } else { b };
    let mut r = Rates::default();
    for (name, c) in cur {
        let Some(p) = prev.get(name) else { continue };
        r.accepted += delta(p.accepted, c.accepted);
        r.routed += delta(p.routed, c.routed);
        r.delivered += delta(p.delivered, c.delivered);
    }
    Rates { accepted: r.accepted / seconds, routed: r.routed / seconds, delivered: r.delivered / seconds }
}

/// The last minutes of rates, for the chart: (unix seconds, rates), oldest first.
#[derive(Debug, Clone, Default)]
pub struct History {
    points: VecDeque<(f64, Rates)>,
    last: Option<(f64, BTreeMap<String, Counters>)>,
}

impl History {
    /// How much history the chart keeps, in seconds.
    pub const SPAN: f64 = 120.0;

    /// Records a scrape taken at `at` (unix seconds, fractional).
    pub fn record(&mut self, at: f64, counters: &BTreeMap<String, Counters>) {
        if let Some((t0, prev)) = &self.last {
            if at > *t0 {
                self.points.push_back((at, rates(prev, counters, at - t0)));
            }
        }
        self.last = Some((at, counters.clone()));
        while self.points.front().is_some_and(|(t, _)| at - t > Self::SPAN) {
            self.points.pop_front();
        }
    }

    pub fn points(&self) -> impl Iterator<Item = &(f64, Rates)> {
        self.points.iter()
    }

    pub fn latest(&self) -> Option<Rates> {
        self.points.back().map(|(_, r)| *r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = r#"# HELP http_requests HTTP requests served.
# TYPE http_requests counter
http_requests_total{service="message-service",instance="message-service-1",method="POST",route="/api/v1/messages",status="202"} 40
http_requests_total{service="message-service",instance="message-service-1",method="POST",route="/api/v1/messages",status="400"} 3
http_requests_total{service="message-service",instance="message-service-1",method="GET",route="/health",status="200"} 9
chat4all_router_events_total{service="router-service",instance="router-service-1"} 12
chat4all_router_deliveries_total{service="router-service",instance="router-service-1",channel="whatsapp",result="delivered"} 20
chat4all_router_deliveries_total{service="router-service",instance="router-service-1",channel="telegram",result="delivered"} 4
chat4all_router_deliveries_total{service="router-service",instance="router-service-1",channel="telegram",result="failed"} 7
# EOF
"#;

    #[test]
    fn parses_accepted_routed_and_delivered() {
        assert_eq!(parse(PAGE), Counters { accepted: 40.0, routed: 12.0, delivered: 24.0 });
        assert_eq!(parse("garbage\n\n"), Counters::default());
    }

    fn map(items: &[(&str, f64)]) -> BTreeMap<String, Counters> {
        items.iter().map(|(n, v)| (n.to_string(), Counters { accepted: *v, routed: *v, delivered: *v })).collect()
    }

    #[test]
    fn rates_survive_restarts_and_new_instances() {
        let prev = map(&[("a", 100.0), ("b", 50.0)]);
        // a advanced by 20, b restarted and counted 4 since, c is new (not counted yet).
        let cur = map(&[("a", 120.0), ("b", 4.0), ("c", 1000.0)]);
        let r = rates(&prev, &cur, 2.0);
        assert_eq!(r.routed, 12.0);
        assert_eq!(rates(&prev, &cur, 0.0), Rates::default());
    }

    #[test]
    fn history_keeps_a_bounded_window() {
        let mut h = History::default();
        for i in 0..300 {
            h.record(i as f64, &map(&[("a", (i * 10) as f64)]));
        }
        assert_eq!(h.latest().unwrap().routed, 10.0);
        let first = h.points().next().unwrap().0;
        assert!(299.0 - first <= History::SPAN, "{first}");
    }
}
