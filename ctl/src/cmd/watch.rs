//! `--watch`: any read command refreshed in place (tables) or as one JSON document per line.

use std::future::Future;
use std::io::Write;
use std::time::{Duration, Instant};

use super::Cli;
use chat4all_ctl::error::UsageError;
use chat4all_ctl::output::Format;

/// A read command's output, produced again on every refresh.
pub trait Render {
    /// The whole output for `format`: a table (ends with a newline) or one JSON document.
    fn render(&mut self, format: Format) -> impl Future<Output = anyhow::Result<String>>;
}

/// Prints once, or with `--watch` every `--interval` until interrupted. While watching, a failed
/// refresh (broker down, say) is shown in place of the output and the next one is tried; bad
/// input still ends the command.
pub async fn show(cli: &Cli, view: &mut impl Render) -> anyhow::Result<()> {
    if !cli.watch {
        let out = view.render(cli.output).await?;
        print_out(&out, cli.output);
        return Ok(());
    }
    let mut stdout = std::io::stdout();
    let interactive = std::io::IsTerminal::is_terminal(&stdout);
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        let started = Instant::now();
        let body = match view.render(cli.output).await {
            Ok(s) => s,
            Err(e) if e.downcast_ref::<UsageError>().is_some() => return Err(e),
            Err(e) => match cli.output {
                Format::Json => serde_json::json!({"error": format!("{e:#}")}).to_string(),
                Format::Table => format!("error: {e:#}\n"),
            },
        };
        let frame = match cli.output {
            Format::Json => format!("{}\n", compact(&body)),
            Format::Table if interactive => {
                let header = format!(
                    "every {}  {}  (ctrl-c to stop)",
                    chat4all_ctl::output::human_duration(cli.interval.as_secs() as i64),
                    chrono::Local::now().format("%H:%M:%S")
                );
                // Home, then each line followed by clear-to-end-of-line, then clear below: one
                // write per refresh and no blank frame in between, so no flicker.
                let mut f = String::from("\x1b[H");
                for line in std::iter::once(header.as_str()).chain(std::iter::once("")).chain(body.lines()) {
                    f.push_str(line);
                    f.push_str("\x1b[K\n");
                }
                f.push_str("\x1b[J");
                f
            }
            Format::Table => format!("{body}\n"),
        };
        if stdout.write_all(frame.as_bytes()).and_then(|_| stdout.flush()).is_err() {
            return Ok(()); // the reader went away (broken pipe)
        }
        let wait = cli.interval.saturating_sub(started.elapsed()).max(Duration::from_millis(50));
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = &mut ctrl_c => return Ok(()),
        }
    }
}

fn print_out(out: &str, format: Format) {
    let mut stdout = std::io::stdout();
    let text = match format {
        Format::Json if !out.ends_with('\n') => format!("{out}\n"),
        _ => out.to_string(),
    };
    let _ = stdout.write_all(text.as_bytes());
}

/// One line per document when watching as JSON (NDJSON).
fn compact(doc: &str) -> String {
    serde_json::from_str::<serde_json::Value>(doc).map(|v| v.to_string()).unwrap_or_else(|_| doc.replace('\n', " "))
}
