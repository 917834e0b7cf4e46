//! The dashboard's state and `update`: every input (a key, new data, an operation's result)
//! arrives as an [`Action`]; `update` changes the state and may ask for an [`Op`] to run.
//! No terminal and no I/O here, so all of it is unit-tested.

use std::collections::{BTreeMap, VecDeque};

use crossterm::event::{KeyCode, KeyEvent};

use crate::command::{self, Op, Parsed};
use crate::keys::{Command, Key, KeyMap};
use crate::rows;
use crate::snapshot::Snapshot;
use crate::throughput;

/// Everything that can happen to the dashboard.
#[derive(Debug, Clone)]
pub enum Action {
    Key(KeyEvent),
    /// A new look at the platform from the background source.
    Data(Box<Snapshot>),
    /// A line of progress from a running operation.
    Progress(String),
    /// An operation finished: what it did, or why it failed.
    Done(Result<String, String>),
    /// The terminal was resized (nothing to change: the next draw uses the new size).
    Resize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pane {
    Instances,
    Partitions,
    Timeline,
}

impl Pane {
    pub const ALL: [Pane; 3] = [Pane::Instances, Pane::Partitions, Pane::Timeline];

    fn index(self) -> usize {
        match self {
            Pane::Instances => 0,
            Pane::Partitions => 1,
            Pane::Timeline => 2,
        }
    }
}

/// What the body of the screen shows (k9s habit: one key, or `:pipeline`, switches views).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum View {
    /// Instances, partitions, timeline and throughput.
    #[default]
    Overview,
    /// The pipeline pane: relay, outbox, per channel oldest pending, deliveries/s, provider
    /// errors, DLQ depth, and the stalls.
    Pipeline,
    /// The brokers pane: every broker (alive, controller, partitions led) and the partitions that
    /// are under-replicated or offline.
    Brokers,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    Normal,
    Help,
    /// Typing a filter after `/`.
    Filter,
    /// Typing a command after `:`.
    Command,
    /// Waiting for `y` / `n` on an operation.
    Confirm(Op),
}

/// What the status line says about the last thing the operator did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    Info(String),
    Error(String),
}

/// Lag samples kept per partition for the sparkline.
pub const SPARK_LEN: usize = 16;

pub struct State {
    pub read_only: bool,
    pub keys: KeyMap,
    pub mode: Mode,
    /// The text being typed in filter or command mode.
    pub input: String,
    /// The filter applied to every pane.
    pub filter: String,
    pub focus: Pane,
    pub view: View,
    selected: [usize; 3],
    pub data: Option<Snapshot>,
    pub throughput: throughput::History,
    /// (group, topic, partition) -> recent lag, oldest first.
    pub lag_trend: BTreeMap<(String, String, i32), VecDeque<i64>>,
    pub notice: Option<Notice>,
    /// The operation running now, if any (one at a time).
    pub running: Option<String>,
    pub quit: bool,
    /// First partition row on screen, kept by the draw (which only builds the rows it shows:
    /// a cluster's 30,000 partitions cost a frame what its 50 visible ones cost).
    pub partitions_offset: std::cell::Cell<usize>,
}

impl State {
    pub fn new(keys: KeyMap, read_only: bool) -> Self {
        Self {
            read_only,
            keys,
            mode: Mode::Normal,
            input: String::new(),
            filter: String::new(),
            focus: Pane::Instances,
            view: View::Overview,
            selected: [0; 3],
            data: None,
            throughput: throughput::History::default(),
            lag_trend: BTreeMap::new(),
            notice: None,
            running: None,
            quit: false,
            partitions_offset: std::cell::Cell::new(0),
        }
    }

    /// The selected row of `pane`, clamped to the rows it shows now.
    pub fn selected(&self, pane: Pane) -> usize {
        let len = self.rows_in(pane);
        self.selected[pane.index()].min(len.saturating_sub(1))
    }

