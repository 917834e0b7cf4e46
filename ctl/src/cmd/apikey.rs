//! `apikey create | list | revoke`: API keys of the api-gateway, stored hashed in PostgreSQL.

use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use serde::Serialize;
use sqlx::postgres::PgPoolOptions;
use sqlx::{PgPool, Row};

use chat4all_ctl::error::usage;
use chat4all_ctl::output::{self, Format, Table};
use chat4all_server::gateway::keys::{display_prefix, generate_key, hash_key};

use super::Cli;

#[derive(Debug, Subcommand)]
pub enum ApiKeyCommand {
    /// Create a key and print it once (only its SHA-256 is stored).
    Create(CreateArgs),
    /// The keys: name, prefix, rate limit, created, revoked.
    List,
    /// Revoke a key by name: the gateway refuses it within its key cache time (2 s by default).
    Revoke(NameArg),
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// A unique name for the key (who or what uses it).
    pub name: String,
    /// Sustained requests per second for this key (default: the gateway's, 100).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Burst size for this key (default: the gateway's, 200).
    #[arg(long)]
    pub burst: Option<u32>,
}

#[derive(Debug, Args)]
pub struct NameArg {
    pub name: String,
}

fn valid_name(name: &str) -> anyhow::Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(usage(format!("invalid key name {name:?}: 1-64 characters of letters, digits, '-', '_', '.'")))
    }
}

async fn pool(cli: &Cli) -> anyhow::Result<PgPool> {
    let url = super::groups::database_url(cli);
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(cli.timeout.max(Duration::from_secs(1)))
        .connect(&url)
        .await
        .map_err(|e| usage(format!("PostgreSQL at {url} is not reachable: {e}")))?;
    let exists: bool = sqlx::query_scalar("SELECT to_regclass('api_keys') IS NOT NULL").fetch_one(&pool).await?;
    if !exists {
        return Err(usage("the api_keys table does not exist yet: start the stack once (`chat4allctl up`)"));
    }
    Ok(pool)
}

pub async fn apikey(cli: &Cli, cmd: &ApiKeyCommand) -> anyhow::Result<()> {
    match cmd {
        ApiKeyCommand::Create(a) => create(cli, a).await,
        ApiKeyCommand::List => list(cli).await,
        ApiKeyCommand::Revoke(a) => revoke(cli, &a.name).await,
    }
}

async fn create(cli: &Cli, a: &CreateArgs) -> anyhow::Result<()> {
    valid_name(&a.name)?;
    if a.rate.is_some_and(|r| !(r.is_finite() && r > 0.0)) {
        return Err(usage("--rate must be a positive number of requests per second"));
    }
    if a.burst == Some(0) || a.burst.is_some_and(|b| b > i32::MAX as u32) {
        return Err(usage("--burst must be at least 1"));
    }
    let pool = pool(cli).await?;
    let key = generate_key();
    let inserted = sqlx::query(
        "INSERT INTO api_keys (name, key_hash, prefix, rate_per_second, burst) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (name) DO NOTHING",
    )
    .bind(&a.name)
    .bind(hash_key(&key))
    .bind(display_prefix(&key))
    .bind(a.rate)
    .bind(a.burst.map(|b| b as i32))
    .execute(&pool)
    .await
    .context("storing the key")?
    .rows_affected();
    if inserted == 0 {
        return Err(usage(format!("a key named {:?} exists already (revoked keys keep their name)", a.name)));
    }
    if cli.output == Format::Json {
        println!("{}", output::json(&serde_json::json!({"name": a.name, "key": key})));
    } else {
        println!("{key}");
        eprintln!("chat4allctl: key {:?} created; it is shown only this once", a.name);
    }
    Ok(())
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct KeyRow {
    name: String,
    prefix: String,
    rate_per_second: Option<f64>,
    burst: Option<i32>,
    created_at: chrono::DateTime<chrono::Utc>,
    revoked_at: Option<chrono::DateTime<chrono::Utc>>,
}

async fn list(cli: &Cli) -> anyhow::Result<()> {
    let pool = pool(cli).await?;
    let rows =
        sqlx::query("SELECT name, prefix, rate_per_second, burst, created_at, revoked_at FROM api_keys ORDER BY id")
            .fetch_all(&pool)
            .await?;
    let keys: Vec<KeyRow> = rows
        .iter()
        .map(|r| KeyRow {
            name: r.get("name"),
            prefix: r.get("prefix"),
            rate_per_second: r.get("rate_per_second"),
            burst: r.get("burst"),
            created_at: r.get("created_at"),
            revoked_at: r.get("revoked_at"),
        })
        .collect();
    if cli.output == Format::Json {
        println!("{}", output::json(&keys));
        return Ok(());
    }
    let mut t = Table::new(&["NAME", "PREFIX", "RATE/S", "BURST", "CREATED", "STATE"]);
    for k in &keys {
        t.row(vec![
            k.name.clone(),
            format!("{}...", k.prefix),
            k.rate_per_second.map(|r| r.to_string()).unwrap_or_else(|| "default".into()),
            k.burst.map(|b| b.to_string()).unwrap_or_else(|| "default".into()),
            k.created_at.format("%Y-%m-%d %H:%M:%S").to_string(),
            match k.revoked_at {
                Some(at) => format!("revoked {}", at.format("%Y-%m-%d %H:%M:%S")),
                None => "active".into(),
            },
        ]);
    }
    print!("{}", t.render());
    Ok(())
}

async fn revoke(cli: &Cli, name: &str) -> anyhow::Result<()> {
    let pool = pool(cli).await?;
    let updated = sqlx::query("UPDATE api_keys SET revoked_at = now() WHERE name = $1 AND revoked_at IS NULL")
        .bind(name)
        .execute(&pool)
        .await?
        .rows_affected();
    if updated == 0 {
        return Err(usage(format!("no active key named {name:?} (see `chat4allctl apikey list`)")));
    }
    println!("revoked {name}");
    Ok(())
}
