//! `chat4all-tui`: the live operations dashboard. Exit codes: 0 ok, 2 error (bad arguments or
//! key file, no terminal).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use crossterm::event::{Event, KeyEventKind};
use tokio::sync::{mpsc, watch};

use chat4all_ctl::output::parse_duration;
use chat4all_ctl::paths::DataDir;
use chat4all_tui::state::{update, Action, State};
use chat4all_tui::{config, ops, source, terminal, ui};

#[derive(Debug, Parser)]
#[command(
    name = "chat4all-tui",
    version,
    about = "Live operations dashboard of the chat4all platform",
    after_help = "Keys: ? help, q quit, tab/arrows/j/k move, / filter, esc back, : command \
                  (:scale router=3, :kill NAME, :repartition chat-events 4), x kill, s scale, \
                  p repartition. Remap them in $CHAT4ALL_HOME/tui.toml or ~/.config/chat4all/tui.toml \
                  with lines like `kill = X`."
)]
struct Args {
    /// Data directory of the local stack.
    #[arg(long, env = "CHAT4ALL_HOME", default_value = ".chat4all")]
    data_dir: String,
    /// Refresh interval (e.g. 1s, 500ms).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    interval: Duration,
    /// How long to wait for the broker, Redis or the supervisor on each refresh.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    timeout: Duration,
    /// Hide and refuse kill, scale and repartition.
    #[arg(long)]
    read_only: bool,
    /// Key map file (`command = key` lines).
    #[arg(long)]
    keys: Option<PathBuf>,
    /// Panic after this long (tests that the panic hook restores the terminal).
    #[arg(long, hide = true, value_parser = parse_duration)]
    panic_after: Option<Duration>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let data = DataDir::new(&args.data_dir);
    let keys = match config::load(args.keys.as_deref(), data.root()) {
        Ok((k, _)) => k,
        Err(e) => {
            eprintln!("chat4all-tui: {e:#}");
            return ExitCode::from(2);
        }
    };
    if args.interval.is_zero() {
        eprintln!("chat4all-tui: --interval must be more than 0");
        return ExitCode::from(2);
    }
    let rt = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("chat4all-tui: {e}");
            return ExitCode::from(2);
        }
    };
    match rt.block_on(run(args, data, State::new(keys, false))) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chat4all-tui: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(args: Args, data: DataDir, mut state: State) -> anyhow::Result<()> {
    state.read_only = args.read_only;
    let source = source::Source::new(data.clone(), args.timeout)?;
    let (data_tx, mut data_rx) = watch::channel(None);
    let source_task = tokio::spawn(source::run(source, args.interval, data_tx));

    let mut guard = terminal::init()?;
    let (tx, mut rx) = mpsc::channel::<Action>(256);
    let input_tx = tx.clone();
    // crossterm's read blocks: a thread of its own feeds keys and resizes into the channel.
    std::thread::spawn(move || loop {
        let action = match crossterm::event::read() {
            Ok(Event::Key(k)) if k.kind != KeyEventKind::Release => Action::Key(k),
            Ok(Event::Resize(..)) => Action::Resize,
            Ok(_) => continue,
            Err(_) => return,
        };
        if input_tx.blocking_send(action).is_err() {
            return;
        }
    });
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut sighup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    let panic_at = args.panic_after.map(|d| tokio::time::Instant::now() + d);
    let panic_timer = async move {
        match panic_at {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(panic_timer);

    guard.terminal.draw(|f| ui::draw(&state, f))?;
    loop {
        let action = tokio::select! {
            Some(a) = rx.recv() => a,
            Ok(()) = data_rx.changed() => match data_rx.borrow_and_update().clone() {
                Some(s) => Action::Data(Box::new(s)),
                None => continue,
            },
            _ = sigterm.recv() => break,
            _ = sighup.recv() => break,
            _ = &mut panic_timer => panic!("--panic-after elapsed (terminal restore test)"),
        };
        if let Some(op) = update(&mut state, action) {
            tokio::spawn(ops::run(op, data.clone(), args.timeout, tx.clone()));
        }
        if state.quit {
            break;
        }
        guard.terminal.draw(|f| ui::draw(&state, f))?;
    }
    source_task.abort();
    drop(guard);
    Ok(())
}
