//! PostgreSQL: connect (creating the database on first use) and migrate.

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgPool};

/// Connects to `url`, creating its database when it does not exist yet, and applies migrations.
pub async fn connect_and_migrate(url: &str, max_connections: u32) -> anyhow::Result<PgPool> {
    let opts = PgConnectOptions::from_str(url)
        .with_context(|| format!("invalid DATABASE_URL {url:?}"))?
        .log_statements(tracing::log::LevelFilter::Off);
    ensure_database(&opts).await?;
    let pool = PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(2))
        // Give idle connections back soon: one PostgreSQL serves several stacks on a development
        // machine (and its default limit is 100 connections), so a stack that is idle after a
        // burst should not sit on its peak.
        .idle_timeout(Duration::from_secs(30))
        .connect_with(opts)
        .await
        .context("connecting to PostgreSQL")?;
    sqlx::migrate!("./migrations").run(&pool).await.context("applying database migrations")?;
    Ok(pool)
}

async fn ensure_database(opts: &PgConnectOptions) -> anyhow::Result<()> {
    let Some(name) = opts.get_database().map(str::to_owned) else {
        return Ok(());
    };
    match opts.connect().await {
        Ok(conn) => {
            let _ = conn.close().await;
            Ok(())
        }
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("3D000") => {
            let admin = opts.clone().database("postgres");
            let mut conn = admin.connect().await.context("connecting to the postgres database")?;
            let sql = format!("CREATE DATABASE \"{}\"", name.replace('"', "\"\""));
            match sqlx::query(&sql).execute(&mut conn).await {
                Ok(_) => {
                    tracing::info!(database = %name, "created database");
                    Ok(())
                }
                // Another service created it first.
                Err(sqlx::Error::Database(e)) if matches!(e.code().as_deref(), Some("42P04") | Some("23505")) => Ok(()),
                Err(e) => Err(e).with_context(|| format!("creating database {name}")),
            }
        }
        Err(e) => Err(e).context("connecting to PostgreSQL"),
    }
}

/// True when the error means the database could not be reached (as opposed to a bad query).
pub fn is_unavailable(e: &sqlx::Error) -> bool {
    matches!(
        e,
        sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::Tls(_)
    ) || matches!(e, sqlx::Error::Database(d) if d.code().is_some_and(|c| c.starts_with("57P") || c.starts_with("08")))
}

/// A migrated pool on a database of its own for one unit test module and checkout
/// (`chat4all_unit_<name>_<hash of the source path>`, created on first use: two worktrees
/// testing at once must not truncate each other's tables), on the server in
/// `CHAT4ALL_UNIT_DATABASE_URL` or the local default.
#[cfg(test)]
pub async fn test_pool(name: &str) -> PgPool {
    let base =
        std::env::var("CHAT4ALL_UNIT_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
    let checkout = env!("CARGO_MANIFEST_DIR").bytes().fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
    let url = format!("{}/chat4all_unit_{name}_{checkout:08x}", base.trim_end_matches('/'));
    connect_and_migrate(&url, 4).await.unwrap_or_else(|e| panic!("unit-test database {url}: {e:#}"))
}
