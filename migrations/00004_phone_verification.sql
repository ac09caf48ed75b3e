-- +goose Up
-- Phone numbers are verified before use (SPEC §8): a number gets and sends
-- SMS only once phone_verified, and until then several accounts may hold
-- it. Numbers stored before were never verified, so they start unverified
-- and their owners verify them again.
ALTER TABLE users
    ADD COLUMN phone_verified boolean NOT NULL DEFAULT false,
    ADD CONSTRAINT users_phone_verified_check CHECK (phone IS NOT NULL OR NOT phone_verified);
DROP INDEX users_phone_key;
CREATE UNIQUE INDEX users_phone_key ON users (phone) WHERE phone_verified;

-- The verification codes that PATCH /api/v1/me asked for, one row each: the
-- latest row of an account whose phone is unverified is its current code,
-- and the rows of the last hour count against the limit of codes per hour.
CREATE TABLE phone_codes (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id    bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    phone      text NOT NULL,              -- the number the code is for
    code_hash  bytea,                      -- keyed hash of the code; NULL until the job made it
    expires_at timestamptz,                -- set with code_hash
    wrong      integer NOT NULL DEFAULT 0, -- wrong codes entered against it
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX phone_codes_user_idx ON phone_codes (user_id, id);

-- Plain-text SMS go to the room the user most recently posted in (SPEC
-- §8): last_active_at is set by posting only, and NULL in a room where the
-- member never posted (joining or being added does not count). Existing
-- rows get the time of the member's last message in the room, or NULL.
ALTER TABLE room_members
    ALTER COLUMN last_active_at DROP NOT NULL,
    ALTER COLUMN last_active_at DROP DEFAULT;
UPDATE room_members rm SET last_active_at = NULL
 WHERE NOT EXISTS (SELECT 1 FROM messages m WHERE m.room_id = rm.room_id AND m.sender_id = rm.user_id);
UPDATE room_members rm SET last_active_at = p.last_post
  FROM (SELECT room_id, sender_id, max(created_at) AS last_post FROM messages GROUP BY room_id, sender_id) p
 WHERE rm.room_id = p.room_id AND rm.user_id = p.sender_id;

-- save_message of 00003, with the SMS outbox check on verified numbers only.
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION save_message(
    p_room bigint, p_sender bigint, p_body text, p_parent bigint, p_source text,
    p_client_id text, p_external_id text, p_outbox_slack boolean, p_outbox_sms boolean)
RETURNS TABLE (status text, id bigint, room_id bigint, seq bigint, sender_id bigint, username text,
               display_name text, body text, parent_id bigint, reply_count integer, source text,
               client_id text, created_at timestamptz)
LANGUAGE plpgsql AS $fn$
#variable_conflict use_column
DECLARE
    v_visibility text;
    v_member boolean;
    v_seq bigint;
    v_id bigint;
    v_parent_room bigint;
    v_grandparent bigint;
BEGIN
    status := ''; id := 0; room_id := 0; seq := 0; sender_id := 0; username := ''; display_name := '';
    body := ''; reply_count := 0; source := ''; created_at := now();

    -- The room's row lock first: every other insert into this room waits
    -- here, which makes the idempotency look-up race-free and commits come
    -- in seq order.
    SELECT r.visibility, EXISTS (SELECT 1 FROM room_members rm WHERE rm.room_id = r.id AND rm.user_id = p_sender)
      INTO v_visibility, v_member
      FROM rooms r WHERE r.id = p_room FOR UPDATE OF r;
    IF NOT FOUND OR (NOT v_member AND v_visibility <> 'public') THEN
        status := 'not_found'; RETURN NEXT; RETURN;
    ELSIF NOT v_member THEN
        status := 'forbidden'; RETURN NEXT; RETURN;
    END IF;

    IF p_client_id IS NOT NULL OR p_external_id IS NOT NULL THEN
        SELECT m.id INTO v_id FROM messages m
         WHERE (m.room_id = p_room AND m.sender_id = p_sender AND m.client_id = p_client_id)
            OR (m.source = p_source AND m.external_id = p_external_id)
         LIMIT 1;
        IF FOUND THEN
            RETURN QUERY SELECT 'repeat', m.id, m.room_id, m.seq, u.id, u.username, u.display_name, m.body,
                                m.parent_id, m.reply_count, m.source, m.client_id, m.created_at
                           FROM messages m JOIN users u ON u.id = m.sender_id WHERE m.id = v_id;
            RETURN;
        END IF;
    END IF;

    IF p_parent IS NOT NULL THEN
        SELECT m.room_id, m.parent_id INTO v_parent_room, v_grandparent FROM messages m WHERE m.id = p_parent FOR UPDATE;
        IF NOT FOUND OR v_parent_room <> p_room THEN
            status := 'bad_parent'; RETURN NEXT; RETURN;
        ELSIF v_grandparent IS NOT NULL THEN
            status := 'nested'; RETURN NEXT; RETURN;
        END IF;
        UPDATE messages m SET reply_count = m.reply_count + 1 WHERE m.id = p_parent;
    END IF;

    UPDATE rooms r SET last_seq = r.last_seq + 1 WHERE r.id = p_room RETURNING r.last_seq INTO v_seq;
    INSERT INTO messages (room_id, seq, sender_id, body, parent_id, source, client_id, external_id)
    VALUES (p_room, v_seq, p_sender, p_body, p_parent, p_source, p_client_id, p_external_id)
    RETURNING messages.id INTO v_id;
    -- Posting marks the room read up to one's own message and makes it the
    -- sender's most recently active room.
    UPDATE room_members rm SET last_active_at = now(), read_seq = GREATEST(rm.read_seq, v_seq)
     WHERE rm.room_id = p_room AND rm.user_id = p_sender;
    -- The outbox (storage.Outbox): a Slack post for a bridged room, unless
    -- the message came from Slack; an SMS check when another member wants SMS
    -- and has a verified number.
    IF (p_outbox_slack AND p_source <> 'slack'
            AND EXISTS (SELECT 1 FROM rooms r WHERE r.id = p_room AND r.slack_channel_id IS NOT NULL))
       OR (p_outbox_sms
            AND EXISTS (SELECT 1 FROM room_members rm JOIN users u ON u.id = rm.user_id
                        WHERE rm.room_id = p_room AND rm.user_id <> p_sender AND u.sms_notify AND u.phone_verified)) THEN
        INSERT INTO outbox (message_id) VALUES (v_id);
    END IF;

    RETURN QUERY SELECT 'created', m.id, m.room_id, m.seq, u.id, u.username, u.display_name, m.body,
                        m.parent_id, m.reply_count, m.source, m.client_id, m.created_at
                   FROM messages m JOIN users u ON u.id = m.sender_id WHERE m.id = v_id;
END
$fn$;
-- +goose StatementEnd

-- +goose Down
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION save_message(
    p_room bigint, p_sender bigint, p_body text, p_parent bigint, p_source text,
    p_client_id text, p_external_id text, p_outbox_slack boolean, p_outbox_sms boolean)
RETURNS TABLE (status text, id bigint, room_id bigint, seq bigint, sender_id bigint, username text,
               display_name text, body text, parent_id bigint, reply_count integer, source text,
               client_id text, created_at timestamptz)
LANGUAGE plpgsql AS $fn$
#variable_conflict use_column
DECLARE
    v_visibility text;
    v_member boolean;
    v_seq bigint;
    v_id bigint;
    v_parent_room bigint;
    v_grandparent bigint;
BEGIN
    status := ''; id := 0; room_id := 0; seq := 0; sender_id := 0; username := ''; display_name := '';
    body := ''; reply_count := 0; source := ''; created_at := now();

    -- The room's row lock first: every other insert into this room waits
    -- here, which makes the idempotency look-up race-free and commits come
    -- in seq order.
    SELECT r.visibility, EXISTS (SELECT 1 FROM room_members rm WHERE rm.room_id = r.id AND rm.user_id = p_sender)
      INTO v_visibility, v_member
      FROM rooms r WHERE r.id = p_room FOR UPDATE OF r;
    IF NOT FOUND OR (NOT v_member AND v_visibility <> 'public') THEN
        status := 'not_found'; RETURN NEXT; RETURN;
    ELSIF NOT v_member THEN
        status := 'forbidden'; RETURN NEXT; RETURN;
    END IF;

    IF p_client_id IS NOT NULL OR p_external_id IS NOT NULL THEN
        SELECT m.id INTO v_id FROM messages m
         WHERE (m.room_id = p_room AND m.sender_id = p_sender AND m.client_id = p_client_id)
            OR (m.source = p_source AND m.external_id = p_external_id)
         LIMIT 1;
        IF FOUND THEN
            RETURN QUERY SELECT 'repeat', m.id, m.room_id, m.seq, u.id, u.username, u.display_name, m.body,
                                m.parent_id, m.reply_count, m.source, m.client_id, m.created_at
                           FROM messages m JOIN users u ON u.id = m.sender_id WHERE m.id = v_id;
            RETURN;
        END IF;
    END IF;

    IF p_parent IS NOT NULL THEN
        SELECT m.room_id, m.parent_id INTO v_parent_room, v_grandparent FROM messages m WHERE m.id = p_parent FOR UPDATE;
        IF NOT FOUND OR v_parent_room <> p_room THEN
            status := 'bad_parent'; RETURN NEXT; RETURN;
        ELSIF v_grandparent IS NOT NULL THEN
            status := 'nested'; RETURN NEXT; RETURN;
        END IF;
        UPDATE messages m SET reply_count = m.reply_count + 1 WHERE m.id = p_parent;
    END IF;

    UPDATE rooms r SET last_seq = r.last_seq + 1 WHERE r.id = p_room RETURNING r.last_seq INTO v_seq;
    INSERT INTO messages (room_id, seq, sender_id, body, parent_id, source, client_id, external_id)
    VALUES (p_room, v_seq, p_sender, p_body, p_parent, p_source, p_client_id, p_external_id)
    RETURNING messages.id INTO v_id;
    -- Posting marks the room read up to one's own message and makes it the
    -- sender's most recently active room.
    UPDATE room_members rm SET last_active_at = now(), read_seq = GREATEST(rm.read_seq, v_seq)
     WHERE rm.room_id = p_room AND rm.user_id = p_sender;
    -- The outbox (storage.Outbox): a Slack post for a bridged room, unless
    -- the message came from Slack; an SMS check when another member wants SMS.
    IF (p_outbox_slack AND p_source <> 'slack'
            AND EXISTS (SELECT 1 FROM rooms r WHERE r.id = p_room AND r.slack_channel_id IS NOT NULL))
       OR (p_outbox_sms
            AND EXISTS (SELECT 1 FROM room_members rm JOIN users u ON u.id = rm.user_id
                        WHERE rm.room_id = p_room AND rm.user_id <> p_sender AND u.sms_notify AND u.phone IS NOT NULL)) THEN
        INSERT INTO outbox (message_id) VALUES (v_id);
    END IF;

    RETURN QUERY SELECT 'created', m.id, m.room_id, m.seq, u.id, u.username, u.display_name, m.body,
                        m.parent_id, m.reply_count, m.source, m.client_id, m.created_at
                   FROM messages m JOIN users u ON u.id = m.sender_id WHERE m.id = v_id;
END
$fn$;
-- +goose StatementEnd

UPDATE room_members SET last_active_at = joined_at WHERE last_active_at IS NULL;
ALTER TABLE room_members
    ALTER COLUMN last_active_at SET DEFAULT now(),
    ALTER COLUMN last_active_at SET NOT NULL;

DROP TABLE phone_codes;

-- The old schema trusts every stored number: unverified ones are removed.
UPDATE users SET phone = NULL WHERE NOT phone_verified;
DROP INDEX users_phone_key;
ALTER TABLE users DROP CONSTRAINT users_phone_verified_check, DROP COLUMN phone_verified;
CREATE UNIQUE INDEX users_phone_key ON users (phone) WHERE phone IS NOT NULL;
