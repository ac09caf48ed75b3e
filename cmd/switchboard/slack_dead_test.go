package main

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-chat/switchboard/integrations/jobs"
	"github.com/switchboard-chat/switchboard/integrations/slack"
	"github.com/switchboard-chat/switchboard/integrations/slack/slacktest"
)

// TestSlackEventSenderNotMappedIsDeadAtOnce: a message event from a Slack
// user whose guest username belongs to a real account (registered before
// the slack- prefix was reserved) goes through the real queue to the
// dead-letter set after one attempt, with the reason, instead of being
// retried (SPEC §9); the operator sees it with switchboard jobs dead, and
// nothing is stored.
func TestSlackEventSenderNotMappedIsDeadAtOnce(t *testing.T) {
	t.Parallel()
	s := newTestServerWith(t, nodeOptions{slack: slacktest.New(t, testSlackBotToken)})
	alice := s.register(t, "alice")
	s.registerNamed(t, "slack-u0taken")
	room := s.createRoom(t, alice, "public")
	s.bridge(t, room, "C0DEAD")

	event := map[string]any{
		"type": "event_callback", "event_id": "Ev0DEAD", "event_time": time.Now().Unix(),
		"event": map[string]any{"type": "message", "channel": "C0DEAD", "user": "U0TAKEN", "text": "who am I", "ts": "1.2"},
	}
	raw, err := json.Marshal(event)
	require.NoError(t, err)
	status, body := s.slackWebhook(t, "events", "application/json", string(raw))
	require.Equal(t, http.StatusOK, status, body)

	var dead []jobs.DeadJob
	eventually(t, "the event job is dead", func() bool {
		dead, err = s.node.queue.Dead(t.Context())
		return err == nil && len(dead) == 1
	})
	require.Equal(t, slack.EventTaskType, dead[0].Type)
	require.Equal(t, 1, dead[0].Attempts, "one attempt, no retry")
	require.Contains(t, dead[0].LastError, "U0TAKEN cannot be mapped")
	require.Contains(t, dead[0].LastError, `"slack-u0taken" belongs to an account that is not a Slack guest`)

	// It stays dead: nothing waits to be retried, nothing was stored.
	time.Sleep(300 * time.Millisecond)
	stats, err := s.node.queue.Stats(t.Context())
	require.NoError(t, err)
	for _, q := range stats {
		require.Zero(t, q.Retry+q.Pending+q.Scheduled, "queue %s", q.Queue)
	}
	require.Empty(t, s.history(t, alice, room))

	var listed []jobs.DeadJob
	require.NoError(t, json.Unmarshal([]byte(runCLI(t, s, "jobs", "dead", "--json")), &listed))
	require.Len(t, listed, 1)
	require.Equal(t, dead[0].ID, listed[0].ID)
	require.Contains(t, runCLI(t, s, "jobs", "dead"), "cannot be mapped")
}
