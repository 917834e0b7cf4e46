//! `update` without a terminal: keys, modes, confirmations, read-only, data.

mod common;

use chat4all_tui::command::Op;
use chat4all_tui::keys::KeyMap;
use chat4all_tui::rows;
use chat4all_tui::state::{update, Action, Mode, Notice, Pane, State};
use common::*;
use crossterm::event::KeyCode;

#[test]
fn q_and_ctrl_c_quit() {
    let mut st = state_with_data(false, 1);
    update(&mut st, key('q'));
    assert!(st.quit);
    let mut st = state_with_data(false, 1);
    update(&mut st, key(':'));
    update(&mut st, ctrl('c'));
    assert!(st.quit, "ctrl-c quits even while typing a command");
}

#[test]
fn tab_and_arrows_move_focus_and_j_k_move_the_selection_within_bounds() {
    let mut st = state_with_data(false, 1);
    assert_eq!(st.focus, Pane::Instances);
    for _ in 0..20 {
        update(&mut st, key('j'));
    }
    assert_eq!(st.selected(Pane::Instances), 5, "clamped to the 6 instances");
    update(&mut st, code(KeyCode::Up));
    assert_eq!(st.selected(Pane::Instances), 4);
    update(&mut st, code(KeyCode::Tab));
    assert_eq!(st.focus, Pane::Partitions);
    update(&mut st, code(KeyCode::Right));
    assert_eq!(st.focus, Pane::Timeline);
    update(&mut st, code(KeyCode::Tab));
    assert_eq!(st.focus, Pane::Instances);
    update(&mut st, code(KeyCode::Left));
    assert_eq!(st.focus, Pane::Timeline);
    update(&mut st, code(KeyCode::BackTab));
    assert_eq!(st.focus, Pane::Partitions);
}

#[test]
fn x_on_an_instance_asks_then_kills_it() {
    let mut st = state_with_data(false, 1);
    for _ in 0..3 {
        update(&mut st, key('j'));
    }
    assert!(update(&mut st, key('x')).is_none(), "nothing runs before the confirmation");
    let want = Op::Act { verb: "kill", instance: "router-service-1".into() };
    assert_eq!(st.mode, Mode::Confirm(want.clone()));
    assert_eq!(update(&mut st, key('y')), Some(want));
    assert_eq!(st.mode, Mode::Normal);
    assert!(st.running.is_some());
    update(&mut st, Action::Done(Ok("killed router-service-1".into())));
    assert!(st.running.is_none());
    assert_eq!(st.notice, Some(Notice::Info("killed router-service-1".into())));
}

#[test]
fn x_on_a_partition_kills_its_owner_and_n_cancels() {
    let mut st = state_with_data(false, 1);
    update(&mut st, code(KeyCode::Tab));
    // The router group's partitions come first.
    update(&mut st, key('x'));
    assert_eq!(st.mode, Mode::Confirm(Op::Act { verb: "kill", instance: "router-service-1".into() }));
    update(&mut st, key('n'));
    update(&mut st, key('j'));
    update(&mut st, key('x'));
    assert_eq!(st.mode, Mode::Confirm(Op::Act { verb: "kill", instance: "message-service-1".into() }));
    assert!(update(&mut st, key('n')).is_none());
    assert_eq!(st.mode, Mode::Normal);
    update(&mut st, key('x'));
    assert!(update(&mut st, code(KeyCode::Esc)).is_none());
    assert_eq!(st.mode, Mode::Normal);
}

#[test]
fn other_keys_do_not_confirm() {
    let mut st = state_with_data(false, 1);
    update(&mut st, key('x'));
    for c in ['x', 'q', 'j', ' '] {
        assert!(update(&mut st, key(c)).is_none());
        assert!(matches!(st.mode, Mode::Confirm(_)), "{c:?} left the confirmation");
    }
    assert!(!st.quit);
    assert!(update(&mut st, code(KeyCode::Enter)).is_none());
}

#[test]
fn read_only_refuses_every_action() {
    let mut st = state_with_data(true, 1);
    for c in ['x', 's', 'p'] {
        assert!(update(&mut st, key(c)).is_none());
        assert_eq!(st.mode, Mode::Normal, "{c}");
        assert!(matches!(&st.notice, Some(Notice::Error(e)) if e.contains("read-only")));
    }
    update(&mut st, key(':'));
    type_text(&mut st, "kill router-service-1");
    assert!(update(&mut st, code(KeyCode::Enter)).is_none());
    assert_eq!(st.mode, Mode::Normal);
    assert!(matches!(&st.notice, Some(Notice::Error(e)) if e.contains("read-only")));
}

