package slack_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sync"
	"testing"
	"time"

	slackgo "github.com/slack-go/slack"
	"github.com/stretchr/testify/require"

	"github.com/switchboard-chat/switchboard/chat"
	"github.com/switchboard-chat/switchboard/integrations"
	"github.com/switchboard-chat/switchboard/integrations/jobs"
	"github.com/switchboard-chat/switchboard/integrations/jobs/jobstest"
	"github.com/switchboard-chat/switchboard/integrations/slack"
	"github.com/switchboard-chat/switchboard/integrations/slack/slacktest"
	"github.com/switchboard-chat/switchboard/storage"
	"github.com/switchboard-chat/switchboard/storage/storagetest"
)

// postBundle is alice in a room bridged to C0123, a fake Slack API and the
// post job on both.
type postBundle struct {
	*storagetest.Fixture
	alice chat.User
	room  chat.Room
	fake  *slacktest.API
	api   *slackgo.Client
	brk   *jobs.Breaker
}

func setupPost(t *testing.T) *postBundle {
	t.Helper()
	b := &postBundle{Fixture: storagetest.NewFixture(t), fake: slacktest.New(t, "xoxb-test"), brk: jobstest.Breaker(t, "slack")}
	p, err := b.Store.CreateUser(b.Ctx, "alice", "x", "Alice Liddell")
	require.NoError(t, err)
	b.alice = p.User
	b.room = b.Room(t, b.alice, "general", chat.Public)
	_, err = b.Store.BridgeSlack(b.Ctx, b.room.ID, "C0123")
	require.NoError(t, err)
	b.api = slack.NewAPI(slack.APIConfig{BotToken: "xoxb-test", APIURL: b.fake.URL()})
	return b
}

// post stores a message of alice's and returns the payload of its job.
func (b *postBundle) post(t *testing.T, body string) []byte {
	t.Helper()
	p, _ := json.Marshal(integrations.MessagePayload{MessageID: b.Say(t, b.room, b.alice, body).ID})
	return p
}

func (b *postBundle) handler(store slack.PostStore) jobs.Handler {
	return slack.HandlePost(store, b.api, b.brk)
}

func TestHandlePost(t *testing.T) {
	t.Parallel()
	b := setupPost(t)
	ctx, fake, handle := b.Ctx, b.fake, b.handler(b.Store)
	post := func(body string) []byte { return b.post(t, body) }

	hello := post("hello <b>&")
	require.NoError(t, handle(ctx, hello))
	require.NoError(t, handle(ctx, hello), "a second run of the same job")
	require.Equal(t, []slacktest.Post{{Channel: "C0123", Text: "hello &lt;b&gt;&amp;", Username: "Alice Liddell"}}, fake.Accepted(),
		"posted once, under the sender's name, with Slack's escaping")

	retried := post("after a 500")
	fake.Fail(slacktest.Failure{Status: http.StatusInternalServerError})
	err := handle(ctx, retried)
	require.Error(t, err)
	require.False(t, jobs.IsPermanent(err))
	require.NoError(t, handle(ctx, retried), "a failed run does not mark the post done")
	require.Len(t, fake.Accepted(), 2)

	fake.Fail(slacktest.Failure{Error: "channel_not_found"})
	err = handle(ctx, post("to a deleted channel"))
	require.True(t, jobs.IsPermanent(err), "%v", err)

	fake.Fail(slacktest.Failure{Error: "ratelimited"})
	err = handle(ctx, post("slow down"))
	require.Error(t, err)
	require.False(t, jobs.IsPermanent(err))
}

// postStore lets a test break the storage the post job sees.
type postStore struct {
	*storage.Store
	finishErr error // FinishRun fails with it, writing nothing
}

func (s postStore) FinishRun(ctx context.Context, c chat.RunClaim) error {
	if s.finishErr != nil {
		return s.finishErr
	}
	return s.Store.FinishRun(ctx, c)
}

