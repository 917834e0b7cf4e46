//! `repartition TOPIC --partitions N [--dry-run] [--drain-timeout 60s]`.

use std::time::Duration;

use clap::Args;

use super::Cli;
use chat4all_ctl::output::{self, parse_duration, Format};
use chat4all_ctl::repartition::{self, Plan, Target};
use chat4all_ctl::runtime::client::ProcessRuntime;

#[derive(Debug, Args)]
pub struct RepartitionArgs {
    /// The topic: chat-events.
    pub topic: String,
    /// New partition count; must exceed the current one (partitions are never removed).
    #[arg(long, short = 'p', allow_negative_numbers = true)]
    pub partitions: i32,
    /// Print the plan and the share of conversation keys that change partition; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// How long to wait for the router group to drain before giving up (nothing changed, exit 1).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub drain_timeout: Duration,
    /// The relay's pause is a lease renewed while this command runs: if it dies (SIGKILL, a lost
    /// terminal), the relay resumes by itself at most this long after (3s..1h).
    #[arg(long, default_value = "30s", value_parser = parse_lease)]
    pub pause_lease: Duration,
}

fn parse_lease(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d < repartition::MIN_LEASE || d > repartition::MAX_LEASE {
        return Err(format!("the pause lease must be 3s..1h, got {s}"));
    }
    Ok(d)
}

pub async fn repartition(cli: &Cli, args: &RepartitionArgs) -> anyhow::Result<()> {
    let stack = cli.stack();
    let target = Target {
        bootstrap: stack.bootstrap.clone(),
        admin: chat4all_ctl::admin::Admin::for_stack(&stack, cli.timeout)?,
        timeout: cli.timeout,
        lease: args.pause_lease,
    };
    let plan = repartition::plan(&target, &args.topic, args.partitions).await?;
    if args.dry_run {
        match cli.output {
            Format::Json => println!("{}", output::json(&serde_json::json!({"dryRun": true, "plan": plan}))),
            Format::Table => print!("{}", describe(&plan)),
        }
        return Ok(());
    }
    let json = cli.output == Format::Json;
    if !json {
        print!("{}", describe(&plan));
    }
    let progress = move |line: &str| {
        if !json {
            println!("  {line}");
        }
    };
    let runtime = ProcessRuntime::connect(&cli.data(), cli.timeout).ok();
    let outcome = repartition::execute(&target, &plan, args.drain_timeout, &progress, interrupted()).await;
    if let Some(rt) = &runtime {
        let detail = repartition::action_detail(&plan, &outcome);
        if let Err(e) = rt.record_action("repartition", &plan.topic, &detail).await {
            tracing::warn!(error = format!("{e:#}"), "could not record the repartition in the action log");
        }
    }
    let outcome = outcome?;
    match cli.output {
        Format::Json => println!("{}", output::json(&outcome)),
        Format::Table => println!(
            "done: {} {} -> {} partitions; relay paused {} ms, {} messages waited in the outbox",
            plan.topic, plan.from, plan.to, outcome.paused_ms, outcome.backlog_at_resume
        ),
    }
    Ok(())
}

fn describe(plan: &Plan) -> String {
    format!(
        "repartition {}: {} -> {} partitions (CreatePartitions)\n  keys changing partition: {} of {} {} ({:.1}%)\n  order: relay paused, router-service drained to lag 0, then partitions added and the relay resumed\n",
        plan.topic,
        plan.from,
        plan.to,
        plan.key_moves.moved,
        plan.key_moves.keys,
        plan.key_moves.source,
        plan.key_moves.share * 100.0
    )
}

/// A future that resolves on SIGINT or SIGTERM (Ctrl-C, `kill`). The handlers are installed
/// here, before the relay is paused, so no signal in between takes the default action.
fn interrupted() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let handlers = (signal(SignalKind::interrupt()), signal(SignalKind::terminate()));
    async move {
        match handlers {
            (Ok(mut int), Ok(mut term)) => {
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                }
            }
            // No handler could be installed: the default ones stay, nothing to wait for.
            _ => std::future::pending().await,
        }
    }
}
