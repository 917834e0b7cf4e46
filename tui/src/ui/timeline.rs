//! The rebalance timeline, newest first: assigned / revoked partitions per instance with the
//! operator action that caused them, and the operator actions themselves (highlighted). Times
//! are UTC, as in `chat4allctl events`.

use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{List, ListItem, ListState};
use ratatui::Frame;

use super::{pane_block, selected_style};
use crate::rows::{self, Entry};
use crate::state::{Pane, State};

pub fn draw(state: &State, frame: &mut Frame, area: Rect) {
    let entries = rows::timeline(state);
    let focused = state.focus == Pane::Timeline;
    let items: Vec<ListItem> = entries
        .iter()
        .map(|e| {
            let time = Span::styled(e.at().format("%H:%M:%S ").to_string(), Style::default().fg(Color::DarkGray));
            let body = match e {
                Entry::Action(_) => {
                    Span::styled(e.text(), Style::default().fg(Color::Yellow).add_modifier(Modifier::BOLD))
                }
                Entry::Rebalance(_) => Span::raw(e.text()),
            };
            ListItem::new(Line::from(vec![time, body]))
        })
        .collect();
    let list = List::new(items)
        .block(pane_block(format!(" Timeline ({}) ", entries.len()), focused))
        .highlight_style(if focused { selected_style() } else { Style::default() });
    let mut ls = ListState::default().with_selected(if entries.is_empty() {
        None
    } else {
        Some(state.selected(Pane::Timeline))
    });
    frame.render_stateful_widget(list, area, &mut ls);
}
