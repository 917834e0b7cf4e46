//! Where the pipeline stalls: the stage that holds the oldest pending message, from the
//! message-service's pipeline view (outbox relay, per-channel freshness) and the router group's
//! lag. Consumer lag alone is blind before the topic (the outbox) and after the consumer
//! (connectors, providers); the freshness age sees both, and this names the place to look.

use chat4all_contract::admin::pipeline::Pipeline;
use serde::Serialize;

/// A pending delivery older than this is a stall (a healthy pipeline delivers in milliseconds;
/// retries with backoff take a few seconds).
pub const STALL_AFTER_SECONDS: f64 = 10.0;
/// An outbox row older than this means the relay does not publish.
pub const OUTBOX_STALL_SECONDS: f64 = 5.0;

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    /// The outbox relay is paused by a lease.
    RelayPaused,
    /// The relay does not publish (no leader, or the broker refuses).
    Relay,
    /// Events wait on chat-events: routers down, slow or stuck.
    Routers,
    /// Routed, not delivered: the channel's connector or provider.
    Channel,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Stall {
    pub stage: Stage,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    pub oldest_seconds: f64,
    pub reason: String,
}

/// The stalls of `pipeline`, given the router group's total lag (None when unknown) and the
/// services that have no healthy instance (`telegram-connector`, `telegram-provider`, ...).
pub fn find(pipeline: &Pipeline, router_lag: Option<i64>, down: &[String]) -> Vec<Stall> {
    let mut out = Vec::new();
    let relay = &pipeline.relay;
    if let Some(p) = &relay.paused {
        out.push(Stall {
            stage: Stage::RelayPaused,
            channel: None,
            oldest_seconds: relay.oldest_seconds,
            reason: format!(
                "relay paused by {} until {}; {} messages wait in the outbox",
                p.by,
                p.until.format("%H:%M:%S"),
                relay.backlog
            ),
        });
    } else if relay.oldest_seconds > OUTBOX_STALL_SECONDS {
        let why =
            if relay.leader.is_none() { "no message-service leads the relay" } else { "is the broker reachable?" };
        out.push(Stall {
            stage: Stage::Relay,
            channel: None,
            oldest_seconds: relay.oldest_seconds,
            reason: format!("the outbox is not draining ({} rows): {why}", relay.backlog),
        });
    }
    let upstream_stalled = !out.is_empty();
    for c in &pipeline.channels {
        if c.oldest_pending_seconds <= STALL_AFTER_SECONDS {
            continue;
        }
        // Upstream of the routers, the outbox stall already explains every channel's age.
        if upstream_stalled && c.oldest_pending_status.as_deref() == Some("PENDING") {
            continue;
        }
        let channel = c.channel.label().to_string();
        let down_here: Vec<&str> = down
            .iter()
            .map(String::as_str)
            .filter(|s| s.strip_prefix(channel.as_str()).is_some_and(|r| r.starts_with('-')))
            .collect();
        let (stage, reason) = match router_lag {
            // A channel's service down holds its deliveries (and, upstream, the routers waiting
            // on it): the place to look is the service.
            _ if !down_here.is_empty() => {
                (Stage::Channel, format!("no healthy {} instance: its deliveries wait", down_here.join(" / ")))
            }
            Some(lag) if lag > 0 && c.oldest_pending_status.as_deref() == Some("PENDING") => {
                (Stage::Routers, format!("router-service has lag {lag} on chat-events"))
            }
            _ => (
                Stage::Channel,
                format!(
                    "a {} delivery for {:.0}s: look at the {channel} connector or its provider",
                    c.oldest_pending_status.as_deref().unwrap_or("pending"),
                    c.oldest_pending_seconds
                ),
            ),
        };
        out.push(Stall { stage, channel: Some(channel), oldest_seconds: c.oldest_pending_seconds, reason });
    }
    out
}

/// `status`'s one line.
pub fn line(stalls: &[Stall]) -> String {
    if stalls.is_empty() {
        return "stalls:   none".into();
    }
    let parts: Vec<String> = stalls
        .iter()
        .map(|s| match &s.channel {
            Some(c) => format!("{c}: oldest pending {:.1}s ({})", s.oldest_seconds, s.reason),
            None => format!("outbox: oldest {:.1}s ({})", s.oldest_seconds, s.reason),
        })
        .collect();
    format!("stalls:   {}", parts.join("; "))
}

