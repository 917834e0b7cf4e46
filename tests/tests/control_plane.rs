//! `chat4allctl` driven as a binary against the live stack: ownership with standbys, a kill that
//! moves ownership (and shows in `events` with its cause), scale down and back, `lag` and
//! `status` agreeing with an independent Kafka client, and every bad input (exit 2, one line,
//! nothing changed).
//!
//! The scenario test changes the router set, so it runs as one sequence; the bad-input tests
//! change nothing and may run beside it.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use chat4all_tests::{ctl_run, wait_for, wait_group_stable, Config, Stack};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::ClientConfig;
use serde_json::Value;

/// The tests that change the router set or look at it as a whole take turns.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const ROUTERS: [&str; 3] = ["router-service-1", "router-service-2", "router-service-3"];
/// An operator kill removes the member at once (measured: under 0.5 s); the session timeout (3 s)
/// bounds it where that fails; the rest is slack for a loaded machine.
const FAILOVER_WITHIN: Duration = Duration::from_secs(15);

async fn describe(stack: &Stack) -> Result<Value> {
    let out = stack.ctl(&["groups", "describe", "router-service", "-o", "json"]).await?;
    serde_json::from_str(&out).context("groups describe -o json is not JSON")
}

fn owners(desc: &Value) -> Vec<(String, i64, Option<String>)> {
    desc["partitions"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .map(|p| {
                    (
                        p["topic"].as_str().unwrap_or_default().to_string(),
                        p["partition"].as_i64().unwrap_or(-1),
                        p["owner"]["instance"].as_str().map(str::to_string),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn standby(desc: &Value) -> Vec<String> {
    desc["standby"]
        .as_array()
        .map(|v| v.iter().filter_map(|s| s.as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

/// The partitions of chat-events.
fn chat_events(desc: &Value) -> Vec<(String, i64, Option<String>)> {
    owners(desc).into_iter().filter(|(t, _, _)| t == "chat-events").collect()
}

/// Waits until the group is Stable with exactly `routers` members, every partition of chat-events
/// owned, and the rest of the routers standing by (mid-rebalance, the broker's assignments are
/// those of the generation being replaced).
async fn settled(stack: &Stack, routers: usize) -> Result<Value> {
    wait_for(&format!("router-service settled with {routers} members"), Duration::from_secs(60), || async {
        let d = describe(stack).await?;
        let parts = chat_events(&d);
        let owning: std::collections::BTreeSet<String> = parts.iter().filter_map(|p| p.2.clone()).collect();
        let ok = d["state"] == "Stable"
            && d["members"].as_u64() == Some(routers as u64)
            && !parts.is_empty()
            && parts.iter().all(|p| p.2.is_some())
            && owning.len() + standby(&d).len() == routers;
        Ok((ok.then(|| d.clone()), d.to_string()))
    })
    .await
}

#[tokio::test]
async fn ownership_kill_and_scale() -> Result<()> {
    let _turn = SERIAL.lock().await;
    let stack = Stack::connect().await?;
    stack.ctl(&["scale", "router=3"]).await?;
    wait_group_stable(&stack, "router-service", 3, Duration::from_secs(60)).await?;
    let desc = settled(&stack, 3).await?;
    let parts = chat_events(&desc);
    if parts.len() == 1 {
        // The stack's default: one partition, one owner, two standbys.
        let owner = parts[0].2.clone().context("owner")?;
        ensure!(ROUTERS.contains(&owner.as_str()), "owner {owner} is not one of the routers");
        let mut sb = standby(&desc);
        sb.sort();
        let mut expected: Vec<String> = ROUTERS.iter().filter(|r| **r != owner).map(|r| r.to_string()).collect();
        expected.sort();
        ensure!(sb == expected, "standbys {sb:?}, expected {expected:?}");
        let table = stack.ctl(&["groups", "describe", "router-service"]).await?;
        for col in ["CURRENT-OFFSET", "LOG-END-OFFSET", "LAG", "CONSUMER-ID", "HOST", "CLIENT-ID", "OWNER", "STATUS"] {
            ensure!(table.contains(col), "describe table lacks {col}:\n{table}");
        }
        ensure!(table.matches("(standby)").count() == 2, "two standby rows expected:\n{table}");
    }

    // Kill the owner of the first partition: a survivor takes it over, and the timeline shows
    // the assignment with the kill as its cause.
    let (topic, partition, owner) = parts[0].clone();
    let owner = owner.context("owner")?;
    let killed_at = chrono::Utc::now();
    let out = stack.ctl(&["kill", &owner]).await?;
    ensure!(out.contains(&owner), "kill printed {out:?}");
    let new_owner = wait_for("a survivor owning the killed router's partition", FAILOVER_WITHIN, || async {
        let d = describe(&stack).await?;
        let now = owners(&d).into_iter().find(|p| p.0 == topic && p.1 == partition).and_then(|p| p.2);
        let stable = d["state"] == "Stable";
        Ok((now.clone().filter(|o| *o != owner && stable), format!("{now:?} (group {})", d["state"])))
    })
    .await?;
    ensure!(ROUTERS.contains(&new_owner.as_str()) && new_owner != owner);
    let events: Value = serde_json::from_str(&stack.ctl(&["events", "-o", "json", "--limit", "200"]).await?)?;
    let took_over = events.as_array().context("events is an array")?.iter().find(|e| {
        e["instance"] == new_owner.as_str()
            && e["kind"] == "assigned"
            && e["at"]
                .as_str()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .is_some_and(|t| t >= killed_at)
            && e["partitions"]
                .as_array()
                .is_some_and(|ps| ps.iter().any(|p| p["topic"] == topic.as_str() && p["partition"] == partition))
    });
    let took_over =
        took_over.with_context(|| format!("no 'assigned' event for {new_owner} after the kill: {events}"))?;
    ensure!(
        took_over["cause"].as_str() == Some(&format!("kill {owner}")),
        "cause of the takeover: {} (expected kill {owner})",
        took_over["cause"]
    );
    let instances: Value = serde_json::from_str(&stack.ctl(&["instances", "-o", "json"]).await?)?;
    let state =
        instances.as_array().and_then(|v| v.iter().find(|i| i["name"] == owner.as_str())).map(|i| i["state"].clone());
    ensure!(state.as_ref().and_then(|s| s.as_str()) != Some("running"), "{owner} still running: {state:?}");

    // Scale to 2 (stops the highest-numbered routers gracefully), then back to 3.
    stack.ctl(&["start", &owner]).await?;
    settled(&stack, 3).await?;
    let out = stack.ctl(&["scale", "router=2", "-o", "json"]).await?;
    let scaled: Value = serde_json::from_str(&out)?;
    ensure!(scaled["after"] == 2, "scale answer: {scaled}");
    settled(&stack, 2).await?;
    stack.ctl(&["scale", "router=3"]).await?;
    settled(&stack, 3).await?;
    Ok(())
}

/// Lag as an independent client computes it from the same broker.
fn independent_lag(bootstrap: &str, group: &str, topic: &str, partitions: i32) -> Result<i64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let committed = consumer.committed_offsets(tpl, Duration::from_secs(5))?;
    let mut lag = 0;
    for e in committed.elements() {
        let (_, high) = consumer.fetch_watermarks(topic, e.partition(), Duration::from_secs(5))?;
        if let Offset::Offset(c) = e.offset() {
            lag += (high - c).max(0);
        }
    }
    Ok(lag)
}

#[tokio::test]
async fn lag_json_matches_an_independent_client() -> Result<()> {
    let stack = Stack::connect().await?;
    let cfg = stack.cfg.clone();
    // The status consumer group's topic is quiet between tests; compare on it and on chat-events
    // (retrying while a test elsewhere moves the offsets between the two reads).
    wait_for("lag -o json equal to an independent client's", Duration::from_secs(30), || async {
        let out = stack.ctl(&["lag", "-o", "json", "--sample-for", "0s"]).await?;
        let v: Value = serde_json::from_str(&out)?;
        let mut seen = Vec::new();
        let mut all_equal = true;
        for g in v["groups"].as_array().context("groups")? {
            let group = g["group"].as_str().unwrap_or_default().to_string();
            let mut topics: std::collections::BTreeMap<String, (i32, i64)> = Default::default();
            for p in g["partitions"].as_array().context("partitions")? {
                let t = topics.entry(p["topic"].as_str().unwrap_or_default().to_string()).or_default();
                t.0 = t.0.max(p["partition"].as_i64().unwrap_or(0) as i32 + 1);
                t.1 += p["lag"].as_i64().unwrap_or(0);
            }
            for (topic, (n, ours)) in topics {
                let (b, g2, t2) = (cfg.kafka_bootstrap.clone(), group.clone(), topic.clone());
                let theirs = tokio::task::spawn_blocking(move || independent_lag(&b, &g2, &t2, n)).await??;
                seen.push(format!("{group}/{topic}: ours {ours} theirs {theirs}"));
                all_equal &= ours == theirs;
            }
        }
        Ok(((all_equal && !seen.is_empty()).then_some(()), seen.join("; ")))
    })
    .await?;
    let out = stack.ctl(&["lag"]).await?;
    for col in ["LAG-SECONDS", "STATUS", "OWNER"] {
        ensure!(out.contains(col), "lag table lacks {col}:\n{out}");
    }
    Ok(())
}

#[tokio::test]
async fn watch_refreshes_until_interrupted() -> Result<()> {
    let cfg = Config::from_env();
    let child = tokio::process::Command::new(&cfg.ctl)
        .args(["groups", "describe", "router-service", "--watch", "--interval", "300ms", "-o", "json"])
        .env("CHAT4ALL_HOME", &cfg.home)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    tokio::time::sleep(Duration::from_millis(2000)).await;
    nix_kill(child.id().context("pid")?, "INT");
    let out = tokio::time::timeout(Duration::from_secs(5), child.wait_with_output()).await??;
    ensure!(out.status.success(), "--watch ended with {}", out.status);
    let text = String::from_utf8_lossy(&out.stdout);
    let docs: Vec<Value> = text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    ensure!(docs.len() >= 3, "expected several refreshes (one JSON document per line), got:\n{text}");
    ensure!(docs.iter().all(|d| d["group"] == "router-service"));
    Ok(())
}

fn nix_kill(pid: u32, sig: &str) {
    let _ = std::process::Command::new("kill").arg(format!("-{sig}")).arg(pid.to_string()).status();
}

/// Runs a bad command: exit 2, one line on stderr starting `chat4allctl:`, and returns it.
async fn refused(cfg: &Config, args: &[&str], env: &[(&str, &str)]) -> Result<String> {
    let run = ctl_run(cfg, args, env).await?;
    ensure!(run.code == 2, "`chat4allctl {}` exited {} (stderr {:?})", args.join(" "), run.code, run.stderr);
    let lines: Vec<&str> = run.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    ensure!(
        lines.len() == 1 && lines[0].starts_with("chat4allctl: "),
        "`chat4allctl {}` stderr is not one `chat4allctl:` line: {:?}",
        args.join(" "),
        run.stderr
    );
    Ok(lines[0].to_string())
}

#[tokio::test]
async fn bad_input_exits_2_with_one_line_and_changes_nothing() -> Result<()> {
    let _turn = SERIAL.lock().await;
    let stack = Stack::connect().await?;
    let cfg = &stack.cfg;
    let before: Value = serde_json::from_str(&stack.ctl(&["instances", "-o", "json"]).await?)?;
    let running = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter(|i| i["state"] == "running")
                    .filter_map(|i| i["name"].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let msg = refused(cfg, &["kill", "router-service-99"], &[]).await?;
    ensure!(msg.contains("router-service-99"), "{msg}");
    refused(cfg, &["restart", "no-such-instance"], &[]).await?;
    for bad in ["router=-1", "router=abc", "router", "nosuchservice=2", "broker=2"] {
        refused(cfg, &["scale", bad], &[]).await?;
    }
    refused(cfg, &["groups", "describe", "no-such-group"], &[]).await?;
    let msg = refused(cfg, &["repartition", "chat-events", "--partitions", "1"], &[]).await?;
    ensure!(msg.contains("only increases"), "{msg}");
    refused(cfg, &["repartition", "chat-events", "--partitions", "0"], &[]).await?;
    refused(cfg, &["repartition", "chat-events", "--partitions", "-3"], &[]).await?;
    refused(cfg, &["repartition", "chat-events", "--partitions", "abc"], &[]).await?;
    refused(cfg, &["repartition", "no-such-topic", "--partitions", "8"], &[]).await?;
    refused(cfg, &["no-such-command"], &[]).await?;
    // Nothing listens on port 1: the broker is unreachable within --timeout.
    let started = std::time::Instant::now();
    let msg = refused(
        cfg,
        &["groups", "describe", "router-service", "--timeout", "1s"],
        &[("KAFKA_BOOTSTRAP", "127.0.0.1:1")],
    )
    .await?;
    ensure!(started.elapsed() < Duration::from_secs(10), "the unreachable broker took {:?}", started.elapsed());
    ensure!(msg.contains("127.0.0.1:1") || msg.contains("unreachable") || msg.contains("Broker"), "{msg}");
    refused(cfg, &["lag", "--timeout", "1s", "--sample-for", "0s"], &[("KAFKA_BOOTSTRAP", "127.0.0.1:1")]).await?;
    let after: Value = serde_json::from_str(&stack.ctl(&["instances", "-o", "json"]).await?)?;
    ensure!(running(&before) == running(&after), "instances changed: {before} -> {after}");
    ensure!(!chat4all_tests::relay_paused(&stack).await?, "a refused repartition left the relay paused");
    Ok(())
}

#[tokio::test]
async fn control_api_is_loopback_only_and_needs_the_token() -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let cfg = Config::from_env();
    let token_file = cfg.home.join("control.token");
    let mode =
        std::fs::metadata(&token_file).with_context(|| format!("{}", token_file.display()))?.permissions().mode();
    ensure!(mode & 0o777 == 0o600, "control.token has mode {:o}, expected 600", mode & 0o777);
    let sup: Value = serde_json::from_str(&std::fs::read_to_string(cfg.home.join("supervisor.json"))?)?;
    let url = sup["controlUrl"].as_str().context("controlUrl")?.to_string();
    ensure!(url.starts_with("http://127.0.0.1:"), "control API not on loopback: {url}");
    let http = reqwest::Client::new();
    let none = http.get(format!("{url}/v1/instances")).send().await?;
    ensure!(none.status() == 401, "without a token: {}", none.status());
    let wrong = http.get(format!("{url}/v1/instances")).bearer_auth("not-the-token").send().await?;
    ensure!(wrong.status() == 401, "with a wrong token: {}", wrong.status());
    let body: Value = wrong.json().await?;
    ensure!(body["error"].is_string(), "401 without a JSON error: {body}");
    let token = std::fs::read_to_string(&token_file)?;
    let ok = http.get(format!("{url}/v1/instances")).bearer_auth(token.trim()).send().await?;
    ensure!(ok.status() == 200, "with the token: {}", ok.status());
    Ok(())
}
