-- +goose Up
-- Messages that change (SPEC §13). A message's current state stays in its
-- messages row, so every read (history, threads, catch-up) shows it
-- without replaying anything: body is rewritten by an edit and set to ''
-- by a delete; edited_at and deleted_at say when; reactions holds the
-- reactions as clients see them, rewritten from the reactions table at
-- each change; mentions holds the ids of the members the body mentions.
-- Adding nullable columns without a default rewrites nothing.
ALTER TABLE messages ADD COLUMN IF NOT EXISTS edited_at timestamptz;
ALTER TABLE messages ADD COLUMN IF NOT EXISTS deleted_at timestamptz;
ALTER TABLE messages ADD COLUMN IF NOT EXISTS reactions jsonb;   -- NULL: none
ALTER TABLE messages ADD COLUMN IF NOT EXISTS mentions bigint[]; -- NULL: none

-- Each change is an event of its room with the room's next seq, taken
-- from rooms.last_seq under that row's lock like a message's. A message
-- is its own event (its row has its seq); this table holds the others.
-- Events carry no state: a replay reads the message's current state,
-- which SPEC §13 allows, and applying a room's events in order converges.
CREATE TABLE message_events (
    room_id    bigint NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    seq        bigint NOT NULL,
    kind       text NOT NULL CHECK (kind IN ('edit', 'delete', 'reaction')),
    message_id bigint NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    actor_id   bigint REFERENCES users (id) ON DELETE SET NULL,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (room_id, seq)
);
CREATE INDEX message_events_message_idx ON message_events (message_id);

-- One row per member and emoji; id orders them by first use.
CREATE TABLE reactions (
    id         bigint GENERATED ALWAYS AS IDENTITY,
    message_id bigint NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    emoji      text NOT NULL,
    user_id    bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (message_id, emoji, user_id)
);

-- Who a message mentions, by member, for the unread mention counts of
-- GET /rooms: kept equal to messages.mentions by a trigger.
CREATE TABLE mentions (
    user_id    bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    room_id    bigint NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    seq        bigint NOT NULL,
    message_id bigint NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    PRIMARY KEY (user_id, room_id, seq)
);
CREATE INDEX mentions_message_idx ON mentions (message_id);

-- Slack mirroring: the message a post to Slack made (its channel and ts),
-- so that edits and deletes can follow it there; an outbox row with an
-- event_seq is such an edit or delete to mirror (without one, a message).
CREATE TABLE slack_posts (
    message_id bigint PRIMARY KEY REFERENCES messages (id) ON DELETE CASCADE,
    channel    text NOT NULL,
    ts         text NOT NULL
);
ALTER TABLE outbox ADD COLUMN IF NOT EXISTS event_seq bigint;

-- set_mentions computes mentions from the body: each @username (not
-- preceded by a username character, so not an e-mail address) of a member
-- of the room other than the sender, in order of first appearance. A
-- trailing '.' or '-' (end of a sentence) is dropped when the name with it
-- is no one's. Messages without '@' never call it.
-- +goose StatementBegin
CREATE FUNCTION set_mentions() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    NEW.mentions := (
        SELECT array_agg(k.id ORDER BY k.first)
          FROM (SELECT u.id, min(f.first) AS first
                  FROM (SELECT lower(x.m[2]) AS name, min(x.ord) AS first
                          FROM regexp_matches(NEW.body, '(^|[^a-zA-Z0-9_.@-])@([a-zA-Z0-9_.-]{3,33})', 'g')
                               WITH ORDINALITY AS x (m, ord)
                         GROUP BY 1) f
                  JOIN LATERAL (
                        SELECT u.id FROM users u
                         WHERE lower(u.username) IN (f.name, rtrim(f.name, '.-'))
                         ORDER BY lower(u.username) = f.name DESC LIMIT 1) u ON true
                  JOIN room_members rm ON rm.room_id = NEW.room_id AND rm.user_id = u.id
                 WHERE u.id <> NEW.sender_id
                 GROUP BY u.id) k);
    RETURN NEW;
END
$fn$;

CREATE FUNCTION index_mentions() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        DELETE FROM mentions WHERE message_id = NEW.id;
    END IF;
    INSERT INTO mentions (user_id, room_id, seq, message_id)
    SELECT DISTINCT u, NEW.room_id, NEW.seq, NEW.id FROM unnest(NEW.mentions) u;
    RETURN NULL;
END
$fn$;
-- +goose StatementEnd

CREATE TRIGGER messages_mentions_insert BEFORE INSERT ON messages
    FOR EACH ROW WHEN (strpos(NEW.body, '@') > 0) EXECUTE FUNCTION set_mentions();
CREATE TRIGGER messages_mentions_edit BEFORE UPDATE OF body ON messages
    FOR EACH ROW WHEN (OLD.body IS DISTINCT FROM NEW.body) EXECUTE FUNCTION set_mentions();
CREATE TRIGGER messages_mentions_index_insert AFTER INSERT ON messages
    FOR EACH ROW WHEN (NEW.mentions IS NOT NULL) EXECUTE FUNCTION index_mentions();
CREATE TRIGGER messages_mentions_index_edit AFTER UPDATE ON messages
    FOR EACH ROW WHEN (OLD.mentions IS DISTINCT FROM NEW.mentions) EXECUTE FUNCTION index_mentions();

-- +goose Down
DROP TRIGGER messages_mentions_index_edit ON messages;
DROP TRIGGER messages_mentions_index_insert ON messages;
DROP TRIGGER messages_mentions_edit ON messages;
DROP TRIGGER messages_mentions_insert ON messages;
DROP FUNCTION index_mentions();
DROP FUNCTION set_mentions();
ALTER TABLE outbox DROP COLUMN event_seq;
DROP TABLE slack_posts;
DROP TABLE mentions;
DROP TABLE reactions;
DROP TABLE message_events;
ALTER TABLE messages DROP COLUMN mentions;
ALTER TABLE messages DROP COLUMN reactions;
ALTER TABLE messages DROP COLUMN deleted_at;
ALTER TABLE messages DROP COLUMN edited_at;
