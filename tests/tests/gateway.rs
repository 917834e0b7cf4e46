//! api-gateway through its public port with real API keys: every route reaches its service,
//! 401 without / with a bad / with a revoked key, the per-key rate limit (429 + Retry-After),
//! request ids, /health and /metrics open, and 504 when an upstream does not answer.
//!
//! Needs a running stack (`chat4allctl up --detach`) with the gateway.

#[path = "support/gateway_client.rs"]
mod gateway_client;

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use chat4all_tests::{ctl_run, unique, Config, MessageBuilder, Stack, TELEGRAM, WHATSAPP};
use gateway_client::{create_key, gateway_url, reply, Gw};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// The 504 test freezes the user-service; the others must not run meanwhile.
static FREEZE: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

fn sha_hex(s: &str) -> String {
    format!("{:x}", Sha256::digest(s.as_bytes()))
}

#[tokio::test]
async fn requests_without_or_with_a_bad_key_get_401_json() -> Result<()> {
    let _shared = FREEZE.read().await;
    let cfg = Config::from_env();
    let base = gateway_url(&cfg)?;
    let http = reqwest::Client::new();
    for path in
        ["/api/v1/users", "/api/v1/messages/00000000-0000-0000-0000-000000000000", "/api/v1/files/x", "/api/v1/nope"]
    {
        let r = reply(http.get(format!("{base}{path}")).send().await?).await?;
        r.expect(401, &format!("GET {path} without a key"))?;
        assert!(r.error().is_some_and(|e| e.contains("missing API key")), "{}", r.raw);
    }
    let bad = [
        "Bearer c4a_0000000000000000000000000000000000000000000000000000000000000000",
        "Bearer ",
        "Basic dXNlcjpwYXNz",
        "c4a_nobearer",
    ];
    for auth in bad {
        let resp = http.get(format!("{base}/api/v1/users")).header("authorization", auth).send().await?;
        assert_eq!(resp.headers().get("www-authenticate").map(|v| v.to_str().unwrap()), Some("Bearer"));
        let r = reply(resp).await?;
        r.expect(401, &format!("Authorization: {auth:?}"))?;
        assert!(r.error().is_some(), "JSON error body expected, got {}", r.raw);
    }
    // A POST without a key writes nothing.
    let r = reply(http.post(format!("{base}/api/v1/users")).json(&json!({"name": "intruder"})).send().await?).await?;
    r.expect(401, "POST without a key")?;
    // Open endpoints.
    let health = reply(http.get(format!("{base}/health")).send().await?).await?;
    health.expect(200, "/health without a key")?;
    assert_eq!(health.body["service"], "api-gateway");
    let metrics = http.get(format!("{base}/metrics")).send().await?;
    assert_eq!(metrics.status().as_u16(), 200);
    let text = metrics.text().await?;
    assert!(text.contains("http_requests_total"), "metrics without the request counter:\n{text}");
    assert!(text.contains("status=\"401\""), "the 401s above are not counted:\n{text}");
    Ok(())
}

