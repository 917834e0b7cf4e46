//! Delivery guarantees against the providers as remote services (issue 13): with the WhatsApp
//! provider rejecting 10% of items and timing out after doing the work on 5% of requests, nothing
//! is lost, nothing takes effect twice, and each conversation reaches the provider in order; a
//! connector SIGKILLed mid-stream leaves no duplicate; and with the test-only breakers the counts
//! do move (so the checks can fail).
//!
//! The ground truth is the provider's own record (`chat4all_contract::provider`), read over HTTP.
//! The tests change the WhatsApp provider's faults and the connector, so they take turns; run
//! this file on its own: `cargo test -p chat4all-tests --test delivery`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use chat4all_contract::provider::{
    Faults, RecordOutcome, RecordResponse, RecordSummary, FAULTS_PATH, RECORD_PATH, SUMMARY_PATH,
};
use chat4all_tests::{unique, workspace_dir, MessageBuilder, Stack, WHATSAPP};
use uuid::Uuid;

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Rounds of 30 messages sent until a provider call timed out (a round is only a few calls, each
/// timing out with probability 0.2: a third of the rounds saw none).
const ROUNDS_UNTIL_A_TIMEOUT: usize = 8;

fn port_offset() -> u16 {
    std::env::var("CHAT4ALL_PORT_OFFSET").ok().and_then(|v| v.trim().parse().ok()).unwrap_or(0)
}

/// The WhatsApp provider of the stack under test.
struct Provider {
    base: String,
    http: reqwest::Client,
}

impl Provider {
    fn whatsapp() -> Self {
        let base = std::env::var("CHAT4ALL_WHATSAPP_PROVIDER_URL")
            .unwrap_or_else(|_| format!("http://127.0.0.1:{}", 8075 + port_offset()));
        Self { base, http: reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("client") }
    }

    async fn set_faults(&self, faults: &Faults) -> Result<()> {
        let resp = self.http.put(format!("{}{FAULTS_PATH}", self.base)).json(faults).send().await?;
        ensure!(resp.status().is_success(), "PUT faults: {} {}", resp.status(), resp.text().await?);
        Ok(())
    }

    async fn summary(&self, prefix: &str) -> Result<RecordSummary> {
        let url = format!("{}{SUMMARY_PATH}", self.base);
        let resp = self.http.get(url).query(&[("conversationPrefix", prefix)]).send().await?;
        ensure!(resp.status().is_success(), "GET summary: {}", resp.status());
        Ok(resp.json().await?)
    }

    async fn record(&self, prefix: &str) -> Result<RecordResponse> {
        let url = format!("{}{RECORD_PATH}", self.base);
        let resp = self.http.get(url).query(&[("conversationPrefix", prefix)]).send().await?;
        ensure!(resp.status().is_success(), "GET record: {}", resp.status());
        Ok(resp.json().await?)
    }
}

/// Puts the provider back to healthy when a test ends, even by failing.
struct HealthyOnDrop;

impl Drop for HealthyOnDrop {
    fn drop(&mut self) {
        let p = Provider::whatsapp();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(async { p.set_faults(&Faults::default()).await })
        })
        .join();
    }
}

/// Posts `per_conversation` messages to each of `conversations` (each to its own recipient on
/// WhatsApp), interleaved, and returns the ids in post order per conversation.
async fn post_traffic(
    s: &Stack,
    run: &str,
    conversations: usize,
    per_conversation: usize,
    pace: Duration,
) -> Result<HashMap<String, Vec<Uuid>>> {
    let mut posted: HashMap<String, Vec<Uuid>> = HashMap::new();
    for i in 0..per_conversation {
        for c in 0..conversations {
            let conv = format!("{run}-c{c}");
            let msg = MessageBuilder::new(&conv).text(format!("{i}")).to(&format!("{run}-u{c}"), WHATSAPP);
            let id = s.api.send(&msg.build()).await?;
            posted.entry(conv).or_default().push(id);
            if !pace.is_zero() {
                tokio::time::sleep(pace).await;
            }
        }
    }
    Ok(posted)
}

