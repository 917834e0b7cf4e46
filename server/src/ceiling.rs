//! PostgreSQL's ceiling for the platform's own statements: how many messages a second the
//! database takes through the accept statement alone (`message::store::insert_rows`: message,
//! deliveries and outbox record in one statement, batched as the writer batches) and through the
//! routing statements alone (the router's dedup lookup, identity resolution and hand-off record),
//! with nothing else running. `chat4allctl bench --ceilings` runs it beside the pipeline
//! benchmark (`chat4all-server db-ceiling`), on a scratch database it creates and drops, and
//! prints the pipeline's throughput as a share of it.

use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, PgPool};
use std::str::FromStr;
use uuid::Uuid;

use crate::channel::Channel;
use crate::message::store::{insert_rows, NewRow};
use crate::router::store::{already_routed, mark_routed, Key};

#[derive(Debug, Clone, clap::Args)]
pub struct CeilingArgs {
    /// Messages written (then routed) by the measurement.
    #[arg(long, default_value_t = 20_000)]
    pub messages: usize,
    /// Recipients per message (WHATSAPP, TELEGRAM, INSTAGRAM, ... as the bench sends them).
    #[arg(long, default_value_t = 2)]
    pub recipients: usize,
    /// Messages per accept statement (the writer's batch under load; at most its --insert-batch).
    #[arg(long, default_value_t = 64)]
    pub accept_batch: usize,
    /// Accept statements in flight (the message-service runs two writers).
    #[arg(long, default_value_t = 2)]
    pub writers: usize,
    /// Events per routing round (the router's batch under load).
    #[arg(long, default_value_t = 500)]
    pub route_batch: usize,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Ceiling {
    pub database: String,
    pub messages: usize,
    pub recipients: usize,
    pub accept_batch: usize,
    pub writers: usize,
    pub route_batch: usize,
    /// Messages per second through the accept statement alone.
    pub accept_per_second: f64,
    /// Messages per second through the routing statements alone.
    pub route_per_second: f64,
    /// Size of one chat event on chat-events (the record the relay publishes), in bytes.
    pub event_bytes: usize,
}

/// Measures on a scratch database next to `database_url`'s (`<name>_ceiling`), dropped after.
pub async fn run(database_url: &str, args: &CeilingArgs) -> anyhow::Result<Ceiling> {
    anyhow::ensure!(
        args.messages > 0 && args.accept_batch > 0 && args.writers > 0 && args.route_batch > 0,
        "every count must be at least 1"
    );
    anyhow::ensure!(
        (1..=chat4all_contract::message::MAX_RECIPIENTS).contains(&args.recipients),
        "recipients must be 1 to {}",
        chat4all_contract::message::MAX_RECIPIENTS
    );
    let opts =
        PgConnectOptions::from_str(database_url).with_context(|| format!("invalid DATABASE_URL {database_url:?}"))?;
    let name = format!("{}_ceiling", opts.get_database().unwrap_or("chat4all"));
    let scratch = opts.clone().database(&name);
    drop_database(&opts, &name).await?;
    let pool = crate::db::connect_and_migrate(scratch.to_url_lossy().as_ref(), args.writers as u32 + 1).await?;
    let result = measure(&pool, &name, args).await;
    pool.close().await;
    drop_database(&opts, &name).await?;
    result
}

async fn measure(pool: &PgPool, name: &str, args: &CeilingArgs) -> anyhow::Result<Ceiling> {
    let rows = messages(args.messages, args.recipients)?;
    let event_bytes = rows.first().map(NewRow::payload_len).unwrap_or_default();

    // Accept: `writers` statements in flight, each of `accept_batch` messages.
    let started = Instant::now();
    let chunks: Vec<Vec<&NewRow>> = rows.chunks(args.accept_batch).map(|c| c.iter().collect()).collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let writer = || async {
        loop {
            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let Some(chunk) = chunks.get(i) else { return Ok::<_, sqlx::Error>(()) };
            insert_rows(pool, chunk).await?;
        }
    };
    futures::future::try_join_all((0..args.writers).map(|_| writer())).await.context("accept statements")?;
    let accept = started.elapsed();

    // Routing: per batch of events, the dedup lookup, the identity lookup and the record.
    let started = Instant::now();
    for batch in rows.chunks(args.route_batch) {
        let keys: Vec<Key> = batch.iter().flat_map(NewRow::keys).collect();
        already_routed(pool, &keys).await.context("dedup lookup")?;
        let pairs: Vec<(String, Channel)> = keys.iter().map(|k| (k.1.clone(), k.2)).collect();
        crate::user::resolve::resolve(pool, &pairs).await.context("resolving recipients")?;
        mark_routed(pool, &keys, "db-ceiling", None).await.context("recording hand-offs")?;
    }
    let route = started.elapsed();
    let rate = |d: Duration| args.messages as f64 / d.as_secs_f64().max(1e-9);
    Ok(Ceiling {
        database: name.to_string(),
        messages: args.messages,
        recipients: args.recipients,
        accept_batch: args.accept_batch,
        writers: args.writers,
        route_batch: args.route_batch,
        accept_per_second: rate(accept),
        route_per_second: rate(route),
        event_bytes,
    })
}

/// The messages the bench sends (same shape, 1,000 conversations), as the API parses them.
fn messages(n: usize, recipients: usize) -> anyhow::Result<Vec<NewRow>> {
    let run = Uuid::new_v4().simple().to_string();
    (0..n)
        .map(|i| {
            let to: Vec<String> = (0..recipients)
                .map(|k| {
                    let ch = Channel::ALL[k % Channel::ALL.len()];
                    format!(r#"{{"userId":"{run}-u{}-{k}","channel":"{}"}}"#, i % 1000, ch.as_str())
                })
                .collect();
            let body = format!(
                r#"{{"conversationId":"{run}-c{c}","senderId":"{run}-s{c}","channel":"WHATSAPP","content":{{"type":"TEXT","text":"bench {run} #{i}"}},"recipients":[{}]}}"#,
                to.join(","),
                c = i % 1000
            );
            let msg = chat4all_contract::message::NewMessage::parse(body.as_bytes())
                .map_err(|e| anyhow::anyhow!("ceiling message: {}", e.error))?;
            Ok(NewRow::new(Uuid::new_v4(), &msg, None))
        })
        .collect()
}

async fn drop_database(opts: &PgConnectOptions, name: &str) -> anyhow::Result<()> {
    let mut conn = opts.clone().database("postgres").connect().await.context("connecting to the postgres database")?;
    let sql = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", name.replace('"', "\"\""));
    sqlx::query(&sql).execute(&mut conn).await.with_context(|| format!("dropping {name}"))?;
    Ok(())
}