#[tokio::test]
async fn keys_are_stored_hashed_and_revocation_takes_effect() -> Result<()> {
    let _shared = FREEZE.read().await;
    let stack = Stack::connect().await?;
    let cfg = &stack.cfg;
    let (name, key) = create_key(cfg, "revoke", 100.0, 100).await?;
    let gw = Gw { base: gateway_url(cfg)?, key: Some(key.clone()), http: reqwest::Client::new() };
    gw.get("/api/v1/users?limit=1").await?.expect(200, "a fresh key")?;

    // Only the SHA-256 is stored; the key itself appears nowhere in the row.
    let row: (String, String) = sqlx::query_as("SELECT key_hash, prefix FROM api_keys WHERE name = $1")
        .bind(&name)
        .fetch_one(&stack.db)
        .await?;
    assert_eq!(row.0, sha_hex(&key));
    assert!(key.starts_with(&row.1) && row.1.len() < 16, "prefix {:?} reveals too much", row.1);

    // The same name again: usage error, exit 2, nothing changed.
    let dup = ctl_run(cfg, &["apikey", "create", &name], &[]).await?;
    assert_eq!(dup.code, 2, "{dup:?}");
    assert!(dup.stderr.starts_with("chat4allctl: "), "{dup:?}");
    let bad = ctl_run(cfg, &["apikey", "create", "no spaces allowed"], &[]).await?;
    assert_eq!(bad.code, 2, "{bad:?}");

    let list = stack.ctl(&["apikey", "list", "-o", "json"]).await?;
    let keys: Vec<Value> = serde_json::from_str(&list)?;
    let mine = keys.iter().find(|k| k["name"] == name.as_str()).expect("listed");
    assert!(mine["revokedAt"].is_null());
    assert!(!list.contains(&key), "list prints the secret");

    stack.ctl(&["apikey", "revoke", &name]).await?;
    let again = ctl_run(cfg, &["apikey", "revoke", &name], &[]).await?;
    assert_eq!(again.code, 2, "revoking twice: {again:?}");
    // The gateway caches lookups for 2 s.
    let deadline = Instant::now() + Duration::from_secs(6);
    loop {
        let r = gw.get("/api/v1/users?limit=1").await?;
        if r.status == 401 {
            break;
        }
        if Instant::now() > deadline {
            bail!("the revoked key still works after 6 s: {} {}", r.status, r.raw);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let list: Vec<Value> = serde_json::from_str(&stack.ctl(&["apikey", "list", "-o", "json"]).await?)?;
    assert!(!list.iter().find(|k| k["name"] == name.as_str()).unwrap()["revokedAt"].is_null());
    Ok(())
}

#[tokio::test]
async fn the_rate_limit_answers_429_with_retry_after_per_key() -> Result<()> {
    let _shared = FREEZE.read().await;
    let cfg = Config::from_env();
    let limited = Gw::with_key(&cfg, 1.0, 5).await?;
    let other = Gw::with_key(&cfg, 100.0, 100).await?;
    let mut codes = Vec::new();
    for _ in 0..5 {
        codes.push(limited.get("/api/v1/users?limit=1").await?.status);
    }
    assert_eq!(codes, vec![200; 5], "the burst of 5 must pass");
    let resp = limited.req(reqwest::Method::GET, "/api/v1/users?limit=1").send().await?;
    let retry: u64 = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok()?.parse().ok())
        .unwrap_or_else(|| panic!("429 without Retry-After: {:?}", resp.headers()));
    let r = reply(resp).await?;
    r.expect(429, "the 6th request in a burst of 5")?;
    assert!(r.error().is_some_and(|e| e.contains("rate limit")), "{}", r.raw);
    assert!((1..=2).contains(&retry), "Retry-After {retry}");
    // Another key has its own bucket.
    other.get("/api/v1/users?limit=1").await?.expect(200, "another key while the first is limited")?;
    // Honouring Retry-After is enough.
    tokio::time::sleep(Duration::from_secs(retry)).await;
    limited.get("/api/v1/users?limit=1").await?.expect(200, "after Retry-After")?;
    Ok(())
}

#[tokio::test]
async fn every_route_reaches_its_service() -> Result<()> {
    let _shared = FREEZE.read().await;
    let cfg = Config::from_env();
    let gw = Gw::with_key(&cfg, 1000.0, 1000).await?;
    // message-service: POST, GET by id, conversation page.
    let conv = unique("gw-conv");
    let body = MessageBuilder::new(&conv).to(&unique("u"), WHATSAPP).to(&unique("u"), TELEGRAM).build();
    let posted = gw.post_json("/api/v1/messages", &body).await?;
    posted.expect(202, "POST /api/v1/messages")?;
    let id = posted.message_id()?;
    let got = gw.get(&format!("/api/v1/messages/{id}")).await?;
    got.expect(200, "GET /api/v1/messages/{id}")?;
    assert_eq!(got.body["conversationId"], conv.as_str());
    let page = gw.get(&format!("/api/v1/conversations/{conv}/messages?limit=10")).await?;
    page.expect(200, "conversation page")?;
    assert_eq!(page.body["messages"][0]["messageId"], id.to_string().as_str());
    // The services' own validation answers come through unchanged.
    let bad = gw.post_json("/api/v1/messages", &json!({"conversationId": conv})).await?;
    bad.expect(400, "invalid message")?;
    assert_eq!(bad.field(), Some("senderId"));
    // user-service (users and identities) and file-service.
    gw.get("/api/v1/users?limit=1").await?.expect(200, "GET /api/v1/users")?;
    let r = gw.get("/api/v1/identities/resolve?channel=WHATSAPP&id=nobody-here").await?;
    r.expect(404, "resolve of an unknown identity")?;
    let r = gw.get("/api/v1/files/00000000-0000-0000-0000-000000000000").await?;
    r.expect(404, "unknown file")?;
    assert!(r.error().is_some_and(|e| e.contains("not found")), "{}", r.raw);
    // Unknown routes: JSON 404 from the gateway itself.
    let r = gw.get("/api/v1/unknown").await?;
    r.expect(404, "unknown route")?;
    assert!(r.error().is_some());
    Ok(())
}

#[tokio::test]
async fn request_ids_are_kept_or_generated_and_reach_the_upstream() -> Result<()> {
    let _shared = FREEZE.read().await;
    let cfg = Config::from_env();
    let gw = Gw::with_key(&cfg, 1000.0, 1000).await?;
    let rid = unique("rid");
    let resp = gw
        .req(reqwest::Method::GET, &format!("/api/v1/users/{}", uuid::Uuid::new_v4()))
        .header("x-request-id", &rid)
        .send()
        .await?;
    assert_eq!(resp.headers().get("x-request-id").unwrap().to_str()?, rid);
    // A 404: failures are logged at info by both the gateway and the user-service.
    assert_eq!(resp.status().as_u16(), 404);
    // Generated when absent (a UUID), or when the client's is unusable.
    let resp = gw.req(reqwest::Method::GET, "/api/v1/users?limit=1").send().await?;
    let generated = resp.headers().get("x-request-id").unwrap().to_str()?.to_string();
    assert!(uuid::Uuid::parse_str(&generated).is_ok(), "{generated}");
    let resp = gw.req(reqwest::Method::GET, "/api/v1/users?limit=1").header("x-request-id", "has space").send().await?;
    assert_ne!(resp.headers().get("x-request-id").unwrap(), "has space");
    // The user-service logged the same id: it was propagated upstream.
    let log = cfg.home.join("logs").join("user-service-1.log");
    let gw_log = cfg.home.join("logs").join("api-gateway-1.log");
    chat4all_tests::wait_for("the request id in both logs", Duration::from_secs(5), || {
        let (log, gw_log, rid) = (log.clone(), gw_log.clone(), rid.clone());
        async move {
            let up = std::fs::read_to_string(&log)?.contains(&rid);
            let own = std::fs::read_to_string(&gw_log)?.contains(&rid);
            Ok(((up && own).then_some(()), format!("user-service log: {up}, gateway log: {own}")))
        }
    })
    .await?;
    Ok(())
}

/// Freezes the user-service (SIGSTOP: its socket accepts, nothing answers) and expects the
/// gateway to give up after its upstream timeout (10 s) with a 504 JSON answer.
#[tokio::test]
async fn an_upstream_that_does_not_answer_gets_504() -> Result<()> {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    let _exclusive = FREEZE.write().await;
    let stack = Stack::connect().await?;
    let gw = Gw::with_key(&stack.cfg, 1000.0, 1000).await?;
    let instances: Vec<Value> = serde_json::from_str(&stack.ctl(&["instances", "-o", "json"]).await?)?;
    let pid = instances
        .iter()
        .find(|i| i["name"] == "user-service-1")
        .and_then(|i| i["pid"].as_i64())
        .expect("user-service-1 runs") as i32;
    struct Thaw(i32);
    impl Drop for Thaw {
        fn drop(&mut self) {
            let _ = kill(Pid::from_raw(self.0), Signal::SIGCONT);
        }
    }
    kill(Pid::from_raw(pid), Signal::SIGSTOP)?;
    let thaw = Thaw(pid);
    let start = Instant::now();
    let r = gw.get(&format!("/api/v1/users/{}", uuid::Uuid::new_v4())).await?;
    let took = start.elapsed();
    drop(thaw);
    r.expect(504, "a frozen upstream")?;
    assert!(r.error().is_some_and(|e| e.contains("user-service")), "{}", r.raw);
    assert!(took >= Duration::from_secs(9) && took < Duration::from_secs(20), "answered after {took:?}");
    // Thawed, it answers again.
    gw.get("/api/v1/users?limit=1").await?.expect(200, "after SIGCONT")?;
    Ok(())
}

/// The request id a message was posted with travels to Kafka as the `x-request-id` header of
/// its chat event (read back here with an independent consumer).
#[tokio::test]
async fn the_request_id_reaches_the_chat_event_in_kafka() -> Result<()> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::{Headers, Message};
    use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
    use rdkafka::ClientConfig;

    let _shared = FREEZE.read().await;
    let stack = Stack::connect().await?;
    let gw = Gw::with_key(&stack.cfg, 1000.0, 1000).await?;
    let conversation = unique("rid-conv");
    let request_id = unique("rid");
    let topic = "chat-events".to_string();
    // Read from the current end of every partition, set up before the post.
    let bootstrap = stack.cfg.kafka_bootstrap.clone();
    let consumer = tokio::task::spawn_blocking(move || -> Result<BaseConsumer> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("group.id", unique("rid-reader"))
            .set("enable.auto.commit", "false")
            .create()?;
        let md = consumer.fetch_metadata(Some(&topic), Duration::from_secs(5))?;
        let mut tpl = TopicPartitionList::new();
        for p in md.topics().iter().flat_map(|t| t.partitions()) {
            let (_, high) = consumer.fetch_watermarks(&topic, p.id(), Duration::from_secs(5))?;
            tpl.add_partition_offset(&topic, p.id(), Offset::Offset(high))?;
        }
        consumer.assign(&tpl)?;
        Ok(consumer)
    })
    .await??;
    let msg = MessageBuilder::new(&conversation).to(&unique("rid-rcpt"), WHATSAPP).build();
    let resp =
        gw.req(reqwest::Method::POST, "/api/v1/messages").header("x-request-id", &request_id).json(&msg).send().await?;
    let r = reply(resp).await?;
    r.expect(202, "POST /api/v1/messages with a request id")?;
    let found = tokio::task::spawn_blocking(move || -> Result<Option<String>> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let Some(m) = consumer.poll(Duration::from_millis(500)) else { continue };
            let m = m?;
            if m.key() != Some(conversation.as_bytes()) {
                continue;
            }
            let header = m.headers().and_then(|h| {
                h.iter()
                    .find(|h| h.key == "x-request-id")
                    .and_then(|h| h.value.map(|v| String::from_utf8_lossy(v).into_owned()))
            });
            return Ok(Some(header.unwrap_or_default()));
        }
        Ok(None)
    })
    .await??;
    match found {
        Some(h) if h == request_id => Ok(()),
        Some(h) => bail!("the chat event carries x-request-id {h:?}, expected {request_id:?}"),
        None => bail!("the chat event of {} did not appear in Kafka within 30 s", r.raw),
    }
}
