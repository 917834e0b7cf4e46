//! The group-commit writer against a real PostgreSQL: messages queued together are written by
//! one statement, a message PostgreSQL refuses fails alone, and a repeated id writes nothing.
//!
//! Needs PostgreSQL (127.0.0.1:5432 by default; `CHAT4ALL_WRITER_TEST_DB` overrides the URL).

use chat4all_server::channel::Channel;
use chat4all_server::events::{Content, Recipient};
use chat4all_server::message::domain::NewMessage;
use chat4all_server::message::store::NewRow;
use chat4all_server::message::writer::{WriteError, Writer, WriterMetrics};
use uuid::Uuid;

async fn pool() -> sqlx::PgPool {
    let url = std::env::var("CHAT4ALL_WRITER_TEST_DB")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/chat4all_writer_test".into());
    chat4all_server::db::connect_and_migrate(&url, 4).await.expect("PostgreSQL must run for this test")
}

fn message(text: &str) -> NewMessage {
    NewMessage {
        message_id: None,
        conversation_id: format!("writer-{}", Uuid::new_v4().simple()),
        sender_id: "writer-sender".into(),
        channel: Channel::Whatsapp,
        content: Content { kind: "TEXT".into(), text: text.into(), file_ids: Vec::new() },
        recipients: vec![
            Recipient { user_id: "writer-a".into(), channel: Channel::Whatsapp },
            Recipient { user_id: "writer-b".into(), channel: Channel::Telegram },
        ],
    }
}

async fn counts(pool: &sqlx::PgPool, id: Uuid) -> (i64, i64, i64) {
    let one = |sql: &'static str| sqlx::query_scalar::<_, i64>(sql).bind(id).fetch_one(pool);
    (
        one("SELECT count(*) FROM messages WHERE id = $1").await.expect("messages"),
        one("SELECT count(*) FROM deliveries WHERE message_id = $1").await.expect("deliveries"),
        one("SELECT count(*) FROM outbox WHERE convert_from(payload, 'UTF8') LIKE '%' || $1::text || '%'")
            .await
            .expect("outbox"),
    )
}

// The default (current-thread) test runtime runs the writer task only when the test awaits, so
// the three writes below are all queued before the writer takes its first batch: one batch.
#[tokio::test]
async fn a_refused_message_fails_alone_and_its_batch_neighbours_are_written() {
    let pool = pool().await;
    let metrics = WriterMetrics::register(&mut Default::default());
    let writer = Writer::spawn(pool.clone(), 1, 16, metrics.clone());
    let (good1, bad, good2) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    // U+0000 is refused by the API's validation; built directly here, PostgreSQL refuses it.
    let (r1, r2, r3) = tokio::join!(
        writer.write(NewRow::new(good1, &message("first"), None)),
        writer.write(NewRow::new(bad, &message("nul \u{0} inside"), Some("req-bad"))),
        writer.write(NewRow::new(good2, &message("third"), Some("req-3"))),
    );
    assert!(matches!(r1, Ok(true)), "first: {r1:?}");
    assert!(matches!(r2, Err(WriteError::Database(_))), "the refused one: {r2:?}");
    assert!(matches!(r3, Ok(true)), "third: {r3:?}");
    assert_eq!(counts(&pool, good1).await, (1, 2, 1), "message, 2 deliveries, 1 outbox row");
    assert_eq!(counts(&pool, good2).await, (1, 2, 1));
    assert_eq!(counts(&pool, bad).await, (0, 0, 0), "nothing half-written");
    assert_eq!(metrics.fallbacks.get(), 1, "one batch of three, refused, then written one by one");
}

#[tokio::test]
async fn the_same_id_twice_in_one_batch_is_written_once() {
    let pool = pool().await;
    let writer = Writer::spawn(pool.clone(), 1, 16, WriterMetrics::register(&mut Default::default()));
    let id = Uuid::now_v7();
    let msg = message("twice");
    let (a, b) = tokio::join!(writer.write(NewRow::new(id, &msg, None)), writer.write(NewRow::new(id, &msg, None)));
    let created = [a.expect("first"), b.expect("second")];
    assert_eq!(created.iter().filter(|c| **c).count(), 1, "exactly one of them created it: {created:?}");
    assert_eq!(counts(&pool, id).await, (1, 2, 1));
}
