//! A broker restart under load: the API keeps accepting (the outbox holds the messages while
//! Kafka is down), and afterwards every accepted message is delivered, none twice.
//!
//! Its own test binary: it stops the shared broker, which would disturb any test running at
//! the same time.

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use chat4all_tests::{
    assert_delivered_exactly_once, outbox_rows, route_counts, unique, wait_outbox_drained, Api, DeliveryKey,
    MessageBuilder, Stack, TELEGRAM, WHATSAPP,
};
use uuid::Uuid;

const POST_FOR: Duration = Duration::from_secs(12);
const POST_EVERY: Duration = Duration::from_millis(20); // ~50 messages per second
const BROKER_DOWN_FOR: Duration = Duration::from_secs(4);
const CONVERSATIONS: usize = 8;

/// What the background poster saw.
#[derive(Default)]
struct Posted {
    accepted: Vec<(Uuid, MessageBuilder)>,
    refused: Vec<String>,
}

/// Posts one message every `POST_EVERY` for `POST_FOR`, round-robin over the conversations.
async fn post_steadily(api: Api, run: String) -> Posted {
    let mut out = Posted::default();
    let mut tick = tokio::time::interval(POST_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let start = Instant::now();
    let mut i = 0usize;
    while start.elapsed() < POST_FOR {
        tick.tick().await;
        let c = i % CONVERSATIONS;
        let msg = MessageBuilder::new(&format!("{run}-conv-{c}"))
            .sender(&format!("{run}-sender"))
            .text(format!("message {i} of {run}"))
            .to(&format!("{run}-wa-{c}"), WHATSAPP)
            .to(&format!("{run}-tg-{c}"), TELEGRAM);
        let at = start.elapsed();
        match api.post_message(&msg.build()).await {
            Ok(r) if r.status == 202 => match r.message_id() {
                Ok(id) => out.accepted.push((id, msg)),
                Err(e) => out.refused.push(format!("#{i} at {at:?}: 202 without a usable id: {e:#}")),
            },
            Ok(r) => out.refused.push(format!("#{i} at {at:?}: HTTP {} {}", r.status, r.raw)),
            Err(e) => out.refused.push(format!("#{i} at {at:?}: {e:#}")),
        }
        i += 1;
    }
    out
}

async fn kafka_port_open(bootstrap: &str) -> bool {
    let addr = bootstrap.split(',').next().unwrap_or(bootstrap).trim().to_string();
    matches!(tokio::time::timeout(Duration::from_secs(1), tokio::net::TcpStream::connect(addr)).await, Ok(Ok(_)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_restart_under_load_loses_and_duplicates_nothing() -> Result<()> {
    let s = Stack::connect().await?;
    ensure!(
        kafka_port_open(&s.cfg.kafka_bootstrap).await,
        "the broker at {} is not reachable before the test: the stack is not healthy",
        s.cfg.kafka_bootstrap
    );
    let run = unique("broker-restart");
    let convs: Vec<String> = (0..CONVERSATIONS).map(|c| format!("{run}-conv-{c}")).collect();
    let poster = tokio::spawn(post_steadily(s.api.clone(), run.clone()));

    tokio::time::sleep(Duration::from_secs(2)).await;
    let stopping = Instant::now();
    s.ctl(&["stop", "broker"]).await.context("stopping the broker")?;
    println!("broker stopped in {:?}", stopping.elapsed());

    // While it is down: the port is closed and the outbox holds what the API accepts. Whatever
    // happens here, the broker is started again before any failure is reported.
    let down = async {
        ensure!(
            !kafka_port_open(&s.cfg.kafka_bootstrap).await,
            "`chat4allctl stop broker` returned but {} still accepts connections",
            s.cfg.kafka_bootstrap
        );
        tokio::time::sleep(BROKER_DOWN_FOR).await;
        let held = outbox_rows(&s.db, &convs).await?;
        ensure!(held > 0, "after {BROKER_DOWN_FOR:?} without a broker the outbox holds nothing of the test's messages");
        Ok(held)
    }
    .await;
    let starting = Instant::now();
    let started = s.ctl(&["start", "broker"]).await.context("starting the broker again");
    println!("broker started in {:?}", starting.elapsed());
    let held = down?;
    started?;
    println!("the outbox held {held} of the test's messages while the broker was down");

    let posted = poster.await.context("the poster task")?;
    let n = posted.accepted.len();
    println!("{n} messages accepted, {} refused", posted.refused.len());
    if !posted.refused.is_empty() {
        bail!(
            "{} of {} posts were not answered 202 around the broker restart (the API must not depend on \
             Kafka); first ones:\n{}",
            posted.refused.len(),
            n + posted.refused.len(),
            posted.refused.iter().take(10).cloned().collect::<Vec<_>>().join("\n")
        );
    }
    ensure!(n >= 200, "only {n} messages were posted in {POST_FOR:?}: the load never reached ~50/s");

    let ids: Vec<Uuid> = posted.accepted.iter().map(|(id, _)| *id).collect();
    let expected: Vec<DeliveryKey> = posted.accepted.iter().flat_map(|(id, m)| m.deliveries(*id)).collect();
    let waiting = Instant::now();
    s.api.wait_delivered(&ids, waiting + Duration::from_secs(60)).await?;
    println!("all {} deliveries DELIVERED {:?} after the posting stopped", expected.len(), waiting.elapsed());
    assert_delivered_exactly_once(&s.db, &expected).await?;
    wait_outbox_drained(&s.db, &convs, Instant::now() + Duration::from_secs(10)).await?;

    // Informational: how often the router handled a delivery (redeliveries are dedup'd).
    let routed = route_counts(&s.db, &ids).await?;
    let rerouted = routed.values().filter(|&&c| c != 1).count();
    println!("{rerouted} of {} deliveries have route_count != 1", routed.len());
    Ok(())
}
