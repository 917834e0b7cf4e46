//! Drawing: a pure function of the state. Layout, top to bottom: instances, partitions,
//! timeline beside the throughput chart (or, in the pipeline view, the pipeline pane below the
//! instances), the status bar, and the prompt / key hints.

pub mod brokers;
mod chart;
mod instances;
mod partitions;
pub mod pipeline;
mod popup;
mod status;
mod timeline;

use ratatui::layout::{Constraint, Direction, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::widgets::{Block, BorderType, Borders};
use ratatui::Frame;

use crate::rows;
use crate::state::{Mode, Pane, State, View};

/// The regions of the screen.
struct Areas {
    instances: Rect,
    partitions: Rect,
    timeline: Rect,
    chart: Rect,
    status: Rect,
    prompt: Rect,
}

fn layout(state: &State, area: Rect) -> Areas {
    let [body, status, prompt] =
        Layout::vertical([Constraint::Min(0), Constraint::Length(1), Constraint::Length(1)]).areas(area);
    // Each table wants its rows + header + borders; on a small screen the focused one gets its
    // share first and the bottom row keeps at least 6 lines.
    let want_inst = rows::instances(state).len().max(1) as u16 + 3;
    let want_part = rows::partitions(state).len().max(1) as u16 + 3;
    let h = body.height;
    let room = h.saturating_sub(6);
    let (cap_inst, cap_part) = match state.focus {
        Pane::Instances => (room * 3 / 5, room * 2 / 5),
        Pane::Partitions => (room * 2 / 5, room * 3 / 5),
        Pane::Timeline => (room / 2, room / 2),
    };
    let mut inst = want_inst.min(cap_inst.max(4));
    let part = want_part.min(cap_part.max(4)).min(room.saturating_sub(inst).max(4));
    if inst + part > room {
        inst = room.saturating_sub(part).max(3);
    }
    let [instances, partitions, bottom] =
        Layout::vertical([Constraint::Length(inst), Constraint::Length(part), Constraint::Min(0)]).areas(body);
    let chart_pct = if bottom.width >= 100 { 40 } else { 45 };
    let [timeline, chart] = Layout::default()
        .direction(Direction::Horizontal)
        .constraints([Constraint::Percentage(100 - chart_pct), Constraint::Percentage(chart_pct)])
        .areas(bottom);
    Areas { instances, partitions, timeline, chart, status, prompt }
}

/// A pane's frame: highlighted when it has the focus.
fn pane_block(title: String, focused: bool) -> Block<'static> {
    let style = if focused {
        Style::default().fg(Color::Cyan).add_modifier(Modifier::BOLD)
    } else {
        Style::default().fg(Color::DarkGray)
    };
    Block::default()
        .borders(Borders::ALL)
        .border_type(if focused { BorderType::Thick } else { BorderType::Plain })
        .border_style(style)
        .title(title)
}

/// A whole-body view pane (pipeline, brokers): its lines and a title marker when `data` has
/// been read, why not when it could not be, "connecting..." before the first look.
fn draw_text_pane<T>(
    frame: &mut Frame,
    area: Rect,
    name: &str,
    data: Option<&Result<T, String>>,
    render: impl Fn(&T) -> (String, Vec<ratatui::text::Line<'static>>),
) {
    use ratatui::text::Line;
    use ratatui::widgets::{Paragraph, Wrap};
    let (title, body) = match data {
        Some(Ok(v)) => {
            let (marker, lines) = render(v);
            (format!(" {name}  {marker} "), lines)
        }
        Some(Err(e)) => {
            (format!(" {name} "), vec![Line::styled(format!("unknown: {e}"), Style::default().fg(Color::Red))])
        }
        None => (format!(" {name} "), vec![Line::styled("connecting...", Style::default().fg(Color::DarkGray))]),
    };
    frame.render_widget(Paragraph::new(body).wrap(Wrap { trim: false }).block(pane_block(title, true)), area);
}

/// The style of a selected row.
fn selected_style() -> Style {
    Style::default().add_modifier(Modifier::REVERSED)
}

/// Draws the whole screen.
pub fn draw(state: &State, frame: &mut Frame) {
    let a = layout(state, frame.area());
    match state.view {
        View::Overview => {
            instances::draw(state, frame, a.instances);
            partitions::draw(state, frame, a.partitions);
            timeline::draw(state, frame, a.timeline);
            chart::draw(state, frame, a.chart);
        }
        View::Pipeline => {
            // The pipeline pane takes the body below the instances (which the stalls refer to).
            let body = Rect { y: a.partitions.y, height: a.partitions.height + a.timeline.height, ..a.partitions };
            instances::draw(state, frame, a.instances);
            pipeline::draw(state, frame, body);
        }
        View::Brokers => {
            let body = Rect { y: a.partitions.y, height: a.partitions.height + a.timeline.height, ..a.partitions };
            instances::draw(state, frame, a.instances);
            brokers::draw(state, frame, body);
        }
    }
    status::draw_status(state, frame, a.status);
    status::draw_prompt(state, frame, a.prompt);
    match &state.mode {
        Mode::Help => popup::help(state, frame),
        Mode::Confirm(op) => popup::confirm(op, frame),
        _ => {}
    }
}
