package web_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-chat/switchboard/internal/apitest"
)

// TestAPIMethodNotAllowed: a known path with a method it does not serve is
// 405 in the error shape (code bad_request: SPEC §2 has no code for it),
// with Allow listing what it serves; API routes, health, metrics, /ws
// and the browser client alike (the webhooks of the integrations:
// cmd/switchboard's TestWebhookErrors).
func TestAPIMethodNotAllowed(t *testing.T) {
	t.Parallel()
	s := newAPIServer(t)
	u := s.Register(t, "allow")
	room := s.CreateRoom(t, u, "public")

	tests := []struct{ method, path, allow string }{
		{"DELETE", "/api/v1/rooms", "GET, HEAD, POST"},
		{"PUT", "/api/v1/me", "GET, HEAD, PATCH"},
		{"GET", "/api/v1/auth/login", "POST"},
		{"GET", "/api/v1/auth/register", "POST"},
		{"PATCH", "/api/v1/rooms/" + room + "/messages", "GET, HEAD, POST"},
		{"GET", "/api/v1/rooms/" + room + "/join", "POST"},
		{"GET", "/api/v1/rooms/" + room + "/members/me", "PATCH, DELETE"}, // a member by id: me names none (404)
		{"POST", "/api/v1/rooms/" + room + "/bans/1", "DELETE"},
		{"PUT", "/api/v1/rooms/" + room, "PATCH"},
		{"DELETE", "/api/v1/search", "GET, HEAD"},
		{"DELETE", "/api/v1/rooms/" + room + "/presence", "GET, HEAD"},
		{"POST", "/api/v1/messages/1", "GET, HEAD, PATCH, DELETE"},
		{"GET", "/api/v1/messages/1/reactions/x", "PUT, DELETE"},
		{"POST", "/healthz", "GET, HEAD"},
		{"DELETE", "/readyz", "GET, HEAD"},
		{"POST", "/metrics", "GET, HEAD"},
		{"POST", "/ws", "GET, HEAD"},
		{"POST", "/", "GET, HEAD"},
		{"DELETE", "/app.js", "GET, HEAD"},
	}
	for _, tt := range tests {
		t.Run(tt.method+strings.ReplaceAll(tt.path, "/", "_"), func(t *testing.T) {
			t.Parallel()
			r := s.Do(t, tt.method, tt.path, u.Token, nil)
			apitest.RequireError(t, r, http.StatusMethodNotAllowed, "bad_request")
			require.Equal(t, "application/json", r.Header.Get("Content-Type"))
			require.Equal(t, tt.allow, r.Header.Get("Allow"))
		})
	}

	// Every method Allow names is served: not 405.
	for _, tt := range tests {
		for _, method := range strings.Split(tt.allow, ", ") {
			if method == "HEAD" || tt.path == "/ws" {
				continue
			}
			r := s.Do(t, method, tt.path, u.Token, nil)
			require.NotEqual(t, http.StatusMethodNotAllowed, r.Status, "%s %s: %s", method, tt.path, r.Raw)
		}
	}
}

// TestAPIErrorsAreJSON: the error answers that net/http or a library would
// write as plain text (unknown paths, oversized bodies, a /ws request that
// is no WebSocket upgrade) take the error shape (an oversized webhook body:
// cmd/switchboard's TestWebhookErrors).
func TestAPIErrorsAreJSON(t *testing.T) {
	t.Parallel()
	s := newAPIServer(t)
	u := s.Register(t, "json")

	for _, path := range []string{"/api/v1/nope", "/api/v2/rooms", "/api/", "/webhooks/nope", "/nope.js", "/app.js/x"} {
		for _, method := range []string{"GET", "POST"} {
			r := s.Do(t, method, path, u.Token, nil)
			apitest.RequireError(t, r, http.StatusNotFound, "not_found")
			require.Empty(t, r.Header.Get("Allow"), "%s %s", method, path)
		}
	}

	big := `{"username":"` + strings.Repeat("a", 70<<10) + `"}`
	r := s.Do(t, "POST", "/api/v1/auth/register", "", big)
	apitest.RequireError(t, r, http.StatusRequestEntityTooLarge, "too_large")

	// GET /ws without the upgrade: coder/websocket refuses it with 426 and
	// its reason, which comes in the error shape.
	r = s.Do(t, "GET", "/ws", "", nil)
	apitest.RequireError(t, r, http.StatusUpgradeRequired, "bad_request")
	require.Contains(t, r.Body["error"].(map[string]any)["message"], "Upgrade")
	require.Equal(t, "websocket", r.Header.Get("Upgrade"))

	req, err := http.NewRequest("GET", s.URL+"/ws", nil)
	require.NoError(t, err)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Sec-WebSocket-Version", "12")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusBadRequest, resp.StatusCode)
	require.Equal(t, "application/json", resp.Header.Get("Content-Type"))

	// A WebSocket still upgrades through it.
	c := s.DialWS(t, u.Token)
	c.Ready()
}
