package main

import (
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-chat/switchboard/integrations/slack/slacktest"
)

// TestWebhookErrors: the webhooks a node wires for the integrations that
// are on answer like every other route (web's TestAPIMethodNotAllowed and
// TestAPIErrorsAreJSON): a method they do not serve is 405 in the error
// shape with Allow, and an oversized body is 413 too_large in the error
// shape.
func TestWebhookErrors(t *testing.T) {
	t.Parallel()
	s := newTestServerWith(t, nodeOptions{twilio: newFakeTwilio(t), slack: slacktest.New(t, testSlackBotToken)})
	u := s.register(t, "allow")

	tests := []struct{ method, path, allow string }{
		{"GET", "/webhooks/twilio/sms", "POST"},
		{"GET", "/webhooks/slack/events", "POST"},
		{"PUT", "/webhooks/slack/commands", "POST"},
	}
	for _, tt := range tests {
		t.Run(tt.method+strings.ReplaceAll(tt.path, "/", "_"), func(t *testing.T) {
			t.Parallel()
			r := s.do(t, tt.method, tt.path, u.Token, nil)
			requireAPIError(t, r, http.StatusMethodNotAllowed, "bad_request")
			require.Equal(t, "application/json", r.Header.Get("Content-Type"))
			require.Equal(t, tt.allow, r.Header.Get("Allow"))
		})
	}

	// Every method Allow names is served: not 405.
	for _, tt := range tests {
		for _, method := range strings.Split(tt.allow, ", ") {
			r := s.do(t, method, tt.path, u.Token, nil)
			require.NotEqual(t, http.StatusMethodNotAllowed, r.Status, "%s %s: %s", method, tt.path, r.Raw)
		}
	}

	big := `{"username":"` + strings.Repeat("a", 70<<10) + `"}`
	status, body := s.slackWebhook(t, "events", "application/json", big)
	require.Equal(t, http.StatusRequestEntityTooLarge, status, body)
	require.Contains(t, body, `"code":"too_large"`)
}
