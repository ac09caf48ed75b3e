package slack_test

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/switchboard-chat/switchboard/broker/brokertest"
	"github.com/switchboard-chat/switchboard/chat"
	"github.com/switchboard-chat/switchboard/integrations"
	"github.com/switchboard-chat/switchboard/integrations/jobs"
	"github.com/switchboard-chat/switchboard/integrations/slack"
	"github.com/switchboard-chat/switchboard/integrations/slack/slacktest"
	"github.com/switchboard-chat/switchboard/storage"
	"github.com/switchboard-chat/switchboard/storage/storagetest"
)

func TestHandlePost(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	store := storage.New(storagetest.NewPool(t))
	alice, err := store.CreateUser(ctx, "alice", "x", "Alice Liddell")
	require.NoError(t, err)
	room, err := store.CreateRoom(ctx, alice.ID, "general", chat.Public)
	require.NoError(t, err)
	_, err = store.BridgeSlack(ctx, room.ID, "C0123")
	require.NoError(t, err)
	post := func(body string) []byte {
		m, _, err := store.SaveMessage(ctx, chat.NewMessage{RoomID: room.ID, SenderID: alice.ID, Body: body, Source: chat.SourceWeb})
		require.NoError(t, err)
		p, _ := json.Marshal(integrations.MessagePayload{MessageID: m.ID})
		return p
	}

	opts, err := redis.ParseURL(brokertest.RedisURL())
	require.NoError(t, err)
	rdb := redis.NewClient(opts)
	prefix := brokertest.Prefix()
	t.Cleanup(func() {
		rdb.Del(context.Background(), prefix+"breakers")
		rdb.Close()
	})
	q, err := jobs.New(jobs.Config{Redis: rdb, Prefix: prefix})
	require.NoError(t, err)
	fake := slacktest.New(t, "xoxb-test")
	handle := slack.HandlePost(store, slack.NewAPI(slack.APIConfig{BotToken: "xoxb-test", APIURL: fake.URL()}), q.NewBreaker("slack"))

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
