-- On Apache Kafka a repartition adds partitions to chat-events in place (CreatePartitions); the
-- relay no longer follows topic generations (chat-events.gN), so it needs no topic name here.
ALTER TABLE relay_control DROP COLUMN topic;
