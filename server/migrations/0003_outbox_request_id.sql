-- The api-gateway's request id travels with the message: stored beside its outbox record and
-- published as the Kafka header `x-request-id`, so the router's log lines name it too.
ALTER TABLE outbox ADD COLUMN request_id text;
