//! The connector's delivery ledger (`delivery_ledger`): a (message, recipient, channel) is
//! claimed before the provider is called and recorded after, so a redelivered item is answered
//! from the ledger instead of being sent again, two callers never send it at once, and a claim
//! whose outcome is unknown (its claimer died in the call) is reconciled with the provider.

use std::collections::HashMap;
use std::time::Duration;

use sqlx::{PgPool, Row};
use uuid::Uuid;

use crate::channel::Channel;

/// The idempotency key the connector gives the provider: `"{message_id}:{recipient_id}:{CHANNEL}"`.
pub fn idempotency_key(message_id: Uuid, recipient_id: &str, channel: Channel) -> String {
    format!("{message_id}:{recipient_id}:{}", channel.as_str())
}

/// One (message, recipient) of the ledger's channel.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Entry {
    pub message_id: Uuid,
    pub recipient_id: String,
}

/// What a claim found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// Ours now; nobody tried before, or the last attempt is known to have done nothing.
    Fresh,
    /// Ours now, but an earlier attempt may have reached the provider (its call failed without
    /// an answer, or its claimer died): reconcile by key before sending again.
    Unknown,
    /// The provider accepted it already: answer from the ledger, send nothing.
    Sent { provider_message_id: Option<String> },
    /// Another call holds a live claim on it (another connector, or a concurrent request).
    Busy { by: String },
}

pub struct Ledger {
    pub pool: PgPool,
    pub channel: Channel,
    pub instance: String,
    /// A claim older than this is presumed dead (provider timeout + margin).
    pub stale_after: Duration,
}