    fn rows_in(&self, pane: Pane) -> usize {
        match pane {
            Pane::Instances => rows::instances(self).len(),
            Pane::Partitions => rows::partitions(self).len(),
            Pane::Timeline => rows::timeline(self).len(),
        }
    }

    fn set_selected(&mut self, pane: Pane, v: usize) {
        self.selected[pane.index()] = v;
    }

    fn info(&mut self, s: impl Into<String>) {
        self.notice = Some(Notice::Info(s.into()));
    }

    fn error(&mut self, s: impl Into<String>) {
        self.notice = Some(Notice::Error(s.into()));
    }
}

/// Applies one action; returns the operation to run, if the action confirmed one.
pub fn update(state: &mut State, action: Action) -> Option<Op> {
    match action {
        Action::Key(k) => on_key(state, k),
        Action::Data(snapshot) => {
            on_data(state, *snapshot);
            None
        }
        Action::Progress(line) => {
            state.info(line);
            None
        }
        Action::Done(result) => {
            state.running = None;
            match result {
                Ok(s) => state.info(s),
                Err(e) => state.error(e),
            }
            None
        }
        Action::Resize => None,
    }
}

fn on_data(state: &mut State, s: Snapshot) {
    let at = s.at.timestamp_millis() as f64 / 1000.0;
    state.throughput.record(at, &s.counters);
    // The trends of the partitions in this look, carried over; partitions gone are dropped (a
    // new map rather than a retain over a list of keys: that was quadratic in the partitions).
    let mut old = std::mem::take(&mut state.lag_trend);
    for p in s.groups.iter().flat_map(|g| g.partitions.iter()) {
        let key = (p.group.clone(), p.offsets.topic.clone(), p.offsets.partition);
        let mut trend = old.remove(&key).unwrap_or_default();
        trend.push_back(p.offsets.lag.unwrap_or(0).max(0));
        while trend.len() > SPARK_LEN {
            trend.pop_front();
        }
        state.lag_trend.insert(key, trend);
    }
    state.data = Some(s);
}

fn on_key(state: &mut State, k: KeyEvent) -> Option<Op> {
    let key = Key::from_event(&k);
    // ctrl-c quits from anywhere, whatever the key map says.
    if key == (Key { code: KeyCode::Char('c'), ctrl: true }) {
        state.quit = true;
        return None;
    }
    match state.mode.clone() {
        Mode::Help => {
            // Any key closes the help; `q` also quits.
            if state.keys.command(key) == Some(Command::Quit) {
                state.quit = true;
            }
            state.mode = Mode::Normal;
            None
        }
        Mode::Confirm(op) => {
            match key.code {
                KeyCode::Char('y') | KeyCode::Char('Y') => {
                    state.mode = Mode::Normal;
                    state.running = Some(op.running());
                    state.info(op.running());
                    return Some(op);
                }
                KeyCode::Char('n') | KeyCode::Char('N') | KeyCode::Esc => {
                    state.mode = Mode::Normal;
                    state.info("cancelled");
                }
                _ => {}
            }
            None
        }
        Mode::Filter | Mode::Command => on_input(state, key),
        Mode::Normal => on_command(state, state.keys.command(key)?),
    }
}

fn on_input(state: &mut State, key: Key) -> Option<Op> {
    let filtering = state.mode == Mode::Filter;
    match key.code {
        KeyCode::Esc => {
            if filtering {
                state.filter.clear();
            }
            state.input.clear();
            state.mode = Mode::Normal;
            None
        }
        KeyCode::Enter => {
            state.mode = Mode::Normal;
            let line = std::mem::take(&mut state.input);
            if filtering {
                state.filter = line.trim().to_string();
                None
            } else {
                run_command(state, &line)
            }
        }
        KeyCode::Backspace => {
            state.input.pop();
            if filtering {
                state.filter = state.input.clone();
            }
            None
        }
        KeyCode::Char(c) if !key.ctrl => {
            state.input.push(c);
            if filtering {
                state.filter = state.input.clone();
            }
            None
        }
        _ => None,
    }
}