/// Per conversation (one recipient each): first effects in post order. Returns the violations.
fn order_violations(record: &RecordResponse, posted: &HashMap<String, Vec<Uuid>>) -> Vec<String> {
    let mut firsts: HashMap<&str, Vec<Uuid>> = HashMap::new();
    let mut seen = std::collections::HashSet::new();
    let mut entries: Vec<_> = record.entries.iter().filter(|e| e.outcome == RecordOutcome::Accepted).collect();
    entries.sort_by_key(|e| e.seq);
    for e in entries {
        if seen.insert((e.metadata.message_id, e.metadata.recipient_id.clone())) {
            firsts.entry(e.metadata.conversation_id.as_str()).or_default().push(e.metadata.message_id);
        }
    }
    let mut violations = Vec::new();
    for (conv, ids) in posted {
        let index: HashMap<Uuid, usize> = ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
        let got: Vec<usize> = firsts
            .get(conv.as_str())
            .map(|v| v.iter().filter_map(|m| index.get(m).copied()).collect())
            .unwrap_or_default();
        for w in got.windows(2) {
            if w[1] < w[0] {
                violations.push(format!("{conv}: message #{} took effect before #{}", w[1], w[0]));
            }
        }
    }
    violations
}

async fn wait_all(s: &Stack, posted: &HashMap<String, Vec<Uuid>>, within: Duration) -> Result<()> {
    let ids: Vec<Uuid> = posted.values().flatten().copied().collect();
    s.api.wait_delivered(&ids, Instant::now() + within).await.map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejects_and_timeouts_lose_nothing_duplicate_nothing_and_keep_order() -> Result<()> {
    let _turn = SERIAL.lock().await;
    let s = Stack::connect().await?;
    let p = Provider::whatsapp();
    let _healthy = HealthyOnDrop;
    p.set_faults(&Faults { reject_rate: 0.10, timeout_rate: 0.05, hang_ms: 2_500, ..Faults::default() }).await?;
    let run = unique("faults");
    let posted = post_traffic(&s, &run, 4, 25, Duration::ZERO).await?;
    wait_all(&s, &posted, Duration::from_secs(120)).await?;

    let summary = p.summary(&run).await?;
    println!("provider summary under faults: {summary:?}");
    ensure!(summary.delivered == 100, "100 messages accepted, {} reached the device", summary.delivered);
    ensure!(summary.duplicate_deliveries == 0, "{} duplicate deliveries", summary.duplicate_deliveries);
    ensure!(summary.requests > 100, "faults were injected, so some requests were repeated: {summary:?}");
    let record = p.record(&run).await?;
    let violations = order_violations(&record, &posted);
    ensure!(violations.is_empty(), "order violated: {violations:?}");
    let rejected = record.entries.iter().filter(|e| e.outcome == RecordOutcome::Rejected).count();
    ensure!(rejected > 0, "the provider rejected nothing: the test proves nothing");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connector_killed_mid_stream_delivers_nothing_twice() -> Result<()> {
    let _turn = SERIAL.lock().await;
    let s = Stack::connect().await?;
    let p = Provider::whatsapp();
    let _healthy = HealthyOnDrop;
    // Slow calls, so that the kill lands inside one.
    p.set_faults(&Faults { latency_ms: 300, ..Faults::default() }).await?;
    let run = unique("kill");
    let traffic = {
        let s = Stack::connect().await?;
        let run = run.clone();
        tokio::spawn(async move { post_traffic(&s, &run, 3, 40, Duration::from_millis(10)).await })
    };
    tokio::time::sleep(Duration::from_millis(700)).await;
    s.ctl(&["kill", "whatsapp-connector-1"]).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    s.ctl(&["start", "whatsapp-connector-1"]).await?;
    let posted = traffic.await.context("traffic task")??;
    wait_all(&s, &posted, Duration::from_secs(120)).await?;

    let summary = p.summary(&run).await?;
    println!("provider summary across a connector kill: {summary:?}");
    ensure!(summary.delivered == 120, "120 accepted, {} delivered", summary.delivered);
    ensure!(summary.duplicate_deliveries == 0, "{} duplicate deliveries", summary.duplicate_deliveries);
    let violations = order_violations(&p.record(&run).await?, &posted);
    ensure!(violations.is_empty(), "order violated: {violations:?}");
    // The connector's ledger agrees: one row per delivery, all sent.
    let ids: Vec<Uuid> = posted.values().flatten().copied().collect();
    let (sent, max_attempts): (i64, Option<i32>) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE state = 'sent'), max(attempts) FROM delivery_ledger
         WHERE message_id = ANY($1) AND channel = 'WHATSAPP'",
    )
    .bind(&ids)
    .fetch_one(&s.db)
    .await?;
    println!("ledger: {sent} sent, at most {max_attempts:?} attempts per delivery");
    ensure!(sent == 120, "{sent} ledger rows sent for 120 deliveries");
    Ok(())
}