/// The dashboard's marker: the stage holding the oldest pending message, in a few words
/// (`STALL relay paused`, `STALL telegram`), or `None` when nothing stalls.
pub fn marker(stalls: &[Stall]) -> Option<String> {
    let worst = stalls.iter().max_by(|a, b| a.oldest_seconds.total_cmp(&b.oldest_seconds))?;
    let place = match (&worst.stage, &worst.channel) {
        (Stage::RelayPaused, _) => "relay paused".to_string(),
        (Stage::Relay, _) => "relay".to_string(),
        (Stage::Routers, _) => "routers".to_string(),
        (Stage::Channel, Some(c)) => c.clone(),
        (Stage::Channel, None) => "a channel".to_string(),
    };
    let more = if stalls.len() > 1 { format!(" (+{} more)", stalls.len() - 1) } else { String::new() };
    Some(format!("STALL {place} {:.0}s{more}", worst.oldest_seconds))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chat4all_contract::admin::pipeline::ChannelFreshness;
    use chat4all_contract::admin::relay::{Pause, RelayState};
    use chat4all_contract::channel::Channel;

    fn pipeline(paused: bool, outbox_age: f64, ages: [(f64, &str); 3]) -> Pipeline {
        let now = chrono::Utc::now();
        Pipeline {
            relay: RelayState {
                paused: paused.then(|| Pause { by: "repartition@h:1".into(), since: now, until: now }),
                backlog: 7,
                oldest_seconds: outbox_age,
                leader: Some("message-service-1".into()),
                leader_since: Some(now),
                leader_epoch: 1,
            },
            channels: Channel::ALL
                .iter()
                .zip(ages)
                .map(|(c, (age, status))| ChannelFreshness {
                    channel: *c,
                    oldest_pending_seconds: age,
                    oldest_pending_message: None,
                    oldest_pending_status: (age > 0.0).then(|| status.to_string()),
                })
                .collect(),
            measured_at: Some(now),
        }
    }

    #[test]
    fn a_healthy_pipeline_has_no_stall() {
        assert!(find(&pipeline(false, 0.2, [(0.5, "SENT"), (0.0, ""), (0.0, "")]), Some(0), &[]).is_empty());
        assert_eq!(line(&[]), "stalls:   none");
    }

    #[test]
    fn a_paused_relay_is_named_and_explains_the_pending_ages() {
        let s = find(&pipeline(true, 30.0, [(30.0, "PENDING"), (30.0, "PENDING"), (0.0, "")]), Some(0), &[]);
        assert_eq!(s.len(), 1, "{s:?}");
        assert_eq!(s[0].stage, Stage::RelayPaused);
        assert!(line(&s).contains("repartition@h:1"), "{}", line(&s));
        assert_eq!(marker(&s).as_deref(), Some("STALL relay paused 30s"));
        assert_eq!(marker(&[]), None);
    }

    #[test]
    fn a_stopped_connector_is_its_channel_alone() {
        let s = find(&pipeline(false, 0.0, [(25.0, "PENDING"), (0.3, "SENT"), (0.0, "")]), Some(0), &[]);
        assert_eq!(s.len(), 1, "{s:?}");
        assert_eq!((s[0].stage.clone(), s[0].channel.as_deref()), (Stage::Channel, Some("whatsapp")));
        let lagging = find(&pipeline(false, 0.0, [(25.0, "PENDING"), (0.0, ""), (0.0, "")]), Some(40), &[]);
        assert_eq!(lagging[0].stage, Stage::Routers);
        // The routers lag because they wait on the stopped connector: the connector is named.
        let down = find(
            &pipeline(false, 0.0, [(25.0, "PENDING"), (0.0, ""), (0.0, "")]),
            Some(40),
            &["whatsapp-connector".to_string()],
        );
        assert_eq!((down[0].stage.clone(), down[0].channel.as_deref()), (Stage::Channel, Some("whatsapp")));
        assert!(down[0].reason.contains("whatsapp-connector"), "{}", down[0].reason);
        let outbox = find(&pipeline(false, 12.0, [(12.0, "PENDING"), (0.0, ""), (0.0, "")]), Some(0), &[]);
        assert_eq!(outbox.iter().map(|s| s.stage.clone()).collect::<Vec<_>>(), vec![Stage::Relay]);
    }
}
