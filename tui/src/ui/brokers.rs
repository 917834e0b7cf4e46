//! The brokers pane: every broker of the Kafka cluster (alive or not, the active controller,
//! partitions led), then the partitions that are under-replicated or offline, marked; a healthy
//! cluster says so in one line. The same tables as `chat4allctl brokers` and `topics describe`.

use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::Line;
use ratatui::Frame;

use chat4all_ctl::cluster::{self, ClusterView, Partition};

use crate::state::State;

/// The pane's title marker: `N UNDER-REPLICATED`, `OFFLINE`, or none.
pub fn marker(v: &ClusterView) -> Option<String> {
    let offline = v.partitions.iter().filter(|p| p.offline).count();
    let under = v.under_replicated();
    let dead = v.brokers.iter().filter(|b| !b.alive).count();
    let mut parts = Vec::new();
    if offline > 0 {
        parts.push(format!("{offline} OFFLINE"));
    }
    if under > 0 {
        parts.push(format!("{under} UNDER-REPLICATED"));
    }
    if dead > 0 {
        parts.push(format!("{dead} broker(s) DOWN"));
    }
    if v.controller.is_none() {
        parts.push("NO CONTROLLER".into());
    }
    (!parts.is_empty()).then(|| parts.join(", "))
}

/// The pane's lines (also what the tests read).
pub fn lines(v: &ClusterView) -> Vec<Line<'static>> {
    let bad = Style::default().fg(Color::Red).add_modifier(Modifier::BOLD);
    let bold = Style::default().add_modifier(Modifier::BOLD);
    let mut out = Vec::new();
    for (i, row) in cluster::brokers_table(v).lines().enumerate() {
        let style = if i == 0 {
            bold
        } else if row.split_whitespace().nth(4) == Some("NO") || row.contains("NO active controller") {
            bad
        } else {
            Style::default()
        };
        out.push(Line::styled(row.to_string(), style));
    }
    out.push(Line::raw(""));
    let sick: Vec<&Partition> = v.partitions.iter().filter(|p| p.offline || p.under_replicated).collect();
    if sick.is_empty() {
        out.push(Line::styled("every partition fully replicated", Style::default().fg(Color::Green)));
        return out;
    }
    for (i, row) in cluster::partitions_table(&sick).lines().enumerate() {
        let style = match i {
            0 => bold,
            _ if row.contains("OFFLINE") => bad,
            _ => Style::default().fg(Color::Yellow),
        };
        out.push(Line::styled(row.to_string(), style));
    }
    out
}

pub fn draw(state: &State, frame: &mut Frame, area: Rect) {
    super::draw_text_pane(frame, area, "Brokers", state.data.as_ref().map(|d| &d.cluster), |v| {
        (marker(v).unwrap_or_else(|| "healthy".into()), lines(v))
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use chat4all_ctl::wire::{Cluster, Quorum, Replicas, TopicMeta};

    fn text(lines: &[Line]) -> String {
        lines.iter().map(|l| l.spans.iter().map(|s| s.content.as_ref()).collect::<String>() + "\n").collect()
    }

    /// Three brokers, broker 3 dead: partition 0 is under-replicated, partition 1 is fine.
    fn view(dead: bool) -> ClusterView {
        let isr0 = if dead { vec![1, 2] } else { vec![1, 2, 3] };
        let reps = vec![
            Replicas { partition: 0, leader: 1, replicas: vec![1, 2, 3], isr: isr0, offline: vec![] },
            Replicas { partition: 1, leader: 2, replicas: vec![2, 1], isr: vec![2, 1], offline: vec![] },
        ];
        let mut brokers = vec![(1, "127.0.0.1:9092".to_string()), (2, "127.0.0.1:9094".to_string())];
        if !dead {
            brokers.push((3, "127.0.0.1:9096".to_string()));
        }
        let c = Cluster {
            brokers,
            topics: vec![TopicMeta {
                name: "chat-events".into(),
                internal: false,
                partitions: vec![(0, 1), (1, 2)],
                replicas: reps,
            }],
            racks: Default::default(),
        };
        let q = Quorum { leader: 1, leader_epoch: 1, voters: vec![1, 2, 3], observers: vec![] };
        ClusterView::build(&c, Some(&q))
    }

    #[test]
    fn a_dead_broker_and_its_under_replicated_partition_are_marked() {
        let v = view(true);
        let t = text(&lines(&v));
        assert!(t.contains("NO"), "{t}");
        assert!(t.contains("UNDER-REPLICATED"), "{t}");
        assert!(t.contains("chat-events  0"), "{t}");
        assert!(!t.contains("chat-events  1 "), "a healthy partition is not listed: {t}");
        assert_eq!(marker(&v).as_deref(), Some("1 UNDER-REPLICATED, 1 broker(s) DOWN"));
    }

    #[test]
    fn a_healthy_cluster_says_so() {
        let v = view(false);
        assert!(text(&lines(&v)).contains("every partition fully replicated"));
        assert_eq!(marker(&v), None);
    }
}
