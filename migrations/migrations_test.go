package migrations_test

import (
	"database/sql"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/pressly/goose/v3"
	"github.com/stretchr/testify/require"

	"github.com/switchboard-chat/switchboard/migrations"
	"github.com/switchboard-chat/switchboard/storage/storagetest"
)

// TestPhoneVerificationMigration runs 00004 up and down over rows written
// under the schema before it.
func TestPhoneVerificationMigration(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	url, _, p := migratedDB(t)
	pool, err := pgxpool.New(ctx, url)
	require.NoError(t, err)
	t.Cleanup(pool.Close)

	_, err = p.DownTo(ctx, 3)
	require.NoError(t, err)
	posted := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	_, err = pool.Exec(ctx, `
		INSERT INTO users (id, username, display_name, phone) OVERRIDING SYSTEM VALUE VALUES
			(1, 'alice', 'Alice', '+15550001'), (2, 'bob', 'Bob', NULL);
		INSERT INTO rooms (id, name, visibility, last_seq) OVERRIDING SYSTEM VALUE VALUES
			(1, 'posted', 'public', 1), (2, 'added', 'private', 0);
		-- Under the old schema every membership had a last_active_at.
		INSERT INTO room_members (room_id, user_id, last_active_at, joined_at) VALUES
			(1, 1, '2025-01-01Z', '2025-01-01Z'), (2, 1, '2025-06-01Z', '2025-06-01Z'), (1, 2, '2025-02-01Z', '2025-02-01Z');
		INSERT INTO messages (room_id, seq, sender_id, body, source, created_at) VALUES (1, 1, 1, 'hi', 'web', '2025-03-01 12:00Z');`)
	require.NoError(t, err)

	_, err = p.UpTo(ctx, 4)
	require.NoError(t, err)
	lastActive := func(room, user int) *time.Time {
		t.Helper()
		var at *time.Time
		require.NoError(t, pool.QueryRow(ctx, `SELECT last_active_at FROM room_members WHERE room_id = $1 AND user_id = $2`,
			room, user).Scan(&at))
		return at
	}
	require.True(t, posted.Equal(*lastActive(1, 1)), "alice's last post in the room")
	require.Nil(t, lastActive(2, 1), "alice was added and never posted")
	require.Nil(t, lastActive(1, 2), "bob joined and never posted")
	var verified bool
	require.NoError(t, pool.QueryRow(ctx, `SELECT phone_verified FROM users WHERE id = 1`).Scan(&verified))
	require.False(t, verified, "numbers stored before were never verified")
	_, err = pool.Exec(ctx, `UPDATE users SET phone = '+15550001' WHERE id = 2`)
	require.NoError(t, err, "several accounts may hold one unverified number")
	_, err = pool.Exec(ctx, `UPDATE users SET phone_verified = true WHERE id = 1`)
	require.NoError(t, err)
	_, err = pool.Exec(ctx, `UPDATE users SET phone_verified = true WHERE id = 2`)
	require.ErrorContains(t, err, "users_phone_key", "but only one may have it verified")
	_, err = pool.Exec(ctx, `UPDATE users SET phone = NULL WHERE id = 1`)
	require.ErrorContains(t, err, "users_phone_verified_check", "a verified number cannot be missing")

	// Down: the old schema trusts every number, so unverified ones go; every
	// membership gets a last_active_at again.
	_, err = p.DownTo(ctx, 3)
	require.NoError(t, err)
	var alicePhone, bobPhone *string
	require.NoError(t, pool.QueryRow(ctx, `SELECT (SELECT phone FROM users WHERE id = 1), (SELECT phone FROM users WHERE id = 2)`).
		Scan(&alicePhone, &bobPhone))
	require.Equal(t, "+15550001", *alicePhone)
	require.Nil(t, bobPhone)
	require.True(t, posted.Equal(*lastActive(1, 1)))
	require.True(t, time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC).Equal(*lastActive(2, 1)), "joined_at")

	_, err = p.Up(ctx)
	require.NoError(t, err)
}

