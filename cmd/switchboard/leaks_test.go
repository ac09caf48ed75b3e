package main

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-chat/switchboard/broker/brokertest"
	"github.com/switchboard-chat/switchboard/storage/storagetest"
)

// requireNoInternals checks that an answer names no address and carries no
// driver text.
func requireNoInternals(t *testing.T, r apiResponse) {
	t.Helper()
	for _, s := range []string{"127.0.0.1", "dial", "tcp", "connection refused", "failed to connect", "WRONGTYPE", "i/o timeout"} {
		require.NotContains(t, strings.ToLower(string(r.Raw)), strings.ToLower(s), "body: %s", r.Raw)
	}
}

// TestAPIReadyzSaysWhatIsDown: /readyz answers 503 in the error shape and
// names what is down in plain words; the driver's error, with its address,
// stays in the log.
func TestAPIReadyzSaysWhatIsDown(t *testing.T) {
	t.Parallel()

	t.Run("RedisUnreachable", func(t *testing.T) {
		t.Parallel()
		s := newTestServerWith(t, nodeOptions{redisURL: "redis://" + freePort(t) + "/0"})
		r := s.do(t, "GET", "/readyz", "", nil)
		requireAPIError(t, r, http.StatusServiceUnavailable, "unavailable")
		require.Equal(t, "redis unreachable", r.Body["error"].(map[string]any)["message"])
		require.Equal(t, "1", r.Header.Get("Retry-After"))
		requireNoInternals(t, r)
		require.Equal(t, http.StatusOK, s.do(t, "GET", "/healthz", "", nil).Status)

		// The queue depths cannot be read: /metrics serves the rest, and
		// no error text.
		r = s.do(t, "GET", "/metrics", "", nil)
		require.Equal(t, http.StatusOK, r.Status, "body: %s", r.Raw)
		require.Contains(t, string(r.Raw), "switchboard_ws_connections")
		requireNoInternals(t, r)
	})

	t.Run("PostgresUnreachable", func(t *testing.T) {
		t.Parallel()
		db := storagetest.NewDatabase(t)
		proxy := brokertest.NewProxyTo(t, hostPort(t, db))
		s := newTestServerWith(t, nodeOptions{databaseURL: withHostPort(t, db, proxy.Addr())})
		require.Equal(t, http.StatusOK, s.do(t, "GET", "/readyz", "", nil).Status)
		proxy.Cut()
		r := s.do(t, "GET", "/readyz", "", nil)
		requireAPIError(t, r, http.StatusServiceUnavailable, "unavailable")
		require.Equal(t, "postgres unreachable", r.Body["error"].(map[string]any)["message"])
		requireNoInternals(t, r)
	})
}

// TestAPIPresenceUnavailableLeaksNothing: when Redis refuses the presence
// read (here a key of the wrong type, so that authentication, which needs
// Redis too, still works), GET /rooms/{id}/presence answers 503 "presence
// is unavailable" and nothing of Redis's error.
func TestAPIPresenceUnavailableLeaksNothing(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, nil)
	alice := s.register(t, "alice")
	room := s.createRoom(t, alice, "public")
	require.Equal(t, http.StatusOK, s.do(t, "GET", "/api/v1/rooms/"+room+"/presence", alice.Token, nil).Status)

	// Her connection set, in whichever of the 64 partitions she is.
	t.Cleanup(func() { _ = brokertest.DeleteKeys(context.Background(), s.node.rdb, s.prefix+"presence:*") })
	for k := range 64 {
		key := fmt.Sprintf("%spresence:{p%d}%s", s.prefix, k, alice.ID)
		require.NoError(t, s.node.rdb.Set(t.Context(), key, "not a sorted set", 0).Err())
	}
	r := s.do(t, "GET", "/api/v1/rooms/"+room+"/presence", alice.Token, nil)
	requireAPIError(t, r, http.StatusServiceUnavailable, "unavailable")
	require.Equal(t, "presence is unavailable; try again", r.Body["error"].(map[string]any)["message"])
	requireNoInternals(t, r)
}
