//! What Kafka lag cannot see, in `chat4allctl status -o json` and on the exporter: a paused relay
//! and the age of the oldest pending delivery grow within seconds and name their stage; the
//! relay's publish rate is measured; a stopped connector shows as its channel's stall alone.

use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use chat4all_tests::{metric, unique, wait_for, wait_relay, MessageBuilder, Stack, TELEGRAM, WHATSAPP};
use serde_json::Value;

async fn status(stack: &Stack) -> Result<Value> {
    Ok(serde_json::from_str(&stack.ctl(&["status", "-o", "json"]).await?)?)
}

fn age(status: &Value, channel: &str) -> f64 {
    status["freshness"]
        .as_array()
        .and_then(|a| a.iter().find(|f| f["channel"] == channel))
        .and_then(|f| f["oldestPendingSeconds"].as_f64())
        .unwrap_or(-1.0)
}

fn stages(status: &Value) -> Vec<(String, Option<String>)> {
    status["stalls"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|s| (s["stage"].as_str().unwrap_or("?").to_string(), s["channel"].as_str().map(str::to_string)))
                .collect()
        })
        .unwrap_or_default()
}

/// One test: both cases change the whole stack (a pause, a connector down) and would see each
/// other's stalls if they ran side by side.
#[tokio::test]
async fn stalls_are_seen_where_they_are() -> Result<()> {
    let stack = Stack::connect().await?;
    let exporter = stack.exporter_url()?;
    let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build()?;

    // A pause (as a repartition whose process hangs would hold it): within 5 s of the first
    // waiting message, status shows the relay paused by its holder and the outbox aging.
    stack.ctl(&["relay", "pause", "--for", "60s", "--by", "pipeline-health-test"]).await?;
    let m = MessageBuilder::new(&unique("health-pause")).text("waits in the outbox").to(&unique("r"), WHATSAPP);
    let id = stack.api.post_message(&m.build()).await?.message_id()?;
    let posted = Instant::now();
    let seen = wait_for("status to show the paused relay and a growing outbox age", Duration::from_secs(5), || async {
        let s = status(&stack).await?;
        let ok = s["relay"]["paused"]["by"] == "pipeline-health-test"
            && s["relay"]["oldestSeconds"].as_f64().unwrap_or(0.0) > 0.0
            && stages(&s).first().is_some_and(|(stage, _)| stage == "relay-paused");
        Ok((ok.then(|| s.clone()), s.to_string()))
    })
    .await;
    let seen_after = posted.elapsed();
    // The exporter serves the same figures (it samples every 2 s).
    let exported = match &seen {
        Ok(_) => wait_for("the exporter to serve the paused outbox", Duration::from_secs(6), || async {
            let page = http.get(&exporter).send().await?.text().await?;
            let paused = metric(&page, "chat4all_outbox_paused") == Some(1.0)
                && metric(&page, "chat4all_outbox_backlog").unwrap_or(0.0) >= 1.0
                && metric(&page, "chat4all_outbox_oldest_seconds").unwrap_or(0.0) > 0.0
                && metric(&page, "chat4all_delivery_oldest_pending_seconds{channel=\"whatsapp\"").unwrap_or(0.0) > 0.0;
            let lines: Vec<&str> =
                page.lines().filter(|l| l.starts_with("chat4all_outbox") || l.contains("oldest_pending")).collect();
            Ok((paused.then_some(()), lines.join("\n")))
        })
        .await
        .map(|_| ()),
        Err(_) => Ok(()),
    };
    let resumed = stack.ctl(&["relay", "resume", "--by", "pipeline-health-test"]).await;
    let seen = seen?;
    resumed?;
    exported?;
    ensure!(seen_after < Duration::from_secs(6), "status showed the pause after {seen_after:?}");
    ensure!(seen["relay"]["backlog"].as_i64().unwrap_or(0) >= 1, "backlog: {seen}");
    stack.api.wait_delivered(&[id], Instant::now() + Duration::from_secs(30)).await?;
    wait_relay(&stack, false, Duration::from_secs(5)).await?;

    // Running again: under a steady 40 msg/s, status measures the relay's publish rate.
    let conversation = unique("health-rate");
    let sending = async {
        let mut ids = Vec::new();
        for i in 0..120 {
            let m = MessageBuilder::new(&conversation).text(format!("m{i}")).to(&unique("r"), WHATSAPP);
            ids.push(stack.api.post_message(&m.build()).await?.message_id()?);
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        anyhow::Ok(ids)
    };
    let measuring = async {
        tokio::time::sleep(Duration::from_millis(800)).await;
        status(&stack).await
    };
    let (ids, s) = tokio::join!(sending, measuring);
    let (ids, s) = (ids?, s?);
    let rate = s["outboxPublishedPerSecond"].as_f64().unwrap_or(-1.0);
    ensure!(rate > 5.0, "publish rate {rate} msg/s while ~30 msg/s were accepted: {s}");
    stack.api.wait_delivered(&ids, Instant::now() + Duration::from_secs(30)).await?;

    // The telegram connector stopped: its channel's oldest pending delivery ages past the stall
    // threshold and is named; whatsapp, delivered from the same message, is not.
    stack.ctl(&["stop", "telegram-connector-1"]).await?;
    let result = async {
        let m = MessageBuilder::new(&unique("health-conn"))
            .text("telegram waits")
            .to(&unique("tg"), TELEGRAM)
            .to(&unique("wa"), WHATSAPP);
        stack.api.post_message(&m.build()).await?.message_id()?;
        let s = wait_for("telegram to stall", Duration::from_secs(40), || async {
            let s = status(&stack).await?;
            Ok((stages(&s).iter().any(|(_, c)| c.as_deref() == Some("telegram")).then(|| s.clone()), s.to_string()))
        })
        .await?;
        ensure!(age(&s, "TELEGRAM") > 10.0, "telegram age: {s}");
        ensure!(age(&s, "WHATSAPP") < 10.0, "whatsapp is not stalled: {s}");
        let st = stages(&s);
        ensure!(
            st == vec![("channel".to_string(), Some("telegram".to_string()))],
            "only telegram's connector stalls: {st:?}"
        );
        Ok(())
    }
    .await;
    stack.ctl(&["start", "telegram-connector-1"]).await.context("starting the connector again")?;
    result?;
    wait_for("telegram to catch up", Duration::from_secs(60), || async {
        let s = status(&stack).await?;
        Ok((stages(&s).is_empty().then_some(()), s.to_string()))
    })
    .await
}