// TestClaimsMigration runs 00006 up and down over job runs recorded before
// it, and checks that a binary from before claims can still record runs.
func TestClaimsMigration(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	_, db, p := migratedDB(t)

	_, err := p.DownTo(ctx, 5)
	require.NoError(t, err)
	_, err = db.ExecContext(ctx, `INSERT INTO job_runs (key) VALUES ('before')`)
	require.NoError(t, err)
	_, err = p.UpTo(ctx, 6)
	require.NoError(t, err)
	_, err = db.ExecContext(ctx, `INSERT INTO job_runs (key) VALUES ('old binary')`)
	require.NoError(t, err, "the old RunOnce insert still records a run done")
	_, err = db.ExecContext(ctx, `INSERT INTO job_runs (key, done_at, claim, claimed_until) VALUES ('under way', NULL, gen_random_uuid(), now())`)
	require.NoError(t, err)
	_, err = db.ExecContext(ctx, `INSERT INTO job_runs (key, done_at) VALUES ('neither', NULL)`)
	require.ErrorContains(t, err, "job_runs_claim_check", "a run is done or claimed")
	var done int
	require.NoError(t, db.QueryRowContext(ctx, `SELECT count(*) FROM job_runs WHERE done_at IS NOT NULL AND claim IS NULL`).Scan(&done))
	require.Equal(t, 2, done)

	_, err = p.DownTo(ctx, 5)
	require.NoError(t, err)
	var keys []string
	rows, err := db.QueryContext(ctx, `SELECT key FROM job_runs ORDER BY key`)
	require.NoError(t, err)
	for rows.Next() {
		var k string
		require.NoError(t, rows.Scan(&k))
		keys = append(keys, k)
	}
	require.NoError(t, rows.Err())
	require.Equal(t, []string{"before", "old binary"}, keys, "a run under way was not done")

	_, err = p.Up(ctx)
	require.NoError(t, err)
}

// TestJobJournalMigration runs 00010 down and up again: Down drops the
// journal, and a dead record needs its reason.
func TestJobJournalMigration(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	_, db, p := migratedDB(t)

	_, err := db.ExecContext(ctx, `INSERT INTO job_journal (key, type, payload, run_at, check_at) VALUES ('k', 't', '', now(), now())`)
	require.NoError(t, err)
	_, err = db.ExecContext(ctx, `UPDATE job_journal SET dead_at = now()`)
	require.ErrorContains(t, err, "job_journal_dead_check", "a dead job has its last error")
	_, err = p.DownTo(ctx, 7)
	require.NoError(t, err)
	var exists bool
	require.NoError(t, db.QueryRowContext(ctx, `SELECT to_regclass('job_journal') IS NOT NULL`).Scan(&exists))
	require.False(t, exists)
	_, err = p.Up(ctx)
	require.NoError(t, err)
}

// TestConcurrentUp: nodes that start together on an empty database all
// migrate it without error, and every migration is applied once.
func TestConcurrentUp(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	url, db, p := migratedDB(t)
	_, err := p.DownTo(ctx, 0)
	require.NoError(t, err)

	const nodes = 4
	errs := make(chan error, nodes)
	for range nodes {
		go func() {
			node, err := sql.Open("pgx", url)
			if err != nil {
				errs <- err
				return
			}
			defer node.Close()
			errs <- migrations.Up(ctx, node)
		}()
	}
	for range nodes {
		require.NoError(t, <-errs)
	}
	st, err := p.Status(ctx)
	require.NoError(t, err)
	for _, s := range st {
		require.Equal(t, goose.StateApplied, s.State, s.Source.Path)
	}
	var applied int
	require.NoError(t, db.QueryRowContext(ctx, `SELECT count(*) FROM goose_db_version WHERE version_id > 0`).Scan(&applied))
	require.Equal(t, len(st), applied, "each migration recorded once")
}

// TestOutOfOrderMigrationApplied: a migration numbered below the newest
// applied one (written on a branch that landed later) is applied by Up.
func TestOutOfOrderMigrationApplied(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	_, db, _ := migratedDB(t)
	// As on a database migrated before 00009 existed: 00010 applied, not 00009.
	_, err := db.ExecContext(ctx, `DROP INDEX refresh_tokens_revoked_idx; DELETE FROM goose_db_version WHERE version_id = 9`)
	require.NoError(t, err)

	require.NoError(t, migrations.Up(ctx, db))
	var exists bool
	require.NoError(t, db.QueryRowContext(ctx, `SELECT to_regclass('refresh_tokens_revoked_idx') IS NOT NULL`).Scan(&exists))
	require.True(t, exists, "00009 applied after 00010")
}

