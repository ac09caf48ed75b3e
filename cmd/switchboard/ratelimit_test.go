package main

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-chat/switchboard/broker/brokertest"
	"github.com/switchboard-chat/switchboard/chat"
	"github.com/switchboard-chat/switchboard/ratelimit"
	"github.com/switchboard-chat/switchboard/storage/storagetest"
)

// slowLimit refills one request every 10 s, so that nothing refills while
// a test runs.
var slowLimit = ratelimit.Limit{Rate: 0.1, Burst: 5}

// requireRateLimitHeaders checks the RateLimit-* headers of an answer of
// the limited endpoints and returns RateLimit-Remaining.
func requireRateLimitHeaders(t *testing.T, r apiResponse, limit int) int {
	t.Helper()
	require.Equal(t, strconv.Itoa(limit), r.Header.Get("RateLimit-Limit"), "%s", r.Raw)
	remaining, err := strconv.Atoi(r.Header.Get("RateLimit-Remaining"))
	require.NoError(t, err)
	reset, err := strconv.Atoi(r.Header.Get("RateLimit-Reset"))
	require.NoError(t, err)
	require.Positive(t, reset)
	return remaining
}

func TestHTTPRateLimit(t *testing.T) {
	t.Parallel()
	s := newTestServerWith(t, nodeOptions{httpLimit: slowLimit})
	owner, poster := s.register(t, "owner"), s.register(t, "poster")
	room := s.createRoom(t, owner, chat.Public) // owner's writes are
	s.addMember(t, owner, room, poster)         // not poster's budget

	const n = 12
	answers := make([]apiResponse, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			answers[i] = s.do(t, "POST", "/api/v1/rooms/"+room+"/messages", poster.Token,
				map[string]any{"body": "burst " + strconv.Itoa(i)})
		}()
	}
	wg.Wait()

	var created, limited int
	for _, r := range answers {
		remaining := requireRateLimitHeaders(t, r, slowLimit.Burst)
		switch r.Status {
		case http.StatusCreated:
			created++
		case http.StatusTooManyRequests:
			limited++
			requireAPIError(t, r, http.StatusTooManyRequests, "rate_limited")
			require.Zero(t, remaining)
			retry, err := strconv.Atoi(r.Header.Get("Retry-After"))
			require.NoError(t, err, "Retry-After: %q", r.Header.Get("Retry-After"))
			require.InDelta(t, 10, retry, 1)
			reset, _ := strconv.Atoi(r.Header.Get("RateLimit-Reset"))
			require.InDelta(t, 50, reset, 2)
		default:
			t.Fatalf("unexpected answer %d: %s", r.Status, r.Raw)
		}
	}
	require.Equal(t, slowLimit.Burst, created)
	require.Equal(t, n-slowLimit.Burst, limited)

	// Only the allowed posts were stored.
	h := s.do(t, "GET", "/api/v1/rooms/"+room+"/messages", poster.Token, nil)
	require.Equal(t, http.StatusOK, h.Status, "%s", h.Raw)
	require.Len(t, h.Body["messages"].([]any), slowLimit.Burst)
	require.Empty(t, h.Header.Get("RateLimit-Limit"), "reads are not limited")

	// Every write endpoint shares the budget; reads and logout do not.
	requireAPIError(t, s.do(t, "PATCH", "/api/v1/me", poster.Token, map[string]any{"display_name": "P"}),
		http.StatusTooManyRequests, "rate_limited")
	requireAPIError(t, s.do(t, "POST", "/api/v1/rooms", poster.Token, map[string]any{"name": "x", "visibility": "public"}),
		http.StatusTooManyRequests, "rate_limited")
	requireAPIError(t, s.do(t, "DELETE", "/api/v1/rooms/"+room+"/members/me", poster.Token, nil),
		http.StatusTooManyRequests, "rate_limited")
	require.Equal(t, http.StatusOK, s.do(t, "GET", "/api/v1/me", poster.Token, nil).Status)

	// Other users have their own budget.
	r := s.do(t, "POST", "/api/v1/rooms/"+room+"/messages", owner.Token, map[string]any{"body": "mine"})
	require.Equal(t, http.StatusCreated, r.Status, "%s", r.Raw)
	require.Equal(t, slowLimit.Burst-3, requireRateLimitHeaders(t, r, slowLimit.Burst))

	require.Equal(t, http.StatusNoContent, s.do(t, "POST", "/api/v1/auth/logout", poster.Token, nil).Status,
		"a throttled user can still log out")
}

// TestHTTPRateLimitSharedByNodes: two nodes of one cluster count one
// user's writes against one budget.
func TestHTTPRateLimitSharedByNodes(t *testing.T) {
	t.Parallel()
	db, prefix := storagetest.NewDatabase(t), brokertest.Prefix()
	a := newTestServerWith(t, nodeOptions{databaseURL: db, redisPrefix: prefix, httpLimit: slowLimit})
	b := newTestServerWith(t, nodeOptions{databaseURL: db, redisPrefix: prefix, httpLimit: slowLimit})
	owner, poster := a.register(t, "owner"), a.register(t, "poster")
	room := a.createRoom(t, owner, chat.Public)
	a.addMember(t, owner, room, poster)

	for i := range slowLimit.Burst {
		s := []*testServer{a, b}[i%2]
		r := s.do(t, "POST", "/api/v1/rooms/"+room+"/messages", poster.Token, map[string]any{"body": strconv.Itoa(i)})
		require.Equal(t, http.StatusCreated, r.Status, "post %d: %s", i, r.Raw)
		require.Equal(t, slowLimit.Burst-1-i, requireRateLimitHeaders(t, r, slowLimit.Burst), "post %d", i)
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
