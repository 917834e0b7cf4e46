//! Publishing to `chat-events-dlq`, the one way every service does it: a [`DeadLetter`] (the
//! event, the recipient given up on, why, which instance, when) keyed by conversation, or, for a
//! record that could not even be parsed, the record's own key and bytes. Each publisher counts
//! on its own service's counter (`chat4all_router_dead_lettered`,
//! `chat4all_connector_dead_lettered`).

use chrono::Utc;
use prometheus_client::metrics::counter::Counter;

use crate::config::topics;
use crate::events::{ChatEvent, DeadLetter, Recipient};
use crate::kafka::Producer;

#[derive(Clone)]
pub struct DeadLetters {
    pub producer: Producer,
    /// Recorded in each letter (`dlq list` shows it).
    pub instance: String,
    pub counter: Counter,
}

impl DeadLetters {
    /// Gives up on `recipient` of `event`; waits for the broker's acknowledgement.
    pub async fn give_up(&self, event: &ChatEvent, recipient: Recipient, reason: &str) -> anyhow::Result<()> {
        let letter = DeadLetter {
            event: event.clone(),
            recipient,
            reason: reason.to_string(),
            instance: self.instance.clone(),
            at: Utc::now(),
        };
        self.producer.send(topics::DEAD_LETTERS, &event.conversation_id, &serde_json::to_vec(&letter)?).await?;
        self.counter.inc();
        Ok(())
    }

    /// Sets aside a record that could not be parsed, as it was (nothing is lost, an operator
    /// can read it).
    pub async fn unparseable(&self, key: &str, payload: &[u8]) -> anyhow::Result<()> {
        self.producer.send(topics::DEAD_LETTERS, key, payload).await?;
        self.counter.inc();
        Ok(())
    }
}
