//! The pipeline pane: what Kafka lag cannot see. The outbox relay (state, pause lease, leader),
//! the outbox backlog, its oldest row and the publish rate, per channel the oldest delivery not final, provider
//! deliveries per second and error rate (the connectors' counters), the DLQ depth (dead letters
//! still FAILED), and the stage that holds the oldest pending message.

use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::Frame;

use crate::snapshot::PipelineSnap;
use crate::state::State;

/// The pane's lines (also what the tests read).
pub fn lines(p: &PipelineSnap) -> Vec<Line<'static>> {
    let dim = Style::default().fg(Color::DarkGray);
    let bad = Style::default().fg(Color::Red).add_modifier(Modifier::BOLD);
    let label = |s: &str| Span::styled(format!("{s:<9}"), Style::default().fg(Color::Cyan));
    let r = &p.relay;
    let relay = match &r.paused {
        Some(pause) => Span::styled(
            format!(
                "PAUSED by {} since {} until {}",
                pause.by,
                pause.since.format("%H:%M:%S"),
                pause.until.format("%H:%M:%S")
            ),
            Style::default().fg(Color::Yellow).add_modifier(Modifier::BOLD),
        ),
        None if r.leader.is_some() => Span::styled("running", Style::default().fg(Color::Green)),
        None => Span::styled("no leader", bad),
    };
    let leader = match (&r.leader, r.leader_since) {
        (Some(l), Some(since)) => format!("{l} (epoch {}, since {})", r.leader_epoch, since.format("%H:%M:%S")),
        (Some(l), None) => l.clone(),
        _ => "none".into(),
    };
    let mut out = vec![
        Line::from(vec![label("relay"), relay, Span::styled(format!("   lease holder/leader: {leader}"), dim)]),
        Line::from(vec![
            label("outbox"),
            Span::raw(format!("{} rows, oldest {:.1}s", r.backlog, r.oldest_seconds)),
            Span::raw(p.outbox_published_per_second.map(|v| format!(", publishing {v:.1}/s")).unwrap_or_default()),
        ]),
    ];
    let dlq = match (&p.dlq, &p.dlq_error) {
        (Some(d), _) => {
            let style = if d.total > 0 { Style::default().fg(Color::Yellow) } else { Style::default() };
            Span::styled(format!("{} still FAILED, {} records on chat-events-dlq", d.total, d.letters), style)
        }
        (None, Some(e)) => Span::styled(format!("unknown: {e}"), dim),
        (None, None) => Span::styled("unknown", dim),
    };
    out.push(Line::from(vec![label("dlq"), dlq]));
    out.push(Line::raw(""));
    let table = chat4all_ctl::pipeline::table(&p.channels);
    for (i, row) in table.lines().enumerate() {
        let style = if i == 0 { Style::default().add_modifier(Modifier::BOLD) } else { Style::default() };
        out.push(Line::styled(row.to_string(), style));
    }
    out.push(Line::raw(""));
    if p.stalls.is_empty() {
        out.push(Line::from(vec![label("stalls"), Span::styled("none", Style::default().fg(Color::Green))]));
    }
    for s in &p.stalls {
        let place = s.channel.clone().unwrap_or_else(|| "outbox".into());
        out.push(Line::from(vec![
            label("STALL"),
            Span::styled(format!("{place} {:.0}s ", s.oldest_seconds), bad),
            Span::raw(s.reason.clone()),
        ]));
    }
    out
}

pub fn draw(state: &State, frame: &mut Frame, area: Rect) {
    super::draw_text_pane(frame, area, "Pipeline", state.data.as_ref().map(|d| &d.pipeline), |p| {
        (chat4all_ctl::stalls::marker(&p.stalls).unwrap_or_else(|| "no stalls".into()), lines(p))
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use chat4all_ctl::contract::admin::relay::{Pause, RelayState};
    use chat4all_ctl::pipeline::ChannelRow;
    use chat4all_ctl::stalls::{Stage, Stall};

    fn text(lines: &[Line]) -> String {
        lines.iter().map(|l| l.spans.iter().map(|s| s.content.as_ref()).collect::<String>() + "\n").collect()
    }

    #[test]
    fn a_paused_relay_its_channels_and_the_stall() {
        let now = chrono::Utc::now();
        let p = PipelineSnap {
            relay: RelayState {
                paused: Some(Pause { by: "repartition@h:1".into(), since: now, until: now }),
                backlog: 12,
                oldest_seconds: 8.5,
                leader: Some("message-service-1".into()),
                leader_since: Some(now),
                leader_epoch: 2,
            },
            outbox_published_per_second: Some(0.0),
            channels: vec![ChannelRow {
                channel: "telegram".into(),
                oldest_pending_seconds: 8.5,
                oldest_pending_status: Some("PENDING".into()),
                deliveries_per_second: Some(0.0),
                error_rate: Some(1.0),
                dlq_depth: Some(3),
            }],
            stalls: vec![Stall {
                stage: Stage::RelayPaused,
                channel: None,
                oldest_seconds: 8.5,
                reason: "relay paused by repartition@h:1".into(),
            }],
            dlq: None,
            dlq_error: Some("broker down".into()),
        };
        let t = text(&lines(&p));
        assert!(t.contains("PAUSED by repartition@h:1"), "{t}");
        assert!(t.contains("12 rows, oldest 8.5s, publishing 0.0/s"), "{t}");
        assert!(t.contains("unknown: broker down"), "{t}");
        assert!(t.contains("telegram") && t.contains("100.0%"), "{t}");
        assert!(t.contains("STALL    outbox 8s"), "{t}");
    }
}
