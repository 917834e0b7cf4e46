//! The instances pane: service, instance, state, health, uptime, owned partitions, standby.

use ratatui::layout::{Constraint, Rect};
use ratatui::style::{Color, Style};
use ratatui::text::Span;
use ratatui::widgets::{Cell, Row, Table, TableState};
use ratatui::Frame;

use chat4all_ctl::output::human_duration;
use chat4all_ctl::runtime::InstanceState;

use super::{pane_block, selected_style};
use crate::rows;
use crate::state::{Pane, State};

pub fn draw(state: &State, frame: &mut Frame, area: Rect) {
    let list = rows::instances(state);
    let focused = state.focus == Pane::Instances;
    let wide = area.width >= 100;
    // The docker runtime's instances are containers: their ids, where there is room.
    let containers = area.width >= 120 && list.iter().any(|i| i.info.container.is_some());
    let now = state.data.as_ref().map(|d| d.at);
    let rows: Vec<Row> = list
        .iter()
        .map(|i| {
            let state_style = match i.info.state {
                InstanceState::Running => Style::default().fg(Color::Green),
                InstanceState::Starting | InstanceState::Stopping => Style::default().fg(Color::Yellow),
                _ => Style::default().fg(Color::Red),
            };
            let health_style = match i.health.as_str() {
                "up" => Style::default().fg(Color::Green),
                "-" => Style::default(),
                _ => Style::default().fg(Color::Red),
            };
            let uptime = match (i.info.started_at, now) {
                (Some(t), Some(now)) if i.info.state.is_alive() => human_duration((now - t).num_seconds().max(0)),
                _ => "-".into(),
            };
            let mut owns = rows::owned_by(state, &i.info.name);
            if rows::is_standby(state, &i.info.name) {
                owns = if owns.is_empty() { "standby".into() } else { format!("{owns} standby") };
            }
            let mut cells = vec![Cell::from(i.info.name.clone())];
            if wide {
                cells.push(Cell::from(i.info.service.clone()));
            }
            cells.extend([
                Cell::from(Span::styled(i.info.state.as_str(), state_style)),
                Cell::from(Span::styled(i.health.clone(), health_style)),
                Cell::from(uptime),
                Cell::from(if owns.is_empty() { "-".to_string() } else { owns }),
            ]);
            if containers {
                cells.push(Cell::from(i.info.container.clone().unwrap_or_else(|| "-".into())));
            }
            Row::new(cells)
        })
        .collect();
    let mut header = vec!["INSTANCE"];
    let mut widths = vec![Constraint::Length(21)];
    if wide {
        header.push("SERVICE");
        widths.push(Constraint::Length(19));
    }
    header.extend(["STATE", "HEALTH", "UPTIME", "OWNS"]);
    widths.extend([Constraint::Length(8), Constraint::Length(11), Constraint::Length(7), Constraint::Fill(1)]);
    if containers {
        header.push("CONTAINER");
        widths.push(Constraint::Length(12));
    }
    let title = format!(" Instances ({}) ", list.len());
    let table = Table::new(rows, widths)
        .header(Row::new(header).style(Style::default().fg(Color::Yellow)))
        .block(pane_block(title, focused))
        .row_highlight_style(if focused { selected_style() } else { Style::default() });
    let mut ts =
        TableState::default().with_selected(if list.is_empty() { None } else { Some(state.selected(Pane::Instances)) });
    frame.render_stateful_widget(table, area, &mut ts);
}