#[test]
fn s_prefills_the_current_router_count_and_p_one_more_partition() {
    let mut st = state_with_data(false, 1);
    update(&mut st, key('s'));
    assert_eq!(st.mode, Mode::Command);
    assert_eq!(st.input, "scale router=3");
    update(&mut st, code(KeyCode::Backspace));
    type_text(&mut st, "2");
    assert!(update(&mut st, code(KeyCode::Enter)).is_none());
    let op = Op::Scale { service: "router-service".into(), replicas: 2 };
    assert_eq!(st.mode, Mode::Confirm(op.clone()));
    assert_eq!(update(&mut st, key('y')), Some(op));

    let mut st = state_with_data(false, 1);
    update(&mut st, key('p'));
    assert_eq!(st.input, "repartition chat-events 2");
    update(&mut st, code(KeyCode::Enter));
    assert_eq!(st.mode, Mode::Confirm(Op::Repartition { topic: "chat-events".into(), partitions: 2 }));
}

#[test]
fn command_mode_runs_ctl_verbs_and_reports_bad_ones() {
    let mut st = state_with_data(false, 1);
    update(&mut st, key(':'));
    type_text(&mut st, "repartition chat-events 4");
    update(&mut st, code(KeyCode::Enter));
    assert_eq!(st.mode, Mode::Confirm(Op::Repartition { topic: "chat-events".into(), partitions: 4 }));
    update(&mut st, key('n'));

    update(&mut st, key(':'));
    type_text(&mut st, "scale router=-1");
    assert!(update(&mut st, code(KeyCode::Enter)).is_none());
    assert_eq!(st.mode, Mode::Normal);
    assert!(matches!(&st.notice, Some(Notice::Error(e)) if e.contains("whole number")));

    // start is harmless: it runs without a confirmation.
    update(&mut st, key(':'));
    type_text(&mut st, "start router-service-4");
    assert_eq!(
        update(&mut st, code(KeyCode::Enter)),
        Some(Op::Act { verb: "start", instance: "router-service-4".into() })
    );
    // One operation at a time.
    update(&mut st, key('x'));
    assert_eq!(st.mode, Mode::Normal);
    assert!(matches!(&st.notice, Some(Notice::Error(e)) if e.contains("busy")));

    update(&mut st, key(':'));
    type_text(&mut st, "quit");
    update(&mut st, code(KeyCode::Enter));
    assert!(st.quit);
}

#[test]
fn esc_leaves_command_mode_without_running_anything() {
    let mut st = state_with_data(false, 1);
    update(&mut st, key(':'));
    type_text(&mut st, "kill broker");
    assert!(update(&mut st, code(KeyCode::Esc)).is_none());
    assert_eq!(st.mode, Mode::Normal);
    assert!(st.input.is_empty());
}

#[test]
fn filter_narrows_every_pane_and_esc_clears_it() {
    let mut st = state_with_data(false, 1);
    assert_eq!(rows::instances(&st).len(), 6);
    update(&mut st, key('/'));
    type_text(&mut st, "router");
    assert_eq!(st.filter, "router", "applied while typing");
    update(&mut st, code(KeyCode::Enter));
    assert_eq!(st.mode, Mode::Normal);
    assert_eq!(rows::instances(&st).len(), 3);
    assert_eq!(rows::partitions(&st).len(), 1);
    assert!(rows::timeline(&st).iter().all(|e| e.text().contains("router")));
    update(&mut st, code(KeyCode::Esc));
    assert!(st.filter.is_empty());
    assert_eq!(rows::instances(&st).len(), 6);
}

#[test]
fn selection_stays_in_range_when_the_filter_shrinks_the_rows() {
    let mut st = state_with_data(false, 1);
    for _ in 0..5 {
        update(&mut st, key('j'));
    }
    update(&mut st, key('/'));
    type_text(&mut st, "broker");
    update(&mut st, code(KeyCode::Enter));
    assert_eq!(st.selected(Pane::Instances), 0);
    update(&mut st, key('x'));
    assert_eq!(st.mode, Mode::Confirm(Op::Act { verb: "kill", instance: "broker".into() }));
}

