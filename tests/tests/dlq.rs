//! Dead letters an operator can act on (issue 18), on the real stack: a provider that rejects
//! everything makes dead letters; `dlq list` shows them with the reason; after the provider
//! recovers, `dlq replay --all` delivers each exactly once (the provider's record is the judge),
//! a second replay replays nothing, and a replay of a letter already delivered sends nothing. Bad
//! input (an unknown or malformed id) exits 2 with one line and replays nothing.
//!
//! The test changes the Instagram provider's faults (and puts them back); run this file on its
//! own: `cargo test -p chat4all-tests --test dlq`.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use chat4all_tests::{
    assert_delivered_exactly_once, ctl_run, provider_summary, set_provider_faults, unique, wait_for, Config,
    DeliveryKey, Faults, HealthyOnDrop, MessageBuilder, Stack, INSTAGRAM,
};
use serde_json::Value;
use uuid::Uuid;

/// Messages of the test, each to one Instagram recipient.
const MESSAGES: usize = 4;

/// `chat4allctl ARGS -o json`, which must exit 0, parsed.
async fn ctl_json(cfg: &Config, args: &[&str]) -> Result<Value> {
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["-o", "json"]);
    let run = ctl_run(cfg, &all, &[]).await?;
    ensure!(run.code == 0, "`chat4allctl {}` exited {}: {}{}", all.join(" "), run.code, run.stdout, run.stderr);
    serde_json::from_str(&run.stdout).with_context(|| format!("parsing `{}`: {}", all.join(" "), run.stdout))
}

/// Our letters in a `dlq list -o json`: message id -> (letter id, row).
fn ours(list: &Value, ids: &BTreeSet<Uuid>) -> HashMap<Uuid, Vec<Value>> {
    let mut out: HashMap<Uuid, Vec<Value>> = HashMap::new();
    for row in list.as_array().into_iter().flatten() {
        if let Some(id) = row["messageId"].as_str().and_then(|s| s.parse::<Uuid>().ok()) {
            if ids.contains(&id) {
                out.entry(id).or_default().push(row.clone());
            }
        }
    }
    out
}

async fn statuses(stack: &Stack, ids: &[Uuid]) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar("SELECT status FROM deliveries WHERE message_id = ANY($1) ORDER BY message_id")
        .bind(ids)
        .fetch_all(&stack.db)
        .await?)
}

