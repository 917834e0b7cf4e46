//! A fixed snapshot of a small stack: three routers (router-service-1 owns chat-events-0, the
//! others stand by), a message service owning status-updates, a kill and the rebalance it caused.

#![allow(dead_code)]

use std::collections::BTreeMap;

use chrono::{DateTime, TimeZone, Utc};

use chat4all_ctl::contract::events::{RebalanceEvent, RebalanceKind, TopicPartition};
use chat4all_ctl::kafka::PartitionOffsets;
use chat4all_ctl::lag::LagStatus;
use chat4all_ctl::ownership::{Owner, Source};
use chat4all_ctl::runtime::{Action as OpAction, InstanceInfo, InstanceState};
use chat4all_ctl::timeline::EventRow;
use chat4all_ctl::view::{GroupView, PartitionView};
use chat4all_tui::keys::KeyMap;
use chat4all_tui::snapshot::{InstanceRow, Snapshot};
use chat4all_tui::state::{update, Action, State};
use chat4all_tui::throughput::Counters;
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 28, 12, 0, 0).unwrap()
}

pub fn at(secs: i64) -> DateTime<Utc> {
    t0() + chrono::Duration::seconds(secs)
}

fn instance(name: &str, service: &str, port: u16, state: InstanceState) -> InstanceRow {
    InstanceRow {
        info: InstanceInfo {
            name: name.into(),
            service: service.into(),
            state,
            pid: Some(1000 + port as u32),
            port,
            started_at: Some(at(-3600)),
            last_exit: None,
            container: None,
        },
        health: if state == InstanceState::Running { "up".into() } else { "-".into() },
    }
}

fn partition(group: &str, topic: &str, p: i32, owner: Option<&str>, committed: Option<i64>, end: i64) -> PartitionView {
    PartitionView {
        group: group.into(),
        offsets: PartitionOffsets {
            topic: topic.into(),
            partition: p,
            committed,
            log_end: end,
            lag: committed.map(|c| end - c),
        },
        consumer_id: owner.map(|o| format!("{o}-member")),
        host: None,
        client_id: None,
        owner: owner.map(|o| Owner { instance: o.into(), member_id: format!("{o}-member"), source: Source::Report }),
        status: if committed.is_some() { LagStatus::Ok } else { LagStatus::Unknown },
        lag_seconds: committed.map(|c| (end - c) as f64 / 100.0),
    }
}

/// The stack `secs` seconds after t0, with `owner` owning chat-events-0 and `accepted` messages
/// counted so far.
pub fn snapshot(secs: i64, owner: &str, accepted: f64) -> Snapshot {
    let mut s = Snapshot::empty(at(secs));
    s.instances = vec![
        instance("broker", "broker", 9092, InstanceState::Running),
        instance("message-service-1", "message-service", 8081, InstanceState::Running),
        instance("whatsapp-connector-1", "whatsapp-connector", 8085, InstanceState::Running),
        instance("router-service-1", "router-service", 8091, InstanceState::Running),
        instance("router-service-2", "router-service", 8092, InstanceState::Running),
        instance("router-service-3", "router-service", 8093, InstanceState::Running),
    ];
    let routers: Vec<&str> = ["router-service-1", "router-service-2", "router-service-3"].into_iter().collect();
    s.groups = vec![
        GroupView {
            group: "message-service-status".into(),
            state: "Stable".into(),
            protocol: "cooperative-sticky".into(),
            group_type: chat4all_ctl::kafka::GroupType::Classic,
            group_epoch: None,
            assignment_epoch: None,
            reconciling: 0,
            disagreements: vec![],
            members: 1,
            partitions: (0..3)
                .map(|p| {
                    partition("message-service-status", "status-updates", p, Some("message-service-1"), Some(40), 40)
                })
                .collect(),
            standby: vec![],
            stale_reports: vec![],
            total_lag: 0,
            status: LagStatus::Ok,
            max_lag_seconds: Some(0.0),
        },
        GroupView {
            group: "router-service".into(),
            state: "Stable".into(),
            protocol: "cooperative-sticky".into(),
            group_type: chat4all_ctl::kafka::GroupType::Classic,
            group_epoch: None,
            assignment_epoch: None,
            reconciling: 0,
            disagreements: vec![],
            members: 3,
            partitions: vec![partition("router-service", "chat-events", 0, Some(owner), Some(1200), 1250)],
            standby: routers.iter().filter(|r| **r != owner).map(|r| r.to_string()).collect(),
            stale_reports: vec![],
            total_lag: 50,
            status: LagStatus::Ok,
            max_lag_seconds: Some(0.5),
        },
    ];
    s.actions = vec![OpAction {
        at: at(-30),
        action: "kill".into(),
        target: "router-service-2".into(),
        detail: "SIGKILL pid 1".into(),
    }];
    let tp = TopicPartition { topic: "chat-events".into(), partition: 0 };
    s.events = vec![EventRow {
        event: RebalanceEvent {
            at: at(-22),
            group: "router-service".into(),
            instance: "router-service-1".into(),
            member_id: "m1".into(),
            kind: RebalanceKind::Assigned,
            partitions: vec![tp.clone()],
            assignment: vec![tp],
        },
        cause: Some("kill router-service-2".into()),
    }];
    s.counters = BTreeMap::from([
        ("message-service-1".to_string(), Counters { accepted, routed: 0.0, delivered: 0.0 }),
        ("router-service-1".to_string(), Counters { accepted: 0.0, routed: accepted, delivered: accepted * 2.0 }),
    ]);
    s.broker = Ok("127.0.0.1:9092".into());
    s.postgres = Ok("127.0.0.1:5432".into());
    s.redis = Ok("redis://127.0.0.1:6379".into());
    s.runtime = Ok("process (supervisor pid 42 at http://127.0.0.1:7070)".into());
    s
}

/// A state fed `n` snapshots one second apart at 100 messages per second.
pub fn state_with_data(read_only: bool, n: i64) -> State {
    let mut st = State::new(KeyMap::default(), read_only);
    for i in 0..n {
        update(&mut st, Action::Data(Box::new(snapshot(i, "router-service-1", (i * 100) as f64))));
    }
    st
}

pub fn key(c: char) -> Action {
    Action::Key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE))
}

pub fn code(c: KeyCode) -> Action {
    Action::Key(KeyEvent::new(c, KeyModifiers::NONE))
}

pub fn ctrl(c: char) -> Action {
    Action::Key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL))
}

/// Types `text` one key at a time; returns the last update's operation.
pub fn type_text(st: &mut State, text: &str) {
    for c in text.chars() {
        assert!(update(st, key(c)).is_none());
    }
}

/// The stack as a KIP-848 group sees it mid-move: router-service speaks the consumer protocol
/// at epoch 7 with one member still reconciling, and router-service-2's report still claims
/// chat-events-0, which the broker gives router-service-1.
pub fn kip848_snapshot(secs: i64) -> Snapshot {
    let mut s = snapshot(secs, "router-service-1", (secs * 100) as f64);
    let g = s.groups.iter_mut().find(|g| g.group == "router-service").expect("router group");
    g.group_type = chat4all_ctl::kafka::GroupType::Consumer;
    g.protocol = "uniform".into();
    g.group_epoch = Some(7);
    g.assignment_epoch = Some(7);
    g.reconciling = 1;
    g.disagreements = vec![chat4all_ctl::ownership::Disagreement {
        topic: "chat-events".into(),
        partition: 0,
        broker: Some("router-service-1".into()),
        reported_by: vec!["router-service-1".into(), "router-service-2".into()],
    }];
    s
}