/// An instance run by the test in place of supervised ones (stopped first), with extra
/// environment; the supervised ones are started again on drop.
struct OwnInstance {
    child: std::process::Child,
    port: u16,
    replaced: Vec<String>,
}

impl OwnInstance {
    async fn start(
        s: &Stack,
        replaced: &[&str],
        name: &str,
        port: u16,
        service: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Self> {
        for r in replaced {
            s.ctl(&["stop", r]).await?;
        }
        let bin = workspace_dir().join("target").join("debug").join("chat4all-server");
        let log = std::fs::File::create(s.cfg.home.join(format!("test-{name}.log")))?;
        let sup: serde_json::Value = std::fs::read_to_string(s.cfg.home.join("supervisor.json"))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
        let url = |p: u16| format!("http://127.0.0.1:{}", p + port_offset());
        let mut cmd = std::process::Command::new(&bin);
        cmd.args(["--instance", name, "--listen", &format!("127.0.0.1:{port}")])
            .args(service)
            .env("DATABASE_URL", &s.cfg.database_url)
            .env("KAFKA_BOOTSTRAP", &s.cfg.kafka_bootstrap)
            .env("CHAT4ALL_GROUP_PROTOCOL", sup["groupProtocol"].as_str().unwrap_or("classic"))
            .env("CHAT4ALL_PROVIDER_URL", &Provider::whatsapp().base)
            .env("CHAT4ALL_WHATSAPP_URL", url(8085))
            .env("CHAT4ALL_TELEGRAM_URL", url(8086))
            .env("CHAT4ALL_INSTAGRAM_URL", url(8087))
            .stdout(log.try_clone()?)
            .stderr(log);
        if let Some(redis) = sup["redisUrl"].as_str() {
            cmd.env("REDIS_URL", redis);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().with_context(|| format!("starting {}", bin.display()))?;
        let me = Self { child, port, replaced: replaced.iter().map(|r| r.to_string()).collect() };
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let up = http.get(format!("http://127.0.0.1:{port}/health/live")).send().await;
            if matches!(up, Ok(r) if r.status().is_success()) {
                return Ok(me);
            }
            ensure!(Instant::now() < deadline, "the test's {name} did not come up (see test-{name}.log)");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The WhatsApp connector, with `env`.
    async fn connector(s: &Stack, env: &[(&str, &str)]) -> Result<Self> {
        let name = "whatsapp-connector-1";
        Self::start(s, &[name], name, 8085 + port_offset(), &["connector", "--channel", WHATSAPP], env).await
    }

    async fn metric(&self, name: &str) -> Result<f64> {
        let text = reqwest::get(format!("http://127.0.0.1:{}/metrics", self.port)).await?.text().await?;
        Ok(text.lines().filter(|l| l.starts_with(name)).filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum())
    }
}

impl Drop for OwnInstance {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let cfg = chat4all_tests::Config::from_env();
        let replaced = std::mem::take(&mut self.replaced);
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(async {
                for r in replaced {
                    let _ = chat4all_tests::ctl(&cfg, &["start", &r]).await;
                }
            })
        })
        .join();
    }
}

/// Without the hold-back (connector breaker), a rejected message is retried after its successors
/// went through: the order check fails, so it can.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_holdback_rejections_reorder_a_conversation() -> Result<()> {
    let _turn = SERIAL.lock().await;
    let s = Stack::connect().await?;
    let p = Provider::whatsapp();
    let _healthy = HealthyOnDrop;
    let _connector =
        OwnInstance::connector(&s, &[("CHAT4ALL_UNSAFE_NO_HOLDBACK", "1"), ("CHAT4ALL_CONNECTOR_ATTEMPTS", "30")])
            .await?;
    p.set_faults(&Faults { reject_rate: 0.25, ..Faults::default() }).await?;
    let run = unique("nohold");
    let posted = post_traffic(&s, &run, 3, 15, Duration::ZERO).await?;
    wait_all(&s, &posted, Duration::from_secs(120)).await?;
    let summary = p.summary(&run).await?;
    let violations = order_violations(&p.record(&run).await?, &posted);
    println!("without hold-back: {summary:?}, {} order violations", violations.len());
    ensure!(summary.delivered == 45 && summary.duplicate_deliveries == 0, "{summary:?}");
    ensure!(!violations.is_empty(), "no order violation without the hold-back: the check cannot fail");
    Ok(())
}

