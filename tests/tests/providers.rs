//! The simulated providers as deployed by `chat4allctl up` (issue 13): each fault changes the
//! provider's record the way its contract says, a benchmark through the whole pipeline with the
//! providers rejecting 10% loses nothing and delivers nothing twice, and with the providers'
//! idempotency off and timeouts after the work, the benchmark's `duplicateDeliveries` moves (so
//! its zero means something).
//!
//! The tests change providers' faults, so they take turns (and put the faults back); run this
//! file on its own: `cargo test -p chat4all-tests --test providers`.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use chat4all_contract::provider::{Metadata, SendRequest, SendResult, SendStatus, SEND_PATH};
use chat4all_tests::{
    ctl, ctl_run, provider_faults, provider_record, provider_summary, provider_summary_of, provider_url,
    set_provider_faults, unique, Config, Faults, HealthyOnDrop, RecordOutcome, INSTAGRAM,
};
use serde_json::Value;
use uuid::Uuid;

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn message(conversation: &str, recipient: &str) -> SendRequest {
    SendRequest {
        idempotency_key: None,
        to: format!("ig:{recipient}"),
        text: "hello".into(),
        metadata: Metadata {
            message_id: Uuid::now_v7(),
            recipient_id: recipient.into(),
            conversation_id: conversation.into(),
        },
    }
}

