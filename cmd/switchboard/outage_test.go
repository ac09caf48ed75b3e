package main

import (
	"fmt"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-chat/switchboard/broker/brokertest"
	"github.com/switchboard-chat/switchboard/chat"
	"github.com/switchboard-chat/switchboard/storage/storagetest"
)

// TestPostgresOutage: with Postgres unreachable, sends are refused with
// "unavailable" (nothing is acked that was not stored), connections stay
// open, readiness fails but liveness does not; when Postgres returns the node
// recovers by itself, on the same connections, and the history holds exactly
// the acked messages with no gap.
func TestPostgresOutage(t *testing.T) {
	t.Parallel()
	db := storagetest.NewDatabase(t)
	proxy := brokertest.NewProxyTo(t, hostPort(t, db))
	s := newTestServerWith(t, nodeOptions{databaseURL: withHostPort(t, db, proxy.Addr())})
	alice, bob := s.register(t, "alice"), s.register(t, "bob")
	room := s.createRoom(t, alice, chat.Private)
	s.addMember(t, alice, room, bob)

	wa, wb := s.subscribedClient(t, alice, 1), s.subscribedClient(t, bob, 1)
	var acked []string // bodies of acked messages, in seq order
	sendAcked := func(id, body string) {
		t.Helper()
		wa.send(map[string]any{"type": "send", "id": id, "room": room, "body": body})
		ack := wa.nextOf("ack", "message")
		require.Equal(t, id, ack["id"])
		acked = append(acked, body)
		require.Equal(t, float64(len(acked)), ack["message"].(map[string]any)["seq"])
		require.Equal(t, body, expectMessages(t, wb, room, int64(len(acked)), int64(len(acked)))[0]["body"])
	}
	sendAcked("m1", "before")

	// Postgres goes away: every pooled connection dies, new ones are refused.
	proxy.Cut()

	// A WebSocket send is refused promptly with "unavailable", not acked.
	start := time.Now()
	wa.send(map[string]any{"type": "send", "id": "down1", "room": room, "body": "while down"})
	obj, err := nextOfWithin(wa, 5*time.Second, "error", "message")
	require.NoError(t, err, "no answer to a send while Postgres is down")
	require.Equal(t, "down1", obj["id"], "%v", obj)
	require.Equal(t, string(chat.CodeUnavailable), obj["code"], "%v", obj)
	t.Logf("send refused after %s", time.Since(start))

	// The connection stays open and answers.
	wa.send(map[string]any{"type": "ping", "id": "p1"})
	obj, err = nextOfWithin(wa, 2*time.Second, "pong", "message")
	require.NoError(t, err, "connection dead while Postgres is down")
	require.Equal(t, "p1", obj["id"])

	// HTTP: a post is 503 unavailable, readiness fails, liveness holds.
	start = time.Now()
	r := s.do(t, "POST", "/api/v1/rooms/"+room+"/messages", alice.Token, map[string]any{"body": "http while down"})
	require.Equal(t, http.StatusServiceUnavailable, r.Status, "post while down: %s", r.Raw)
	require.Equal(t, string(chat.CodeUnavailable), r.ErrorCode(), "post while down: %s", r.Raw)
	require.Less(t, time.Since(start), 5*time.Second, "post while down took too long")
	require.Equal(t, http.StatusServiceUnavailable, s.do(t, "GET", "/readyz", "", nil).Status)
	require.Equal(t, http.StatusOK, s.do(t, "GET", "/healthz", "", nil).Status)

	// Postgres returns: within about 10 s a send on the same connection is
	// acked again and reaches bob.
	proxy.Restore()
	deadline := time.Now().Add(10 * time.Second)
	for i := 1; ; i++ {
		id := fmt.Sprint("up", i)
		wa.send(map[string]any{"type": "send", "id": id, "room": room, "body": "after " + id})
		obj, err := nextOfWithin(wa, 5*time.Second, "", "message")
		require.NoError(t, err, "no answer to a send after Postgres returned")
		require.Equal(t, id, obj["id"], "%v", obj)
		if obj["type"] == "ack" {
			t.Logf("acked again after %d attempt(s)", i)
			acked = append(acked, "after "+id)
			require.Equal(t, float64(len(acked)), obj["message"].(map[string]any)["seq"])
			got := expectMessages(t, wb, room, int64(len(acked)), int64(len(acked)))
			require.Equal(t, "after "+id, got[0]["body"])
			break
		}
		require.Equal(t, "error", obj["type"], "%v", obj)
		require.Equal(t, string(chat.CodeUnavailable), obj["code"], "%v", obj)
		require.True(t, time.Now().Before(deadline), "still unavailable 10 s after Postgres returned")
		time.Sleep(200 * time.Millisecond)
	}
	sendAcked("m2", "after recovery")
	require.Equal(t, http.StatusOK, s.do(t, "GET", "/readyz", "", nil).Status)

	// The history holds exactly the acked messages, seqs 1..n, no gap.
	r = s.do(t, "GET", "/api/v1/rooms/"+room+"/messages?limit=100", bob.Token, nil)
	require.Equal(t, http.StatusOK, r.Status, "history: %s", r.Raw)
	msgs := r.Body["messages"].([]any)
	require.Len(t, msgs, len(acked), "history: %s", r.Raw)
	for i, m := range msgs {
		m := m.(map[string]any)
		require.Equal(t, float64(i+1), m["seq"], "history: %s", r.Raw)
		require.Equal(t, acked[i], m["body"], "history: %s", r.Raw)
	}
}

// nextOfWithin returns the next object of type typ (any type but those in
// skip when typ is ""), skipping the types in skip, waiting at most wait in
// all.
func nextOfWithin(c *wsClient, wait time.Duration, typ string, skip ...string) (map[string]any, error) {
	deadline := time.Now().Add(wait)
	for {
		obj, err := c.nextErr(time.Until(deadline))
		if err != nil {
			return nil, err
		}
		if obj["type"] == typ {
			return obj, nil
		}
		skipped := false
		for _, s := range skip {
			skipped = skipped || obj["type"] == s
		}
		if !skipped {
			if typ == "" {
				return obj, nil
			}
			return nil, fmt.Errorf("waiting for %s, got %v", typ, obj)
		}
	}
}

// hostPort is the host:port of a database URL.
func hostPort(t *testing.T, databaseURL string) string {
	t.Helper()
	u, err := url.Parse(databaseURL)
	require.NoError(t, err)
	return u.Host
}

// withHostPort is databaseURL with its host:port replaced.
func withHostPort(t *testing.T, databaseURL, addr string) string {
	t.Helper()
	u, err := url.Parse(databaseURL)
	require.NoError(t, err)
	u.Host = addr
	return u.String()
}
