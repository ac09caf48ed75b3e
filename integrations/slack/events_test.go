package slack_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-chat/switchboard/chat"
	"github.com/switchboard-chat/switchboard/integrations/jobs"
	"github.com/switchboard-chat/switchboard/integrations/slack"
	"github.com/switchboard-chat/switchboard/internal/testvectors"
	"github.com/switchboard-chat/switchboard/storage/storagetest"
)

// messageEvent returns the documented message.channels event_callback with
// the given changes to its inner event ("event") and outer fields.
func messageEvent(t testing.TB, outer, inner map[string]any) []byte {
	t.Helper()
	var ev map[string]any
	require.NoError(t, json.Unmarshal(testvectors.Slack(t).MessageEvent, &ev))
	for k, v := range outer {
		ev[k] = v
	}
	in := ev["event"].(map[string]any)
	for k, v := range inner {
		if v == nil {
			delete(in, k)
			continue
		}
		in[k] = v
	}
	raw, err := json.Marshal(ev)
	require.NoError(t, err)
	return raw
}

// runJobs runs every queued job through HandleEventTask, as the workers
// would, and returns their errors.
func (b *testBundle) runJobs(t testing.TB) []error {
	t.Helper()
	handle := slack.HandleEventTask(b.Store, storagetest.NewPoster(t, b.Store))
	var errs []error
	for _, j := range b.queue.queued() {
		require.Equal(t, slack.EventTaskType, j.Type)
		errs = append(errs, handle(b.Ctx, j.Payload))
	}
	return errs
}

