//! Overlays: the help listing every key, and the confirmation of a destructive operation.

use ratatui::layout::{Constraint, Flex, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Wrap};
use ratatui::Frame;

use crate::command::Op;
use crate::keys::Command;
use crate::state::State;

fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let [v] = Layout::vertical([Constraint::Length(height.min(area.height))]).flex(Flex::Center).areas(area);
    let [h] = Layout::horizontal([Constraint::Length(width.min(area.width))]).flex(Flex::Center).areas(v);
    h
}

pub fn help(state: &State, frame: &mut Frame) {
    let mut lines: Vec<Line> = Command::ALL
        .into_iter()
        .filter(|c| !(state.read_only && c.destructive()))
        .map(|c| {
            Line::from(vec![
                Span::styled(format!("{:>12}  ", state.keys.label(c)), Style::default().fg(Color::Cyan)),
                Span::raw(c.describe()),
            ])
        })
        .collect();
    lines.push(Line::from(vec![
        Span::styled(format!("{:>12}  ", "ctrl-c"), Style::default().fg(Color::Cyan)),
        Span::raw("quit from anywhere"),
    ]));
    lines.push(Line::from(vec![
        Span::styled(
            format!("{:>12}  ", format!("owner{}", chat4all_ctl::view::DISPUTED)),
            Style::default().fg(Color::Red),
        ),
        Span::raw("an owner the members' own reports dispute"),
    ]));
    lines.push(Line::raw(""));
    if state.read_only {
        lines.push(Line::raw("read-only: kill, scale and repartition are disabled"));
    } else {
        lines.push(Line::raw(":scale router=3  :kill NAME  :restart NAME  :repartition chat-events 4"));
    }
    lines.push(Line::styled("any key closes this help", Style::default().fg(Color::DarkGray)));
    let area = centered(frame.area(), 78, lines.len() as u16 + 2);
    frame.render_widget(Clear, area);
    frame.render_widget(Paragraph::new(lines).block(Block::default().borders(Borders::ALL).title(" Keys ")), area);
}

pub fn confirm(op: &Op, frame: &mut Frame) {
    let area = centered(frame.area(), 60, 5);
    frame.render_widget(Clear, area);
    let text = vec![
        Line::styled(op.confirmation(), Style::default().add_modifier(Modifier::BOLD)),
        Line::styled("y: yes   n / esc: no", Style::default().fg(Color::Yellow)),
    ];
    frame.render_widget(
        Paragraph::new(text).wrap(Wrap { trim: true }).block(
            Block::default().borders(Borders::ALL).border_style(Style::default().fg(Color::Red)).title(" Confirm "),
        ),
        area,
    );
}
