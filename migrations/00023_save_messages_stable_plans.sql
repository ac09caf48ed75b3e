-- +goose Up
-- save_messages's plans no longer depend on the tables' statistics. Its
-- statements are planned once per connection and kept (a generic plan,
-- 00008), so a connection that first saved while messages was empty or
-- small (a new database; before autovacuum's first ANALYZE; or an ANALYZE
-- of the empty table) kept plans made for an empty table: the parent check
-- and the reply count bump read every message (a sequential scan, or a
-- hash join over one), the idempotency look-up read all of the room's
-- messages through (room_id, created_at). Each batch then cost more as the
-- table grew (a batch of 8: 40 ms once 64,000 messages were stored,
-- against 0.7 ms with statistics) until something replanned it.
--
-- Every row the function reads it finds by key, so no sequential scan is
-- ever right for it: the function runs with enable_seqscan off. Each
-- look-up of one row is a LATERAL subquery with LIMIT 1, which the
-- planner cannot turn into a join over a whole table or index; the
-- idempotency look-up is two of them, one per unique index (client_id,
-- external id), instead of one with OR; the rows to update are named by
-- arrays of their keys (an index scan of the full messages_pkey drove the
-- reply count bump otherwise).
--
-- It is also smaller. Most of a batch's fixed cost (~0.4 ms of backend CPU
-- for one message) was setting up the executor for the big statement's
-- plan (a quarter of the backend's CPU in a perf profile) and building
-- hash tables for joins of a few rows (a tenth). The checks now also
-- settle each message's seq and which messages repeat an earlier one of
-- the batch (window functions over the batch), so the statement that
-- writes needs no anti-join, window, join of the inserted rows back to
-- their input, or four-way union for its answer; joins are nested loops
-- (enable_hashjoin off: every join is of a few rows or by key). About
-- 0.1 ms less backend CPU per batch. What the function does and answers
-- is unchanged.
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION save_messages(
    p_rooms bigint[], p_senders bigint[], p_bodies text[], p_parents bigint[], p_sources text[],
    p_client_ids text[], p_external_ids text[], p_outbox_slack boolean, p_outbox_sms boolean)
RETURNS TABLE (ord bigint, status text, id bigint, room_id bigint, seq bigint, sender_id bigint, username text,
               display_name text, body text, parent_id bigint, reply_count integer, source text,
               client_id text, created_at timestamptz, mentions bigint[])
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan SET enable_seqscan = off SET enable_hashjoin = off
AS $fn$
#variable_conflict use_column
DECLARE
    v_status text[]; -- per message: new, dup, repeat or a refusal
    v_ref bigint[];  -- repeat: the stored message's id; dup: the ord of the message it repeats
    v_seq bigint[];  -- new: its seq
BEGIN
    -- The rooms' row locks first, in id order as every batch takes them:
    -- every other insert into these rooms waits here, which makes the
    -- idempotency look-up race-free and commits come in seq order.
    PERFORM 1 FROM rooms r WHERE r.id = ANY (p_rooms) ORDER BY r.id FOR UPDATE;

    -- Each message's fate, in a statement of its own so that its snapshot,
    -- taken after the locks, sees what a batch that held them committed:
    -- refused, a repeat of a stored message, a repeat of an earlier message
    -- of the batch with the same client_id or external id (dup: the first
    -- is stored), or new, with its seq.
    SELECT array_agg(d.status ORDER BY d.ord), array_agg(d.ref ORDER BY d.ord), array_agg(d.seq ORDER BY d.ord)
      INTO v_status, v_ref, v_seq
      FROM (SELECT f.ord,
                   CASE WHEN f.first < f.ord THEN 'dup' ELSE f.status END AS status,
                   CASE WHEN f.first < f.ord THEN f.first ELSE f.repeat END AS ref,
                   CASE WHEN f.status = 'new' AND f.first = f.ord
                        THEN f.last_seq + count(*) FILTER (WHERE f.status = 'new' AND f.first = f.ord)
                                              OVER (PARTITION BY f.room ORDER BY f.ord)
                   END AS seq
              FROM (SELECT c.*,
                           CASE WHEN c.status = 'new' THEN
                             LEAST(CASE WHEN c.client_id IS NOT NULL THEN
                                     min(c.ord) FILTER (WHERE c.status = 'new')
                                       OVER (PARTITION BY c.room, c.sender, c.client_id) END,
                                   CASE WHEN c.external_id IS NOT NULL THEN
                                     min(c.ord) FILTER (WHERE c.status = 'new')
                                       OVER (PARTITION BY c.source, c.external_id) END,
                                   c.ord)
                           END AS first
                      FROM (SELECT i.ord, i.room, i.sender, i.source, i.client_id, i.external_id, r.last_seq,
                                   CASE
                                     WHEN r.id IS NULL OR (m.user_id IS NULL AND r.visibility <> 'public') THEN 'not_found'
                                     WHEN m.user_id IS NULL THEN 'forbidden'
                                     WHEN COALESCE(rc.id, rx.id) IS NOT NULL THEN 'repeat'
                                     WHEN r.archived_at IS NOT NULL THEN 'archived'
                                     WHEN i.parent IS NOT NULL AND (pm.id IS NULL OR pm.room_id <> i.room) THEN 'bad_parent'
                                     WHEN i.parent IS NOT NULL AND pm.parent_id IS NOT NULL THEN 'nested'
                                     ELSE 'new'
                                   END AS status,
                                   COALESCE(rc.id, rx.id) AS repeat
                              FROM unnest(p_rooms, p_senders, p_parents, p_sources, p_client_ids, p_external_ids)
                                   WITH ORDINALITY AS i (room, sender, parent, source, client_id, external_id, ord)
                              LEFT JOIN LATERAL (
                                    SELECT r.id, r.visibility, r.archived_at, r.last_seq
                                      FROM rooms r WHERE r.id = i.room LIMIT 1) r ON true
                              LEFT JOIN LATERAL (
                                    SELECT m.user_id FROM room_members m
                                     WHERE m.room_id = i.room AND m.user_id = i.sender LIMIT 1) m ON true
                              LEFT JOIN LATERAL (
                                    SELECT x.id FROM messages x
                                     WHERE x.room_id = i.room AND x.sender_id = i.sender AND x.client_id = i.client_id
                                     LIMIT 1) rc ON true
                              LEFT JOIN LATERAL (
                                    SELECT x.id FROM messages x
                                     WHERE x.source = i.source AND x.external_id = i.external_id LIMIT 1) rx ON true
                              LEFT JOIN LATERAL (
                                    SELECT pm.id, pm.room_id, pm.parent_id FROM messages pm
                                     WHERE pm.id = i.parent LIMIT 1) pm ON true) c) f) d;

    RETURN QUERY
    WITH input AS (
        SELECT i.*, v_status[i.ord] AS status, v_seq[i.ord] AS new_seq,
               CASE v_status[i.ord] WHEN 'repeat' THEN v_ref[i.ord] END AS repeat,
               -- The stored message that answers it: its own, or its first's.
               CASE v_status[i.ord] WHEN 'new' THEN i.room WHEN 'dup' THEN p_rooms[v_ref[i.ord]] END AS answer_room,
               CASE v_status[i.ord] WHEN 'new' THEN v_seq[i.ord] WHEN 'dup' THEN v_seq[v_ref[i.ord]] END AS answer_seq
          FROM unnest(p_rooms, p_senders, p_bodies, p_parents, p_sources, p_client_ids, p_external_ids)
               WITH ORDINALITY AS i (room, sender, body, parent, source, client_id, external_id, ord)
    ),
    -- created_at (clock_timestamp) is taken row by row in this order, so
    -- it grows with seq in each room.
    inserted AS (
        INSERT INTO messages AS m (room_id, seq, sender_id, body, parent_id, source, client_id, external_id)
        SELECT i.room, i.new_seq, i.sender, i.body, i.parent, i.source, i.client_id, i.external_id
          FROM input i WHERE i.status = 'new' ORDER BY i.room, i.new_seq
        RETURNING m.id, m.room_id, m.seq, m.sender_id, m.body, m.parent_id, m.source, m.client_id, m.created_at,
                  m.mentions
    ),
    -- (The modifying statements run to completion whether or not their
    -- output is read.) The rows to update are named by arrays of keys (an
    -- index condition whichever way the planner joins).
    rooms_bumped AS (
        UPDATE rooms r SET last_seq = (SELECT max(i.new_seq) FROM input i WHERE i.room = r.id)
         WHERE r.id = ANY (ARRAY(SELECT i.room FROM input i WHERE i.status = 'new'))
    ),
    parents_bumped AS (
        UPDATE messages p
           SET reply_count = p.reply_count + (SELECT count(*) FROM input i WHERE i.status = 'new' AND i.parent = p.id)
         WHERE p.id = ANY (ARRAY(SELECT i.parent FROM input i WHERE i.status = 'new' AND i.parent IS NOT NULL))
    ),
    -- Posting marks the room read up to one's own message and makes it the
    -- sender's most recently active room.
    cursors_moved AS (
        UPDATE room_members rm SET last_active_at = now(), read_seq = GREATEST(rm.read_seq, c.seq)
          FROM (SELECT i.room, i.sender, max(i.new_seq) AS seq FROM input i WHERE i.status = 'new'
                 GROUP BY i.room, i.sender) c
         WHERE rm.room_id = c.room AND rm.user_id = c.sender
           AND rm.room_id = ANY (ARRAY(SELECT i.room FROM input i WHERE i.status = 'new'))
    ),
    -- The outbox (storage.Outbox): a Slack post for a bridged room, unless
    -- the message came from Slack; an SMS check when another member wants
    -- SMS and has a verified number.
    outboxed AS (
        INSERT INTO outbox (message_id)
        SELECT c.id FROM inserted c
         WHERE (p_outbox_slack AND c.source <> 'slack' AND EXISTS (
                  SELECT 1 FROM rooms r WHERE r.id = c.room_id AND r.slack_channel_id IS NOT NULL))
            OR (p_outbox_sms AND EXISTS (
                  SELECT 1 FROM room_members rm
                   CROSS JOIN LATERAL (
                         SELECT 1 FROM users u WHERE u.id = rm.user_id AND u.sms_notify AND u.phone_verified LIMIT 1) u
                   WHERE rm.room_id = c.room_id AND rm.user_id <> c.sender_id))
    )
    -- Every message's answer: created, a repeat (of a stored message or of
    -- the batch's first), or a refusal.
    SELECT i.ord,
           CASE i.status WHEN 'new' THEN 'created' WHEN 'dup' THEN 'repeat' ELSE i.status END,
           COALESCE(c.id, x.id, 0), COALESCE(c.room_id, x.room_id, 0), COALESCE(c.seq, x.seq, 0),
           COALESCE(c.sender_id, x.sender_id, 0), COALESCE(u.username, ''), COALESCE(u.display_name, ''),
           COALESCE(c.body, x.body, ''), COALESCE(c.parent_id, x.parent_id), COALESCE(x.reply_count, 0),
           COALESCE(c.source, x.source, ''), COALESCE(c.client_id, x.client_id),
           COALESCE(c.created_at, x.created_at, now()), COALESCE(c.mentions, x.mentions)
      FROM input i
      LEFT JOIN inserted c ON c.room_id = i.answer_room AND c.seq = i.answer_seq
      LEFT JOIN LATERAL (
            SELECT x.id, x.room_id, x.seq, x.sender_id, x.body, x.parent_id, x.reply_count, x.source, x.client_id,
                   x.created_at, x.mentions
              FROM messages x WHERE x.id = i.repeat LIMIT 1) x ON true
      LEFT JOIN LATERAL (
            SELECT u.username, u.display_name FROM users u WHERE u.id = COALESCE(c.sender_id, x.sender_id) LIMIT 1) u ON true
     ORDER BY i.ord;
END
$fn$;
-- +goose StatementEnd

-- +goose Down
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION save_messages(
    p_rooms bigint[], p_senders bigint[], p_bodies text[], p_parents bigint[], p_sources text[],
    p_client_ids text[], p_external_ids text[], p_outbox_slack boolean, p_outbox_sms boolean)
RETURNS TABLE (ord bigint, status text, id bigint, room_id bigint, seq bigint, sender_id bigint, username text,
               display_name text, body text, parent_id bigint, reply_count integer, source text,
               client_id text, created_at timestamptz, mentions bigint[])
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $fn$
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
                     WHEN r.archived_at IS NOT NULL THEN 'archived'
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
        RETURNING m.id, m.room_id, m.seq, m.created_at, m.mentions
    ),
    created AS (
        SELECT n.ord, ins.id, n.room, n.new_seq AS seq, n.sender, n.body, n.parent, n.source, n.client_id,
               n.external_id, ins.created_at, ins.mentions, n.bridged
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
               c.source, c.client_id, c.created_at, c.mentions
          FROM input i JOIN created c ON c.ord = i.ord
        UNION ALL
        SELECT i.ord, 'repeat', c.id, c.room, c.seq, c.sender, c.body, c.parent, 0, c.source, c.client_id, c.created_at,
               c.mentions
          FROM input i CROSS JOIN LATERAL (
                 SELECT * FROM created c
                  WHERE c.ord < i.ord
                    AND ((i.client_id IS NOT NULL AND c.room = i.room AND c.sender = i.sender AND c.client_id = i.client_id)
                      OR (i.external_id IS NOT NULL AND c.source = i.source AND c.external_id = i.external_id))
                  ORDER BY c.ord LIMIT 1) c
         WHERE i.status = 'new' AND NOT EXISTS (SELECT 1 FROM created f WHERE f.ord = i.ord)
        UNION ALL
        SELECT i.ord, 'repeat', x.id, x.room_id, x.seq, x.sender_id, x.body, x.parent_id, x.reply_count,
               x.source, x.client_id, x.created_at, x.mentions
          FROM input i JOIN messages x ON x.id = i.repeat
         WHERE i.status = 'repeat'
        UNION ALL
        SELECT i.ord, i.status, 0, 0, 0, 0, '', NULL, 0, '', NULL, now(), NULL
          FROM input i WHERE i.status NOT IN ('new', 'repeat')
    )
    SELECT a.ord, a.status, a.id, a.room, a.seq, a.sender, COALESCE(u.username, ''), COALESCE(u.display_name, ''),
           a.body, a.parent, a.reply_count, a.source, a.client_id, a.created_at, a.mentions
      FROM answer a LEFT JOIN users u ON u.id = a.sender
     ORDER BY a.ord;
END
$fn$;
-- +goose StatementEnd

