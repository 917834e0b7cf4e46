//! Throughput: messages accepted, routed and delivered per second over the last two minutes,
//! with operator actions drawn as vertical markers where they happened.

use ratatui::layout::Rect;
use ratatui::style::{Color, Style};
use ratatui::symbols::Marker;
use ratatui::text::Span;
use ratatui::widgets::{Axis, Chart, Dataset, GraphType};
use ratatui::Frame;

use super::pane_block;
use crate::state::State;
use crate::throughput::History;

pub fn draw(state: &State, frame: &mut Frame, area: Rect) {
    let now = state.data.as_ref().map(|d| d.at.timestamp_millis() as f64 / 1000.0).unwrap_or(0.0);
    let span = History::SPAN;
    let series = |f: fn(&crate::throughput::Rates) -> f64| -> Vec<(f64, f64)> {
        state.throughput.points().map(|(t, r)| (t - now, f(r))).collect()
    };
    let accepted = series(|r| r.accepted);
    let routed = series(|r| r.routed);
    let delivered = series(|r| r.delivered);
    let ymax = accepted.iter().chain(&routed).chain(&delivered).map(|(_, y)| *y).fold(1.0_f64, f64::max) * 1.1;
    let markers: Vec<Vec<(f64, f64)>> = state
        .data
        .as_ref()
        .map(|d| {
            d.actions
                .iter()
                .map(|a| a.at.timestamp_millis() as f64 / 1000.0 - now)
                .filter(|x| *x >= -span && *x <= 0.0)
                .map(|x| vec![(x, 0.0), (x, ymax)])
                .collect()
        })
        .unwrap_or_default();
    let mut datasets: Vec<Dataset> = markers
        .iter()
        .map(|m| {
            Dataset::default()
                .marker(Marker::Braille)
                .graph_type(GraphType::Line)
                .style(Style::default().fg(Color::Yellow))
                .data(m)
        })
        .collect();
    for (data, color) in [(&accepted, Color::Cyan), (&routed, Color::Green), (&delivered, Color::Magenta)] {
        datasets.push(
            Dataset::default()
                .marker(Marker::Braille)
                .graph_type(GraphType::Line)
                .style(Style::default().fg(color))
                .data(data),
        );
    }
    let latest = state.throughput.latest().unwrap_or_default();
    let title = format!(" msg/s acc {:.0} rt {:.0} dlv {:.0} ", latest.accepted, latest.routed, latest.delivered);
    let chart = Chart::new(datasets)
        .block(pane_block(title, false))
        .x_axis(
            Axis::default()
                .bounds([-span, 0.0])
                .labels([Span::raw(format!("-{span:.0}s")), Span::raw("now")])
                .style(Style::default().fg(Color::DarkGray)),
        )
        .y_axis(
            Axis::default()
                .bounds([0.0, ymax])
                .labels([Span::raw("0"), Span::raw(format!("{ymax:.0}"))])
                .style(Style::default().fg(Color::DarkGray)),
        );
    frame.render_widget(chart, area);
}
