package slack_test

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-chat/switchboard/chat"
	"github.com/switchboard-chat/switchboard/integrations"
	"github.com/switchboard-chat/switchboard/integrations/jobs"
	"github.com/switchboard-chat/switchboard/integrations/jobs/jobstest"
	"github.com/switchboard-chat/switchboard/integrations/slack"
	"github.com/switchboard-chat/switchboard/integrations/slack/slacktest"
	"github.com/switchboard-chat/switchboard/storage/storagetest"
)

func TestHandlePost(t *testing.T) {
	t.Parallel()
	f := storagetest.NewFixture(t)
	ctx, store := f.Ctx, f.Store
	alice, err := store.CreateUser(ctx, "alice", "x", "Alice Liddell")
	require.NoError(t, err)
	room := f.Room(t, alice.User, "general", chat.Public)
	_, err = store.BridgeSlack(ctx, room.ID, "C0123")
	require.NoError(t, err)
	post := func(body string) []byte {
		p, _ := json.Marshal(integrations.MessagePayload{MessageID: f.Say(t, room, alice.User, body).ID})
		return p
	}

	fake := slacktest.New(t, "xoxb-test")
	handle := slack.HandlePost(store, slack.NewAPI(slack.APIConfig{BotToken: "xoxb-test", APIURL: fake.URL()}), jobstest.Breaker(t, "slack"))

	hello := post("hello <b>&")
	require.NoError(t, handle(ctx, hello))
	require.NoError(t, handle(ctx, hello), "a second run of the same job")
	require.Equal(t, []slacktest.Post{{Channel: "C0123", Text: "hello &lt;b&gt;&amp;", Username: "Alice Liddell"}}, fake.Accepted(),
		"posted once, under the sender's name, with Slack's escaping")

	retried := post("after a 500")
	fake.Fail(slacktest.Failure{Status: http.StatusInternalServerError})
	err = handle(ctx, retried)
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