/// One direct send to the Instagram provider; the HTTP status and the body (None when the
/// connection broke or the body is not a result).
async fn send(cfg: &Config, key: Option<&str>, m: &SendRequest) -> Result<(u16, Option<SendResult>)> {
    let http = reqwest::Client::builder().timeout(Duration::from_millis(1500)).build()?;
    let mut req = http.post(format!("{}{SEND_PATH}", provider_url(cfg, INSTAGRAM))).json(m);
    if let Some(k) = key {
        req = req.header("Idempotency-Key", k);
    }
    match req.send().await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            let body = resp.bytes().await.ok().and_then(|b| serde_json::from_slice(&b).ok());
            Ok((status, body))
        }
        Err(_) => Ok((0, None)),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_fault_changes_the_record_as_its_contract_says() -> Result<()> {
    let _turn = SERIAL.lock().await;
    let cfg = Config::from_env();
    let _healthy = HealthyOnDrop::all(&cfg);
    let run = unique("prov");
    let conv = format!("{run}-c0");
    let set = |f: Faults| {
        let cfg = cfg.clone();
        async move { set_provider_faults(&cfg, INSTAGRAM, &f).await }
    };

    // Healthy with a key: one effect, the second request a replay.
    let m1 = message(&conv, "u1");
    let (s1, r1) = send(&cfg, Some("k1"), &m1).await?;
    let (_, r2) = send(&cfg, Some(&format!("{run}-k1")), &m1).await?;
    ensure!(s1 == 200 && r1.as_ref().is_some_and(|r| r.status == SendStatus::Accepted), "healthy send: {r1:?}");
    ensure!(r2.is_some_and(|r| r.status == SendStatus::Accepted), "a second key is a new request");
    let (_, again) = send(&cfg, Some("k1"), &m1).await?;
    ensure!(again.is_some_and(|r| r.replayed), "the same key again is a replay");

    // Reject: nothing done. Error: 500, nothing done. Down: 503, nothing done.
    let m2 = message(&conv, "u2");
    set(Faults { reject_rate: 1.0, ..Faults::default() }).await?;
    let (_, rej) = send(&cfg, Some(&format!("{run}-k2")), &m2).await?;
    ensure!(rej.is_some_and(|r| r.status == SendStatus::Rejected && r.retryable), "a rejection is retryable");
    set(Faults { error_rate: 1.0, ..Faults::default() }).await?;
    ensure!(send(&cfg, Some(&format!("{run}-k2")), &m2).await?.0 == 500, "error fault answers 500");
    set(Faults { down: true, ..Faults::default() }).await?;
    ensure!(send(&cfg, Some(&format!("{run}-k2")), &m2).await?.0 == 503, "down answers 503");

    // Garbage, reset, timeout: done, but the caller cannot read the answer.
    let m3 = message(&conv, "u3");
    set(Faults { garbage_rate: 1.0, ..Faults::default() }).await?;
    let (st, body) = send(&cfg, Some(&format!("{run}-k3")), &m3).await?;
    ensure!(st == 200 && body.is_none(), "garbage is a 200 that is not a result");
    let m4 = message(&conv, "u4");
    set(Faults { reset_rate: 1.0, ..Faults::default() }).await?;
    ensure!(send(&cfg, Some(&format!("{run}-k4")), &m4).await?.1.is_none(), "a reset breaks the answer");
    let m5 = message(&conv, "u5");
    set(Faults { timeout_rate: 1.0, hang_ms: 5_000, ..Faults::default() }).await?;
    ensure!(send(&cfg, Some(&format!("{run}-k5")), &m5).await?.0 == 0, "a timeout outlasts the caller");

    // Idempotency off: the same key twice is two effects.
    let m6 = message(&conv, "u6");
    set(Faults { idempotency: false, ..Faults::default() }).await?;
    send(&cfg, Some(&format!("{run}-k6")), &m6).await?;
    send(&cfg, Some(&format!("{run}-k6")), &m6).await?;
    set(Faults::default()).await?;

    let s = provider_summary_of(&cfg, INSTAGRAM, &run).await?;
    println!("instagram provider summary for {run}: {s:?}");
    // m1: 3 requests (accepted, accepted under another key, replayed) -> 2 effects;
    // m2: 3 requests, none done; m3, m4, m5: one effect each; m6: 2 effects.
    ensure!(s.requests == 3 + 3 + 3 + 2, "requests: {s:?}");
    ensure!(s.delivered == 5, "delivered (m1, m3, m4, m5, m6): {s:?}");
    ensure!(s.duplicate_deliveries == 2, "m1 under two keys and m6 without idempotency: {s:?}");
    ensure!((s.rejected, s.failed, s.replayed) == (1, 2, 1), "outcomes: {s:?}");
    let record = provider_record(&cfg, &run).await?;
    let m2_outcomes: Vec<RecordOutcome> =
        record.iter().filter(|e| e.metadata.message_id == m2.metadata.message_id).map(|e| e.outcome).collect();
    ensure!(
        m2_outcomes == [RecordOutcome::Rejected, RecordOutcome::Failed, RecordOutcome::Failed],
        "m2 in the record: {m2_outcomes:?}"
    );
    // The prefix isolates: another run's conversations are not counted.
    ensure!(provider_summary(&cfg, &unique("nothing")).await?.requests == 0);
    Ok(())
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or(u64::MAX)
}

