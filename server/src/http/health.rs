use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use serde_json::{json, Map, Value};

/// One named readiness check: Ok, or the reason it failed.
pub type Check = Arc<dyn Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

/// Readiness checks of a service's dependencies, run concurrently with a timeout each.
#[derive(Clone, Default)]
pub struct Health {
    checks: Vec<(&'static str, Check)>,
}

impl Health {
    pub fn with(mut self, name: &'static str, check: Check) -> Self {
        self.checks.push((name, check));
        self
    }

    pub fn postgres(self, pool: sqlx::PgPool) -> Self {
        self.with(
            "postgres",
            Arc::new(move || {
                let pool = pool.clone();
                Box::pin(
                    async move { sqlx::query("SELECT 1").execute(&pool).await.map(|_| ()).map_err(|e| e.to_string()) },
                )
            }),
        )
    }

    pub fn kafka(self, producer: crate::kafka::Producer) -> Self {
        self.with(
            "kafka",
            Arc::new(move || {
                let p = producer.clone();
                Box::pin(async move {
                    let ok = tokio::task::spawn_blocking(move || p.broker_reachable(Duration::from_secs(1)))
                        .await
                        .unwrap_or(false);
                    if ok {
                        Ok(())
                    } else {
                        Err("broker unreachable".into())
                    }
                })
            }),
        )
    }

    /// Runs every check; `(ready, body)`.
    pub async fn run(&self) -> (bool, Value) {
        let results = futures::future::join_all(self.checks.iter().map(|(name, check)| async move {
            let r =
                tokio::time::timeout(Duration::from_secs(2), check()).await.unwrap_or_else(|_| Err("timed out".into()));
            (*name, r)
        }))
        .await;
        let mut checks = Map::new();
        let mut ready = true;
        for (name, r) in results {
            match r {
                Ok(()) => {
                    checks.insert(name.into(), json!({"status": "up"}));
                }
                Err(e) => {
                    ready = false;
                    checks.insert(name.into(), json!({"status": "down", "error": e}));
                }
            }
        }
        (ready, json!({"status": if ready { "up" } else { "down" }, "checks": checks}))
    }
}
