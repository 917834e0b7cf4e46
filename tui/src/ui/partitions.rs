//! The partitions pane: one row per partition of every group, as kafka-consumer-groups
//! --describe prints it, plus owner, lag in seconds, status and a lag sparkline.

use ratatui::layout::{Constraint, Rect};
use ratatui::style::{Color, Style};
use ratatui::text::Span;
use ratatui::widgets::{Cell, Row, Table, TableState};
use ratatui::Frame;

use chat4all_ctl::lag::LagStatus;

use super::{pane_block, selected_style};
use crate::rows;
use crate::state::{Pane, State};

const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// A text sparkline of `values` (scaled to their own maximum), `width` characters at most.
pub fn sparkline<'a>(values: impl DoubleEndedIterator<Item = &'a i64> + Clone, width: usize) -> String {
    let tail: Vec<i64> = values.rev().take(width).copied().collect::<Vec<_>>().into_iter().rev().collect();
    let max = tail.iter().copied().max().unwrap_or(0);
    tail.iter()
        .map(|v| if max <= 0 { BARS[0] } else { BARS[((*v as f64 / max as f64) * 7.0).round() as usize] })
        .collect()
}

fn status_style(s: LagStatus) -> Style {
    match s {
        LagStatus::Ok => Style::default().fg(Color::Green),
        LagStatus::Unknown => Style::default().fg(Color::DarkGray),
        LagStatus::Warn => Style::default().fg(Color::Yellow),
        _ => Style::default().fg(Color::Red),
    }
}

pub fn draw(state: &State, frame: &mut Frame, area: Rect) {
    let list = rows::partitions(state);
    let focused = state.focus == Pane::Partitions;
    let dash = |v: Option<i64>| v.map(|x| x.to_string()).unwrap_or_else(|| "-".into());
    let owners: Vec<(String, bool)> = list.iter().map(|p| rows::owner(state, p)).collect();
    let rows: Vec<Vec<Cell>> = list
        .iter()
        .zip(&owners)
        .map(|(p, (owner, disputed))| {
            let key = (p.group.clone(), p.offsets.topic.clone(), p.offsets.partition);
            let trend = state.lag_trend.get(&key).map(|t| sparkline(t.iter(), 6)).unwrap_or_default();
            let owner_style = if *disputed { Style::default().fg(Color::Red) } else { Style::default() };
            vec![
                Cell::from(format!("{}-{}", p.offsets.topic, p.offsets.partition)),
                Cell::from(Span::styled(owner.clone(), owner_style)),
                Cell::from(dash(p.offsets.committed)),
                Cell::from(p.offsets.log_end.to_string()),
                Cell::from(dash(p.offsets.lag)),
                Cell::from(p.lag_seconds.map(|s| format!("{s:.1}")).unwrap_or_else(|| "-".into())),
                Cell::from(Span::styled(p.status.to_string(), status_style(p.status))),
                Cell::from(Span::styled(trend, Style::default().fg(Color::Magenta))),
            ]
        })
        .collect();
    let longest = |f: &dyn Fn(&&chat4all_ctl::view::PartitionView) -> usize, min: usize| {
        list.iter().map(f).max().unwrap_or(0).max(min) as u16
    };
    let part_w = longest(&|p| p.offsets.topic.len() + 1 + p.offsets.partition.to_string().len(), 9);
    let owner_w = owners.iter().map(|(o, _)| o.chars().count()).max().unwrap_or(0).max(5) as u16;
    // Numbers, status and trend are fixed and the owner is never cut; the group column only
    // shows on wide screens (the title names the groups) and is cut first.
    let fixed: u16 = 7 + 7 + 5 + 5 + 6 + 6 + 8;
    let room = area.width.saturating_sub(2 + fixed + owner_w);
    let part_w = part_w.min(room);
    let group_w = longest(&|p| p.group.len(), 5).min(room.saturating_sub(part_w + 1));
    let show_group = area.width >= 100 && group_w >= 5;
    let mut header = vec!["PARTITION", "OWNER", "CURRENT", "LOG-END", "LAG", "LAG-S", "STATUS", "TREND"];
    let mut widths = vec![
        Constraint::Length(part_w),
        Constraint::Length(owner_w),
        Constraint::Length(7),
        Constraint::Length(7),
        Constraint::Length(5),
        Constraint::Length(5),
        Constraint::Length(6),
        Constraint::Length(6),
    ];
    let rows: Vec<Row> = if show_group {
        header.insert(0, "GROUP");
        widths.insert(0, Constraint::Length(group_w));
        rows.into_iter()
            .zip(list.iter())
            .map(|(cells, p)| {
                let mut c = vec![Cell::from(p.group.clone())];
                c.extend(cells);
                Row::new(c)
            })
            .collect()
    } else {
        rows.into_iter().map(Row::new).collect()
    };
    // The groups in the order of their rows, so a narrow title still shows the router group.
    let summary = rows::groups(state).into_iter().map(group_summary).collect::<Vec<_>>().join(" | ");
    let title = if summary.is_empty() { " Partitions ".to_string() } else { format!(" Partitions: {summary} ") };
    let table = Table::new(rows, widths)
        .header(Row::new(header).style(Style::default().fg(Color::Yellow)))
        .column_spacing(1)
        .block(pane_block(title, focused))
        .row_highlight_style(if focused { selected_style() } else { Style::default() });
    let mut ts = TableState::default().with_selected(if list.is_empty() {
        None
    } else {
        Some(state.selected(Pane::Partitions))
    });
    frame.render_stateful_widget(table, area, &mut ts);
}

