-- +goose Up
-- save_message stores one message in one round trip (storage.SaveMessage):
-- the checks, the seq bump, the insert, the sender's cursors and the outbox
-- row, in the caller's statement (and so its transaction). Refusals are
-- answered as a status, not raised, so that Go maps them to client errors:
--   created | repeat      the row is the message (new, or the first of an idempotent repeat)
--   not_found | forbidden the room is missing or private / public but the sender is not a member
--   bad_parent | nested   parent_id names no message of this room / names a reply
-- For a refusal the message columns hold placeholders.
-- +goose StatementBegin
CREATE FUNCTION save_message(
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

-- +goose Down
DROP FUNCTION save_message(bigint, bigint, text, bigint, text, text, text, boolean, boolean);