/// Without idempotency keys a timeout after the work makes the resend a second delivery: the
/// count moves, and every duplicate is one the connector counted as an unknown-outcome resend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_idempotency_keys_timeouts_deliver_twice_and_are_counted() -> Result<()> {
    let _turn = SERIAL.lock().await;
    let s = Stack::connect().await?;
    let p = Provider::whatsapp();
    let _healthy = HealthyOnDrop;
    let connector = OwnInstance::connector(&s, &[("CHAT4ALL_UNSAFE_NO_IDEMPOTENCY_KEY", "1")]).await?;
    p.set_faults(&Faults { timeout_rate: 0.2, hang_ms: 2_500, ..Faults::default() }).await?;
    let run = unique("nokey");
    // The fault is per provider call and a call carries a batch: a round of 30 messages may be
    // a few calls that all answer in time. Send rounds until a timeout forced a resend.
    let mut sent: u64 = 0;
    for round in 0..ROUNDS_UNTIL_A_TIMEOUT {
        let posted = post_traffic(&s, &format!("{run}r{round}"), 3, 10, Duration::ZERO).await?;
        wait_all(&s, &posted, Duration::from_secs(120)).await?;
        sent += 30;
        if connector.metric("chat4all_connector_unknown_outcome_resends_total").await? > 0.0 {
            break;
        }
    }
    let summary = p.summary(&run).await?;
    let resends = connector.metric("chat4all_connector_unknown_outcome_resends_total").await?;
    println!("without keys: {summary:?}, unknown-outcome resends {resends}");
    ensure!(resends > 0.0, "no provider call timed out in {sent} messages: nothing was tested");
    ensure!(summary.delivered == sent, "{sent} accepted, {} delivered", summary.delivered);
    ensure!(summary.duplicate_deliveries > 0, "no duplicate although keys are off: the count cannot fail");
    ensure!(
        summary.duplicate_deliveries as f64 <= resends,
        "{} duplicates but only {resends} counted unknown-outcome resends",
        summary.duplicate_deliveries
    );
    Ok(())
}

/// The same timeouts with keys (and the ledger): the resends are replays, no duplicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_keys_the_same_timeouts_are_replays() -> Result<()> {
    let _turn = SERIAL.lock().await;
    let s = Stack::connect().await?;
    let p = Provider::whatsapp();
    let _healthy = HealthyOnDrop;
    p.set_faults(&Faults { timeout_rate: 0.2, hang_ms: 2_500, ..Faults::default() }).await?;
    let run = unique("keys");
    let mut sent: u64 = 0;
    for round in 0..ROUNDS_UNTIL_A_TIMEOUT {
        let posted = post_traffic(&s, &format!("{run}r{round}"), 3, 10, Duration::ZERO).await?;
        wait_all(&s, &posted, Duration::from_secs(120)).await?;
        sent += 30;
        if p.summary(&run).await?.replayed > 0 {
            break;
        }
    }
    let summary = p.summary(&run).await?;
    println!("with keys: {summary:?}");
    ensure!(summary.replayed > 0, "no provider call timed out in {sent} messages: nothing was tested");
    ensure!(summary.delivered == sent && summary.duplicate_deliveries == 0, "{summary:?}");
    Ok(())
}

/// Asks the WhatsApp connector directly (its HTTP API) to deliver `posted` again (what a
/// redelivered hand-off does) and returns how many of the answers were ok.
async fn redeliver(posted: &HashMap<String, Vec<Uuid>>, run: &str) -> Result<usize> {
    use chat4all_contract::connector::{DeliveryItem, DeliveryRequest, DeliveryResponse, DELIVERIES_PATH};
    let mut items = Vec::new();
    for (conv, ids) in posted {
        let c: usize = conv.rsplit('c').next().and_then(|n| n.parse().ok()).context("conversation number")?;
        for id in ids {
            items.push(DeliveryItem {
                message_id: *id,
                recipient_id: format!("{run}-u{c}"),
                channel: chat4all_contract::channel::Channel::Whatsapp,
                conversation_id: conv.clone(),
                text: "again".into(),
                address: None,
            });
        }
    }
    let url = format!("http://127.0.0.1:{}{DELIVERIES_PATH}", 8085 + port_offset());
    let resp: DeliveryResponse = reqwest::Client::new()
        .post(url)
        .json(&DeliveryRequest { items, unordered: false })
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok(resp.results.iter().filter(|r| r.ok).count())
}