#[test]
fn help_opens_on_question_mark_and_any_key_closes_it() {
    let mut st = state_with_data(false, 1);
    update(&mut st, key('?'));
    assert_eq!(st.mode, Mode::Help);
    update(&mut st, key('j'));
    assert_eq!(st.mode, Mode::Normal);
    assert!(!st.quit);
}

#[test]
fn data_feeds_throughput_and_lag_trend_and_the_timeline_is_newest_first() {
    let st = state_with_data(false, 5);
    let r = st.throughput.latest().unwrap();
    assert_eq!((r.accepted, r.routed, r.delivered), (100.0, 100.0, 200.0));
    let trend = &st.lag_trend[&("router-service".to_string(), "chat-events".to_string(), 0)];
    assert_eq!(trend.len(), 5);
    let tl = rows::timeline(&st);
    assert!(tl.windows(2).all(|w| w[0].at() >= w[1].at()));
    assert!(tl[0].text().contains("assigned chat-events-0 ← kill router-service-2"), "{}", tl[0].text());
}

#[test]
fn ownership_follows_the_data() {
    let mut st = state_with_data(false, 1);
    assert_eq!(rows::owned_by(&st, "router-service-1"), "chat-events[0]");
    assert!(rows::is_standby(&st, "router-service-2"));
    update(&mut st, Action::Data(Box::new(snapshot(2, "router-service-3", 100.0))));
    assert_eq!(rows::owned_by(&st, "router-service-1"), "");
    assert!(rows::is_standby(&st, "router-service-1"));
    assert_eq!(rows::owned_by(&st, "router-service-3"), "chat-events[0]");
}

#[test]
fn a_disputed_owner_is_marked_and_the_router_group_leads() {
    let mut st = state_with_data(false, 1);
    let names = |st: &State| rows::groups(st).iter().map(|g| g.group.clone()).collect::<Vec<_>>();
    assert_eq!(names(&st), ["router-service", "message-service-status"]);
    let owners = |st: &State| rows::partitions(st).iter().map(|p| rows::owner(st, p)).collect::<Vec<_>>();
    assert!(owners(&st).iter().all(|(_, disputed)| !disputed));
    update(&mut st, Action::Data(Box::new(kip848_snapshot(2))));
    let owners = owners(&st);
    assert_eq!(owners[0], ("router-service-1!".to_string(), true));
    assert_eq!(owners[1], ("message-service-1".to_string(), false));
    // The marker is only drawn: x still kills the broker's owner.
    update(&mut st, code(KeyCode::Tab));
    update(&mut st, key('x'));
    assert!(matches!(&st.mode, Mode::Confirm(Op::Act { instance, .. }) if instance == "router-service-1"));
}

#[test]
fn remapped_keys_drive_update() {
    let keys = KeyMap::parse("kill = K\nquit = Q").unwrap();
    let mut st = State::new(keys, false);
    update(&mut st, Action::Data(Box::new(snapshot(0, "router-service-1", 0.0))));
    update(&mut st, key('x'));
    assert_eq!(st.mode, Mode::Normal, "x is no longer kill");
    update(&mut st, key('q'));
    assert!(!st.quit);
    update(&mut st, key('K'));
    assert!(matches!(st.mode, Mode::Confirm(_)));
    update(&mut st, key('n'));
    update(&mut st, key('Q'));
    assert!(st.quit);
}

#[test]
fn an_operation_failure_is_shown_as_an_error() {
    let mut st = state_with_data(false, 1);
    update(&mut st, Action::Done(Err("kill nope: unknown instance".into())));
    assert_eq!(st.notice, Some(Notice::Error("kill nope: unknown instance".into())));
}

#[test]
fn o_and_colon_pipeline_switch_to_the_pipeline_pane_and_esc_comes_back() {
    use chat4all_tui::state::View;
    let mut st = state_with_data(true, 1);
    assert_eq!(st.view, View::Overview);
    update(&mut st, key('o'));
    assert_eq!(st.view, View::Pipeline, "o works in read-only mode too: it only looks");
    update(&mut st, key('o'));
    assert_eq!(st.view, View::Overview, "o again goes back");
    update(&mut st, key(':'));
    type_text(&mut st, "pipeline");
    update(&mut st, code(KeyCode::Enter));
    assert_eq!(st.view, View::Pipeline);
    update(&mut st, code(KeyCode::Esc));
    assert_eq!(st.view, View::Overview, "esc goes back");
}
