//! `chat4allctl repartition` under traffic: the API accepts throughout, every message is
//! delivered exactly once, and each conversation's messages reach the provider in the order the
//! API accepted them.
//!
//! Its own test binary, and scripts/test.sh runs it last: it changes the stack for good (more
//! partitions).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use chat4all_tests::{
    assert_delivered_exactly_once, ctl_run, relay_paused, unique, wait_for, wait_group_stable, wait_relay, Api,
    DeliveryKey, MessageBuilder, Stack, WHATSAPP,
};
use serde_json::Value;
use uuid::Uuid;

const CONVERSATIONS: usize = 12;

/// Posts into every conversation in turn, each message only after the previous one of its
/// conversation was accepted, until `stop` is set. Returns accepted ids per conversation in
/// acceptance order, and the refusals.
async fn post_until(
    api: Api,
    run: String,
    stop: tokio::sync::watch::Receiver<bool>,
) -> (Vec<Vec<(Uuid, MessageBuilder)>>, Vec<String>) {
    let mut accepted = vec![Vec::new(); CONVERSATIONS];
    let mut refused = Vec::new();
    let mut i = 0usize;
    while !*stop.borrow() {
        let c = i % CONVERSATIONS;
        let msg = MessageBuilder::new(&format!("{run}-conv-{c}"))
            .sender(&format!("{run}-sender-{c}"))
            .text(format!("message {i}"))
            .to(&format!("{run}-rcpt-{c}"), WHATSAPP);
        match api.post_message(&msg.build()).await {
            Ok(r) if r.status == 202 => match r.message_id() {
                Ok(id) => accepted[c].push((id, msg)),
                Err(e) => refused.push(format!("#{i}: {e:#}")),
            },
            Ok(r) => refused.push(format!("#{i}: HTTP {} {}", r.status, r.raw)),
            Err(e) => refused.push(format!("#{i}: {e:#}")),
        }
        i += 1;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    (accepted, refused)
}

/// After a repartition that must change nothing: the relay runs and chat-events still has `from`
/// partitions.
async fn assert_untouched(stack: &Stack, from: i64, after: &str) -> Result<()> {
    ensure!(!relay_paused(stack).await?, "the relay stayed paused after {after}");
    let d: Value = serde_json::from_str(&stack.ctl(&["groups", "describe", "router-service", "-o", "json"]).await?)?;
    let now = d["partitions"].as_array().map(|a| a.iter().filter(|p| p["topic"] == "chat-events").count());
    ensure!(now == Some(from as usize), "{after} changed the partitions: {d}");
    Ok(())
}

#[tokio::test]
async fn repartition_keeps_order_and_loses_nothing() -> Result<()> {
    let stack = Stack::connect().await?;
    stack.ctl(&["scale", "router=3"]).await?;
    wait_group_stable(&stack, "router-service", 3, Duration::from_secs(60)).await?;
    let desc: Value = serde_json::from_str(&stack.ctl(&["groups", "describe", "router-service", "-o", "json"]).await?)?;
    let relay_topic = "chat-events";
    let from = desc["partitions"].as_array().context("partitions")?.iter().filter(|p| p["topic"] == relay_topic).count()
        as i64;
    ensure!(from >= 1, "no partitions of {relay_topic} in {desc}");
    let to = if from == 1 { 4 } else { from + 3 };

    // A drain that cannot finish in time (the log end must stand still for a second, so 500 ms
    // is never enough) gives up after --drain-timeout: exit 1, relay resumed, nothing changed.
    let run = ctl_run(
        &stack.cfg,
        &["repartition", "chat-events", "--partitions", &to.to_string(), "--drain-timeout", "500ms"],
        &[],
    )
    .await?;
    ensure!(run.code == 1, "an undrainable repartition exited {} ({})", run.code, run.stderr);
    ensure!(run.stderr.contains("did not drain"), "stderr: {}", run.stderr);
    assert_untouched(&stack, from, "a failed drain").await?;

    // Ctrl-C during the drain: the repartition stops, resumes the relay and changes nothing.
    // With every router stopped and one event unconsumed, the drain cannot finish by itself.
    stack.ctl(&["scale", "router=0"]).await?;
    let stranded =
        MessageBuilder::new(&unique("repart-sigint")).text("waits for a router").to(&unique("rcpt"), WHATSAPP);
    let stranded_id = stack.api.post_message(&stranded.build()).await?.message_id()?;
    wait_for("the stranded event in chat-events", Duration::from_secs(30), || async {
        let d: Value =
            serde_json::from_str(&stack.ctl(&["groups", "describe", "router-service", "-o", "json"]).await?)?;
        let unconsumed: i64 = d["partitions"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|p| p["topic"] == relay_topic)
                    .map(|p| p["logEnd"].as_i64().unwrap_or(0) - p["committed"].as_i64().unwrap_or(0))
                    .sum()
            })
            .unwrap_or(0);
        Ok(((unconsumed > 0).then_some(()), d.to_string()))
    })
    .await?;
    let mut child = tokio::process::Command::new(&stack.cfg.ctl)
        .args(["repartition", "chat-events", "--partitions", &to.to_string(), "--drain-timeout", "60s"])
        .env("CHAT4ALL_HOME", &stack.cfg.home)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    wait_relay(&stack, true, Duration::from_secs(30)).await?;
    let pid = nix::unistd::Pid::from_raw(child.id().context("repartition pid")? as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT)?;
    let status = tokio::time::timeout(Duration::from_secs(70), child.wait()).await??;
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        use tokio::io::AsyncReadExt;
        e.read_to_string(&mut stderr).await?;
    }
    ensure!(status.code() == Some(1), "an interrupted repartition exited {status} ({stderr})");
    ensure!(stderr.contains("interrupted"), "stderr: {stderr}");
    assert_untouched(&stack, from, "an interrupted repartition").await?;

    // SIGKILL during the drain: nobody resumes, so the pause must end by itself with its lease.
    let mut child = tokio::process::Command::new(&stack.cfg.ctl)
        .args(["repartition", "chat-events", "--partitions", &to.to_string(), "--drain-timeout", "60s"])
        .args(["--pause-lease", "3s"])
        .env("CHAT4ALL_HOME", &stack.cfg.home)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let paused = wait_relay(&stack, true, Duration::from_secs(30)).await?;
    ensure!(paused["paused"]["by"].as_str().is_some_and(|b| b.starts_with("repartition@")), "holder: {paused}");
    child.start_kill()?;
    child.wait().await?;
    let killed = Instant::now();
    wait_relay(&stack, false, Duration::from_secs(10)).await?;
    ensure!(
        killed.elapsed() <= Duration::from_secs(5),
        "the relay resumed {:?} after its holder died (lease 3 s)",
        killed.elapsed()
    );
    assert_untouched(&stack, from, "a killed repartition").await?;
    stack.ctl(&["scale", "router=3"]).await?;
    wait_group_stable(&stack, "router-service", 3, Duration::from_secs(60)).await?;
    stack.api.wait_delivered(&[stranded_id], Instant::now() + Duration::from_secs(60)).await?;

    let run = unique("repart");
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let poster = tokio::spawn(post_until(stack.api.clone(), run.clone(), stop_rx));
    tokio::time::sleep(Duration::from_secs(3)).await;

    let dry =
        stack.ctl(&["repartition", "chat-events", "--partitions", &to.to_string(), "--dry-run", "-o", "json"]).await?;
    let dry: Value = serde_json::from_str(&dry)?;
    ensure!(dry["plan"]["from"] == from && dry["plan"]["to"] == to, "dry run plan: {dry}");
    let share = dry["plan"]["keyMoves"]["share"].as_f64().context("share")?;
    ensure!((0.0..=1.0).contains(&share) && share > 0.0, "key-move share {share}");
    assert_untouched(&stack, from, "--dry-run").await?;

    let out = stack.ctl(&["repartition", "chat-events", "--partitions", &to.to_string(), "-o", "json"]).await?;
    let outcome: Value = serde_json::from_str(&out)?;
    ensure!(outcome["plan"]["to"] == to, "outcome: {outcome}");
    let target = relay_topic;
    tokio::time::sleep(Duration::from_secs(4)).await;
    stop_tx.send(true)?;
    let (accepted, refused) = poster.await?;
    ensure!(refused.is_empty(), "the API refused during the repartition: {refused:?}");
    let total: usize = accepted.iter().map(Vec::len).sum();
    ensure!(total > 100, "only {total} messages were posted");

    // The new partitions are all owned by the routers.
    wait_for("every new partition owned", Duration::from_secs(60), || async {
        let d: Value =
            serde_json::from_str(&stack.ctl(&["groups", "describe", "router-service", "-o", "json"]).await?)?;
        let parts: Vec<&Value> =
            d["partitions"].as_array().map(|a| a.iter().filter(|p| p["topic"] == target).collect()).unwrap_or_default();
        let ok = parts.len() as i64 == to && parts.iter().all(|p| p["owner"]["instance"].is_string());
        Ok((ok.then_some(()), d.to_string()))
    })
    .await?;
    // ... and the conversations whose key moved really are on them now (the relay published
    // with the new partition count).
    let d: Value = serde_json::from_str(&stack.ctl(&["groups", "describe", "router-service", "-o", "json"]).await?)?;
    let on_new: i64 = d["partitions"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|p| p["topic"] == target && p["partition"].as_i64().is_some_and(|n| n >= from))
                .filter_map(|p| p["logEnd"].as_i64())
                .sum()
        })
        .unwrap_or(0);
    ensure!(on_new > 0, "no event reached the new partitions {from}..{to}: {d}");

    // Everything delivered exactly once.
    let ids: Vec<Uuid> = accepted.iter().flatten().map(|(id, _)| *id).collect();
    stack.api.wait_delivered(&ids, Instant::now() + Duration::from_secs(90)).await?;
    let expected: Vec<DeliveryKey> = accepted.iter().flatten().flat_map(|(id, m)| m.deliveries(*id)).collect();
    assert_delivered_exactly_once(&stack.db, &expected).await?;

    // Per conversation, the provider received the messages in acceptance order.
    let mut sent: HashMap<String, Vec<Uuid>> = HashMap::new();
    for e in chat4all_tests::provider_entries(&stack.db, &ids).await? {
        if e.outcome == chat4all_contract::provider::RecordOutcome::Accepted {
            sent.entry(e.metadata.recipient_id.clone()).or_default().push(e.metadata.message_id);
        }
    }
    for (c, msgs) in accepted.iter().enumerate() {
        let rcpt = format!("{run}-rcpt-{c}");
        let want: Vec<Uuid> = msgs.iter().map(|(id, _)| *id).collect();
        let got = sent.get(&rcpt).cloned().unwrap_or_default();
        ensure!(
            got == want,
            "conversation {c}: provider order differs from acceptance order ({} vs {} messages)",
            got.len(),
            want.len()
        );
    }
    Ok(())
}
