//! The names both sides must agree on: Kafka topics and consumer groups, and the Redis keys of
//! the ops channel.

pub mod topics {
    use crate::channel::Channel;

    /// Chat events, key = conversation id (a repartition adds partitions to it in place).
    pub const CHAT_EVENTS: &str = "chat-events";
    pub const STATUS_UPDATES: &str = "status-updates";
    pub const DEAD_LETTERS: &str = "chat-events-dlq";
    /// Consumer group of the router instances.
    pub const ROUTER_GROUP: &str = "router-service";
    /// Consumer group of the message-service status consumer.
    pub const STATUS_GROUP: &str = "message-service-status";

    /// One channel's deliveries, handed over by the routers (key = conversation id, so the
    /// order per conversation holds): `deliveries-whatsapp`.
    pub fn deliveries(channel: Channel) -> String {
        format!("deliveries-{}", channel.label())
    }

    /// Consumer group of one channel's connectors on [`deliveries`]: `whatsapp-connector`.
    pub fn connector_group(channel: Channel) -> &'static str {
        channel.connector_service()
    }

    /// The connectors' groups, one per channel.
    pub const CONNECTOR_GROUPS: [&str; 3] = ["whatsapp-connector", "telegram-connector", "instagram-connector"];

    /// The channel whose deliveries topic `topic` is.
    pub fn deliveries_channel(topic: &str) -> Option<Channel> {
        Channel::ALL.into_iter().find(|c| deliveries(*c) == topic)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn each_channel_has_its_topic_and_group() {
            for c in Channel::ALL {
                assert_eq!(deliveries_channel(&deliveries(c)), Some(c));
                assert!(CONNECTOR_GROUPS.contains(&connector_group(c)));
            }
            assert_eq!(deliveries(Channel::Telegram), "deliveries-telegram");
            assert_eq!(deliveries_channel("chat-events"), None);
        }
    }
}

/// Redis keys of the ops channel the control plane reads.
pub mod ops_keys {
    /// Stream of rebalance reports (assigned / revoked partitions per instance).
    pub const REBALANCE_STREAM: &str = "chat4all:ops:rebalances";
    /// Hash instance -> JSON of its current assignment, per consumer group.
    pub fn assignment_hash(group: &str) -> String {
        format!("chat4all:ops:assignment:{group}")
    }
}
