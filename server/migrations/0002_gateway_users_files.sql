-- API keys of the api-gateway. Only the SHA-256 of a key is stored; the key itself is printed
-- once by `chat4allctl apikey create`. A revoked key keeps its row (revoked_at set) so that
-- `apikey list` shows it and its name is not silently reused.
CREATE TABLE api_keys (
    id                bigserial PRIMARY KEY,
    name              text NOT NULL UNIQUE,
    key_hash          text NOT NULL UNIQUE,
    prefix            text NOT NULL,
    -- Per-key token bucket; NULL: the gateway's configured default.
    rate_per_second   double precision,
    burst             integer,
    created_at        timestamptz NOT NULL DEFAULT now(),
    revoked_at        timestamptz
);

-- user-service: users and their identity per channel (one per channel, and an external id
-- belongs to at most one user on a channel).
CREATE TABLE users (
    id         uuid PRIMARY KEY,
    seq        bigserial NOT NULL UNIQUE,
    name       text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE identities (
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    channel     text NOT NULL,
    external_id text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, channel),
    UNIQUE (channel, external_id)
);

-- file-service metadata. The bytes live on disk, addressed by their SHA-256; several uploads of
-- the same bytes share one blob. A row is written only after the blob is durable (fsync+rename).
CREATE TABLE files (
    id           uuid PRIMARY KEY,
    sha256       text NOT NULL,
    size_bytes   bigint NOT NULL,
    content_type text NOT NULL,
    name         text,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX files_sha256 ON files (sha256);