/// A redelivery (a router re-routing what was delivered) is answered from the ledger without a
/// provider request; without the ledger (breaker) every item reaches the provider again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ledger_answers_redeliveries_without_asking_the_provider() -> Result<()> {
    let _turn = SERIAL.lock().await;
    let s = Stack::connect().await?;
    let p = Provider::whatsapp();
    let run = unique("ledger");
    let posted = post_traffic(&s, &run, 2, 5, Duration::ZERO).await?;
    wait_all(&s, &posted, Duration::from_secs(60)).await?;
    let before = p.summary(&run).await?;
    ensure!(redeliver(&posted, &run).await? == 10, "the redelivery is answered ok");
    let after = p.summary(&run).await?;
    ensure!(after.requests == before.requests, "with the ledger: {before:?} -> {after:?}");

    let _connector = OwnInstance::connector(&s, &[("CHAT4ALL_UNSAFE_NO_LEDGER", "1")]).await?;
    ensure!(redeliver(&posted, &run).await? == 10, "the redelivery is answered ok");
    let unledgered = p.summary(&run).await?;
    println!("redelivery with the ledger: {after:?}; without: {unledgered:?}");
    ensure!(
        unledgered.duplicate_requests >= after.duplicate_requests + 10,
        "without the ledger every redelivered item reaches the provider: {after:?} -> {unledgered:?}"
    );
    ensure!(unledgered.duplicate_deliveries == 0, "the keys still make them replays: {unledgered:?}");
    Ok(())
}

/// A metric of the supervised WhatsApp connector (summed over its labels).
async fn connector_metric(name: &str) -> Result<f64> {
    let url = format!("http://127.0.0.1:{}/metrics", 8085 + port_offset());
    let text = reqwest::get(url).await?.text().await?;
    Ok(text.lines().filter(|l| l.starts_with(name)).filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum())
}

/// A recipient the provider keeps rejecting is the connector's dead letter once out of
/// attempts: reported FAILED through `status-updates` with the provider's reason (the router
/// never hears of it), counted, and its conversation goes on afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_attempts_the_connector_dead_letters_and_reports_failed() -> Result<()> {
    let _turn = SERIAL.lock().await;
    let s = Stack::connect().await?;
    let p = Provider::whatsapp();
    let _healthy = HealthyOnDrop;
    let before = connector_metric("chat4all_connector_dead_lettered_total").await?;
    p.set_faults(&Faults { reject_rate: 1.0, ..Faults::default() }).await?;
    let run = unique("dead");
    let posted = post_traffic(&s, &run, 1, 1, Duration::ZERO).await?;
    let id = posted.values().flatten().copied().next().context("posted")?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let (status, reason) = loop {
        let row: (String, Option<String>) =
            sqlx::query_as("SELECT status, failure_reason FROM deliveries WHERE message_id = $1")
                .bind(id)
                .fetch_one(&s.db)
                .await?;
        if row.0 == "FAILED" || Instant::now() > deadline {
            break row;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let after = connector_metric("chat4all_connector_dead_lettered_total").await?;
    println!("dead-lettered by the connector: status {status}, reason {reason:?}, counter {before} -> {after}");
    ensure!(status == "FAILED", "the delivery is {status}, not FAILED, after 60 s of rejections");
    ensure!(reason.is_some(), "FAILED without a reason");
    ensure!(after >= before + 1.0, "the connector counted no dead letter: {before} -> {after}");
    let rejected = p.summary(&run).await?.rejected;
    ensure!(rejected == 5, "5 attempts (the connector's default) reached the provider, saw {rejected}");

    p.set_faults(&Faults::default()).await?;
    let conv = format!("{run}-c0");
    let next = s.api.send(&MessageBuilder::new(&conv).text("after").to(&format!("{run}-u0"), WHATSAPP).build()).await?;
    s.api.wait_delivered(&[next], Instant::now() + Duration::from_secs(60)).await?;
    Ok(())
}
