package storage_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// The history queries of messages.go, copied verbatim (SELECT list, FROM,
// WHERE and ORDER BY), so that their plans can be checked on a realistic
// table. Keep them in step with messages.go.
const (
	explainColumns = `m.id, m.room_id, m.seq, u.id, u.username, u.display_name, m.body, m.parent_id,
	m.reply_count, m.source, m.client_id, m.created_at`
	explainFrom = ` FROM messages m JOIN users u ON u.id = m.sender_id `

	// MessagesBefore: latest N (before_seq = last_seq+1) and paging back.
	sqlMessagesBefore = `SELECT * FROM (SELECT ` + explainColumns + explainFrom + `
		WHERE m.room_id = $1 AND m.seq < $2 ORDER BY m.seq DESC LIMIT $3) page ORDER BY 3`
	// MessagesAfter: after_seq and the second half of since=.
	sqlMessagesAfter = `SELECT ` + explainColumns + explainFrom + `
		WHERE m.room_id = $1 AND m.seq > $2 ORDER BY m.seq LIMIT $3`
	// SeqBefore: the first half of since=.
	sqlSeqBefore = `
		SELECT COALESCE(
			(SELECT seq - 1 FROM messages WHERE room_id = $1 AND created_at > $2 ORDER BY created_at LIMIT 1),
			(SELECT last_seq FROM rooms WHERE id = $1))`
	// Replies: a thread's page.
	sqlReplies = `SELECT ` + explainColumns + explainFrom + `
		WHERE m.parent_id = $1 AND m.seq > $2 ORDER BY m.seq LIMIT $3`
	// Message: one message by id.
	sqlMessage = `SELECT ` + explainColumns + explainFrom + `WHERE m.id = $1`
	// SaveMessage: the idempotency look-up by client_id or external id.
	sqlIdempotency = `SELECT ` + explainColumns + explainFrom + `
				WHERE (m.room_id = $1 AND m.sender_id = $2 AND m.client_id = $3)
				   OR (m.source = $4 AND m.external_id = $5)
				LIMIT 1`
	// SaveMessage: the parent check of a reply.
	sqlParent = `SELECT room_id, parent_id FROM messages WHERE id = $1 FOR UPDATE`
)