// TestRoomLexemesMigration: 00024's room_lexemes gives the keys 00022's
// gave for every message, so the search index built with the old one
// stays right without a rebuild: the new keys find every message through
// the index. A connection that used the index before the migration (one
// connection does everything here) still plans searches on it.
func TestRoomLexemesMigration(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	_, db, p := migratedDB(t)
	db.SetMaxOpenConns(1)

	_, err := p.DownTo(ctx, 23)
	require.NoError(t, err)
	bodies := []string{
		"hello world", `it's "o'clock"`, `back\slash and \\double \' quote`, "''' ''' ' '", "Ünïcödé café naïve",
		"emoji 🎉 #tag @mention", "", "   ", "a-b_c.d e@mail.com http://x.y/z?q=1&r=2 /usr/bin", "1234 5.6 -7 0x1F",
		"日本語のテキスト", strings.Repeat("long", 100) + " short", "Straße ŒUVRE ﬁ",
	}
	_, err = db.ExecContext(ctx, `
		INSERT INTO users (id, username, display_name) OVERRIDING SYSTEM VALUE VALUES (1, 'alice', 'Alice');
		INSERT INTO rooms (id, name, visibility, last_seq) OVERRIDING SYSTEM VALUE VALUES (7, 'r7', 'public', 0), (12, 'r12', 'public', 0)`)
	require.NoError(t, err)
	for i, body := range bodies {
		room := []int{7, 12}[i%2]
		_, err = db.ExecContext(ctx, `INSERT INTO messages (room_id, seq, sender_id, body, source) VALUES ($1, $2, 1, $3, 'web')`,
			room, i+1, body)
		require.NoError(t, err)
	}
	keys := func() map[int64]string {
		t.Helper()
		rows, err := db.QueryContext(ctx, `SELECT id, room_lexemes(room_id, search)::text FROM messages`)
		require.NoError(t, err)
		defer rows.Close()
		got := make(map[int64]string)
		for rows.Next() {
			var id int64
			var k string
			require.NoError(t, rows.Scan(&id, &k))
			got[id] = k
		}
		require.NoError(t, rows.Err())
		return got
	}
	before := keys()
	require.Len(t, before, len(bodies))

	_, err = p.UpTo(ctx, 24)
	require.NoError(t, err)
	require.Equal(t, before, keys())
	// Through the index (built with 00022's function): each message's
	// first key finds that message among those with the key.
	tx, err := db.BeginTx(ctx, nil)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback() }()
	_, err = tx.ExecContext(ctx, `SET LOCAL enable_seqscan = off`)
	require.NoError(t, err)
	var missed int
	require.NoError(t, tx.QueryRowContext(ctx, `
		SELECT count(*) FROM messages m, LATERAL tsvector_to_array(room_lexemes(m.room_id, m.search)) k
		 WHERE NOT EXISTS (SELECT 1 FROM messages x
		                    WHERE room_lexemes(x.room_id, x.search) @@ array_to_tsvector(k[1:1])::text::tsquery AND x.id = m.id)
		   AND cardinality(k) > 0`).Scan(&missed))
	require.Zero(t, missed)
	var plan []byte
	require.NoError(t, tx.QueryRowContext(ctx, `EXPLAIN (FORMAT JSON) SELECT id FROM messages
		WHERE room_lexemes(room_id, search) @@ '''7 hello'''::tsquery`).Scan(&plan))
	require.Contains(t, string(plan), `"Index Name": "messages_search_idx"`)
}

// migratedDB returns a new database with every migration applied, its
// URL, a database/sql handle on it (closed when t ends) and a goose
// provider of this folder's migrations on that handle.
func migratedDB(t *testing.T) (string, *sql.DB, *goose.Provider) {
	t.Helper()
	url := storagetest.NewDatabase(t)
	db, err := sql.Open("pgx", url)
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	p, err := goose.NewProvider(goose.DialectPostgres, db, os.DirFS("."))
	require.NoError(t, err)
	return url, db, p
}