/// The letter ids a replay answer lists under `field` (`replayed` or `skipped`) for `ids`.
fn letters_in(answer: &Value, field: &str, ids: &BTreeSet<Uuid>) -> BTreeSet<String> {
    answer[field]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|l| l["messageId"].as_str().and_then(|s| s.parse::<Uuid>().ok()).is_some_and(|m| ids.contains(&m)))
        .filter_map(|l| l["id"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_listed_and_replayed_exactly_once() -> Result<()> {
    let stack = Stack::connect().await?;
    let cfg = stack.cfg.clone();
    let _healthy = HealthyOnDrop::new(&cfg, &[INSTAGRAM]);
    let run = unique("dlq");

    // A provider that rejects everything: every delivery uses up its attempts and is dead-lettered.
    let faults = ctl_run(&cfg, &["provider", "faults", "instagram", "--reject", "1"], &[]).await?;
    ensure!(faults.code == 0, "provider faults: {}{}", faults.stdout, faults.stderr);
    let mut ids = Vec::new();
    let mut expected: Vec<DeliveryKey> = Vec::new();
    for i in 0..MESSAGES {
        let m = MessageBuilder::new(&format!("{run}-c{}", i % 2))
            .channel(INSTAGRAM)
            .text(format!("dead letter {i} of {run}"))
            .to(&format!("{run}-rcpt-{i}"), INSTAGRAM);
        let id = stack.api.send(&m.build()).await?;
        expected.extend(m.deliveries(id));
        ids.push(id);
    }
    let id_set: BTreeSet<Uuid> = ids.iter().copied().collect();
    wait_for("every delivery FAILED", Duration::from_secs(60), || async {
        let s = statuses(&stack, &ids).await?;
        let done = s.len() == MESSAGES && s.iter().all(|s| s == "FAILED");
        Ok((done.then_some(()), format!("{s:?}")))
    })
    .await?;

    // `dlq list` shows each (what, why, when, which instance).
    let list = wait_for("the dead letters on chat-events-dlq", Duration::from_secs(30), || async {
        let list = ctl_json(&cfg, &["dlq", "list", "--channel", "instagram", "--since", "10m"]).await?;
        let n = ours(&list, &id_set).len();
        Ok(((n == MESSAGES).then_some(list), format!("{n} of {MESSAGES} listed")))
    })
    .await?;
    let mine = ours(&list, &id_set);
    let mut letter_ids: Vec<String> = Vec::new();
    for (id, rows) in &mine {
        ensure!(rows.len() == 1, "message {id} dead-lettered {} times: {rows:?}", rows.len());
        let r = &rows[0];
        ensure!(r["channel"] == "INSTAGRAM" && r["status"] == "FAILED", "{r}");
        ensure!(r["reason"].as_str().is_some_and(|s| !s.is_empty()), "no reason: {r}");
        ensure!(r["instance"].as_str().is_some_and(|s| !s.is_empty()) && r["at"].is_string(), "{r}");
        ensure!(r["text"].as_str().is_some_and(|t| t.starts_with("dead letter")), "{r}");
        ensure!(r["conversationId"].as_str().is_some_and(|c| c.starts_with(&run)), "{r}");
        letter_ids.push(r["id"].as_str().context("letter id")?.to_string());
    }
    // The other channel filter hides them.
    let other = ctl_json(&cfg, &["dlq", "list", "--channel", "telegram"]).await?;
    ensure!(ours(&other, &id_set).is_empty(), "--channel telegram lists instagram letters");

    // The depth counts them.
    let depth = |v: &Value| v["dlq"]["channels"]["instagram"].as_u64();
    let before = ctl_json(&cfg, &["status"]).await?;
    let depth_before = depth(&before).context(format!("no DLQ depth in status: {}", before["dlq"]))?;
    ensure!(depth_before >= MESSAGES as u64, "depth {depth_before} < {MESSAGES}");

    // Bad input: exit 2, one line, nothing replayed.
    for bad in [["dlq", "replay", "--id", "0:999999999"], ["dlq", "replay", "--id", "nonsense"]] {
        let r = ctl_run(&cfg, &bad, &[]).await?;
        ensure!(r.code == 2, "{bad:?} exited {}: {}{}", r.code, r.stdout, r.stderr);
        ensure!(r.stderr.trim().lines().count() == 1, "{bad:?}: not one line: {:?}", r.stderr);
    }
    let r = ctl_run(&cfg, &["dlq", "replay", "--id", &letter_ids[0], "--id", "0:999999999"], &[]).await?;
    ensure!(r.code == 2 && r.stderr.contains("0:999999999"), "a known id with an unknown one: {r:?}");
    ensure!(statuses(&stack, &ids).await?.iter().all(|s| s == "FAILED"), "bad input changed a delivery");

    // Dry run: lists what would be replayed, changes nothing.
    let dry = ctl_json(&cfg, &["dlq", "replay", "--all", "--channel", "instagram", "--dry-run"]).await?;
    let would = letters_in(&dry, "replayed", &id_set);
    ensure!(would.len() == MESSAGES, "dry run would replay {would:?}: {dry}");
    ensure!(dry["outboxRows"] == 0, "{dry}");
    ensure!(statuses(&stack, &ids).await?.iter().all(|s| s == "FAILED"), "a dry run changed a delivery");

    // The provider recovers; the replay delivers each once.
    set_provider_faults(&cfg, INSTAGRAM, &Faults::default()).await?;
    let replay = ctl_json(&cfg, &["dlq", "replay", "--all"]).await?;
    let replayed = letters_in(&replay, "replayed", &id_set);
    ensure!(replayed == letter_ids.iter().cloned().collect(), "replayed {replayed:?}, expected {letter_ids:?}");
    // A second replay, at once: nothing of ours is FAILED any more.
    let again = ctl_json(&cfg, &["dlq", "replay", "--all"]).await?;
    ensure!(letters_in(&again, "replayed", &id_set).is_empty(), "the second replay replayed again: {again}");
    ensure!(letters_in(&again, "skipped", &id_set).len() == MESSAGES, "{again}");

    stack.api.wait_delivered(&ids, Instant::now() + Duration::from_secs(60)).await?;
    assert_delivered_exactly_once(&stack.db, &expected).await?;
    let summary = provider_summary(&cfg, &run).await?;
    ensure!(summary.duplicate_deliveries == 0, "duplicate deliveries: {summary:?}");
    ensure!(summary.delivered == MESSAGES as u64, "delivered {} of {MESSAGES}: {summary:?}", summary.delivered);

    // A replay of a letter already delivered sends nothing.
    let late = ctl_json(&cfg, &["dlq", "replay", "--id", &letter_ids[0]]).await?;
    ensure!(late["replayed"].as_array().is_some_and(|a| a.is_empty()), "{late}");
    ensure!(late["skipped"][0]["status"] == "DELIVERED", "{late}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = provider_summary(&cfg, &run).await?;
    ensure!(after.requests == summary.requests, "the provider was called again: {summary:?} -> {after:?}");
    assert_delivered_exactly_once(&stack.db, &expected).await?;

    // The list shows them delivered now, and the depth no longer counts them.
    let list = ctl_json(&cfg, &["dlq", "list", "--channel", "instagram"]).await?;
    for rows in ours(&list, &id_set).values() {
        ensure!(rows.iter().all(|r| r["status"] == "DELIVERED"), "{rows:?}");
    }
    let status = ctl_json(&cfg, &["status"]).await?;
    let depth_after = depth(&status).context("no DLQ depth in status")?;
    ensure!(depth_after + MESSAGES as u64 <= depth_before, "depth {depth_before} -> {depth_after}");
    let channels = status["channels"].as_array().context("status has no channels")?;
    let ig = channels.iter().find(|c| c["channel"] == "instagram").context("no instagram row")?;
    ensure!(ig["dlqDepth"].as_u64() == Some(depth_after) && ig["deliveriesPerSecond"].is_number(), "{ig}");
    Ok(())
}