// TestHandlePostClaims: the post is claimed, Slack is called with nothing
// locked, and what a run that stops between its steps leaves to the next
// (README, "Exactly once, honestly").
func TestHandlePostClaims(t *testing.T) {
	t.Parallel()

	t.Run("ConcurrentRunsPostOnce", func(t *testing.T) {
		t.Parallel()
		b := setupPost(t)
		payload, handle := b.post(t, "once"), b.handler(b.Store)
		errs := make([]error, 5)
		var wg sync.WaitGroup
		for i := range errs {
			wg.Go(func() { errs[i] = handle(b.Ctx, payload) })
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				jobstest.RequireHeld(t, err)
			}
		}
		require.Equal(t, 1, b.fake.Requests())
		require.Len(t, b.fake.Accepted(), 1)
	})

	t.Run("NothingLockedDuringTheCall", func(t *testing.T) {
		t.Parallel()
		b := setupPost(t)
		payload, handle := b.post(t, "slow"), b.handler(b.Store)
		release := b.fake.Hold()
		defer release()
		first := make(chan error, 1)
		go func() { first <- handle(b.Ctx, payload) }()
		b.fake.WaitRequests(t, 1)

		quick, cancel := context.WithTimeout(b.Ctx, 2*time.Second)
		defer cancel()
		jobstest.RequireHeld(t, handle(quick, payload))
		require.Equal(t, 1, b.fake.Requests())

		release() // Slack answers 503: nothing was posted
		require.Error(t, <-first)
		require.NoError(t, handle(b.Ctx, payload), "the retry")
		require.Len(t, b.fake.Accepted(), 1)
	})

	t.Run("DiedAfterClaim", func(t *testing.T) {
		t.Parallel()
		b := setupPost(t)
		payload, handle := b.post(t, "after a crash"), b.handler(b.Store)
		var p integrations.MessagePayload
		require.NoError(t, json.Unmarshal(payload, &p))
		_, err := b.Store.ClaimRun(b.Ctx, "slack-post:"+p.MessageID, time.Minute) // and died
		require.NoError(t, err)
		jobstest.RequireHeld(t, handle(b.Ctx, payload))
		require.Zero(t, b.fake.Requests())
		b.LapseClaims(t)
		require.NoError(t, handle(b.Ctx, payload))
		require.NoError(t, handle(b.Ctx, payload))
		require.Len(t, b.fake.Accepted(), 1, "posted once, by the run after the lease")
	})

	t.Run("DiedAfterSlackAccepted", func(t *testing.T) {
		t.Parallel()
		b := setupPost(t)
		payload := b.post(t, "twice")
		died := errors.New("the process died before FinishRun")
		require.ErrorIs(t, b.handler(postStore{Store: b.Store, finishErr: died})(b.Ctx, payload), died)
		handle := b.handler(b.Store)
		jobstest.RequireHeld(t, handle(b.Ctx, payload))
		b.LapseClaims(t)
		require.NoError(t, handle(b.Ctx, payload))
		require.Len(t, b.fake.Accepted(), 2, "at least once: the run after the lease posts again")
		require.NoError(t, handle(b.Ctx, payload))
		require.Len(t, b.fake.Accepted(), 2)
	})
}

// TestHandleMirror: edits and deletes of a message posted to Slack follow
// it there with chat.update and chat.delete of the post's ts, through
// slack-go against the fake; a message not yet posted is retried, and a
// deleted one that never was is neither posted nor mirrored.
func TestHandleMirror(t *testing.T) {
	t.Parallel()
	b := setupPost(t)
	ctx, fake, post := b.Ctx, b.fake, b.handler(b.Store)
	mirror := slack.HandleMirror(b.Store, b.api, b.brk)
	change := func(u chat.Update) []byte {
		t.Helper()
		u.UserID = b.alice.ID
		require.NoError(t, u.Validate())
		ev, changed, err := b.Store.UpdateMessage(ctx, u)
		require.NoError(t, err)
		require.True(t, changed)
		p, _ := json.Marshal(integrations.MessagePayload{MessageID: u.MessageID, Seq: ev.Seq})
		return p
	}
	msgOf := func(payload []byte) string {
		var p integrations.MessagePayload
		require.NoError(t, json.Unmarshal(payload, &p))
		return p.MessageID
	}

	typo := b.post(t, "tpyo")
	edit := change(chat.Update{Action: chat.ActionEdit, MessageID: msgOf(typo), Body: "typo"})
	err := mirror(ctx, edit)
	require.ErrorContains(t, err, "not posted yet", "retried")
	require.False(t, jobs.IsPermanent(err))
	require.Empty(t, fake.Accepted())

	require.NoError(t, post(ctx, typo))
	require.NoError(t, mirror(ctx, edit))
	require.NoError(t, mirror(ctx, edit), "a repeat sets the same text again")
	again := change(chat.Update{Action: chat.ActionEdit, MessageID: msgOf(typo), Body: "typo, fixed"})
	require.NoError(t, mirror(ctx, again))
	gone := change(chat.Update{Action: chat.ActionDelete, MessageID: msgOf(typo)})
	require.NoError(t, mirror(ctx, gone))
	ts := slacktest.TS(1)
	require.Equal(t, []slacktest.Post{
		{Channel: "C0123", Text: "typo", Username: "Alice Liddell"},
		{Method: "chat.update", Channel: "C0123", Text: "typo", TS: ts},
		{Method: "chat.update", Channel: "C0123", Text: "typo", TS: ts},
		{Method: "chat.update", Channel: "C0123", Text: "typo, fixed", TS: ts},
		{Method: "chat.delete", Channel: "C0123", TS: ts},
	}, fake.Accepted(), "the post was made after the first edit, so it carried it")

	// Deleted before its post ran: nothing goes to Slack at all.
	never := b.post(t, "oops")
	gone = change(chat.Update{Action: chat.ActionDelete, MessageID: msgOf(never)})
	require.NoError(t, post(ctx, never))
	require.NoError(t, mirror(ctx, gone))
	require.Len(t, fake.Accepted(), 5)
}
