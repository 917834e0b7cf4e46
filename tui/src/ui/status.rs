//! The status bar (broker, PostgreSQL, Redis reachability, the runtime, the last error) and the
//! bottom line (the filter or command being typed, the last notice, or key hints).

use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

use crate::keys::Command;
use crate::snapshot::Reach;
use crate::state::{Mode, Notice, State};

fn reach<'a>(name: &'a str, r: Option<&Reach>) -> Vec<Span<'a>> {
    let (text, style) = match r {
        Some(Ok(_)) => ("ok", Style::default().fg(Color::Green)),
        Some(Err(_)) => ("DOWN", Style::default().fg(Color::White).bg(Color::Red).add_modifier(Modifier::BOLD)),
        None => ("?", Style::default().fg(Color::DarkGray)),
    };
    vec![Span::raw(format!("{name} ")), Span::styled(text, style), Span::raw("  ")]
}

pub fn draw_status(state: &State, frame: &mut Frame, area: Rect) {
    let d = state.data.as_ref();
    let mut spans = Vec::new();
    spans.extend(reach("broker", d.map(|d| &d.broker)));
    spans.extend(reach("postgres", d.map(|d| &d.postgres)));
    spans.extend(reach("redis", d.map(|d| &d.redis)));
    spans.extend(reach("runtime", d.map(|d| &d.runtime)));
    // The stalls marker: the stage holding the oldest pending message, wherever it is.
    if let Some(marker) = d.and_then(|d| d.pipeline.as_ref().ok()).and_then(|p| chat4all_ctl::stalls::marker(&p.stalls))
    {
        spans.push(Span::styled(marker, Style::default().fg(Color::White).bg(Color::Red).add_modifier(Modifier::BOLD)));
        spans.push(Span::raw("  "));
    }
    match d {
        None => spans.push(Span::styled("connecting...", Style::default().fg(Color::DarkGray))),
        Some(d) => match d.first_error() {
            Some(e) => spans.push(Span::styled(e, Style::default().fg(Color::Red))),
            None => {
                let rt = d.runtime.as_ref().map(String::as_str).unwrap_or_default();
                spans.push(Span::styled(rt.to_string(), Style::default().fg(Color::DarkGray)));
            }
        },
    }
    frame.render_widget(Paragraph::new(Line::from(spans)).style(Style::default().bg(Color::Black)), area);
}

pub fn draw_prompt(state: &State, frame: &mut Frame, area: Rect) {
    let line = match &state.mode {
        Mode::Filter => Line::from(vec![
            Span::styled("/", Style::default().fg(Color::Cyan)),
            Span::raw(&state.input),
            Span::raw("█"),
        ]),
        Mode::Command => Line::from(vec![
            Span::styled(":", Style::default().fg(Color::Cyan)),
            Span::raw(&state.input),
            Span::raw("█"),
        ]),
        Mode::Confirm(_) => Line::from(Span::styled("confirm: y / n", Style::default().fg(Color::Yellow))),
        // While an operation runs, its latest progress line in yellow; then its outcome.
        Mode::Normal | Mode::Help => match (&state.notice, &state.running) {
            (Some(Notice::Error(e)), _) => Line::from(Span::styled(e.clone(), Style::default().fg(Color::Red))),
            (Some(Notice::Info(s)), Some(_)) => Line::from(Span::styled(s.clone(), Style::default().fg(Color::Yellow))),
            (None, Some(r)) => Line::from(Span::styled(r.clone(), Style::default().fg(Color::Yellow))),
            (Some(Notice::Info(s)), None) => Line::from(Span::styled(s.clone(), Style::default().fg(Color::Green))),
            (None, None) => hints(state),
        },
    };
    let line = if !state.filter.is_empty() && matches!(state.mode, Mode::Normal) {
        let mut spans = vec![Span::styled(format!("[/{}] ", state.filter), Style::default().fg(Color::Cyan))];
        spans.extend(line.spans);
        Line::from(spans)
    } else {
        line
    };
    frame.render_widget(Paragraph::new(line), area);
}

fn hints(state: &State) -> Line<'static> {
    let k = &state.keys;
    let mut parts = vec![
        format!("{} help", k.label(Command::Help)),
        format!("{} quit", k.label(Command::Quit)),
        format!("{} pane", k.label(Command::NextPane).split('/').next().unwrap_or_default()),
        format!("{} filter", k.label(Command::Filter)),
        format!("{} cmd", k.label(Command::CommandMode)),
    ];
    if state.read_only {
        parts.push("[read-only]".into());
    } else {
        parts.push(format!("{} kill", k.label(Command::Kill)));
        parts.push(format!("{} scale", k.label(Command::Scale)));
        parts.push(format!("{} repartition", k.label(Command::Repartition)));
    }
    Line::from(Span::styled(parts.join("  "), Style::default().fg(Color::DarkGray)))
}
