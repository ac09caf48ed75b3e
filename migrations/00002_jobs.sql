-- +goose Up
-- Transactional outbox: a row per stored message that has work outside
-- Postgres (an SMS to send, a Slack channel to post to), written in the
-- message's own transaction and deleted once the job is in the Redis queue.
CREATE TABLE outbox (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_id bigint NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Messages waiting to go out by SMS, per recipient and room: one SMS sends
-- every row of a (user, room) pair, so messages within the throttle window
-- are folded into the next SMS.
CREATE TABLE sms_pending (
    user_id    bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    room_id    bigint NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    message_id bigint NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    PRIMARY KEY (user_id, room_id, message_id)
);

-- When the last SMS about a room went to a user (at most one per minute).
CREATE TABLE sms_throttle (
    user_id      bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    room_id      bigint NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    last_sent_at timestamptz,
    PRIMARY KEY (user_id, room_id)
);

-- Side effects done once: a job that runs again finds its key done.
CREATE TABLE job_runs (
    key     text PRIMARY KEY,
    done_at timestamptz NOT NULL DEFAULT now()
);

CREATE UNIQUE INDEX rooms_slack_channel_key ON rooms (slack_channel_id) WHERE slack_channel_id IS NOT NULL;

-- Logged-out access tokens live in Redis (denylist package) since the
-- cluster work; this table was never read.
DROP TABLE revoked_tokens;

-- +goose Down
CREATE TABLE revoked_tokens (
    jti        text PRIMARY KEY,
    expires_at timestamptz NOT NULL
);
DROP INDEX rooms_slack_channel_key;
DROP TABLE job_runs, sms_throttle, sms_pending, outbox;