async fn bench(cfg: &Config, extra: &[&str]) -> Result<Value> {
    let mut args = vec!["bench", "--rate", "40", "--duration", "5s", "--drain-timeout", "90s", "-o", "json"];
    args.extend_from_slice(extra);
    let run = ctl_run(cfg, &args, &[]).await?;
    serde_json::from_str(&run.stdout)
        .with_context(|| format!("bench printed no JSON (exit {}): {}", run.code, run.stderr))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bench_with_providers_rejecting_ten_percent_loses_nothing_and_restores_the_faults() -> Result<()> {
    let _turn = SERIAL.lock().await;
    let cfg = Config::from_env();
    let _healthy = HealthyOnDrop::all(&cfg);
    let r = bench(&cfg, &["--provider-failure-rate", "0.1"]).await?;
    println!("bench: {}", serde_json::to_string(&r)?);
    let run_id = r["runId"].as_str().context("runId")?;
    ensure!(u(&r["accepted"]) == 200, "accepted: {}", r["accepted"]);
    ensure!(u(&r["lost"]) == 0, "lost: {}", r["lost"]);
    ensure!(u(&r["duplicateDeliveries"]) == 0, "duplicateDeliveries: {}", r["duplicateDeliveries"]);
    ensure!(u(&r["orderViolations"]) == 0, "orderViolations: {}", r["orderViolations"]);
    // The rejections happened (so the zero above was earned): retried requests.
    ensure!(u(&r["duplicateRequests"]) > 0, "no request was retried: the failure rate did nothing");
    // The same, read independently from the providers.
    let s = provider_summary(&cfg, &format!("{run_id}-c")).await?;
    ensure!(s.delivered == 400 && s.duplicate_deliveries == 0 && s.rejected > 0, "providers: {s:?}");
    for ch in ["WHATSAPP", "TELEGRAM", INSTAGRAM] {
        let f = provider_faults(&cfg, ch).await?;
        ensure!(f == Faults::default(), "{ch}'s faults were not restored: {f:?}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_idempotency_timeouts_after_the_work_become_duplicate_deliveries() -> Result<()> {
    let _turn = SERIAL.lock().await;
    let cfg = Config::from_env();
    let _healthy = HealthyOnDrop::all(&cfg);
    // Done, then answered after the connector gave up (its timeout is 2 s): the connector asks
    // again with the same key, which this provider no longer honours.
    ctl(&cfg, &["provider", "faults", "all", "--timeout-rate", "0.3", "--hang-ms", "2500", "--no-idempotency"]).await?;
    let r = bench(&cfg, &[]).await;
    ctl(&cfg, &["provider", "faults", "all", "--clear"]).await?;
    let r = r?;
    println!("bench: {}", serde_json::to_string(&r)?);
    let run_id = r["runId"].as_str().context("runId")?;
    ensure!(u(&r["duplicateDeliveries"]) > 0, "no duplicate delivery counted: {r}");
    let s = provider_summary(&cfg, &format!("{run_id}-c")).await?;
    ensure!(s.duplicate_deliveries == u(&r["duplicateDeliveries"]), "bench and providers disagree: {s:?}");
    Ok(())
}

#[tokio::test]
async fn the_provider_command_refuses_bad_input_with_exit_2() -> Result<()> {
    let cfg = Config::from_env();
    for args in [
        &["provider", "faults", "sms"][..],
        &["provider", "faults", "all", "--reject", "1.5"],
        &["provider", "faults", "all", "--timeout-rate", "0.6", "--error", "0.6"],
    ] {
        let run = ctl_run(&cfg, args, &[]).await?;
        ensure!(run.code == 2, "{args:?}: exit {} ({})", run.code, run.stderr);
        ensure!(run.stderr.lines().count() >= 1, "{args:?}: no reason given");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_active_drill_with_providers_rejecting_ten_percent_loses_nothing() -> Result<()> {
    let _turn = SERIAL.lock().await;
    let cfg = Config::from_env();
    let _healthy = HealthyOnDrop::all(&cfg);
    let run = ctl_run(&cfg, &["drill", "kill-active", "--provider-failure-rate", "0.1", "-o", "json"], &[]).await?;
    let r: Value = serde_json::from_str(&run.stdout)
        .with_context(|| format!("the drill printed no JSON (exit {}): {}", run.code, run.stderr))?;
    let c = &r["counts"];
    println!("drill counts: {c}");
    ensure!(u(&c["lost"]) == 0 && u(&c["duplicateDeliveries"]) == 0, "counts: {c}");
    ensure!(u(&c["orderViolations"]) == 0, "counts: {c}");
    ensure!(u(&c["duplicateRequests"]) > 0, "nothing was retried: the failure rate did nothing ({c})");
    ensure!(run.code == 0 && r["passed"] == true, "verdict: {}", r["criteria"]);
    ensure!(r["plan"]["providerFailureRate"] == 0.1, "the plan names the failure rate: {}", r["plan"]);
    for ch in ["WHATSAPP", "TELEGRAM", INSTAGRAM] {
        ensure!(provider_faults(&cfg, ch).await? == Faults::default(), "{ch}'s faults were not restored");
    }
    Ok(())
}
