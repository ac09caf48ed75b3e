package hub_test

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"

	"github.com/switchboard-chat/switchboard/chat"
	"github.com/switchboard-chat/switchboard/internal/apitest"
)

// This file tests a connection's session on one node (SPEC §3, §6): the
// close when its token expires, and authenticating again in place. That
// ended sessions close sockets on every node is tested in cmd/switchboard.

// tokenExpiry reads the exp claim of a JWT without verifying it.
func tokenExpiry(t *testing.T, token string) time.Time {
	t.Helper()
	parts := strings.Split(token, ".")
	require.Len(t, parts, 3)
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	require.NoError(t, err)
	var claims struct {
		Exp int64 `json:"exp"`
	}
	require.NoError(t, json.Unmarshal(raw, &claims))
	return time.Unix(claims.Exp, 0)
}

// TestSocketTokenExpiry: a socket closes with 4401 when its token expires,
// unless the client sent a fresh one of the same user in an auth frame.
func TestSocketTokenExpiry(t *testing.T) {
	t.Parallel()
	// Tokens carry whole seconds, so one lives between ttl-1s and ttl; a
	// re-auth every ttl/2 then has a second or more to spare on a busy
	// machine, and three of them outlive the first token.
	const ttl = 4 * time.Second
	s := apitest.NewNode(t, apitest.Options{AccessTTL: ttl})
	alice, mallory := s.Register(t, "alice"), s.Register(t, "mallory")
	s.CreateRoom(t, alice, chat.Private)

	t.Run("ClosedAtExpiry", func(t *testing.T) {
		t.Parallel()
		u := s.Login(t, alice.Username, apitest.Password)
		exp := tokenExpiry(t, u.Token)
		c := s.SubscribedClient(t, u, 1)
		objs, code := apitest.DrainUntilClosed(t, c, ttl+3*time.Second)
		require.Equal(t, websocket.StatusCode(4401), code)
		require.WithinDuration(t, exp, time.Now(), 500*time.Millisecond, "closed when the token expires")
		require.NotEmpty(t, objs)
		require.Equal(t, "unauthorized", objs[len(objs)-1]["code"], "told why: %v", objs)
	})

	t.Run("ReauthInPlace", func(t *testing.T) {
		t.Parallel()
		u := s.Login(t, alice.Username, apitest.Password)
		c := s.SubscribedClient(t, u, 1)
		for range 3 { // longer than a token lives
			time.Sleep(ttl / 2)
			r := s.Refresh(t, u)
			require.Equal(t, http.StatusOK, r.Status, "%s", r.Raw)
			u.Token, u.Refresh = r.Body["access_token"].(string), r.Body["refresh_token"].(string)
			c.Send(map[string]any{"type": "auth", "id": "re", "token": u.Token})
			authed := c.NextOf("authed", "subscribed")
			require.Equal(t, "re", authed["id"])
			expires := apitest.RequireUTCTime(t, authed["expires_at"].(string))
			require.WithinDuration(t, time.Now().Add(ttl), expires, 1500*time.Millisecond)
		}
		apitest.RequireOpen(t, c)
	})

	for _, tt := range []struct {
		name  string
		token func() string
	}{
		{"AnotherUsersToken", func() string { return s.Login(t, mallory.Username, apitest.Password).Token }},
		{"GarbageToken", func() string { return "not-a-token" }},
		{"EndedSessionsToken", func() string {
			u := s.Login(t, alice.Username, apitest.Password)
			require.Equal(t, http.StatusNoContent, s.Do(t, "POST", "/api/v1/auth/logout", u.Token, nil).Status)
			return u.Token
		}},
	} {
		t.Run("Refused"+tt.name, func(t *testing.T) {
			t.Parallel()
			u := s.Login(t, alice.Username, apitest.Password)
			c := s.SubscribedClient(t, u, 1)
			c.Send(map[string]any{"type": "auth", "id": "re", "token": tt.token()})
			objs, code := apitest.DrainUntilClosed(t, c, time.Second)
			require.Equal(t, websocket.StatusCode(4401), code)
			require.NotEmpty(t, objs)
			last := objs[len(objs)-1]
			require.Equal(t, "unauthorized", last["code"], "%v", objs)
			require.Equal(t, "re", last["id"])
		})
	}
}
