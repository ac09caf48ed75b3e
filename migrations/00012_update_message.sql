-- +goose Up
-- can_moderate tells whether a user may delete anyone's message in a room.
-- For now only the room's creator may; roles (SPEC §14) replace it in a
-- later migration. Migrations may apply out of order, so this one defines
-- it only where that replacement has not yet.
-- +goose StatementBegin
DO $do$
BEGIN
    IF to_regprocedure('can_moderate(bigint, bigint)') IS NULL THEN
        CREATE OR REPLACE FUNCTION can_moderate(p_room bigint, p_user bigint) RETURNS boolean
        LANGUAGE sql STABLE AS $fn$
            SELECT EXISTS (SELECT 1 FROM rooms r WHERE r.id = p_room AND r.created_by = p_user)
        $fn$;
    END IF;
END
$do$;
-- +goose StatementEnd

-- update_message makes one change to a message (SPEC §13) in one call:
--   p_action  edit (p_body: the new body, already checked), delete,
--             react or unreact (p_emoji, already checked)
-- With p_outbox_slack, an edit or delete of a message that went, or is
-- going, to Slack gets an outbox row (storage.Outbox), mirrored by a job.
-- It takes the room's row lock first, as save_messages does, so the event
-- takes the room's next seq, and commits, in seq order with the room's
-- messages. One row comes back, with a status:
--   changed     the change is stored as the event event_seq
--   unchanged   nothing to change (a repeat): no event, no seq
--   not_found / forbidden         the message is not there for the actor
--   not_sender / not_moderator    the actor may not do that
--   archived    the room is archived: read-only (a moderator's delete excepted)
--   deleted     the message is deleted: no edit or reaction
--   too_many    a 21st distinct emoji
-- and the message's state after the call; no row when there is no such
-- message.
-- +goose StatementBegin
CREATE FUNCTION update_message(p_action text, p_message bigint, p_actor bigint, p_body text, p_emoji text,
                               p_max_emoji integer, p_outbox_slack boolean)
RETURNS TABLE (status text, event_seq bigint, id bigint, room_id bigint, seq bigint, sender_id bigint,
               username text, display_name text, body text, parent_id bigint, reply_count integer,
               source text, client_id text, created_at timestamptz, edited_at timestamptz, deleted boolean,
               reactions jsonb, mentions bigint[])
LANGUAGE plpgsql AS $fn$
#variable_conflict use_column
DECLARE
    v_room bigint;
    v_visibility text;
    v_member boolean;
    v_sender bigint;
    v_body text;
    v_deleted boolean;
    v_kind text;
    v_status text := 'changed';
    v_seq bigint;
BEGIN
    SELECT m.room_id INTO v_room FROM messages m WHERE m.id = p_message;
    IF NOT FOUND THEN
        RETURN; -- no row: no such message
    END IF;
    -- The room's lock: every change and message of the room waits here.
    SELECT r.visibility, EXISTS (SELECT 1 FROM room_members rm WHERE rm.room_id = r.id AND rm.user_id = p_actor)
      INTO v_visibility, v_member
      FROM rooms r WHERE r.id = v_room FOR UPDATE OF r;
    SELECT m.sender_id, m.body, m.deleted_at IS NOT NULL INTO v_sender, v_body, v_deleted
      FROM messages m WHERE m.id = p_message;

    IF NOT v_member THEN
        v_status := CASE WHEN v_visibility = 'public' THEN 'forbidden' ELSE 'not_found' END;
    ELSIF room_archived(v_room) AND NOT (p_action = 'delete' AND can_moderate(v_room, p_actor)) THEN
        -- Read-only (SPEC §14; room_archived: migration 00020), but its
        -- owner and admins may still delete.
        v_status := 'archived';
    ELSIF p_action = 'edit' THEN
        v_kind := 'edit';
        IF v_sender <> p_actor THEN
            v_status := 'not_sender';
        ELSIF v_deleted THEN
            v_status := 'deleted';
        ELSIF v_body = p_body THEN
            v_status := 'unchanged';
        ELSE
            UPDATE messages m SET body = p_body, edited_at = clock_timestamp() WHERE m.id = p_message;
        END IF;
    ELSIF p_action = 'delete' THEN
        v_kind := 'delete';
        IF v_sender <> p_actor AND NOT can_moderate(v_room, p_actor) THEN
            v_status := 'not_moderator';
        ELSIF v_deleted THEN
            v_status := 'unchanged';
        ELSE
            DELETE FROM reactions x WHERE x.message_id = p_message;
            UPDATE messages m SET body = '', deleted_at = clock_timestamp(), reactions = NULL WHERE m.id = p_message;
        END IF;
    ELSIF p_action IN ('react', 'unreact') THEN
        v_kind := 'reaction';
        IF v_deleted THEN
            v_status := 'deleted';
        ELSIF p_action = 'react' THEN
            IF EXISTS (SELECT 1 FROM reactions x
                        WHERE x.message_id = p_message AND x.emoji = p_emoji AND x.user_id = p_actor) THEN
                v_status := 'unchanged';
            ELSIF NOT EXISTS (SELECT 1 FROM reactions x WHERE x.message_id = p_message AND x.emoji = p_emoji)
                  AND (SELECT count(DISTINCT x.emoji) FROM reactions x WHERE x.message_id = p_message) >= p_max_emoji THEN
                v_status := 'too_many';
            ELSE
                INSERT INTO reactions (message_id, emoji, user_id) VALUES (p_message, p_emoji, p_actor);
            END IF;
        ELSE
            DELETE FROM reactions x WHERE x.message_id = p_message AND x.emoji = p_emoji AND x.user_id = p_actor;
            IF NOT FOUND THEN
                v_status := 'unchanged';
            END IF;
        END IF;
        IF v_status = 'changed' THEN
            -- The reactions as clients see them: by first use (an emoji
            -- keeps its place while anyone still has it; a new one comes
            -- last), each with its members in the order they reacted.
            UPDATE messages m SET reactions = (
                SELECT jsonb_agg(jsonb_build_object('emoji', e.emoji, 'count', e.n, 'user_ids', e.users)
                                 ORDER BY o.ord NULLS LAST, e.first)
                  FROM (SELECT x.emoji, count(*) AS n, min(x.id) AS first,
                               jsonb_agg(x.user_id::text ORDER BY x.id) AS users
                          FROM reactions x WHERE x.message_id = p_message GROUP BY x.emoji) e
                  LEFT JOIN LATERAL (
                        SELECT o.ord FROM jsonb_array_elements(m.reactions) WITH ORDINALITY AS o (r, ord)
                         WHERE o.r->>'emoji' = e.emoji) o ON true)
             WHERE m.id = p_message;
        END IF;
    ELSE
        RAISE EXCEPTION 'update_message: unknown action %', p_action;
    END IF;

    IF v_status = 'changed' THEN
        UPDATE rooms r SET last_seq = r.last_seq + 1 WHERE r.id = v_room RETURNING r.last_seq INTO v_seq;
        INSERT INTO message_events (room_id, seq, kind, message_id, actor_id)
        VALUES (v_room, v_seq, v_kind, p_message, p_actor);
        IF p_outbox_slack AND v_kind IN ('edit', 'delete')
           AND (EXISTS (SELECT 1 FROM slack_posts sp WHERE sp.message_id = p_message)
                OR EXISTS (SELECT 1 FROM messages m JOIN rooms r ON r.id = m.room_id
                            WHERE m.id = p_message AND m.source <> 'slack' AND r.slack_channel_id IS NOT NULL)) THEN
            INSERT INTO outbox (message_id, event_seq) VALUES (p_message, v_seq);
        END IF;
    END IF;
    RETURN QUERY
    SELECT v_status, v_seq, m.id, m.room_id, m.seq, u.id, u.username, u.display_name, m.body, m.parent_id,
           m.reply_count, m.source, m.client_id, m.created_at, m.edited_at, m.deleted_at IS NOT NULL,
           m.reactions, m.mentions
      FROM messages m JOIN users u ON u.id = m.sender_id WHERE m.id = p_message;
END
$fn$;
-- +goose StatementEnd

-- +goose Down
DROP FUNCTION update_message(text, bigint, bigint, text, text, integer, boolean);
DROP FUNCTION can_moderate(bigint, bigint);