impl Ledger {
    /// Claims `entries`, answering for each what the ledger knew.
    pub async fn claim(&self, entries: &[Entry]) -> Result<Vec<Claim>, sqlx::Error> {
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<Uuid> = entries.iter().map(|e| e.message_id).collect();
        let users: Vec<&str> = entries.iter().map(|e| e.recipient_id.as_str()).collect();
        let keys: Vec<String> =
            entries.iter().map(|e| idempotency_key(e.message_id, &e.recipient_id, self.channel)).collect();
        // Fresh claims in one autocommitted statement (the common case needs nothing more);
        // rows that exist already are examined and taken over in a transaction of their own.
        let inserted: Vec<(Uuid, String)> = sqlx::query(
            "INSERT INTO delivery_ledger (message_id, recipient_id, channel, idempotency_key, state, claimed_by)
             SELECT m, r, $3, k, 'claimed', $5 FROM UNNEST($1::uuid[], $2::text[], $4::text[]) AS t(m, r, k)
             ON CONFLICT DO NOTHING
             RETURNING message_id, recipient_id",
        )
        .bind(&ids)
        .bind(&users)
        .bind(self.channel.as_str())
        .bind(&keys)
        .bind(&self.instance)
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(|r| (r.get("message_id"), r.get("recipient_id")))
        .collect();
        let fresh: std::collections::HashSet<(Uuid, String)> = inserted.into_iter().collect();

        let (mut rest_ids, mut rest_users) = (Vec::new(), Vec::new());
        for e in entries {
            if !fresh.contains(&(e.message_id, e.recipient_id.clone())) {
                rest_ids.push(e.message_id);
                rest_users.push(e.recipient_id.as_str());
            }
        }
        let mut existing: HashMap<(Uuid, String), Claim> = HashMap::new();
        if !rest_ids.is_empty() {
            let mut tx = self.pool.begin().await?;
            let rows = sqlx::query(
                "SELECT d.message_id, d.recipient_id, d.state, d.claimed_by, d.outcome_unknown, d.provider_message_id,
                        d.claimed_at < now() - make_interval(secs => $4::float8) AS stale
                 FROM delivery_ledger d
                 JOIN UNNEST($1::uuid[], $2::text[]) AS k(m, r) ON d.message_id = k.m AND d.recipient_id = k.r
                 WHERE d.channel = $3
                 ORDER BY d.message_id, d.recipient_id
                 FOR UPDATE OF d",
            )
            .bind(&rest_ids)
            .bind(&rest_users)
            .bind(self.channel.as_str())
            .bind(self.stale_after.as_secs_f64())
            .fetch_all(&mut *tx)
            .await?;
            let (mut take_ids, mut take_users) = (Vec::new(), Vec::new());
            for r in rows {
                let key: (Uuid, String) = (r.get("message_id"), r.get("recipient_id"));
                let state: String = r.get("state");
                let claim = match state.as_str() {
                    "sent" => Claim::Sent { provider_message_id: r.get("provider_message_id") },
                    "claimed" if !r.get::<bool, _>("stale") => Claim::Busy { by: r.get("claimed_by") },
                    // A dead claimer: it may have been inside the call.
                    "claimed" => Claim::Unknown,
                    _ if r.get::<bool, _>("outcome_unknown") => Claim::Unknown,
                    _ => Claim::Fresh,
                };
                if matches!(claim, Claim::Fresh | Claim::Unknown) {
                    take_ids.push(key.0);
                    take_users.push(key.1.clone());
                }
                existing.insert(key, claim);
            }
            if !take_ids.is_empty() {
                sqlx::query(
                    "UPDATE delivery_ledger d SET state = 'claimed', claimed_by = $4, claimed_at = now(),
                            attempts = d.attempts + 1, updated_at = now()
                     FROM UNNEST($1::uuid[], $2::text[]) AS k(m, r)
                     WHERE d.message_id = k.m AND d.recipient_id = k.r AND d.channel = $3",
                )
                .bind(&take_ids)
                .bind(&take_users)
                .bind(self.channel.as_str())
                .bind(&self.instance)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
        }
        // An entry twice in one call: the second finds the first's claim.
        let mut seen = std::collections::HashSet::new();
        Ok(entries
            .iter()
            .map(|e| {
                let key = (e.message_id, e.recipient_id.clone());
                if !seen.insert(key.clone()) {
                    return Claim::Busy { by: self.instance.clone() };
                }
                if fresh.contains(&key) {
                    Claim::Fresh
                } else {
                    // Gone between the insert and the select only if deleted by hand: send.
                    existing.remove(&key).unwrap_or(Claim::Fresh)
                }
            })
            .collect())
    }

    /// Records that the provider accepted `sent` (terminal: whoever claimed it).
    pub async fn record_sent(&self, sent: &[(Entry, Option<String>)]) -> Result<(), sqlx::Error> {
        if sent.is_empty() {
            return Ok(());
        }
        let ids: Vec<Uuid> = sent.iter().map(|(e, _)| e.message_id).collect();
        let users: Vec<&str> = sent.iter().map(|(e, _)| e.recipient_id.as_str()).collect();
        let pids: Vec<Option<&str>> = sent.iter().map(|(_, p)| p.as_deref()).collect();
        sqlx::query(
            "UPDATE delivery_ledger d SET state = 'sent', provider_message_id = COALESCE(k.p, d.provider_message_id),
                    outcome_unknown = false, last_error = NULL, updated_at = now()
             FROM UNNEST($1::uuid[], $2::text[], $4::text[]) AS k(m, r, p)
             WHERE d.message_id = k.m AND d.recipient_id = k.r AND d.channel = $3",
        )
        .bind(&ids)
        .bind(&users)
        .bind(self.channel.as_str())
        .bind(&pids)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records that our attempt on `entries` ended without an effect we know of (`unknown`: it may
    /// have had one). Only our own live claims change: a claim taken over meanwhile stays.
    pub async fn record_failed(&self, entries: &[Entry], unknown: bool, error: &str) -> Result<(), sqlx::Error> {
        if entries.is_empty() {
            return Ok(());
        }
        let ids: Vec<Uuid> = entries.iter().map(|e| e.message_id).collect();
        let users: Vec<&str> = entries.iter().map(|e| e.recipient_id.as_str()).collect();
        sqlx::query(
            "UPDATE delivery_ledger d SET state = 'failed', outcome_unknown = $5, last_error = $6, updated_at = now()
             FROM UNNEST($1::uuid[], $2::text[]) AS k(m, r)
             WHERE d.message_id = k.m AND d.recipient_id = k.r AND d.channel = $3
               AND d.state = 'claimed' AND d.claimed_by = $4",
        )
        .bind(&ids)
        .bind(&users)
        .bind(self.channel.as_str())
        .bind(&self.instance)
        .bind(unknown)
        .bind(error)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real PostgreSQL database of its own (created and migrated on first use).
    async fn pool() -> PgPool {
        let url = std::env::var("CHAT4ALL_UNIT_DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/chat4all_unit_ledger".into());
        crate::db::connect_and_migrate(&url, 4).await.expect("the unit-test database (CHAT4ALL_UNIT_DATABASE_URL)")
    }

    fn ledger(pool: &PgPool, instance: &str, stale_ms: u64) -> Ledger {
        Ledger {
            pool: pool.clone(),
            channel: Channel::Whatsapp,
            instance: instance.into(),
            stale_after: Duration::from_millis(stale_ms),
        }
    }

    fn entry(user: &str) -> Entry {
        Entry { message_id: Uuid::new_v4(), recipient_id: user.into() }
    }

    async fn row(pool: &PgPool, e: &Entry) -> (String, String, i32, bool, String) {
        let r = sqlx::query(
            "SELECT state, claimed_by, attempts, outcome_unknown, idempotency_key FROM delivery_ledger
             WHERE message_id = $1 AND recipient_id = $2 AND channel = 'WHATSAPP'",
        )
        .bind(e.message_id)
        .bind(&e.recipient_id)
        .fetch_one(pool)
        .await
        .expect("ledger row");
        (r.get("state"), r.get("claimed_by"), r.get("attempts"), r.get("outcome_unknown"), r.get("idempotency_key"))
    }

    #[tokio::test]
    async fn claim_then_record_then_answer_from_the_ledger() {
        let pool = pool().await;
        let a = ledger(&pool, "connector-a", 60_000);
        let (e1, e2) = (entry("alice"), entry("bob"));
        assert_eq!(a.claim(&[e1.clone(), e2.clone()]).await.expect("claim"), vec![Claim::Fresh, Claim::Fresh]);
        let (state, by, attempts, _, key) = row(&pool, &e1).await;
        assert_eq!((state.as_str(), by.as_str(), attempts), ("claimed", "connector-a", 1));
        assert_eq!(key, format!("{}:alice:WHATSAPP", e1.message_id));

        a.record_sent(&[(e1.clone(), Some("wa-1".into()))]).await.expect("record");
        a.record_failed(std::slice::from_ref(&e2), false, "rejected").await.expect("record");
        assert_eq!(row(&pool, &e2).await.0, "failed");

        // Asked again: the sent one is answered from the ledger, the failed one is ours again.
        let again = a.claim(&[e1.clone(), e2.clone()]).await.expect("claim");
        assert_eq!(again, vec![Claim::Sent { provider_message_id: Some("wa-1".into()) }, Claim::Fresh]);
        assert_eq!(row(&pool, &e2).await.2, 2, "the second attempt is counted");
    }

    #[tokio::test]
    async fn a_live_claim_holds_others_off_and_a_stale_one_is_reconciled() {
        let pool = pool().await;
        let a = ledger(&pool, "connector-a", 300);
        let b = ledger(&pool, "connector-b", 300);
        let e = entry("carol");
        assert_eq!(a.claim(std::slice::from_ref(&e)).await.expect("claim"), vec![Claim::Fresh]);
        assert_eq!(
            b.claim(std::slice::from_ref(&e)).await.expect("claim"),
            vec![Claim::Busy { by: "connector-a".into() }]
        );
        // a dies inside the call; its claim goes stale and b takes it over, outcome unknown.
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(b.claim(std::slice::from_ref(&e)).await.expect("claim"), vec![Claim::Unknown]);
        assert_eq!(row(&pool, &e).await.1, "connector-b");
        // a's late failure record does not undo b's claim.
        a.record_failed(std::slice::from_ref(&e), false, "late").await.expect("record");
        assert_eq!(row(&pool, &e).await.0, "claimed");
    }

    #[tokio::test]
    async fn an_unknown_outcome_stays_unknown_until_sent() {
        let pool = pool().await;
        let a = ledger(&pool, "connector-a", 60_000);
        let e = entry("dave");
        a.claim(std::slice::from_ref(&e)).await.expect("claim");
        a.record_failed(std::slice::from_ref(&e), true, "timed out").await.expect("record");
        assert!(row(&pool, &e).await.3);
        assert_eq!(a.claim(std::slice::from_ref(&e)).await.expect("claim"), vec![Claim::Unknown]);
        a.record_sent(&[(e.clone(), None)]).await.expect("record");
        let (state, _, attempts, unknown, _) = row(&pool, &e).await;
        assert_eq!((state.as_str(), attempts, unknown), ("sent", 2, false));
    }

    #[tokio::test]
    async fn the_same_entry_twice_in_one_claim_is_sent_once() {
        let pool = pool().await;
        let a = ledger(&pool, "connector-a", 60_000);
        let e = entry("erin");
        let claims = a.claim(&[e.clone(), e.clone()]).await.expect("claim");
        assert_eq!(claims, vec![Claim::Fresh, Claim::Busy { by: "connector-a".into() }]);
    }

    #[tokio::test]
    async fn concurrent_claims_give_each_entry_to_one_caller() {
        let pool = pool().await;
        let entries: Vec<Entry> = (0..50).map(|i| entry(&format!("u{i}"))).collect();
        let a = ledger(&pool, "connector-a", 60_000);
        let b = ledger(&pool, "connector-b", 60_000);
        let (ra, rb) = tokio::join!(a.claim(&entries), b.claim(&entries));
        let (ra, rb) = (ra.expect("claim a"), rb.expect("claim b"));
        for (x, y) in ra.iter().zip(&rb) {
            let owners = [x, y].iter().filter(|c| ***c == Claim::Fresh).count();
            assert_eq!(owners, 1, "exactly one caller owns each entry: {x:?} / {y:?}");
        }
    }
}
