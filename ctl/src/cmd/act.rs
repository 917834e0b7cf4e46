//! Actions on instances: kill, stop, start, restart, scale, logs.

use std::time::Duration;

use clap::Args;

use super::Cli;
use chat4all_ctl::error::usage;
use chat4all_ctl::output::{self, Format};
use chat4all_ctl::runtime::Verb;
use chat4all_ctl::spec::ServiceKind;
use futures::StreamExt;

/// How long an action may take (a graceful stop, a start until healthy).
const ACT_TIMEOUT: Duration = Duration::from_secs(120);

pub async fn act(cli: &Cli, instance: &str, verb: Verb) -> anyhow::Result<()> {
    let rt = cli.runtime(ACT_TIMEOUT).await?;
    let message = rt.act(instance, verb).await?;
    match cli.output {
        Format::Json => println!(
            "{}",
            output::json(&serde_json::json!({
                "action": verb,
                "instance": instance,
                "message": message,
                "runtime": rt.engine().runtime,
            }))
        ),
        Format::Table => println!("{message}"),
    }
    Ok(())
}

#[derive(Debug, Args)]
pub struct ScaleArgs {
    /// SERVICE=N, e.g. router=3 or router-service=3.
    pub target: String,
    /// Show the resulting assignment without changing anything.
    #[arg(long)]
    pub dry_run: bool,
}

/// Parses `router=3`.
pub fn parse_scale(target: &str) -> anyhow::Result<(ServiceKind, u32)> {
    let (service, n) =
        target.split_once('=').ok_or_else(|| usage(format!("expected SERVICE=N (e.g. router=3), got {target:?}")))?;
    let kind =
        ServiceKind::parse(service).ok_or_else(|| usage(format!("unknown service {service:?} (scalable: router)")))?;
    let n: u32 =
        n.trim().parse().map_err(|_| usage(format!("replicas must be a whole number of 0 or more, got {n:?}")))?;
    if !kind.scalable() {
        return Err(usage(format!("{} cannot be scaled (only router-service can)", kind.name())));
    }
    Ok((kind, n))
}

pub async fn scale(cli: &Cli, args: &ScaleArgs) -> anyhow::Result<()> {
    let (kind, n) = parse_scale(&args.target)?;
    let rt = cli.runtime(ACT_TIMEOUT).await?;
    let partitions = chat4all_ctl::kafka::Observer::new(&cli.stack().bootstrap, cli.timeout)
        .and_then(|o| o.topics())
        .ok()
        .map(|topics| {
            topics
                .iter()
                .filter(|(t, _)| t == "chat-events" || t.starts_with("chat-events.g"))
                .map(|(_, p)| *p)
                .max()
                .unwrap_or(0)
        });
    if let Some(p) = partitions {
        if n as i32 > p {
            eprintln!(
                "chat4allctl: warning: {n} routers for {p} partition(s) of chat-events: {} will be idle standbys",
                n as i32 - p
            );
        }
    }
    if args.dry_run {
        let p = partitions.unwrap_or(0).max(0) as u32;
        let active = n.min(p);
        println!(
            "dry run: {} would run {n} instance(s); {active} would own partitions, {} standby",
            kind.name(),
            n - active
        );
        for i in 0..active {
            let owned: Vec<String> = (0..p).filter(|q| q % active == i).map(|q| q.to_string()).collect();
            println!("  {}-{}: partitions {}", kind.name(), i + 1, owned.join(","));
        }
        return Ok(());
    }
    let result = rt.scale(kind.name(), n).await?;
    match cli.output {
        Format::Json => println!("{}", output::json(&result)),
        Format::Table => {
            println!("scaled {} from {} to {}", result.service, result.before, result.after);
            for s in &result.started {
                println!("  started {s}");
            }
            for s in &result.stopped {
                println!("  stopped {s} (graceful leave)");
            }
        }
    }
    Ok(())
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    pub instance: String,
    /// Lines from the end.
    #[arg(short = 'n', long, default_value_t = 100)]
    pub lines: usize,
    /// Keep printing new lines.
    #[arg(short, long)]
    pub follow: bool,
}

pub async fn logs(cli: &Cli, args: &LogsArgs) -> anyhow::Result<()> {
    use std::io::Write;
    let rt = cli.runtime(cli.timeout).await?;
    let text = rt.logs(&args.instance, args.lines).await?;
    if !text.is_empty() {
        println!("{text}");
    }
    if args.follow {
        let mut lines = rt.follow(&args.instance);
        while let Some(chunk) = lines.next().await {
            let mut out = std::io::stdout().lock();
            out.write_all(&chunk?)?;
            out.flush()?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_scale_targets() {
        assert_eq!(parse_scale("router=3").unwrap(), (ServiceKind::RouterService, 3));
        assert_eq!(parse_scale("router-service=0").unwrap(), (ServiceKind::RouterService, 0));
        for bad in ["router=-1", "router=abc", "router", "nope=2", "message-service=2"] {
            let e = parse_scale(bad).unwrap_err();
            assert!(e.downcast_ref::<chat4all_ctl::error::UsageError>().is_some(), "{bad}");
        }
    }
}
