//! Operations the dashboard carries out, and the `:` command line that names them
//! (`scale router=3`, `kill router-service-2`, `repartition chat-events 4`).

use chat4all_ctl::spec::ServiceKind;

/// A change to the running platform; each one is confirmed before it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// `kill`, `stop`, `start` or `restart` one instance.
    Act {
        verb: &'static str,
        instance: String,
    },
    Scale {
        service: String,
        replicas: u32,
    },
    Repartition {
        topic: String,
        partitions: i32,
    },
}

impl Op {
    /// The question asked before running it.
    pub fn confirmation(&self) -> String {
        match self {
            Op::Act { verb: "kill", instance } => format!("Kill {instance} (SIGKILL, like docker kill)?"),
            Op::Act { verb: "stop", instance } => format!("Stop {instance} (graceful, SIGTERM)?"),
            Op::Act { verb, instance } => format!("{} {instance}?", capitalize(verb)),
            Op::Scale { service, replicas } => format!("Scale {service} to {replicas} instance(s)?"),
            Op::Repartition { topic, partitions } => {
                format!("Repartition {topic} to {partitions} partitions (relay paused while the group drains)?")
            }
        }
    }

    /// Whether it needs confirmation (starting a stopped instance does not).
    pub fn destructive(&self) -> bool {
        !matches!(self, Op::Act { verb: "start", .. })
    }

    /// What the status line shows while it runs.
    pub fn running(&self) -> String {
        match self {
            Op::Act { verb, instance } => format!("{verb} {instance}..."),
            Op::Scale { service, replicas } => format!("scaling {service} to {replicas}..."),
            Op::Repartition { topic, partitions } => format!("repartitioning {topic} to {partitions}..."),
        }
    }
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_uppercase().chain(c).collect()).unwrap_or_default()
}

/// What a command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    Op(Op),
    Quit,
    Help,
    /// `:pipeline` (the pipeline pane) or `:overview` (back to the dashboard).
    View(crate::state::View),
}

/// Parses a command line (without the leading `:`). Errors are one line for the status bar.
pub fn parse(line: &str) -> Result<Parsed, String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let Some((verb, args)) = words.split_first() else {
        return Err("empty command (try :help)".into());
    };
    match (*verb, args) {
        ("q" | "quit" | "q!", []) => Ok(Parsed::Quit),
        ("help" | "h", []) => Ok(Parsed::Help),
        ("pipeline" | "pipe" | "outbox" | "dlq", []) => Ok(Parsed::View(crate::state::View::Pipeline)),
        ("brokers" | "broker" | "kafka" | "cluster", []) => Ok(Parsed::View(crate::state::View::Brokers)),
        ("overview" | "dashboard", []) => Ok(Parsed::View(crate::state::View::Overview)),
        (v @ ("kill" | "stop" | "start" | "restart"), [instance]) => {
            let verb = match v {
                "kill" => "kill",
                "stop" => "stop",
                "start" => "start",
                _ => "restart",
            };
            Ok(Parsed::Op(Op::Act { verb, instance: instance.to_string() }))
        }
        ("kill" | "stop" | "start" | "restart", _) => Err(format!("usage: {verb} INSTANCE")),
        ("scale", [target]) => parse_scale(target).map(Parsed::Op),
        ("scale", _) => Err("usage: scale SERVICE=N (e.g. scale router=3)".into()),
        ("repartition", [topic, n]) | ("repartition", [topic, "--partitions" | "-p", n]) => {
            let partitions: i32 = n.parse().map_err(|_| format!("partitions must be a whole number, got {n:?}"))?;
            if partitions < 1 {
                return Err(format!("partitions must be at least 1, got {partitions}"));
            }
            Ok(Parsed::Op(Op::Repartition { topic: topic.to_string(), partitions }))
        }
        ("repartition", _) => Err("usage: repartition TOPIC N (e.g. repartition chat-events 4)".into()),
        _ => Err(format!(
            "unknown command {verb:?} (scale, kill, stop, start, restart, repartition, pipeline, brokers, overview, help, quit)"
        )),
    }
}

fn parse_scale(target: &str) -> Result<Op, String> {
    let (service, n) = target.split_once('=').ok_or_else(|| format!("expected SERVICE=N, got {target:?}"))?;
    let kind = ServiceKind::parse(service).ok_or_else(|| format!("unknown service {service:?} (scalable: router)"))?;
    if !kind.scalable() {
        return Err(format!("{} cannot be scaled (only router-service can)", kind.name()));
    }
    let replicas: u32 =
        n.trim().parse().map_err(|_| format!("replicas must be a whole number of 0 or more, got {n:?}"))?;
    Ok(Op::Scale { service: kind.name().to_string(), replicas })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_ctl_verbs() {
        assert_eq!(
            parse("scale router=3"),
            Ok(Parsed::Op(Op::Scale { service: "router-service".into(), replicas: 3 }))
        );
        assert_eq!(
            parse("kill router-service-2"),
            Ok(Parsed::Op(Op::Act { verb: "kill", instance: "router-service-2".into() }))
        );
        assert_eq!(
            parse(" repartition chat-events 4 "),
            Ok(Parsed::Op(Op::Repartition { topic: "chat-events".into(), partitions: 4 }))
        );
        assert_eq!(
            parse("repartition chat-events --partitions 6"),
            Ok(Parsed::Op(Op::Repartition { topic: "chat-events".into(), partitions: 6 }))
        );
        assert_eq!(parse("q"), Ok(Parsed::Quit));
        assert_eq!(parse("pipeline"), Ok(Parsed::View(crate::state::View::Pipeline)));
        assert_eq!(parse("brokers"), Ok(Parsed::View(crate::state::View::Brokers)));
        assert_eq!(parse("overview"), Ok(Parsed::View(crate::state::View::Overview)));
    }

    #[test]
    fn bad_commands_explain_themselves() {
        for (line, needle) in [
            ("", "empty"),
            ("scale router=-1", "whole number"),
            ("scale message=2", "cannot be scaled"),
            ("scale nope=2", "unknown service"),
            ("kill", "usage: kill"),
            ("repartition chat-events zero", "whole number"),
            ("repartition chat-events 0", "at least 1"),
            ("launch", "unknown command"),
        ] {
            let e = parse(line).unwrap_err();
            assert!(e.contains(needle), "{line:?}: {e}");
        }
    }

    #[test]
    fn start_needs_no_confirmation() {
        assert!(!Op::Act { verb: "start", instance: "r".into() }.destructive());
        assert!(Op::Act { verb: "kill", instance: "r".into() }.destructive());
    }
}
