//! The names both sides must agree on: Kafka topics and consumer groups, and the Redis keys of
//! the ops channel.

pub mod topics {
    /// Chat events, key = conversation id (a repartition adds partitions to it in place).
    pub const CHAT_EVENTS: &str = "chat-events";
    pub const STATUS_UPDATES: &str = "status-updates";
    pub const DEAD_LETTERS: &str = "chat-events-dlq";
    /// Consumer group of the router instances.
    pub const ROUTER_GROUP: &str = "router-service";
    /// Consumer group of the message-service status consumer.
    pub const STATUS_GROUP: &str = "message-service-status";
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