// TestExplainHistoryQueries fills 20 rooms with 1,000 messages and 200
// replies each, then requires that no history query plans a sequential scan
// of messages and that each uses the index made for it, both as a custom
// plan (the literal values) and as the generic plan that pgx's cached
// prepared statements switch to after five runs. Run it with -v to read the
// plans.
func TestExplainHistoryQueries(t *testing.T) {
	t.Parallel()
	bundle := setup(t)
	ctx := bundle.ctx

	const rooms, perRoom, parentsPerRoom, repliesPerParent = 20, 1000, 40, 5
	_, err := bundle.pool.Exec(ctx, fmt.Sprintf(`
		INSERT INTO users (username, password_hash, display_name)
		SELECT 'user' || g, 'hash', 'User ' || g FROM generate_series(1, 10) g;

		INSERT INTO rooms (name, visibility) SELECT 'room' || g, 'public' FROM generate_series(1, %[1]d) g;

		-- Top-level messages: every 2nd has a client_id, every 5th came by SMS.
		INSERT INTO messages (room_id, seq, sender_id, body, source, client_id, external_id, created_at)
		SELECT r.id, s, (SELECT min(id) FROM users) + s %% 10, 'message ' || s,
		       CASE WHEN s %% 5 = 0 THEN 'sms' ELSE 'web' END,
		       CASE WHEN s %% 2 = 0 THEN 'client-' || s END,
		       CASE WHEN s %% 5 = 0 THEN 'SM' || r.id || '-' || s END,
		       timestamptz '2024-01-01 00:00:00Z' + s * interval '1 second'
		FROM rooms r CROSS JOIN generate_series(1, %[2]d) s;

		-- Replies to the first parents of each room, after the top-level ones.
		INSERT INTO messages (room_id, seq, sender_id, body, parent_id, source, created_at)
		SELECT p.room_id, %[2]d + (p.seq - 1) * %[4]d + g, p.sender_id, 'reply ' || g, p.id, 'web',
		       timestamptz '2024-01-01 00:00:00Z' + (%[2]d + (p.seq - 1) * %[4]d + g) * interval '1 second'
		FROM messages p CROSS JOIN generate_series(1, %[4]d) g
		WHERE p.seq <= %[3]d;

		UPDATE messages p SET reply_count = %[4]d WHERE p.seq <= %[3]d;
		UPDATE rooms r SET last_seq = (SELECT max(seq) FROM messages WHERE room_id = r.id);
		ANALYZE;`,
		rooms, perRoom, parentsPerRoom, repliesPerParent))
	require.NoError(t, err)

	var total, replies int
	var roomID, parentID, messageID, senderID, lastSeq int64
	require.NoError(t, bundle.pool.QueryRow(ctx, `
		SELECT (SELECT count(*) FROM messages), (SELECT count(*) FROM messages WHERE parent_id IS NOT NULL)`).
		Scan(&total, &replies))
	require.Equal(t, rooms*(perRoom+parentsPerRoom*repliesPerParent), total)
	require.Equal(t, rooms*parentsPerRoom*repliesPerParent, replies)
	// A room in the middle, its 3rd message (a parent) and its 500th.
	require.NoError(t, bundle.pool.QueryRow(ctx, `
		SELECT r.id, r.last_seq, p.id, m.id, m.sender_id
		FROM rooms r
		JOIN messages p ON p.room_id = r.id AND p.seq = 3
		JOIN messages m ON m.room_id = r.id AND m.seq = 500
		WHERE r.name = 'room10'`).Scan(&roomID, &lastSeq, &parentID, &messageID, &senderID))

	tests := []struct {
		name  string
		sql   string
		types string // parameter types for PREPARE
		args  string // literal arguments for EXECUTE
		index string // the index the plan must use
	}{
		{name: "LatestN", sql: sqlMessagesBefore, types: "bigint, bigint, int",
			args: fmt.Sprintf("%d, %d, 50", roomID, lastSeq+1), index: "messages_room_id_seq_key"},
		{name: "BeforeSeq", sql: sqlMessagesBefore, types: "bigint, bigint, int",
			args: fmt.Sprintf("%d, 500, 50", roomID), index: "messages_room_id_seq_key"},
		{name: "AfterSeq", sql: sqlMessagesAfter, types: "bigint, bigint, int",
			args: fmt.Sprintf("%d, 500, 50", roomID), index: "messages_room_id_seq_key"},
		{name: "AfterSeqFromStart", sql: sqlMessagesAfter, types: "bigint, bigint, int",
			args: fmt.Sprintf("%d, 0, 200", roomID), index: "messages_room_id_seq_key"},
		{name: "Since", sql: sqlSeqBefore, types: "bigint, timestamptz",
			args: fmt.Sprintf("%d, '2024-01-01 00:08:20Z'", roomID), index: "messages_room_created_idx"},
		{name: "SinceBeforeEverything", sql: sqlSeqBefore, types: "bigint, timestamptz",
			args: fmt.Sprintf("%d, '2020-01-01 00:00:00Z'", roomID), index: "messages_room_created_idx"},
		{name: "RepliesByParent", sql: sqlReplies, types: "bigint, bigint, int",
			args: fmt.Sprintf("%d, 0, 50", parentID), index: "messages_parent_idx"},
		{name: "MessageByID", sql: sqlMessage, types: "bigint",
			args: fmt.Sprintf("%d", messageID), index: "messages_pkey"},
		{name: "IdempotencyByClientID", sql: sqlIdempotency, types: "bigint, bigint, text, text, text",
			args: fmt.Sprintf("%d, %d, 'client-500', 'web', NULL", roomID, senderID), index: "messages_client_id_key"},
		{name: "IdempotencyByExternalID", sql: sqlIdempotency, types: "bigint, bigint, text, text, text",
			args: fmt.Sprintf("%d, %d, NULL, 'sms', 'SM%d-500'", roomID, senderID, roomID), index: "messages_external_id_key"},
		{name: "IdempotencyByBoth", sql: sqlIdempotency, types: "bigint, bigint, text, text, text",
			args: fmt.Sprintf("%d, %d, 'client-500', 'sms', 'SM%d-500'", roomID, senderID, roomID), index: "messages_client_id_key"},
		{name: "ParentForUpdate", sql: sqlParent, types: "bigint",
			args: fmt.Sprintf("%d", parentID), index: "messages_pkey"},
	}

	// PREPARE and plan_cache_mode are per session: hold one connection.
	conn, err := bundle.pool.Acquire(ctx)
	require.NoError(t, err)
	defer conn.Release()

	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stmt := fmt.Sprintf("explain_%d", i)
			_, err := conn.Exec(ctx, fmt.Sprintf("PREPARE %s(%s) AS %s", stmt, tt.types, tt.sql))
			require.NoError(t, err)
			for _, mode := range []string{"force_custom_plan", "force_generic_plan"} {
				_, err := conn.Exec(ctx, "SET plan_cache_mode = "+mode)
				require.NoError(t, err)
				rows, err := conn.Query(ctx, fmt.Sprintf("EXPLAIN (COSTS OFF) EXECUTE %s(%s)", stmt, tt.args))
				require.NoError(t, err)
				var lines []string
				for rows.Next() {
					var line string
					require.NoError(t, rows.Scan(&line))
					lines = append(lines, line)
				}
				require.NoError(t, rows.Err())
				plan := strings.Join(lines, "\n")
				t.Logf("%s (%s):\n%s", tt.name, mode, plan)
				require.NotContains(t, plan, "Seq Scan on messages", "%s plan of %s", mode, tt.name)
				// A plan can avoid a Seq Scan and still read a whole room
				// (say, through the seq index with a filter and a sort), so
				// require the index made for the query as well.
				require.Contains(t, plan, " "+tt.index, "%s plan of %s", mode, tt.name)
			}
		})
	}
}
