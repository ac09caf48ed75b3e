package web_test

import (
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-chat/switchboard/chat"
	"github.com/switchboard-chat/switchboard/internal/apitest"
)

// This file tests the abuse limits of the HTTP API (SPEC §3): each user's
// write budget, and the auth budget of each client IP.

func TestHTTPRateLimit(t *testing.T) {
	t.Parallel()
	s := apitest.NewNode(t, apitest.Options{HTTPLimit: apitest.SlowLimit})
	owner, poster := s.Register(t, "owner"), s.Register(t, "poster")
	room := s.CreateRoom(t, owner, chat.Public) // owner's writes are
	s.AddMember(t, owner, room, poster)         // not poster's budget

	const n = 12
	answers := make([]apitest.Response, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			answers[i] = s.Do(t, "POST", "/api/v1/rooms/"+room+"/messages", poster.Token,
				map[string]any{"body": "burst " + strconv.Itoa(i)})
		}()
	}
	wg.Wait()

	var created, limited int
	for _, r := range answers {
		remaining := apitest.RequireRateLimitHeaders(t, r, apitest.SlowLimit.Burst)
		switch r.Status {
		case http.StatusCreated:
			created++
		case http.StatusTooManyRequests:
			limited++
			apitest.RequireError(t, r, http.StatusTooManyRequests, "rate_limited")
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
	require.Equal(t, apitest.SlowLimit.Burst, created)
	require.Equal(t, n-apitest.SlowLimit.Burst, limited)

	// Only the allowed posts were stored.
	h := s.Do(t, "GET", "/api/v1/rooms/"+room+"/messages", poster.Token, nil)
	require.Equal(t, http.StatusOK, h.Status, "%s", h.Raw)
	require.Len(t, h.Body["messages"].([]any), apitest.SlowLimit.Burst)
	require.Empty(t, h.Header.Get("RateLimit-Limit"), "reads are not limited")

	// Every write endpoint shares the budget; reads and logout do not.
	apitest.RequireError(t, s.Do(t, "PATCH", "/api/v1/me", poster.Token, map[string]any{"display_name": "P"}),
		http.StatusTooManyRequests, "rate_limited")
	apitest.RequireError(t, s.Do(t, "POST", "/api/v1/rooms", poster.Token, map[string]any{"name": "x", "visibility": "public"}),
		http.StatusTooManyRequests, "rate_limited")
	apitest.RequireError(t, s.Do(t, "DELETE", "/api/v1/rooms/"+room+"/members/me", poster.Token, nil),
		http.StatusTooManyRequests, "rate_limited")
	require.Equal(t, http.StatusOK, s.Do(t, "GET", "/api/v1/me", poster.Token, nil).Status)

	// Other users have their own budget.
	r := s.Do(t, "POST", "/api/v1/rooms/"+room+"/messages", owner.Token, map[string]any{"body": "mine"})
	require.Equal(t, http.StatusCreated, r.Status, "%s", r.Raw)
	require.Equal(t, apitest.SlowLimit.Burst-3, apitest.RequireRateLimitHeaders(t, r, apitest.SlowLimit.Burst))

	require.Equal(t, http.StatusNoContent, s.Do(t, "POST", "/api/v1/auth/logout", poster.Token, nil).Status,
		"a throttled user can still log out")
}

// TestAuthRateLimitUntrustedPeer: X-Forwarded-For from a peer that is not a
// trusted proxy counts for nothing: every request is the peer's.
func TestAuthRateLimitUntrustedPeer(t *testing.T) {
	t.Parallel()
	s := apitest.NewNode(t, apitest.Options{AuthRateLimit: 3})
	for i := range 3 {
		r := s.DoFrom(t, apitest.From(fmt.Sprint("203.0.113.", i)), "POST", "/api/v1/auth/login", "", map[string]any{"username": "nobody", "password": "whatever pass"})
		apitest.RequireError(t, r, http.StatusUnauthorized, "invalid_credentials")
	}
	r := s.DoFrom(t, apitest.From("203.0.113.99"), "POST", "/api/v1/auth/login", "", map[string]any{"username": "nobody", "password": "whatever pass"})
	apitest.RequireRetryAfter(t, r, 1, 25)
}
