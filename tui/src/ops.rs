//! Runs a confirmed operation through the ctl library (the same calls chat4allctl makes) and
//! reports progress and the outcome as actions.

use std::time::Duration;

use tokio::sync::mpsc;

use chat4all_ctl::paths::DataDir;
use chat4all_ctl::repartition::{self, Target};
use chat4all_ctl::runtime::{self, Verb};

use crate::command::Op;
use crate::state::Action;

/// How long an action on the runtime may take (a graceful stop waits for the group to leave).
const ACT_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a repartition waits for the router group to drain.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(60);
/// The relay's pause lease of a repartition started here: quitting the dashboard mid-drain
/// leaves the relay paused for at most this long.
pub const LEASE: Duration = Duration::from_secs(10);

pub async fn run(op: Op, data: DataDir, timeout: Duration, tx: mpsc::Sender<Action>) {
    let result =
        execute(&op, &data, timeout, &tx).await.map_err(|e| format!("{}: {e:#}", op.running().trim_end_matches("...")));
    let _ = tx.send(Action::Done(result)).await;
}

async fn execute(op: &Op, data: &DataDir, timeout: Duration, tx: &mpsc::Sender<Action>) -> anyhow::Result<String> {
    let target =
        runtime::Target { data: data.clone(), project: runtime::docker::default_project(), timeout: ACT_TIMEOUT };
    let rt = runtime::connect(None, &target).await?;
    match op {
        Op::Act { verb, instance } => {
            let typed = Verb::parse(verb).ok_or_else(|| anyhow::anyhow!("unknown action {verb:?}"))?;
            let message = rt.act(instance, typed).await?;
            Ok(if message.is_empty() { format!("{verb} {instance}: done") } else { message })
        }
        Op::Scale { service, replicas } => {
            let r = rt.scale(service, *replicas).await?;
            let mut s = format!("scaled {} from {} to {}", r.service, r.before, r.after);
            if !r.started.is_empty() {
                s.push_str(&format!("; started {}", r.started.join(", ")));
            }
            if !r.stopped.is_empty() {
                s.push_str(&format!("; stopped {}", r.stopped.join(", ")));
            }
            Ok(s)
        }
        Op::Repartition { topic, partitions } => {
            let stack = chat4all_ctl::stack::Stack::find(data);
            let admin = chat4all_ctl::admin::Admin::for_stack(&stack, timeout)?;
            let target = Target { bootstrap: stack.bootstrap, admin, timeout, lease: LEASE };
            let plan = repartition::plan(&target, topic, *partitions).await?;
            let progress_tx = tx.clone();
            let progress = move |line: &str| {
                let _ = progress_tx.try_send(Action::Progress(format!("repartition: {line}")));
            };
            // Quitting the dashboard mid-drain drops this task: the lease then ends by itself.
            let outcome = repartition::execute(&target, &plan, DRAIN_TIMEOUT, &progress, std::future::pending()).await;
            let detail = repartition::action_detail(&plan, &outcome);
            // Recorded so the timeline and the charts show it; a failure to record is not the
            // operation's failure.
            let _ = rt.record_action("repartition", &plan.topic, &detail).await;
            let o = outcome?;
            Ok(format!(
                "repartitioned {}: {} -> {} partitions; relay paused {} ms",
                plan.topic, plan.from, plan.to, o.paused_ms
            ))
        }
    }
}