func TestEvents(t *testing.T) {
	t.Parallel()

	t.Run("URLVerification", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		challenge := testvectors.Slack(t).Challenge
		body, err := json.Marshal(map[string]string{"token": "Jhj5dZrVaK7ZwHHjRyZWjbDl", "challenge": challenge, "type": "url_verification"})
		require.NoError(t, err)
		r := signed(t, b.events, "application/json", body)
		require.Equal(t, http.StatusOK, r.Status)
		require.Equal(t, "text/plain", r.MediaType)
		require.Equal(t, challenge, r.Body)
		require.Empty(t, b.queue.queued())
	})

	t.Run("MessageFromGuest", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		alice := b.user(t, "alice", "")
		general := b.Room(t, alice, "general", chat.Private)
		b.bridge(t, general, "C123ABC456")

		// The documented event: U123ABC456 says "Live long and prospect."
		// in C123ABC456, event Ev123ABC456. Slack delivers it twice.
		body := messageEvent(t, nil, nil)
		for range 2 {
			r := signed(t, b.events, "application/json", body)
			require.Equal(t, http.StatusOK, r.Status, r.Body)
		}
		jobs := b.queue.queued()
		require.Len(t, jobs, 2)
		require.Equal(t, "slack-event:Ev123ABC456", jobs[0].Key)
		require.Equal(t, jobs[0], jobs[1], "a retry makes the same job, which the queue keeps once")
		require.Empty(t, b.Stored(t, chat.SourceSlack), "nothing is stored before the job runs")

		// The job may also run twice: stored once.
		require.Equal(t, []error{nil, nil}, b.runJobs(t))
		require.Equal(t, []stored{
			{Room: "general", Sender: "slack-u123abc456", Body: "Live long and prospect.", Source: "slack", ExternalID: "Ev123ABC456"},
		}, b.Stored(t, chat.SourceSlack))

		// The guest was created and added to the (private) room.
		guest, err := b.Store.UserByUsername(b.Ctx, "slack-u123abc456")
		require.NoError(t, err)
		require.NoError(t, b.Store.CheckMember(b.Ctx, guest.ID, general.ID))
		_, _, err = b.Store.Credentials(b.Ctx, "slack-u123abc456")
		require.ErrorIs(t, err, chat.ErrNotFound, "a guest cannot log in")
	})

	t.Run("MessageFromLinkedUser", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		alice := b.user(t, "alice", "U123ABC456")
		bob := b.user(t, "bob", "U0BOB")
		general := b.Room(t, alice, "general", chat.Public)
		other := b.Room(t, bob, "other", chat.Public)
		b.bridge(t, general, "C123ABC456")
		b.bridge(t, other, "C0OTHER")

		// alice is a member of general: her message is hers. bob is not a
		// member of general, so his goes out under his Slack guest, and
		// his Switchboard rooms are untouched.
		signed(t, b.events, "application/json", messageEvent(t, nil, nil))
		signed(t, b.events, "application/json", messageEvent(t, map[string]any{"event_id": "Ev2"}, map[string]any{"user": "U0BOB", "text": "hi from bob"}))
		signed(t, b.events, "application/json", messageEvent(t, map[string]any{"event_id": "Ev3"}, map[string]any{"user": "U0BOB", "channel": "C0OTHER", "text": "in my room"}))
		require.Equal(t, []error{nil, nil, nil}, b.runJobs(t))
		require.Equal(t, []stored{
			{Room: "general", Sender: "alice", Body: "Live long and prospect.", Source: "slack", ExternalID: "Ev123ABC456"},
			{Room: "general", Sender: "slack-u0bob", Body: "hi from bob", Source: "slack", ExternalID: "Ev2"},
			{Room: "other", Sender: "bob", Body: "in my room", Source: "slack", ExternalID: "Ev3"},
		}, b.Stored(t, chat.SourceSlack))
		require.ErrorIs(t, b.Store.CheckMember(b.Ctx, bob.ID, general.ID), chat.ErrForbidden)
	})

	t.Run("Formatting", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		alice := b.user(t, "alice", "U0ALICE")
		general := b.Room(t, alice, "general", chat.Public)
		b.bridge(t, general, "C123ABC456")

		tests := []struct{ text, want string }{
			{"fish &amp; chips &lt;3 &gt;:) &amp;lt;", "fish & chips <3 >:) &lt;"},
			{"hi <@U0ALICE> and <@U0NOBODY>", "hi @alice and @slack-u0nobody"},
			{"cc <@U0NOBODY|carol>", "cc @carol"},
			{"see <#C123ABC456|general> and <#C0X>", "see #general and #C0X"},
			{"<!here> <!channel> <!subteam^S012|@team>", "@here @channel @team"},
			{"<https://example.com/a?b=1&amp;c=2> <https://example.com|the site> <mailto:a@example.com|a@example.com>",
				"https://example.com/a?b=1&c=2 the site (https://example.com) a@example.com"},
		}
		for i, tt := range tests {
			id := "EvF" + string(rune('a'+i))
			r := signed(t, b.events, "application/json", messageEvent(t, map[string]any{"event_id": id}, map[string]any{"user": "U0ALICE", "text": tt.text}))
			require.Equal(t, http.StatusOK, r.Status)
		}
		require.Len(t, b.runJobs(t), len(tests))
		got := b.Stored(t, chat.SourceSlack)
		require.Len(t, got, len(tests))
		for i, tt := range tests {
			require.Equal(t, tt.want, got[i].Body, "from %q", tt.text)
		}
	})

	t.Run("Ignored", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		alice := b.user(t, "alice", "U123ABC456")
		general := b.Room(t, alice, "general", chat.Public)
		b.bridge(t, general, "C123ABC456")

		tests := map[string][]byte{
			"BotMessage":         messageEvent(t, nil, map[string]any{"bot_id": "B0SWITCHBOARD", "text": "[#general] bob: hi"}),
			"BotMessageSubtype":  messageEvent(t, nil, map[string]any{"subtype": "bot_message", "user": nil, "bot_id": "B01"}),
			"Edit":               messageEvent(t, nil, map[string]any{"subtype": "message_changed", "message": map[string]any{"text": "edited", "user": "U123ABC456", "ts": "1.2"}}),
			"Delete":             messageEvent(t, nil, map[string]any{"subtype": "message_deleted", "deleted_ts": "1355517523.000005", "user": nil, "text": nil}),
			"Join":               messageEvent(t, nil, map[string]any{"subtype": "channel_join", "text": "<@U123ABC456> has joined the channel"}),
			"UnbridgedChannel":   messageEvent(t, nil, map[string]any{"channel": "C0ELSEWHERE"}),
			"BlankText":          messageEvent(t, nil, map[string]any{"text": "  "}),
			"NoUser":             messageEvent(t, nil, map[string]any{"user": nil}),
			"OtherEventType":     []byte(`{"type":"event_callback","event_id":"Ev9","event":{"type":"reaction_added","user":"U123ABC456","reaction":"thumbsup","item":{"type":"message","channel":"C123ABC456","ts":"1.2"},"event_ts":"1.3"}}`),
			"UnknownEventType":   []byte(`{"type":"event_callback","event_id":"Ev10","event":{"type":"no_such_event_yet","channel":"C123ABC456"}}`),
			"AppMention":         []byte(`{"type":"event_callback","event_id":"Ev11","event":{"type":"app_mention","user":"U123ABC456","text":"<@U0BOT> hi","channel":"C123ABC456","ts":"1.2","event_ts":"1.2"}}`),
			"AppRateLimited":     []byte(`{"token":"x","type":"app_rate_limited","team_id":"T1","minute_rate_limited":1518467820,"api_app_id":"A1"}`),
			"UnknownOuterType":   []byte(`{"type":"something_new"}`),
			"DocumentedEnvelope": []byte(`{"token":"XXYYZZ","team_id":"TXXXXXXXX","api_app_id":"AXXXXXXXXX","event":{"type":"name_of_event","event_ts":"1234567890.123456","user":"UXXXXXXX1"},"type":"event_callback","authed_users":["UXXXXXXX1","UXXXXXXX2"],"event_id":"Ev08MFMKH6","event_time":1234567890}`),
		}
		for name, body := range tests {
			r := signed(t, b.events, "application/json", body)
			require.Equal(t, http.StatusOK, r.Status, "%s: %s", name, r.Body)
		}
		require.Empty(t, b.queue.queued())

		r := signed(t, b.events, "application/json", []byte(`{"type":`))
		require.Equal(t, http.StatusBadRequest, r.Status)
		require.Equal(t, "bad_request", requireJSON(t, r)["error"].(map[string]any)["code"])
	})

	t.Run("NotUTF8", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		alice := b.user(t, "alice", "")
		general := b.Room(t, alice, "general", chat.Public)
		b.bridge(t, general, "C123ABC456")

		valid := string(messageEvent(t, nil, map[string]any{"text": "TEXT"}))
		for _, text := range []string{`\ud800`, `a\udc00`, "\xff"} {
			r := signed(t, b.events, "application/json", []byte(strings.Replace(valid, "TEXT", text, 1)))
			require.Equal(t, http.StatusBadRequest, r.Status, "%q", text)
			require.Equal(t, "bad_request", requireJSON(t, r)["error"].(map[string]any)["code"])
		}
		require.Empty(t, b.queue.queued(), "nothing queued, so nothing stored with U+FFFD")
		r := signed(t, b.events, "application/json", []byte(strings.Replace(valid, "TEXT", `\ud83d\ude00`, 1)))
		require.Equal(t, http.StatusOK, r.Status)
		require.Equal(t, []error{nil}, b.runJobs(t))
		require.Equal(t, "😀", b.Stored(t, chat.SourceSlack)[0].Body)
	})

	t.Run("EnqueueFailureAsksForRetry", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		alice := b.user(t, "alice", "")
		general := b.Room(t, alice, "general", chat.Public)
		b.bridge(t, general, "C123ABC456")

		b.queue.mu.Lock()
		b.queue.fail = errors.New("redis: connection refused")
		b.queue.mu.Unlock()
		r := signed(t, b.events, "application/json", messageEvent(t, nil, nil))
		require.Equal(t, http.StatusInternalServerError, r.Status)

		// Slack's retry, once the queue is back, is queued.
		b.queue.mu.Lock()
		b.queue.fail = nil
		b.queue.mu.Unlock()
		r = signed(t, b.events, "application/json", messageEvent(t, nil, nil))
		require.Equal(t, http.StatusOK, r.Status)
		require.Len(t, b.queue.queued(), 1)
	})

	t.Run("TaskFailures", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		alice := b.user(t, "alice", "")
		general := b.Room(t, alice, "general", chat.Public)
		b.bridge(t, general, "C123ABC456")
		handle := slack.HandleEventTask(b.Store, storagetest.NewPoster(t, b.Store))

		require.True(t, jobs.IsPermanent(handle(b.Ctx, []byte(`not json`))))

		// Slack allows longer messages than Switchboard: the job fails with
		// the reason, and retrying will not help.
		signed(t, b.events, "application/json", messageEvent(t, nil, map[string]any{"text": strings.Repeat("a", 4001)}))
		errs := b.runJobs(t)
		require.Len(t, errs, 1)
		var ce *chat.Error
		require.ErrorAs(t, errs[0], &ce)
		require.Equal(t, chat.CodeTooLarge, ce.Code)
		require.True(t, jobs.IsPermanent(errs[0]), "straight to the dead set")
		require.Contains(t, errs[0].Error(), "Ev123ABC456")
		require.Empty(t, b.Stored(t, chat.SourceSlack))
	})

	t.Run("SenderCannotBeMapped", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		alice := b.user(t, "alice", "")
		b.user(t, "slack-u0taken", "") // registered before the prefix was reserved
		general := b.Room(t, alice, "general", chat.Public)
		b.bridge(t, general, "C123ABC456")

		cases := []struct {
			user string
			code chat.Code
		}{
			{"U0TAKEN", chat.CodeConflict},
			{"U<nope>", chat.CodeBadRequest},
		}
		for i, tc := range cases {
			id := fmt.Sprintf("EvS%d", i)
			r := signed(t, b.events, "application/json", messageEvent(t, map[string]any{"event_id": id}, map[string]any{"user": tc.user}))
			require.Equal(t, http.StatusOK, r.Status, "the webhook queues it: mapping happens in the job")
		}
		errs := b.runJobs(t)
		require.Len(t, errs, len(cases))
		for i, tc := range cases {
			require.True(t, jobs.IsPermanent(errs[i]), "straight to the dead set: %v", errs[i])
			require.Equal(t, tc.code, chat.ErrorOf(errs[i]).Code, "%v", errs[i])
			require.Contains(t, errs[i].Error(), "cannot be mapped")
		}
		require.Empty(t, b.Stored(t, chat.SourceSlack))
	})
}