fn run_command(state: &mut State, line: &str) -> Option<Op> {
    match command::parse(line) {
        Ok(Parsed::Quit) => {
            state.quit = true;
            None
        }
        Ok(Parsed::Help) => {
            state.mode = Mode::Help;
            None
        }
        Ok(Parsed::View(v)) => {
            state.view = v;
            None
        }
        Ok(Parsed::Op(op)) => propose(state, op),
        Err(e) => {
            state.error(e);
            None
        }
    }
}

/// Asks for confirmation of a destructive operation, or returns a harmless one to run now.
fn propose(state: &mut State, op: Op) -> Option<Op> {
    if state.read_only {
        state.error("read-only: actions are disabled (started with --read-only)");
        return None;
    }
    if let Some(r) = &state.running {
        state.error(format!("busy: {r}"));
        return None;
    }
    if op.destructive() {
        state.mode = Mode::Confirm(op);
        None
    } else {
        state.running = Some(op.running());
        Some(op)
    }
}

fn on_command(state: &mut State, cmd: Command) -> Option<Op> {
    if cmd.destructive() && state.read_only {
        state.error("read-only: actions are disabled (started with --read-only)");
        return None;
    }
    match cmd {
        Command::Quit => state.quit = true,
        Command::Help => state.mode = Mode::Help,
        Command::Down | Command::Up => {
            let pane = state.focus;
            let len = state.rows_in(pane);
            let cur = state.selected(pane);
            let next = if cmd == Command::Down { (cur + 1).min(len.saturating_sub(1)) } else { cur.saturating_sub(1) };
            state.set_selected(pane, next);
        }
        Command::NextPane | Command::PrevPane => {
            let i = state.focus.index();
            let n = Pane::ALL.len();
            state.focus = Pane::ALL[if cmd == Command::NextPane { (i + 1) % n } else { (i + n - 1) % n }];
        }
        Command::Filter => {
            state.input = state.filter.clone();
            state.mode = Mode::Filter;
        }
        Command::CommandMode => {
            state.input.clear();
            state.mode = Mode::Command;
        }
        Command::Back => {
            if state.filter.is_empty() {
                state.notice = None;
                state.view = View::Overview;
            }
            state.filter.clear();
        }
        Command::Pipeline => {
            state.view = if state.view == View::Pipeline { View::Overview } else { View::Pipeline };
        }
        Command::Brokers => {
            state.view = if state.view == View::Brokers { View::Overview } else { View::Brokers };
        }
        Command::Kill => match kill_target(state) {
            Some(instance) => return propose(state, Op::Act { verb: "kill", instance }),
            None => state.error("select an instance (or a partition with an owner) to kill"),
        },
        Command::Scale => {
            let routers = state
                .data
                .as_ref()
                .map(|d| {
                    d.instances.iter().filter(|i| i.info.service == "router-service" && i.info.state.is_alive()).count()
                })
                .unwrap_or(0);
            state.input = format!("scale router={routers}");
            state.mode = Mode::Command;
        }
        Command::Repartition => {
            let current = state
                .data
                .as_ref()
                .and_then(|d| d.groups.iter().find(|g| g.group == chat4all_ctl::repartition::ROUTER_GROUP))
                .map(|g| g.partitions.len())
                .unwrap_or(0);
            state.input = format!("repartition {} {}", chat4all_ctl::repartition::CHAT_EVENTS, current + 1);
            state.mode = Mode::Command;
        }
    }
    None
}

/// The instance `x` kills: the selected instance, or the owner of the selected partition.
fn kill_target(state: &State) -> Option<String> {
    match state.focus {
        Pane::Instances => rows::instances(state).get(state.selected(Pane::Instances)).map(|i| i.info.name.clone()),
        Pane::Partitions => rows::partitions(state)
            .get(state.selected(Pane::Partitions))
            .and_then(|p| p.owner.as_ref())
            .map(|o| o.instance.clone()),
        Pane::Timeline => None,
    }
}
