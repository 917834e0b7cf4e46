//! Recipient resolution for the router: a recipient id that has the form of a user id (a UUID)
//! is a user of the user-service and resolves to that user's identity on the requested channel;
//! an unknown user, or a user without an identity on that channel, fails that recipient only.
//! Any other recipient id is a channel-native address and is delivered as it is (the pipeline's
//! behaviour before the user-service existed).

use std::collections::{HashMap, HashSet};

use sqlx::{PgPool, Row};
use uuid::Uuid;

use crate::channel::Channel;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// Deliver to this address (the identity's external id).
    Address(String),
    /// Fail this recipient with the reason.
    Unknown(String),
}

/// Resolutions of the user-id recipients among `recipients`; ids that are not UUIDs are absent
/// (delivered unchanged). One query for the whole batch, none when no id is a UUID.
pub async fn resolve(
    pool: &PgPool,
    recipients: &[(String, Channel)],
) -> Result<HashMap<(String, Channel), Resolution>, sqlx::Error> {
    let users: HashSet<Uuid> = recipients.iter().filter_map(|(id, _)| Uuid::parse_str(id).ok()).collect();
    if users.is_empty() {
        return Ok(HashMap::new());
    }
    let ids: Vec<Uuid> = users.into_iter().collect();
    let rows = sqlx::query(
        "SELECT u.id, i.channel, i.external_id FROM users u
         LEFT JOIN identities i ON i.user_id = u.id WHERE u.id = ANY($1)",
    )
    .bind(&ids)
    .fetch_all(pool)
    .await?;
    let mut known: HashSet<Uuid> = HashSet::new();
    let mut identities: HashMap<(Uuid, String), String> = HashMap::new();
    for r in rows {
        let id: Uuid = r.get("id");
        known.insert(id);
        if let (Some(ch), Some(ext)) =
            (r.get::<Option<String>, _>("channel"), r.get::<Option<String>, _>("external_id"))
        {
            identities.insert((id, ch), ext);
        }
    }
    let mut out = HashMap::new();
    for (raw, channel) in recipients {
        let Ok(id) = Uuid::parse_str(raw) else { continue };
        let r = if !known.contains(&id) {
            Resolution::Unknown(format!("unknown recipient: no user {id}"))
        } else {
            match identities.get(&(id, channel.as_str().to_string())) {
                Some(ext) => Resolution::Address(ext.clone()),
                None => Resolution::Unknown(format!("unknown recipient: user {id} has no {channel} identity")),
            }
        };
        out.insert((raw.clone(), *channel), r);
    }
    Ok(out)
}
