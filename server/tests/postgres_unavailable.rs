//! PostgreSQL going away under the message API: requests get 503 with a JSON error body (never
//! a 500, never a half-written message), and the API recovers by itself when it returns.
//!
//! The API runs in-process against the real PostgreSQL through a TCP relay the test can cut,
//! so nothing else on the machine (other stacks, other tests) loses its database.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chat4all_server::message::api::{routes, ApiState};
use chat4all_server::message::writer::{Writer, WriterMetrics};
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use uuid::Uuid;

/// Forwards connections to PostgreSQL while `up`; when cut, drops live connections and refuses
/// new ones.
struct Relay {
    port: u16,
    up: Arc<AtomicBool>,
    cut: Arc<Notify>,
}

async fn relay(target: String) -> Relay {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind relay");
    let port = listener.local_addr().expect("addr").port();
    let up = Arc::new(AtomicBool::new(true));
    let cut = Arc::new(Notify::new());
    let (up2, cut2) = (up.clone(), cut.clone());
    tokio::spawn(async move {
        loop {
            let Ok((mut client, _)) = listener.accept().await else { return };
            if !up2.load(Ordering::SeqCst) {
                drop(client);
                continue;
            }
            let target = target.clone();
            let cut = cut2.clone();
            tokio::spawn(async move {
                let Ok(mut server) = TcpStream::connect(&target).await else { return };
                tokio::select! {
                    _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                    _ = cut.notified() => {}
                }
            });
        }
    });
    Relay { port, up, cut }
}

impl Relay {
    fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.cut.notify_waiters();
    }
    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

fn message(id: Uuid) -> Value {
    json!({
        "messageId": id.to_string(),
        "conversationId": format!("pg-down-{}", Uuid::new_v4().simple()),
        "senderId": "pg-down-sender",
        "channel": "WHATSAPP",
        "content": {"type": "TEXT", "text": "hello"},
        "recipients": [{"userId": "pg-down-rcpt", "channel": "WHATSAPP"}]
    })
}

#[tokio::test]
async fn postgres_down_gives_503_and_writes_nothing_then_recovers() {
    let base = std::env::var("CHAT4ALL_UNAVAILABLE_TEST_DB")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/chat4all_unavailable_test".into());
    // Schema in place, straight to PostgreSQL.
    let direct = chat4all_server::db::connect_and_migrate(&base, 2).await.expect("PostgreSQL must run for this test");
    let relay = relay("127.0.0.1:5432".into()).await;
    let via_relay = base.replacen("127.0.0.1:5432", &format!("127.0.0.1:{}", relay.port), 1);
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(2))
        .connect(&via_relay)
        .await
        .expect("pool through the relay");
    let writer = Writer::spawn(pool.clone(), 2, 256, WriterMetrics::register(&mut Default::default()));
    let app = routes(ApiState { pool, writer, relay_wakeup: Arc::new(Notify::new()) });
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind api");
    let url = format!("http://{}/api/v1/messages", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    let http = reqwest::Client::builder().timeout(Duration::from_secs(15)).build().expect("client");

    let ok = http.post(&url).json(&message(Uuid::new_v4())).send().await.expect("post");
    assert_eq!(ok.status().as_u16(), 202, "with PostgreSQL up: {:?}", ok.text().await);

    relay.cut();
    let lost = Uuid::new_v4();
    let resp = http.post(&url).json(&message(lost)).send().await.expect("post while down");
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.expect("a JSON error body");
    assert_eq!(status, 503, "with PostgreSQL unreachable: {body}");
    assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()), "error body: {body}");
    let written: i64 = sqlx::query_scalar("SELECT count(*) FROM messages WHERE id = $1")
        .bind(lost)
        .fetch_one(&direct)
        .await
        .expect("count");
    assert_eq!(written, 0, "a refused message was written");

    relay.restore();
    let mut recovered = false;
    for _ in 0..40 {
        let r = http.post(&url).json(&message(Uuid::new_v4())).send().await.expect("post after restore");
        if r.status().as_u16() == 202 {
            recovered = true;
            break;
        }
        assert_eq!(r.status().as_u16(), 503, "while reconnecting only 503 is acceptable");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(recovered, "the API did not recover within 10 s of PostgreSQL returning");
}
