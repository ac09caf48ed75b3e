package hub_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"

	"github.com/switchboard-chat/switchboard/chat"
	"github.com/switchboard-chat/switchboard/hub"
	"github.com/switchboard-chat/switchboard/internal/apitest"
)

// This file tests the abuse limits of SPEC §6 on one node's connections:
// sockets waiting to authenticate, and the budget of requests that are not
// sends. The limits on all nodes together (the connection cap) are tested
// in cmd/switchboard.

// TestUnauthenticatedSocketsPerIP: a client IP may hold at most 50 sockets
// that have not authenticated yet, per node; more are refused with 429
// before the upgrade.
func TestUnauthenticatedSocketsPerIP(t *testing.T) {
	t.Parallel()
	s := apitest.NewNode(t, apitest.Options{})
	alice := s.Register(t, "alice")
	waiting := make([]*apitest.WS, 50)
	for i := range waiting {
		waiting[i] = s.DialWS(t, "")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, resp, err := websocket.Dial(ctx, s.WSURL(),
		&websocket.DialOptions{Subprotocols: []string{hub.Subprotocol}})
	require.Error(t, err)
	require.Equal(t, http.StatusTooManyRequests, resp.StatusCode)
	require.NotEmpty(t, resp.Header.Get("Retry-After"))

	// One of them authenticates: its place is free again.
	waiting[0].Send(map[string]any{"type": "auth", "token": alice.Token})
	waiting[0].Ready()
	s.DialWS(t, "").Send(map[string]any{"type": "auth", "token": alice.Token})
}

// TestRequestBudget: subscribe, unsubscribe, history, read, ping and auth
// share a budget of 20/s with bursts of 40 per connection; over it,
// rate_limited with retry_after_ms, and far over it, close 1008.
func TestRequestBudget(t *testing.T) {
	t.Parallel()
	// A slow refill (1/s), so that a loaded machine, which takes a while to
	// answer the 45 requests, does not refill the burst meanwhile.
	s := apitest.NewNode(t, apitest.Options{Hub: func(c *hub.Config) { c.RequestLimit = 1 }})
	alice := s.Register(t, "alice")
	room := s.CreateRoom(t, alice, chat.Private)
	c := s.SubscribedClient(t, alice, 1)
	frames := []map[string]any{
		{"type": "ping"},
		{"type": "history", "room": room},
		{"type": "read", "room": room, "seq": 0},
		{"type": "subscribe", "room": room},
		{"type": "unsubscribe", "room": room},
	}
	for i := range 45 {
		f := frames[i%len(frames)]
		f["id"] = fmt.Sprint("r", i)
		c.Send(f)
	}
	// Once the budget has a request again, a ping marks the end of the
	// answers.
	time.Sleep(1200 * time.Millisecond)
	c.Send(map[string]any{"type": "ping", "id": "end"})
	limited := 0
	for {
		obj := c.Next()
		if obj["id"] == "end" {
			break
		}
		if obj["type"] == "error" {
			require.Equal(t, "rate_limited", obj["code"], "%v", obj)
			require.Greater(t, obj["retry_after_ms"], 0.0)
			limited++
		}
	}
	require.GreaterOrEqual(t, limited, 3, "the burst is 40")
	require.LessOrEqual(t, limited, 5)
	// Sends have a budget of their own.
	apitest.SendWS(t, c, room, "sends still go")

	// Far over the budget: closed.
	for i := range 120 {
		c.Send(map[string]any{"type": "ping", "id": fmt.Sprint("flood-", i)})
	}
	_, code := apitest.DrainUntilClosed(t, c, 5*time.Second)
	require.Equal(t, websocket.StatusPolicyViolation, code)
}
