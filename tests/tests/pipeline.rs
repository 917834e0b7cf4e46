//! The delivery pipeline end to end: API -> outbox -> Kafka -> router -> connectors ->
//! provider, and the receipts back to the API's status.

use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use chat4all_tests::{
    assert_delivered_exactly_once, provider_entries, route_counts, seed_messages, unique, wait_outbox_drained,
    DeliveryKey, MessageBuilder, RecordOutcome, Stack, INSTAGRAM, SEED_MESSAGES, TELEGRAM, WHATSAPP,
};
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_messages_are_delivered_once_to_every_recipient_within_10s() -> Result<()> {
    let s = Stack::connect().await?;
    let run = unique("seed");
    let seed = seed_messages(&run);
    ensure!(seed.len() == SEED_MESSAGES);

    let mut ids = Vec::new();
    let mut expected: Vec<DeliveryKey> = Vec::new();
    for msg in &seed {
        ensure!(msg.recipients.len() == 2, "a seed message has two recipients");
        let id = s.api.send(&msg.build()).await?;
        ids.push(id);
        expected.extend(msg.deliveries(id));
    }
    let last_post = Instant::now();
    ensure!(expected.len() == 40, "{} deliveries expected, the seed should make 40", expected.len());

    let views = s.api.wait_delivered(&ids, last_post + Duration::from_secs(10)).await?;
    let took = last_post.elapsed();
    println!("all 40 seed deliveries DELIVERED {took:?} after the last post");

    for (id, v) in &views {
        ensure!(v["status"] == "DELIVERED", "message {id} overall status {}", v["status"]);
        for r in v["recipients"].as_array().unwrap() {
            ensure!(r["sentAt"].is_string(), "message {id}: DELIVERED recipient without sentAt: {r}");
            ensure!(r["deliveredAt"].is_string(), "message {id}: DELIVERED recipient without deliveredAt: {r}");
        }
    }
    assert_delivered_exactly_once(&s.db, &expected).await?;

    let routed = route_counts(&s.db, &ids).await?;
    ensure!(routed.len() == 40, "{} deliveries rows instead of 40", routed.len());
    let rerouted: Vec<_> = routed.iter().filter(|(_, &n)| n != 1).collect();
    ensure!(rerouted.is_empty(), "deliveries routed other than exactly once: {rerouted:?}");

    let convs: Vec<String> = (0..4).map(|i| format!("{run}-conv-{i}")).collect();
    wait_outbox_drained(&s.db, &convs, Instant::now() + Duration::from_secs(5)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conversation_reaches_the_provider_in_post_order() -> Result<()> {
    let s = Stack::connect().await?;
    let conv = unique("order");
    let recipient = unique("order-user");
    let mut posted: Vec<Uuid> = Vec::new();
    let mut expected = Vec::new();
    for i in 0..50 {
        let msg = MessageBuilder::new(&conv).text(format!("in order {i}")).to(&recipient, WHATSAPP);
        let id = s.api.send(&msg.build()).await?;
        posted.push(id);
        expected.extend(msg.deliveries(id));
    }
    s.api.wait_delivered(&posted, Instant::now() + Duration::from_secs(30)).await?;
    assert_delivered_exactly_once(&s.db, &expected).await?;

    // The WhatsApp provider's record, in its arrival order: the effects for this recipient.
    let sent: Vec<Uuid> = provider_entries(&s.db, &posted)
        .await?
        .into_iter()
        .filter(|e| {
            e.outcome == RecordOutcome::Accepted
                && e.metadata.recipient_id == recipient
                && e.channel.as_str() == WHATSAPP
        })
        .map(|e| e.metadata.message_id)
        .collect();
    ensure!(sent.len() == 50, "{} provider effects instead of 50", sent.len());
    if sent != posted {
        let first = sent.iter().zip(&posted).position(|(a, b)| a != b).unwrap_or(0);
        let at = |v: &[Uuid], id: &Uuid| v.iter().position(|x| x == id);
        anyhow::bail!(
            "the provider received the conversation out of order: first difference at position {first}: \
             sent {} (posted as #{:?}), expected {} (sent as #{:?})",
            sent[first],
            at(&posted, &sent[first]),
            posted[first],
            at(&sent, &posted[first]),
        );
    }
    wait_outbox_drained(&s.db, &[conv], Instant::now() + Duration::from_secs(5)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_channel_delivers_through_its_own_connector() -> Result<()> {
    let s = Stack::connect().await?;
    let conv = unique("channels");
    let user = unique("user");
    // One user on all three channels, channel names in mixed case.
    let msg = MessageBuilder::new(&conv)
        .channel("instagram")
        .to(&user, "whatsapp")
        .to(&user, "Telegram")
        .to(&user, INSTAGRAM);
    let id = s.api.send(&msg.build()).await?;
    s.api.wait_delivered(&[id], Instant::now() + Duration::from_secs(15)).await?;
    assert_delivered_exactly_once(&s.db, &msg.deliveries(id)).await?;

    // Each channel's own provider took it: one process per channel, each with its own record.
    let mut channels: Vec<&str> = provider_entries(&s.db, &[id])
        .await?
        .iter()
        .filter(|e| e.outcome == RecordOutcome::Accepted)
        .map(|e| e.channel.as_str())
        .collect();
    channels.sort_unstable();
    ensure!(channels == [INSTAGRAM, TELEGRAM, WHATSAPP], "effects by channel {channels:?}");
    Ok(())
}

/// Many concurrent posts: outbox rows commit out of id order, and the relay must still publish
/// every one of them (a range delete once lost ~1% of messages under this load).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concurrent_burst_loses_nothing_and_duplicates_nothing() -> Result<()> {
    let s = Stack::connect().await?;
    let run = unique("burst");
    let messages: Vec<MessageBuilder> = (0..1500)
        .map(|i| MessageBuilder::new(&format!("{run}-c{}", i % 50)).text(format!("burst {i}")).to("u1", WHATSAPP))
        .collect();
    let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(64));
    let mut tasks = Vec::new();
    for m in &messages {
        let api = s.api.clone();
        let body = m.build();
        let permit = sem.clone().acquire_owned().await?;
        tasks.push(tokio::spawn(async move {
            let r = api.send(&body).await;
            drop(permit);
            r
        }));
    }
    let mut ids = Vec::new();
    let mut expected = Vec::new();
    for (t, m) in tasks.into_iter().zip(&messages) {
        let id: Uuid = t.await??;
        expected.extend(m.deliveries(id));
        ids.push(id);
    }
    s.api.wait_delivered(&ids, Instant::now() + Duration::from_secs(60)).await?;
    assert_delivered_exactly_once(&s.db, &expected).await
}
