-- +goose Up
CREATE TABLE users (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    username      text NOT NULL,
    password_hash text,                -- NULL: a guest (Slack) that cannot log in
    display_name  text NOT NULL,
    phone         text,
    sms_notify    boolean NOT NULL DEFAULT false,
    slack_user_id text,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX users_username_key ON users (lower(username));
CREATE UNIQUE INDEX users_phone_key ON users (phone) WHERE phone IS NOT NULL;
CREATE UNIQUE INDEX users_slack_user_id_key ON users (slack_user_id) WHERE slack_user_id IS NOT NULL;

-- Refresh tokens rotate: each row is used once. family_id ties a chain of
-- rotations together so that reuse of a spent token revokes the whole chain.
CREATE TABLE refresh_tokens (
    token_hash bytea PRIMARY KEY,     -- SHA-256 of the opaque token; the token itself is never stored
    user_id    bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    family_id  uuid NOT NULL,
    expires_at timestamptz NOT NULL,
    used_at    timestamptz,
    revoked_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX refresh_tokens_family_idx ON refresh_tokens (family_id);

-- Access tokens revoked by logout, until they would have expired anyway.
CREATE TABLE revoked_tokens (
    jti        text PRIMARY KEY,
    expires_at timestamptz NOT NULL
);

CREATE TABLE rooms (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name             text NOT NULL,
    visibility       text NOT NULL CHECK (visibility IN ('public', 'private')),
    last_seq         bigint NOT NULL DEFAULT 0, -- the seq counter: bumped under this row's lock
    slack_channel_id text,
    created_by       bigint REFERENCES users (id) ON DELETE SET NULL,
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX rooms_name_key ON rooms (lower(name));
CREATE INDEX rooms_public_idx ON rooms (lower(name)) WHERE visibility = 'public';

CREATE TABLE room_members (
    room_id        bigint NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    user_id        bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    delivered_seq  bigint NOT NULL DEFAULT 0, -- highest seq written to any of the user's connections
    read_seq       bigint NOT NULL DEFAULT 0, -- highest seq the user marked read
    last_active_at timestamptz NOT NULL DEFAULT now(), -- last post by this user here (SMS picks the latest)
    joined_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (room_id, user_id)
);
CREATE INDEX room_members_user_idx ON room_members (user_id, last_active_at DESC);

CREATE TABLE messages (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    room_id     bigint NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    seq         bigint NOT NULL,
    sender_id   bigint NOT NULL REFERENCES users (id),
    body        text NOT NULL,
    parent_id   bigint REFERENCES messages (id),
    reply_count integer NOT NULL DEFAULT 0,
    source      text NOT NULL CHECK (source IN ('web', 'api', 'sms', 'slack')),
    client_id   text,
    external_id text,                 -- Twilio MessageSid or Slack event_id
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    UNIQUE (room_id, seq)             -- serves limit/before_seq/after_seq paging
);
-- since=: the first seq created after an instant.
CREATE INDEX messages_room_created_idx ON messages (room_id, created_at);
-- A thread's replies in order.
CREATE INDEX messages_parent_idx ON messages (parent_id, seq) WHERE parent_id IS NOT NULL;
-- Idempotent sends: one message per (room, sender, client_id).
CREATE UNIQUE INDEX messages_client_id_key ON messages (room_id, sender_id, client_id) WHERE client_id IS NOT NULL;
-- Idempotent webhooks: one message per external id and source.
CREATE UNIQUE INDEX messages_external_id_key ON messages (source, external_id) WHERE external_id IS NOT NULL;

-- +goose Down
DROP TABLE messages;
DROP TABLE room_members;
DROP TABLE rooms;
DROP TABLE revoked_tokens;
DROP TABLE refresh_tokens;
DROP TABLE users;
