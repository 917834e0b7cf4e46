-- Messages accepted by the API. A resubmission with the same messageId is compared field by
-- field with the stored one: the same body gets the same answer, another body a 409.
CREATE TABLE messages (
    id              uuid PRIMARY KEY,
    seq             bigserial NOT NULL UNIQUE,
    conversation_id text NOT NULL,
    sender_id       text NOT NULL,
    channel         text NOT NULL,
    content         jsonb NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX messages_conversation_seq ON messages (conversation_id, seq);

-- One row per (message, recipient, channel): the status the API reports, and the router's
-- dedup marker (`routed_at`): a redelivered event finds it set and does not deliver again.
CREATE TABLE deliveries (
    message_id     uuid NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    recipient_id   text NOT NULL,
    channel        text NOT NULL,
    status         text NOT NULL DEFAULT 'PENDING',
    routed_at      timestamptz,
    routed_by      text,
    route_count    integer NOT NULL DEFAULT 0,
    sent_at        timestamptz,
    delivered_at   timestamptz,
    read_at        timestamptz,
    failed_at      timestamptz,
    failure_reason text,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (message_id, recipient_id, channel)
);
CREATE INDEX deliveries_status ON deliveries (status);

-- Transactional outbox: written in the same transaction as the message, drained in id order
-- by the relay (one leader at a time), deleted once the broker acknowledged the record.
CREATE TABLE outbox (
    id         bigserial PRIMARY KEY,
    topic      text NOT NULL,
    key        text NOT NULL,
    payload    bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- The simulated providers' own log: one row for every message a provider actually handed to a
-- device. Deliberately without a unique constraint: duplicates are prevented by the router's
-- dedup and the connector's idempotency key, and counted here if either ever fails.
CREATE TABLE provider_sends (
    id                  bigserial PRIMARY KEY,
    message_id          uuid NOT NULL,
    recipient_id        text NOT NULL,
    channel             text NOT NULL,
    provider_message_id text NOT NULL,
    connector_instance  text NOT NULL,
    sent_at             timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX provider_sends_key ON provider_sends (message_id, recipient_id, channel);

-- Control flags the control plane flips (e.g. pause the outbox relay while repartitioning).
CREATE TABLE relay_control (
    id         integer PRIMARY KEY CHECK (id = 1),
    paused     boolean NOT NULL DEFAULT false,
    topic      text NOT NULL DEFAULT 'chat-events',
    updated_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO relay_control (id) VALUES (1);
