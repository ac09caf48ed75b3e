package storage_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/switchboard-chat/switchboard/chat"
	"github.com/switchboard-chat/switchboard/storage"
	"github.com/switchboard-chat/switchboard/storage/storagetest"
)

// testBundle is what every storage test starts from: a Store on a database
// of its own (storagetest.NewPool), and the pool itself for the SQL that
// checks what the Store really wrote.
type testBundle struct {
	ctx   context.Context
	pool  *pgxpool.Pool
	store *storage.Store
}

func setup(t testing.TB) *testBundle {
	t.Helper()
	pool := storagetest.NewPool(t)
	return &testBundle{ctx: t.Context(), pool: pool, store: storage.New(pool)}
}

// message reads one message, decoded.
func (b *testBundle) message(id string) (chat.Message, error) {
	m, err := b.store.Message(b.ctx, id)
	return m.Message, err
}

// user creates an account that can log in.
func (b *testBundle) user(t testing.TB, username string) chat.Profile {
	t.Helper()
	p, err := b.store.CreateUser(b.ctx, username, "$2a$10$hash-of-"+username, "Display "+username)
	require.NoError(t, err)
	return p
}

// guest inserts an account without a password, as the Slack bridge does.
func (b *testBundle) guest(t *testing.T, username string) string {
	t.Helper()
	var id int64
	require.NoError(t, b.pool.QueryRow(b.ctx,
		`INSERT INTO users (username, display_name) VALUES ($1, $1) RETURNING id`, username).Scan(&id))
	return itoa(id)
}

func (b *testBundle) room(t testing.TB, creatorID, name, visibility string) chat.Room {
	t.Helper()
	r, err := b.store.CreateRoom(b.ctx, creatorID, name, visibility)
	require.NoError(t, err)
	return r
}

// send stores a new top-level web message and requires that it is new.
func (b *testBundle) send(t *testing.T, roomID, senderID, body string) chat.Message {
	t.Helper()
	return b.save(t, chat.NewMessage{RoomID: roomID, SenderID: senderID, Body: body, Source: chat.SourceWeb})
}

// reply stores a new reply to parentID.
func (b *testBundle) reply(t *testing.T, roomID, senderID, parentID, body string) chat.Message {
	t.Helper()
	return b.save(t, chat.NewMessage{RoomID: roomID, SenderID: senderID, ParentID: parentID, Body: body, Source: chat.SourceWeb})
}

func (b *testBundle) save(t *testing.T, nm chat.NewMessage) chat.Message {
	t.Helper()
	m, created, err := b.store.SaveMessage(b.ctx, nm)
	require.NoError(t, err)
	require.True(t, created, "message %+v should be new", nm)
	return m
}

// lastSeq reads the room's seq counter straight from the table.
func (b *testBundle) lastSeq(t *testing.T, roomID string) int64 {
	t.Helper()
	var seq int64
	require.NoError(t, b.pool.QueryRow(b.ctx, `SELECT last_seq FROM rooms WHERE id = $1::bigint`, roomID).Scan(&seq))
	return seq
}

// messageCount counts the rows of roomID in the messages table.
func (b *testBundle) messageCount(t *testing.T, roomID string) int {
	t.Helper()
	var n int
	require.NoError(t, b.pool.QueryRow(b.ctx, `SELECT count(*) FROM messages WHERE room_id = $1::bigint`, roomID).Scan(&n))
	return n
}

// setCreatedAt pins created_at of every message of roomID to base plus seq
// minutes, so that time-based queries have exact expectations.
func (b *testBundle) setCreatedAt(t *testing.T, roomID string, base time.Time) {
	t.Helper()
	_, err := b.pool.Exec(b.ctx,
		`UPDATE messages SET created_at = $2::timestamptz + seq * interval '1 minute' WHERE room_id = $1::bigint`, roomID, base)
	require.NoError(t, err)
}

// requireCode requires err to be a *chat.Error (possibly wrapped) with code.
func requireCode(t *testing.T, err error, code chat.Code) {
	t.Helper()
	var ce *chat.Error
	require.ErrorAs(t, err, &ce)
	require.Equal(t, code, ce.Code, "error: %v", err)
}

func seqsOf(ms []chat.EncodedMessage) []int64 {
	seqs := make([]int64, len(ms))
	for i, m := range ms {
		seqs[i] = m.Seq
	}
	return seqs
}

// seqRange returns from, from+1, ..., to (empty when to < from).
func seqRange(from, to int64) []int64 {
	seqs := []int64{}
	for s := from; s <= to; s++ {
		seqs = append(seqs, s)
	}
	return seqs
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func ptr[T any](v T) *T { return &v }
