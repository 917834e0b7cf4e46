//! The rows each pane shows, derived from the state (filtered), shared by `update` (what is
//! selected) and `draw` (what is on screen).

use chrono::{DateTime, Utc};

use chat4all_ctl::contract::events::RebalanceKind;
use chat4all_ctl::runtime::Action;
use chat4all_ctl::timeline::EventRow;
use chat4all_ctl::view::{GroupView, PartitionView};

use crate::snapshot::InstanceRow;
use crate::state::State;

/// One line of the timeline: a rebalance report or an operator action.
#[derive(Debug, Clone, Copy)]
pub enum Entry<'a> {
    Rebalance(&'a EventRow),
    Action(&'a Action),
}

impl Entry<'_> {
    pub fn at(&self) -> DateTime<Utc> {
        match self {
            Entry::Rebalance(r) => r.event.at,
            Entry::Action(a) => a.at,
        }
    }

    /// The text after the time, used for filtering and drawing.
    pub fn text(&self) -> String {
        match self {
            Entry::Rebalance(r) => {
                let e = &r.event;
                let kind = match e.kind {
                    RebalanceKind::Assigned => "assigned",
                    RebalanceKind::Revoked => "revoked",
                    RebalanceKind::Lost => "lost",
                    RebalanceKind::Left => "left",
                };
                let parts = if e.partitions.is_empty() {
                    "-".to_string()
                } else {
                    e.partitions.iter().map(|p| format!("{}-{}", p.topic, p.partition)).collect::<Vec<_>>().join(",")
                };
                let cause = r.cause.as_deref().map(|c| format!(" ← {c}")).unwrap_or_default();
                format!("{} {kind} {parts}{cause}", e.instance)
            }
            Entry::Action(a) => {
                let detail = if a.detail.is_empty() { String::new() } else { format!(" ({})", a.detail) };
                format!("OPERATOR {} {}{detail}", a.action, a.target)
            }
        }
    }
}

fn matches(filter: &str, text: &str) -> bool {
    filter.is_empty() || text.to_lowercase().contains(&filter.to_lowercase())
}

pub fn instances(state: &State) -> Vec<&InstanceRow> {
    let Some(d) = &state.data else { return Vec::new() };
    d.instances
        .iter()
        .filter(|i| matches(&state.filter, &format!("{} {}", i.info.name, i.info.state.as_str())))
        .collect()
}

/// Every group, the router group (the one that routes messages) first.
pub fn groups(state: &State) -> Vec<&GroupView> {
    let Some(d) = &state.data else { return Vec::new() };
    let mut groups: Vec<_> = d.groups.iter().collect();
    groups.sort_by_key(|g| g.group != chat4all_ctl::repartition::ROUTER_GROUP);
    groups
}

/// Partitions of every group, in the order of [`groups`].
pub fn partitions(state: &State) -> Vec<&PartitionView> {
    groups(state)
        .into_iter()
        .flat_map(|g| g.partitions.iter())
        .filter(|p| {
            if state.filter.is_empty() {
                return true;
            }
            let owner = p.owner.as_ref().map(|o| o.instance.as_str()).unwrap_or("");
            matches(&state.filter, &format!("{} {}-{} {owner}", p.group, p.offsets.topic, p.offsets.partition))
        })
        .collect()
}

/// The group `p` is a partition of.
fn group_of<'a>(state: &'a State, p: &PartitionView) -> Option<&'a GroupView> {
    state.data.as_ref()?.groups.iter().find(|g| g.group == p.group)
}

/// The owner of `p` as the partitions pane shows it (`-` for none, marked when the members'
/// reports dispute it), and whether they do.
pub fn owner(state: &State, p: &PartitionView) -> (String, bool) {
    let group = group_of(state, p);
    let disputed = group.is_some_and(|g| g.disputed(&p.offsets.topic, p.offsets.partition));
    let cell = match group {
        Some(g) => g.owner_cell(p),
        None => p.owner.as_ref().map(|o| o.instance.clone()),
    };
    (cell.unwrap_or_else(|| "-".into()), disputed)
}

/// Rebalances and operator actions, newest first.
pub fn timeline(state: &State) -> Vec<Entry<'_>> {
    let Some(d) = &state.data else { return Vec::new() };
    let mut out: Vec<Entry> = d
        .events
        .iter()
        .map(Entry::Rebalance)
        .chain(d.actions.iter().map(Entry::Action))
        .filter(|e| matches(&state.filter, &e.text()))
        .collect();
    out.sort_by_key(|e| std::cmp::Reverse(e.at()));
    out
}

/// Partitions owned by `instance`, as `topic[0,1]` per topic.
pub fn owned_by(state: &State, instance: &str) -> String {
    let Some(d) = &state.data else { return String::new() };
    let mut per_topic: Vec<(String, Vec<i32>)> = Vec::new();
    for p in d.groups.iter().flat_map(|g| g.partitions.iter()) {
        if p.owner.as_ref().is_some_and(|o| o.instance == instance) {
            match per_topic.iter_mut().find(|(t, _)| *t == p.offsets.topic) {
                Some((_, v)) => v.push(p.offsets.partition),
                None => per_topic.push((p.offsets.topic.clone(), vec![p.offsets.partition])),
            }
        }
    }
    per_topic
        .into_iter()
        .map(|(t, v)| format!("{t}[{}]", v.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(",")))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether `instance` is a member of a group that owns nothing there.
pub fn is_standby(state: &State, instance: &str) -> bool {
    state.data.as_ref().is_some_and(|d| d.groups.iter().any(|g| g.standby.iter().any(|s| s == instance)))
}
