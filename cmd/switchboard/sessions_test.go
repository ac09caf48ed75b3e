package main

import (
	"net/http"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"

	"github.com/switchboard-chat/switchboard/chat"
	"github.com/switchboard-chat/switchboard/internal/apitest"
)

// This file tests sessions (SPEC §3): what ends one, and that its end
// reaches open sockets on every node.

// requireClosedWithin waits for the server to close c with code, within
// wait of start.
func requireClosedWithin(t *testing.T, c *wsClient, code websocket.StatusCode, start time.Time, wait time.Duration) {
	t.Helper()
	apitest.RequireClosedWithin(t, c.WS, code, start, wait)
}

// requireOpen checks that c still answers.
func requireOpen(t *testing.T, c *wsClient) {
	t.Helper()
	apitest.RequireOpen(t, c.WS)
}

func TestSessionsEndOnEveryNode(t *testing.T) {
	t.Parallel()
	nodes := newTestCluster(t, 2, nil)
	a, b := nodes[0], nodes[1]
	first := a.register(t, "bob")
	room := a.createRoom(t, first, chat.Private)

	t.Run("LogoutWithoutBody", func(t *testing.T) {
		s1 := a.login(t, first.Username, fixturePassword)
		s2 := a.login(t, first.Username, fixturePassword)
		s1a, s1b := a.subscribedClient(t, s1, 1), b.subscribedClient(t, s1, 1)
		s2b := b.subscribedClient(t, s2, 1)

		start := time.Now()
		require.Equal(t, http.StatusNoContent, a.do(t, "POST", "/api/v1/auth/logout", s1.Token, nil).Status)
		requireClosedWithin(t, s1a, 4401, start, time.Second)
		requireClosedWithin(t, s1b, 4401, start, time.Second)
		requireAPIError(t, b.do(t, "GET", "/api/v1/me", s1.Token, nil), http.StatusUnauthorized, "unauthorized")
		requireAPIError(t, b.refresh(t, s1), http.StatusUnauthorized, "unauthorized")

		// The other session of the same user goes on.
		requireOpen(t, s2b)
		require.Equal(t, http.StatusOK, b.do(t, "GET", "/api/v1/me", s2.Token, nil).Status)
		require.Equal(t, http.StatusOK, b.refresh(t, s2).Status)
	})

	t.Run("LogoutAfterRefreshEndsTheRefreshedTokensToo", func(t *testing.T) {
		s := a.login(t, first.Username, fixturePassword)
		r := a.refresh(t, s)
		require.Equal(t, http.StatusOK, r.Status, "%s", r.Raw)
		fresh := s
		fresh.Token, fresh.Refresh = r.Body["access_token"].(string), r.Body["refresh_token"].(string)
		ws := b.subscribedClient(t, fresh, 1)
		start := time.Now()
		require.Equal(t, http.StatusNoContent, a.do(t, "POST", "/api/v1/auth/logout", s.Token, nil).Status,
			"the old access token of the session logs it out")
		requireClosedWithin(t, ws, 4401, start, time.Second)
		requireAPIError(t, b.do(t, "GET", "/api/v1/me", fresh.Token, nil), http.StatusUnauthorized, "unauthorized")
		requireAPIError(t, b.refresh(t, fresh), http.StatusUnauthorized, "unauthorized")
	})

	t.Run("LogoutAll", func(t *testing.T) {
		s1 := a.login(t, first.Username, fixturePassword)
		s2 := a.login(t, first.Username, fixturePassword)
		c1, c2 := a.subscribedClient(t, s1, 1), b.subscribedClient(t, s2, 1)
		start := time.Now()
		require.Equal(t, http.StatusNoContent, b.do(t, "POST", "/api/v1/auth/logout-all", s2.Token, nil).Status)
		requireClosedWithin(t, c1, 4401, start, time.Second)
		requireClosedWithin(t, c2, 4401, start, time.Second)
		for _, s := range []testUser{s1, s2} {
			requireAPIError(t, a.do(t, "GET", "/api/v1/me", s.Token, nil), http.StatusUnauthorized, "unauthorized")
			requireAPIError(t, a.refresh(t, s), http.StatusUnauthorized, "unauthorized")
		}
		// A new login starts a new session.
		s3 := b.login(t, first.Username, fixturePassword)
		require.Equal(t, http.StatusOK, a.do(t, "GET", "/api/v1/me", s3.Token, nil).Status)
	})

	t.Run("PasswordChange", func(t *testing.T) {
		mine := a.login(t, first.Username, fixturePassword)
		other := a.login(t, first.Username, fixturePassword)
		myWS, otherWS := a.subscribedClient(t, mine, 1), b.subscribedClient(t, other, 1)

		// A wrong current password changes nothing.
		r := a.do(t, "POST", "/api/v1/me/password", mine.Token, map[string]any{
			"current_password": "not the password", "new_password": "a brand new password"})
		requireAPIError(t, r, http.StatusUnauthorized, "invalid_credentials")
		requireOpen(t, otherWS)
		r = a.do(t, "POST", "/api/v1/me/password", mine.Token, map[string]any{
			"current_password": fixturePassword, "new_password": "short"})
		requireAPIError(t, r, http.StatusBadRequest, "bad_request")
		requireOpen(t, otherWS)

		r = a.do(t, "POST", "/api/v1/me/password", mine.Token, map[string]any{
			"current_password": fixturePassword, "new_password": "a brand new password"})
		require.Equal(t, http.StatusNoContent, r.Status, "%s", r.Raw)
		// Counted from the answer: the request itself hashes the new
		// password at the production cost, slow under the race detector.
		start := time.Now()
		requireClosedWithin(t, otherWS, 4401, start, time.Second)
		requireAPIError(t, b.do(t, "GET", "/api/v1/me", other.Token, nil), http.StatusUnauthorized, "unauthorized")
		requireAPIError(t, b.refresh(t, other), http.StatusUnauthorized, "unauthorized")

		// The session that changed it goes on; the new password is the one.
		requireOpen(t, myWS)
		require.Equal(t, http.StatusOK, b.do(t, "GET", "/api/v1/me", mine.Token, nil).Status)
		require.Equal(t, http.StatusOK, b.refresh(t, mine).Status)
		r = a.do(t, "POST", "/api/v1/auth/login", "", map[string]any{"username": first.Username, "password": fixturePassword})
		requireAPIError(t, r, http.StatusUnauthorized, "invalid_credentials")
		a.login(t, first.Username, "a brand new password")
	})

	t.Run("RefreshReuseEndsTheSession", func(t *testing.T) {
		u := a.login(t, first.Username, "a brand new password")
		ws := b.subscribedClient(t, u, 1)
		require.Equal(t, http.StatusOK, a.refresh(t, u).Status)
		start := time.Now()
		requireAPIError(t, a.refresh(t, u), http.StatusUnauthorized, "unauthorized")
		requireClosedWithin(t, ws, 4401, start, time.Second)
		requireAPIError(t, b.do(t, "GET", "/api/v1/me", u.Token, nil), http.StatusUnauthorized, "unauthorized")
	})
	_ = room
}
