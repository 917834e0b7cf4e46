//! The rebalance timeline with causes: each rebalance report linked to the operator action that
//! caused it (`events`, the dashboard).

use serde::Serialize;

use chat4all_contract::events::RebalanceEvent;

use crate::runtime::Action;

/// Actions the supervisor takes by itself as the consequence of an operator's (the LeaveGroup it
/// sends for a killed member): never the cause shown, the operator's action is.
pub const FOLLOW_UP_ACTIONS: [&str; 1] = ["leave-group"];

/// How far back an operator action may be and still count as the cause of a rebalance: a frozen
/// member is found after the session timeout (3 s), partitions added by a repartition after the
/// consumers' metadata refresh (3 s); 20 s leaves room for a loaded machine without blaming a
/// rebalance on an action from long before.
pub const CAUSE_WINDOW_SECONDS: i64 = 20;

/// One rebalance report and the operator action that caused it, where known.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventRow {
    #[serde(flatten)]
    pub event: RebalanceEvent,
    pub cause: Option<String>,
}

/// The service of an instance name: `router-service-2` -> `router-service`.
pub fn service_of(instance: &str) -> &str {
    match instance.rsplit_once('-') {
        Some((s, n)) if !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()) => s,
        _ => instance,
    }
}

/// The cause of a rebalance: the newest operator action in the [`CAUSE_WINDOW_SECONDS`] before
/// it that concerns the instance's service (kill, stop, start, scale of a sibling) or a topic its
/// group consumes (repartition).
pub fn attribute(events: Vec<RebalanceEvent>, actions: &[Action]) -> Vec<EventRow> {
    events
        .into_iter()
        .map(|e| {
            let service = service_of(&e.instance);
            let cause = actions
                .iter()
                .filter(|a| !FOLLOW_UP_ACTIONS.contains(&a.action.as_str()))
                .filter(|a| a.at <= e.at && (e.at - a.at).num_seconds() <= CAUSE_WINDOW_SECONDS)
                .filter(|a| {
                    service_of(&a.target) == service
                        || (a.action == "repartition" && crate::kafka::known_topic(&e.group, &a.target))
                })
                .max_by_key(|a| a.at)
                .map(|a| format!("{} {}", a.action, a.target));
            EventRow { event: e, cause }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chat4all_contract::events::RebalanceKind;
    use chrono::{Duration, Utc};

    fn event(instance: &str, secs_after: i64, base: chrono::DateTime<Utc>) -> RebalanceEvent {
        RebalanceEvent {
            at: base + Duration::seconds(secs_after),
            group: "router-service".into(),
            instance: instance.into(),
            member_id: "m".into(),
            kind: RebalanceKind::Assigned,
            partitions: vec![],
            assignment: vec![],
        }
    }

    fn action(what: &str, target: &str, at: chrono::DateTime<Utc>) -> Action {
        Action { at, action: what.into(), target: target.into(), detail: String::new() }
    }

    #[test]
    fn newest_action_on_the_same_service_within_the_window_is_the_cause() {
        let t0 = Utc::now();
        let actions = [
            action("kill", "router-service-1", t0),
            action("restart", "router-service-3", t0 + Duration::seconds(2)),
            action("kill", "whatsapp-connector-1", t0 + Duration::seconds(3)),
        ];
        let rows = attribute(
            vec![
                event("router-service-2", 5, t0),
                event("router-service-2", 1, t0),
                event("router-service-2", 100, t0),
                event("router-service-2", -1, t0),
            ],
            &actions,
        );
        assert_eq!(rows[0].cause.as_deref(), Some("restart router-service-3"));
        assert_eq!(rows[1].cause.as_deref(), Some("kill router-service-1"));
        assert_eq!(rows[2].cause, None, "outside the window");
        assert_eq!(rows[3].cause, None, "before any action");
    }

    #[test]
    fn the_kill_not_the_leave_group_sent_for_it_is_the_cause() {
        let t0 = Utc::now();
        let actions = [
            action("kill", "router-service-1", t0),
            action("leave-group", "router-service-1", t0 + Duration::seconds(1)),
        ];
        let rows = attribute(vec![event("router-service-2", 4, t0)], &actions);
        assert_eq!(rows[0].cause.as_deref(), Some("kill router-service-1"));
    }

    #[test]
    fn a_repartition_causes_the_rebalances_of_the_group_consuming_the_topic() {
        let t0 = Utc::now();
        let rows = attribute(vec![event("router-service-1", 4, t0)], &[action("repartition", "chat-events", t0)]);
        assert_eq!(rows[0].cause.as_deref(), Some("repartition chat-events"));
    }

    #[test]
    fn service_of_strips_the_replica_number_only() {
        assert_eq!(service_of("router-service-12"), "router-service");
        assert_eq!(service_of("broker"), "broker");
        assert_eq!(service_of("chat-events"), "chat-events");
    }
}
