package main

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-chat/switchboard/broker/brokertest"
	"github.com/switchboard-chat/switchboard/chat"
	"github.com/switchboard-chat/switchboard/internal/apitest"
	"github.com/switchboard-chat/switchboard/storage/storagetest"
)

// TestHTTPRateLimitSharedByNodes: two nodes of one cluster count one
// user's writes against one budget.
func TestHTTPRateLimitSharedByNodes(t *testing.T) {
	t.Parallel()
	db, prefix := storagetest.NewDatabase(t), brokertest.Prefix()
	a := newTestServerWith(t, nodeOptions{databaseURL: db, redisPrefix: prefix, httpLimit: apitest.SlowLimit})
	b := newTestServerWith(t, nodeOptions{databaseURL: db, redisPrefix: prefix, httpLimit: apitest.SlowLimit})
	owner, poster := a.register(t, "owner"), a.register(t, "poster")
	room := a.createRoom(t, owner, chat.Public)
	a.addMember(t, owner, room, poster)

	for i := range apitest.SlowLimit.Burst {
		s := []*testServer{a, b}[i%2]
		r := s.do(t, "POST", "/api/v1/rooms/"+room+"/messages", poster.Token, map[string]any{"body": strconv.Itoa(i)})
		require.Equal(t, http.StatusCreated, r.Status, "post %d: %s", i, r.Raw)
		require.Equal(t, apitest.SlowLimit.Burst-1-i, apitest.RequireRateLimitHeaders(t, r, apitest.SlowLimit.Burst), "post %d", i)
	}
	for _, s := range []*testServer{a, b} {
		r := s.do(t, "POST", "/api/v1/rooms/"+room+"/messages", poster.Token, map[string]any{"body": "over"})
		requireAPIError(t, r, http.StatusTooManyRequests, "rate_limited")
		require.NotEmpty(t, r.Header.Get("Retry-After"))
	}
}

// TestLogoutHonouredOnEveryNode: a session logged out on node a is refused
// by node b, and its denylist entry expires with its last access token.
func TestLogoutHonouredOnEveryNode(t *testing.T) {
	t.Parallel()
	db, prefix := storagetest.NewDatabase(t), brokertest.Prefix()
	a := newTestServerWith(t, nodeOptions{databaseURL: db, redisPrefix: prefix})
	b := newTestServerWith(t, nodeOptions{databaseURL: db, redisPrefix: prefix})
	u := a.register(t, "leaver")
	require.Equal(t, http.StatusOK, b.do(t, "GET", "/api/v1/me", u.Token, nil).Status)

	require.Equal(t, http.StatusNoContent, a.do(t, "POST", "/api/v1/auth/logout", u.Token, nil).Status)
	requireAPIError(t, b.do(t, "GET", "/api/v1/me", u.Token, nil), http.StatusUnauthorized, "unauthorized")
	requireAPIError(t, a.do(t, "GET", "/api/v1/me", u.Token, nil), http.StatusUnauthorized, "unauthorized")

	// The WebSocket of node b refuses it too.
	ws := b.dialWS(t, "")
	ws.send(map[string]any{"type": "auth", "token": u.Token})
	f := ws.nextOf("error")
	require.Equal(t, "unauthorized", f["code"], "%v", f)

	// The entry lives as long as the session's tokens may (15 minutes),
	// plus a minute of clock skew, and no longer.
	ttl, err := a.node.rdb.TTL(t.Context(), prefix+"ended:"+tokenClaim(t, u.Token, "sid")).Result()
	require.NoError(t, err)
	require.Greater(t, ttl, 14*time.Minute)
	require.LessOrEqual(t, ttl, 17*time.Minute)
}

// tokenClaim reads a string claim of a JWT without verifying it.
func tokenClaim(t *testing.T, token, claim string) string {
	t.Helper()
	parts := strings.Split(token, ".")
	require.Len(t, parts, 3)
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	require.NoError(t, err)
	var claims map[string]any
	require.NoError(t, json.Unmarshal(raw, &claims))
	v, _ := claims[claim].(string)
	require.NotEmpty(t, v, "claim %s", claim)
	return v
}
