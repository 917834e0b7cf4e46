//! Every view drawn on a `TestBackend` at fixed sizes, compared with reviewed snapshots
//! (tests/snapshots/*.snap; `cargo insta review` or INSTA_UPDATE=always to accept changes).

mod common;

use chat4all_tui::state::{update, Action, State};
use chat4all_tui::ui;
use common::*;
use crossterm::event::KeyCode;
use ratatui::backend::TestBackend;
use ratatui::Terminal;

/// The screen as text, one line per row (styles left out).
fn render(state: &State, width: u16, height: u16) -> String {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal.draw(|f| ui::draw(state, f)).unwrap();
    let buf = terminal.backend().buffer();
    let mut out = String::new();
    for y in 0..height {
        let line: String = (0..width).map(|x| buf[(x, y)].symbol()).collect();
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[test]
fn dashboard_80x24() {
    insta::assert_snapshot!(render(&state_with_data(false, 30), 80, 24));
}

#[test]
fn dashboard_120x40() {
    insta::assert_snapshot!(render(&state_with_data(false, 30), 120, 40));
}

#[test]
fn partitions_focused_80x24() {
    let mut st = state_with_data(false, 30);
    update(&mut st, code(KeyCode::Tab));
    insta::assert_snapshot!(render(&st, 80, 24));
}

#[test]
fn kip848_group_reconciling_with_a_disputed_owner_120x40() {
    let mut st = state_with_data(false, 3);
    update(&mut st, Action::Data(Box::new(kip848_snapshot(3))));
    let screen = render(&st, 120, 40);
    assert!(screen.contains("router-service [consumer epoch 7, 1 reconciling]"), "{screen}");
    assert!(screen.contains("router-service-1!"), "{screen}");
    insta::assert_snapshot!(screen);
}

#[test]
fn kip848_partitions_focused_80x24() {
    let mut st = state_with_data(false, 3);
    update(&mut st, Action::Data(Box::new(kip848_snapshot(3))));
    update(&mut st, code(KeyCode::Tab));
    let screen = render(&st, 80, 24);
    assert!(screen.contains("router-service-1!"), "{screen}");
    insta::assert_snapshot!(screen);
}

#[test]
fn help_overlay_80x24() {
    let mut st = state_with_data(false, 3);
    update(&mut st, key('?'));
    insta::assert_snapshot!(render(&st, 80, 24));
}

#[test]
fn help_overlay_read_only_hides_actions() {
    let mut st = state_with_data(true, 3);
    update(&mut st, key('?'));
    let screen = render(&st, 80, 24);
    assert!(!screen.contains("kill the selected"), "{screen}");
    insta::assert_snapshot!(screen);
}

#[test]
fn kill_confirmation_80x24() {
    let mut st = state_with_data(false, 3);
    for _ in 0..3 {
        update(&mut st, key('j'));
    }
    update(&mut st, key('x'));
    insta::assert_snapshot!(render(&st, 80, 24));
}

#[test]
fn command_mode_prefilled_scale_80x24() {
    let mut st = state_with_data(false, 3);
    update(&mut st, key('s'));
    insta::assert_snapshot!(render(&st, 80, 24));
}

#[test]
fn filter_80x24() {
    let mut st = state_with_data(false, 3);
    update(&mut st, key('/'));
    type_text(&mut st, "router");
    update(&mut st, code(KeyCode::Enter));
    insta::assert_snapshot!(render(&st, 80, 24));
}

#[test]
fn broker_and_runtime_down_80x24() {
    let mut st = state_with_data(false, 3);
    let mut s = snapshot(4, "router-service-1", 300.0);
    s.groups.clear();
    s.instances.clear();
    s.actions.clear();
    s.broker = Err("Meta data fetch error: BrokerTransportFailure".into());
    s.runtime = Err("the supervisor at http://127.0.0.1:7070 does not answer".into());
    update(&mut st, Action::Data(Box::new(s)));
    let screen = render(&st, 80, 24);
    assert!(screen.contains("broker DOWN"), "{screen}");
    insta::assert_snapshot!(screen);
}

#[test]
fn before_any_data_and_tiny_terminals_do_not_panic() {
    let st = State::new(Default::default(), false);
    let screen = render(&st, 80, 24);
    assert!(screen.contains("connecting..."), "{screen}");
    let st = state_with_data(false, 3);
    for (w, h) in [(1, 1), (10, 5), (40, 10), (80, 3), (300, 100)] {
        render(&st, w, h);
    }
}

#[test]
fn pipeline_pane_without_the_message_service_80x24() {
    let mut st = state_with_data(false, 3);
    update(&mut st, key('o'));
    let screen = render(&st, 80, 24);
    assert!(screen.contains("Pipeline"), "{screen}");
    assert!(screen.contains("unknown: not checked yet"), "{screen}");
    insta::assert_snapshot!(screen);
}
