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

/// The first row to show so that `selected` is on screen, moving as little as possible from
/// `offset` (as a scrolling table does).
fn window_start(offset: usize, selected: usize, visible: usize, len: usize) -> usize {
    let visible = visible.max(1);
    let mut start = offset.min(len.saturating_sub(visible));
    if selected < start {
        start = selected;
    } else if selected >= start + visible {
        start = selected + 1 - visible;
    }
    start
}

/// Decimal digits of a partition number (its column width without formatting it).
fn digits(mut n: i32) -> usize {
    let mut d = 1;
    while n >= 10 {
        n /= 10;
        d += 1;
    }
    d
}

pub fn draw(state: &State, frame: &mut Frame, area: Rect) {
    let all = rows::partitions(state);
    let focused = state.focus == Pane::Partitions;
    let dash = |v: Option<i64>| v.map(|x| x.to_string()).unwrap_or_else(|| "-".into());
    // Only the rows on screen are built: borders and header take 3 lines.
    let visible = area.height.saturating_sub(3) as usize;
    let selected = state.selected(Pane::Partitions).min(all.len().saturating_sub(1));
    let start = window_start(state.partitions_offset.get(), selected, visible, all.len());
    state.partitions_offset.set(start);
    let list = &all[start..(start + visible.max(1)).min(all.len())];
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
    // Widths from every row (cheap lengths, no formatting), so they do not change as it scrolls.
    let longest = |f: &dyn Fn(&&chat4all_ctl::view::PartitionView) -> usize, min: usize| {
        all.iter().map(f).max().unwrap_or(0).max(min) as u16
    };
    let part_w = longest(&|p| p.offsets.topic.len() + 1 + digits(p.offsets.partition), 9);
    let disputed: std::collections::HashSet<(&str, &str, i32)> = rows::groups(state)
        .into_iter()
        .flat_map(|g| g.disagreements.iter().map(move |d| (g.group.as_str(), d.topic.as_str(), d.partition)))
        .collect();
    let owner_w = longest(
        &|p| {
            let marked = disputed.contains(&(p.group.as_str(), p.offsets.topic.as_str(), p.offsets.partition));
            p.owner.as_ref().map_or(1, |o| o.instance.chars().count() + usize::from(marked))
        },
        5,
    );
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
    let mut ts = TableState::default().with_selected(if list.is_empty() { None } else { Some(selected - start) });
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
    fn the_window_follows_the_selection_and_moves_as_little_as_it_can() {
        assert_eq!(window_start(0, 0, 10, 100), 0);
        assert_eq!(window_start(0, 9, 10, 100), 0, "still on screen");
        assert_eq!(window_start(0, 10, 10, 100), 1, "one down");
        assert_eq!(window_start(50, 55, 10, 100), 50, "scrolled: stays");
        assert_eq!(window_start(50, 49, 10, 100), 49, "one up");
        assert_eq!(window_start(95, 99, 10, 100), 90, "never past the end");
        assert_eq!(window_start(7, 0, 10, 3), 0, "fewer rows than lines");
        assert_eq!(digits(0), 1);
        assert_eq!(digits(999), 3);
    }

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
