//! The pipeline per channel, as `status`, the dashboard's pipeline pane and the exporter show it:
//! the oldest delivery not final (the message-service's freshness), deliveries per second and
//! the provider's error rate (the connectors' counters, `rates`), and the DLQ depth (`dlq`).

use std::collections::BTreeMap;

use chat4all_contract::admin::pipeline::Pipeline;
use serde::Serialize;

use crate::dlq::Depth;
use crate::output::Table;
use crate::rates::ChannelRate;

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChannelRow {
    /// Channel label (`whatsapp`).
    pub channel: String,
    pub oldest_pending_seconds: f64,
    /// The oldest pending delivery's status (PENDING: not routed yet; SENT: not delivered yet).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oldest_pending_status: Option<String>,
    /// Provider deliveries per second (`None` until two scrapes of the connectors).
    pub deliveries_per_second: Option<f64>,
    /// Share of provider calls that failed; `None` without calls (or before two scrapes).
    pub error_rate: Option<f64>,
    /// Dead letters of the channel whose delivery is still FAILED (`None` when unknown).
    pub dlq_depth: Option<u64>,
}

/// One row per channel of `pipeline`, with the rates and depth when known.
pub fn channel_rows(
    pipeline: &Pipeline,
    rates: Option<&BTreeMap<String, ChannelRate>>,
    dlq: Option<&Depth>,
) -> Vec<ChannelRow> {
    pipeline
        .channels
        .iter()
        .map(|f| {
            let label = f.channel.label();
            let rate = rates.map(|r| r.get(label).copied().unwrap_or_default());
            ChannelRow {
                channel: label.to_string(),
                oldest_pending_seconds: f.oldest_pending_seconds,
                oldest_pending_status: f.oldest_pending_status.clone(),
                deliveries_per_second: rate.map(|r| r.deliveries_per_second),
                error_rate: rate.and_then(|r| r.error_rate),
                dlq_depth: dlq.map(|d| d.channels.get(label).copied().unwrap_or(0)),
            }
        })
        .collect()
}

/// `-` for an unknown figure.
pub fn dash<T>(v: Option<T>, f: impl Fn(T) -> String) -> String {
    v.map(f).unwrap_or_else(|| "-".into())
}

/// A share as a percentage (`12.5%`).
pub fn percent(share: f64) -> String {
    format!("{:.1}%", share * 100.0)
}

/// The channels as a table: CHANNEL, OLDEST-PENDING, STATUS, DELIVERIES/S, ERRORS, DLQ.
pub fn table(rows: &[ChannelRow]) -> String {
    let mut t = Table::new(&["CHANNEL", "OLDEST-PENDING", "OF", "DELIVERIES/S", "PROVIDER-ERRORS", "DLQ"]);
    for r in rows {
        t.row(vec![
            r.channel.clone(),
            format!("{:.1}s", r.oldest_pending_seconds),
            r.oldest_pending_status.clone().unwrap_or_else(|| "-".into()),
            dash(r.deliveries_per_second, |v| format!("{v:.1}")),
            dash(r.error_rate, percent),
            dash(r.dlq_depth, |v| v.to_string()),
        ]);
    }
    t.render()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chat4all_contract::admin::pipeline::ChannelFreshness;
    use chat4all_contract::admin::relay::RelayState;
    use chat4all_contract::channel::Channel;

    fn pipeline() -> Pipeline {
        Pipeline {
            relay: RelayState {
                paused: None,
                backlog: 0,
                oldest_seconds: 0.0,
                leader: None,
                leader_since: None,
                leader_epoch: 0,
            },
            channels: Channel::ALL
                .iter()
                .map(|c| ChannelFreshness {
                    channel: *c,
                    oldest_pending_seconds: 1.5,
                    oldest_pending_message: None,
                    oldest_pending_status: Some("SENT".into()),
                })
                .collect(),
            measured_at: None,
        }
    }

    #[test]
    fn rows_join_freshness_rates_and_depth() {
        let rates: BTreeMap<String, ChannelRate> =
            [("telegram".to_string(), ChannelRate { deliveries_per_second: 4.0, error_rate: Some(0.25) })].into();
        let mut depth = Depth::default();
        depth.channels.insert("telegram".into(), 3);
        let rows = channel_rows(&pipeline(), Some(&rates), Some(&depth));
        let tg = rows.iter().find(|r| r.channel == "telegram").unwrap();
        assert_eq!((tg.deliveries_per_second, tg.error_rate, tg.dlq_depth), (Some(4.0), Some(0.25), Some(3)));
        let wa = rows.iter().find(|r| r.channel == "whatsapp").unwrap();
        assert_eq!((wa.deliveries_per_second, wa.error_rate, wa.dlq_depth), (Some(0.0), None, Some(0)));
        let unknown = channel_rows(&pipeline(), None, None);
        assert_eq!((unknown[0].deliveries_per_second, unknown[0].dlq_depth), (None, None));
        let text = table(&rows);
        assert!(text.lines().nth(2).is_some_and(|l| l.contains("25.0%") && l.contains("4.0")), "{text}");
    }
}
