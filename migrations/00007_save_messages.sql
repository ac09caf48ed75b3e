-- +goose Up
-- save_messages stores a batch of messages (storage's group commit) in one
-- statement: every room of the batch is locked once, in id order; the
-- checks of every message are one query; the new messages are one INSERT;
-- each room's last_seq, each parent's reply_count and each sender's cursors
-- are one UPDATE per row touched, not per message. A message alone is a
-- batch of one. It replaces save_message (00003, 00004), which did all of
-- that once per message.
--
-- Arguments are parallel arrays, one element per message, in arrival order;
-- each room's messages take its next seqs in that order. One row comes
-- back per message, with its position (ord, from 1) and a status:
--   created | repeat      the row is the message (new, or the first of an
--                         idempotent repeat, possibly earlier in the batch)
--   not_found | forbidden the room is missing or private / public but the
--                         sender is not a member
--   bad_parent | nested   parent_id names no message of this room / names
--                         a reply
-- For a refusal the message columns hold placeholders.

-- The sender's cursors are updated with every post: keep last_active_at
-- out of the index so that the update is HOT (no index entry written).
-- LastActiveRoom sorts a user's few memberships itself.
DROP INDEX room_members_user_idx;
CREATE INDEX room_members_user_idx ON room_members (user_id);

-- +goose StatementBegin
CREATE FUNCTION save_messages(
    p_rooms bigint[], p_senders bigint[], p_bodies text[], p_parents bigint[], p_sources text[],
    p_client_ids text[], p_external_ids text[], p_outbox_slack boolean, p_outbox_sms boolean)
RETURNS TABLE (ord bigint, status text, id bigint, room_id bigint, seq bigint, sender_id bigint, username text,
               display_name text, body text, parent_id bigint, reply_count integer, source text,
               client_id text, created_at timestamptz)
LANGUAGE plpgsql AS $fn$
#variable_conflict use_column
DECLARE
    v_status text[];
    v_repeat bigint[];
BEGIN
    -- The rooms' row locks first, in id order as every batch takes them:
    -- every other insert into these rooms waits here, which makes the
    -- idempotency look-up race-free and commits come in seq order.
    PERFORM 1 FROM rooms r WHERE r.id = ANY (p_rooms) ORDER BY r.id FOR UPDATE;

    -- The checks, in a statement of its own so that its snapshot, taken
    -- after the locks, sees what a batch that held them committed.
    SELECT array_agg(c.status ORDER BY c.ord), array_agg(c.repeat ORDER BY c.ord) INTO v_status, v_repeat
      FROM (SELECT i.ord,
                   CASE
                     WHEN r.id IS NULL OR (m.user_id IS NULL AND r.visibility <> 'public') THEN 'not_found'
                     WHEN m.user_id IS NULL THEN 'forbidden'
                     WHEN rep.id IS NOT NULL THEN 'repeat'
                     WHEN i.parent IS NOT NULL AND (pm.id IS NULL OR pm.room_id <> i.room) THEN 'bad_parent'
                     WHEN i.parent IS NOT NULL AND pm.parent_id IS NOT NULL THEN 'nested'
                     ELSE 'new'
                   END AS status,
                   rep.id AS repeat
              FROM unnest(p_rooms, p_senders, p_parents, p_sources, p_client_ids, p_external_ids)
                   WITH ORDINALITY AS i (room, sender, parent, source, client_id, external_id, ord)
              LEFT JOIN rooms r ON r.id = i.room
              LEFT JOIN room_members m ON m.room_id = i.room AND m.user_id = i.sender
              LEFT JOIN LATERAL (
                    SELECT x.id FROM messages x
                     WHERE (i.client_id IS NOT NULL AND x.room_id = i.room AND x.sender_id = i.sender AND x.client_id = i.client_id)
                        OR (i.external_id IS NOT NULL AND x.source = i.source AND x.external_id = i.external_id)
                     LIMIT 1) rep ON true
              LEFT JOIN messages pm ON pm.id = i.parent) c;

    RETURN QUERY
    WITH input AS (
        SELECT i.*, v_status[i.ord] AS status, v_repeat[i.ord] AS repeat
          FROM unnest(p_rooms, p_senders, p_bodies, p_parents, p_sources, p_client_ids, p_external_ids)
               WITH ORDINALITY AS i (room, sender, body, parent, source, client_id, external_id, ord)
    ),
    -- A client_id or external id twice in the batch: the first is stored,
    -- the later ones repeat it.
    firsts AS (
        SELECT i.* FROM input i
         WHERE i.status = 'new'
           AND NOT EXISTS (
                 SELECT 1 FROM input j
                  WHERE j.status = 'new' AND j.ord < i.ord
                    AND ((i.client_id IS NOT NULL AND j.room = i.room AND j.sender = i.sender AND j.client_id = i.client_id)
                      OR (i.external_id IS NOT NULL AND j.source = i.source AND j.external_id = i.external_id)))
    ),
    numbered AS (
        SELECT f.*, r.last_seq + row_number() OVER (PARTITION BY f.room ORDER BY f.ord) AS new_seq,
               r.slack_channel_id IS NOT NULL AS bridged
          FROM firsts f JOIN rooms r ON r.id = f.room
    ),
    -- created_at (clock_timestamp) is taken row by row in this order, so
    -- it grows with seq in each room.
    inserted AS (
        INSERT INTO messages AS m (room_id, seq, sender_id, body, parent_id, source, client_id, external_id)
        SELECT n.room, n.new_seq, n.sender, n.body, n.parent, n.source, n.client_id, n.external_id
          FROM numbered n ORDER BY n.room, n.new_seq
        RETURNING m.id, m.room_id, m.seq, m.created_at
    ),
    created AS (
        SELECT n.ord, ins.id, n.room, n.new_seq AS seq, n.sender, n.body, n.parent, n.source, n.client_id,
               n.external_id, ins.created_at, n.bridged
          FROM numbered n JOIN inserted ins ON ins.room_id = n.room AND ins.seq = n.new_seq
    ),
    -- (The modifying statements run to completion whether or not their
    -- output is read.)
    rooms_bumped AS (
        UPDATE rooms r SET last_seq = r.last_seq + c.n
          FROM (SELECT room, count(*) AS n FROM created GROUP BY room) c
         WHERE r.id = c.room
    ),
    parents_bumped AS (
        UPDATE messages p SET reply_count = p.reply_count + c.n
          FROM (SELECT parent, count(*) AS n FROM created WHERE parent IS NOT NULL GROUP BY parent) c
         WHERE p.id = c.parent
    ),
    -- Posting marks the room read up to one's own message and makes it the
    -- sender's most recently active room.
    cursors_moved AS (
        UPDATE room_members rm SET last_active_at = now(), read_seq = GREATEST(rm.read_seq, c.seq)
          FROM (SELECT room, sender, max(seq) AS seq FROM created GROUP BY room, sender) c
         WHERE rm.room_id = c.room AND rm.user_id = c.sender
    ),
    -- The outbox (storage.Outbox): a Slack post for a bridged room, unless
    -- the message came from Slack; an SMS check when another member wants
    -- SMS and has a verified number.
    outboxed AS (
        INSERT INTO outbox (message_id)
        SELECT c.id FROM created c
         WHERE (p_outbox_slack AND c.source <> 'slack' AND c.bridged)
            OR (p_outbox_sms AND EXISTS (
                  SELECT 1 FROM room_members rm JOIN users u ON u.id = rm.user_id
                   WHERE rm.room_id = c.room AND rm.user_id <> c.sender AND u.sms_notify AND u.phone_verified))
    ),
    -- Every message's answer: created, the first of a repeat in the batch,
    -- a repeat of a stored message, or a refusal.
    answer AS (
        SELECT i.ord, 'created' AS status, c.id, c.room, c.seq, c.sender, c.body, c.parent, 0 AS reply_count,
               c.source, c.client_id, c.created_at
          FROM input i JOIN created c ON c.ord = i.ord
        UNION ALL
        SELECT i.ord, 'repeat', c.id, c.room, c.seq, c.sender, c.body, c.parent, 0, c.source, c.client_id, c.created_at
          FROM input i CROSS JOIN LATERAL (
                 SELECT * FROM created c
                  WHERE c.ord < i.ord
                    AND ((i.client_id IS NOT NULL AND c.room = i.room AND c.sender = i.sender AND c.client_id = i.client_id)
                      OR (i.external_id IS NOT NULL AND c.source = i.source AND c.external_id = i.external_id))
                  ORDER BY c.ord LIMIT 1) c
         WHERE i.status = 'new' AND NOT EXISTS (SELECT 1 FROM created f WHERE f.ord = i.ord)
        UNION ALL
        SELECT i.ord, 'repeat', x.id, x.room_id, x.seq, x.sender_id, x.body, x.parent_id, x.reply_count,
               x.source, x.client_id, x.created_at
          FROM input i JOIN messages x ON x.id = i.repeat
         WHERE i.status = 'repeat'
        UNION ALL
        SELECT i.ord, i.status, 0, 0, 0, 0, '', NULL, 0, '', NULL, now()
          FROM input i WHERE i.status NOT IN ('new', 'repeat')
    )
    SELECT a.ord, a.status, a.id, a.room, a.seq, a.sender, COALESCE(u.username, ''), COALESCE(u.display_name, ''),
           a.body, a.parent, a.reply_count, a.source, a.client_id, a.created_at
      FROM answer a LEFT JOIN users u ON u.id = a.sender
     ORDER BY a.ord;
END
$fn$;
-- +goose StatementEnd

DROP FUNCTION save_message(bigint, bigint, text, bigint, text, text, text, boolean, boolean);

-- +goose Down
DROP FUNCTION save_messages(bigint[], bigint[], text[], bigint[], text[], text[], text[], boolean, boolean);
DROP INDEX room_members_user_idx;
CREATE INDEX room_members_user_idx ON room_members (user_id, last_active_at DESC);
-- The save_message of 00004, as it was.
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
