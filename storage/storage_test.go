package storage_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/switchboard-chat/switchboard/chat"
	"github.com/switchboard-chat/switchboard/storage"
	"github.com/switchboard-chat/switchboard/storage/storagetest"
)

func TestStore(t *testing.T) {
	t.Parallel()

	t.Run("Ping", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t)
		require.NoError(t, bundle.store.Ping(bundle.ctx))
	})

	t.Run("Unavailable", func(t *testing.T) {
		t.Parallel()
		// Nothing listens on port 1: every call fails to connect, and callers
		// must be able to answer "unavailable" rather than "internal".
		pool, err := pgxpool.New(context.Background(), "postgres://postgres@127.0.0.1:1/none?sslmode=disable&connect_timeout=2")
		require.NoError(t, err)
		t.Cleanup(pool.Close)
		store := storage.New(pool)
		ctx := t.Context()
		require.Error(t, store.Ping(ctx))

		tests := []struct {
			name string
			call func() error
		}{
			{name: "CreateUser", call: func() error { _, err := store.CreateUser(ctx, "alice", "h", "A"); return err }},
			{name: "Credentials", call: func() error { _, _, err := store.Credentials(ctx, "alice"); return err }},
			{name: "Profile", call: func() error { _, err := store.Profile(ctx, "1"); return err }},
			{name: "RotateRefreshToken", call: func() error {
				_, _, err := store.RotateRefreshToken(ctx, []byte("a"), []byte("b"), time.Now())
				return err
			}},
			{name: "CheckMember", call: func() error { return store.CheckMember(ctx, "1", "1") }},
			{name: "CreateRoom", call: func() error { _, err := store.CreateRoom(ctx, "1", "r", chat.Public); return err }},
			{name: "SaveMessage", call: func() error {
				_, _, err := store.SaveMessage(ctx, chat.NewMessage{RoomID: "1", SenderID: "1", Body: "x", Source: chat.SourceWeb})
				return err
			}},
			{name: "MessagesAfter", call: func() error { _, err := store.MessagesAfter(ctx, "1", 0, 10); return err }},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				err := tt.call()
				require.ErrorIs(t, err, chat.ErrUnavailable)
				require.Equal(t, chat.CodeUnavailable, chat.ErrorOf(err).Code)
			})
		}
	})

	t.Run("EnsureDatabase", func(t *testing.T) {
		t.Parallel()
		name, dbURL := newDatabaseName(t)

		require.NoError(t, storage.EnsureDatabase(t.Context(), dbURL))
		require.True(t, databaseExists(t, name))
		// A second call (the next start) finds it.
		require.NoError(t, storage.EnsureDatabase(t.Context(), dbURL))

		// The maintenance database itself is left alone.
		require.NoError(t, storage.EnsureDatabase(t.Context(), storagetest.ServerURL()))

		require.Error(t, storage.EnsureDatabase(t.Context(), "postgres://%zz"))
	})

	t.Run("EnsureDatabaseConcurrently", func(t *testing.T) {
		t.Parallel()
		name, dbURL := newDatabaseName(t)

		// Several nodes start at once against a fresh server.
		const nodes = 6
		errs := make([]error, nodes)
		var wg sync.WaitGroup
		for i := range nodes {
			wg.Go(func() { errs[i] = storage.EnsureDatabase(t.Context(), dbURL) })
		}
		wg.Wait()
		for i, err := range errs {
			require.NoError(t, err, "node %d", i)
		}
		require.True(t, databaseExists(t, name))
	})
}

// newDatabaseName returns an unused database name on the test server and its
// URL, and drops the database when t ends.
func newDatabaseName(t *testing.T) (string, string) {
	t.Helper()
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	name := "sbtest_ensure_" + hex.EncodeToString(b)
	u, err := url.Parse(storagetest.ServerURL())
	require.NoError(t, err, "TEST_DATABASE_URL must be a URL for this test")
	u.Path = "/" + name
	t.Cleanup(func() {
		conn, err := pgx.Connect(context.Background(), storagetest.ServerURL())
		if err != nil {
			t.Errorf("connect for cleanup: %v", err)
			return
		}
		defer conn.Close(context.Background())
		if _, err := conn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("drop %s: %v", name, err)
		}
	})
	return name, u.String()
}

func databaseExists(t *testing.T, name string) bool {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), storagetest.ServerURL())
	require.NoError(t, err)
	defer conn.Close(context.Background())
	var exists bool
	require.NoError(t, conn.QueryRow(t.Context(),
		`SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, name).Scan(&exists))
	return exists
}