/// One group in the pane's title: name, state, lag and status; a KIP-848 group also names its
/// protocol, epoch and members still reconciling, and any group the partitions the instances'
/// reports dispute.
fn group_summary(g: &chat4all_ctl::view::GroupView) -> String {
    let mut s = g.group.clone();
    if g.group_type == chat4all_ctl::kafka::GroupType::Consumer {
        s.push_str(" [consumer");
        if let Some(e) = g.group_epoch {
            s.push_str(&format!(" epoch {e}"));
        }
        if g.reconciling > 0 {
            s.push_str(&format!(", {} reconciling", g.reconciling));
        }
        s.push(']');
    }
    s.push_str(&format!(" {} lag {} {}", g.state, g.total_lag, g.status));
    if !g.disagreements.is_empty() {
        s.push_str(&format!(" ({} disputed by reports)", g.disagreements.len()));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparkline_scales_to_its_maximum_and_keeps_the_newest() {
        let v = [0i64, 5, 10];
        assert_eq!(sparkline(v.iter(), 8), "▁▅█");
        let flat = [0i64; 4];
        assert_eq!(sparkline(flat.iter(), 8), "▁▁▁▁");
        let long: Vec<i64> = (0..20).collect();
        assert_eq!(sparkline(long.iter(), 4).chars().count(), 4);
    }
}

#[cfg(test)]
mod summary_tests {
    use super::group_summary;
    use chat4all_ctl::kafka::GroupType;
    use chat4all_ctl::lag::LagStatus;
    use chat4all_ctl::ownership::Disagreement;
    use chat4all_ctl::view::GroupView;

    fn group() -> GroupView {
        GroupView {
            group: "router-service".into(),
            group_type: GroupType::Classic,
            state: "Stable".into(),
            protocol: "cooperative-sticky".into(),
            group_epoch: None,
            assignment_epoch: None,
            members: 3,
            reconciling: 0,
            disagreements: vec![],
            partitions: vec![],
            standby: vec![],
            stale_reports: vec![],
            total_lag: 5,
            status: LagStatus::Ok,
            max_lag_seconds: None,
        }
    }

    #[test]
    fn a_classic_group_is_name_state_lag_status() {
        assert_eq!(group_summary(&group()), "router-service Stable lag 5 OK");
    }

    #[test]
    fn a_kip848_group_names_its_epoch_and_reconciling_members_and_disputes_show() {
        let mut g = group();
        g.group_type = GroupType::Consumer;
        g.group_epoch = Some(7);
        g.reconciling = 1;
        g.disagreements =
            vec![Disagreement { topic: "chat-events".into(), partition: 0, broker: None, reported_by: vec![] }];
        assert_eq!(
            group_summary(&g),
            "router-service [consumer epoch 7, 1 reconciling] Stable lag 5 OK (1 disputed by reports)"
        );
    }
}
