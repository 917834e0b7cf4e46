-- The connector's delivery ledger: one row per (message, recipient, channel), claimed before the
-- provider is called and recorded after. It replaces `provider_sends`, the simulated provider that
-- lived inside our own transaction: the providers are remote services now (their own record is
-- the ground truth of what reached a device).
CREATE TABLE delivery_ledger (
    message_id          uuid NOT NULL,
    recipient_id        text NOT NULL,
    channel             text NOT NULL,
    -- What the connector sends the provider: "{message_id}:{recipient_id}:{CHANNEL}".
    idempotency_key     text NOT NULL,
    -- claimed: a provider call is (or was, if its claimer died) in flight;
    -- sent: the provider accepted it (terminal);
    -- failed: the last attempt ended without an effect we know of (see outcome_unknown).
    state               text NOT NULL CHECK (state IN ('claimed', 'sent', 'failed')),
    claimed_by          text NOT NULL,
    claimed_at          timestamptz NOT NULL DEFAULT now(),
    provider_message_id text,
    -- The last attempt may have had an effect (timeout, reset, garbage answer): the next one
    -- reconciles (asks the provider by key) before it sends again.
    outcome_unknown     boolean NOT NULL DEFAULT false,
    attempts            integer NOT NULL DEFAULT 1,
    last_error          text,
    updated_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (message_id, recipient_id, channel)
);
CREATE INDEX delivery_ledger_open ON delivery_ledger (claimed_at) WHERE state <> 'sent';

DROP TABLE provider_sends;
