package slack_test

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-chat/switchboard/chat"
)

const usageText = "Usage:\n" +
	"`/switchboard post #room text` posts text to a Switchboard room.\n" +
	"`/switchboard recent #room [n]` shows its n latest messages (default 5, at most 20)."

// command runs /switchboard with text as the Slack user, signed, and
// returns the ephemeral answer's text.
func (b *testBundle) command(t testing.TB, slackUser, text, triggerID string) string {
	t.Helper()
	form := url.Values{
		"token": {"gIkuvaNzQIHg97ATvDxqgjtO"}, "team_id": {"T0001"}, "team_domain": {"example"},
		"channel_id": {"C2147483705"}, "channel_name": {"test"}, "user_id": {slackUser}, "user_name": {"Steve"},
		"command": {"/switchboard"}, "text": {text}, "response_url": {"https://hooks.slack.com/commands/1234/5678"},
		"trigger_id": {triggerID}, "api_app_id": {"A123456"},
	}
	r := signed(t, b.commands, "application/x-www-form-urlencoded", []byte(form.Encode()))
	require.Equal(t, http.StatusOK, r.Status, r.Body)
	v := requireJSON(t, r)
	require.Equal(t, "ephemeral", v["response_type"])
	require.Len(t, v, 2, "response_type and text only: %s", r.Body)
	return v["text"].(string)
}

func TestCommands(t *testing.T) {
	t.Parallel()

	t.Run("Post", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		alice := b.user(t, "alice", "U0ALICE")
		b.user(t, "bob", "U0BOB")
		b.Room(t, alice, "General", chat.Public)

		require.Equal(t, "Posted to #General.", b.command(t, "U0ALICE", "post #general hello   world", "1.1.a"))
		// Slack escapes &, < and >, and sends mentions and channels as
		// tokens; the room may be named without '#' and in any case.
		require.Equal(t, "Posted to #General.", b.command(t, "U0ALICE", "POST GENERAL fish &amp; chips &lt;3 for <@U0BOB> in <#C1|general>", "1.1.b"))
		// Slack sends #general as a channel token when the command escapes
		// channels.
		require.Equal(t, "Posted to #General.", b.command(t, "U0ALICE", "post <#C024BE91L|general> via a token", "1.1.c"))

		require.Equal(t, []stored{
			{Room: "General", Sender: "alice", Body: "hello   world", Source: "slack", ExternalID: "1.1.a"},
			{Room: "General", Sender: "alice", Body: "fish & chips <3 for @bob in #general", Source: "slack", ExternalID: "1.1.b"},
			{Room: "General", Sender: "alice", Body: "via a token", Source: "slack", ExternalID: "1.1.c"},
		}, b.Stored(t, chat.SourceSlack))
	})

	t.Run("ReplayedCommandStoredOnce", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		alice := b.user(t, "alice", "U0ALICE")
		b.Room(t, alice, "general", chat.Public)
		for range 3 {
			require.Equal(t, "Posted to #general.", b.command(t, "U0ALICE", "post #general once", "13345224609.738474920.8088930838d88f008e0"))
		}
		require.Len(t, b.Stored(t, chat.SourceSlack), 1)
	})

	t.Run("NotAMember", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		alice := b.user(t, "alice", "U0ALICE")
		b.user(t, "bob", "U0BOB")
		b.Room(t, alice, "general", chat.Public)
		b.Room(t, alice, "secret", chat.Private)
		for _, name := range []string{"general", "secret", "nowhere"} {
			require.Equal(t, "You are not in a room named #"+name+".", b.command(t, "U0BOB", "post #"+name+" hi", "t-"+name))
			require.Equal(t, "You are not in a room named #"+name+".", b.command(t, "U0BOB", "recent #"+name, "r-"+name))
		}
		require.Empty(t, b.Stored(t, chat.SourceSlack))
	})

	t.Run("UnknownSlackUser", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		alice := b.user(t, "alice", "U0ALICE")
		b.Room(t, alice, "general", chat.Public)
		for _, text := range []string{"post #general hi", "recent #general"} {
			reply := b.command(t, "U0STRANGER", text, "t")
			require.Equal(t, "Your Slack account is not linked to a Switchboard account yet. "+
				"Set your Slack user id, U0STRANGER, as slack_user_id in your Switchboard profile, then try again.", reply)
		}
		require.Empty(t, b.Stored(t, chat.SourceSlack))
		var users int
		require.NoError(t, b.Pool.QueryRow(b.Ctx, `SELECT count(*) FROM users`).Scan(&users))
		require.Equal(t, 1, users, "commands create no guests")
	})

	t.Run("Recent", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		alice := b.user(t, "alice", "U0ALICE")
		general := b.Room(t, alice, "general", chat.Public)

		require.Equal(t, "#general has no messages yet.", b.command(t, "U0ALICE", "recent #general", "t"))
		for i := 1; i <= 25; i++ {
			b.Say(t, general, alice, fmt.Sprintf("m%d", i))
		}
		b.Say(t, general, alice, "<b>bold</b> & co")

		lines := func(from, to int) string {
			var l []string
			for i := from; i <= to; i++ {
				l = append(l, fmt.Sprintf("*alice*: m%d", i))
			}
			return strings.Join(l, "\n")
		}
		escaped := "*alice*: &lt;b&gt;bold&lt;/b&gt; &amp; co"
		require.Equal(t, "Latest in #general:\n"+lines(22, 25)+"\n"+escaped, b.command(t, "U0ALICE", "recent #general", "t"))
		require.Equal(t, "Latest in #general:\n"+lines(25, 25)+"\n"+escaped, b.command(t, "U0ALICE", "recent general 2", "t"))
		require.Equal(t, "Latest in #general:\n"+escaped, b.command(t, "U0ALICE", "recent #general 1", "t"))
		require.Equal(t, "Latest in #general:\n"+lines(7, 25)+"\n"+escaped, b.command(t, "U0ALICE", "recent #general 20", "t"))
		for _, n := range []string{"0", "21", "-1", "five", "5 6"} {
			require.Equal(t, usageText, b.command(t, "U0ALICE", "recent #general "+n, "t"), "n=%s", n)
		}
	})

	t.Run("Usage", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		alice := b.user(t, "alice", "U0ALICE")
		b.Room(t, alice, "general", chat.Public)
		for _, text := range []string{"", "help", "  ", "delete #general", "post", "post #general", "post #general   ", "post # hi", "recent", "recent #"} {
			require.Equal(t, usageText, b.command(t, "U0ALICE", text, "t"), "text %q", text)
		}
		require.Empty(t, b.Stored(t, chat.SourceSlack))
	})

	t.Run("RefusedBody", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		alice := b.user(t, "alice", "U0ALICE")
		b.Room(t, alice, "general", chat.Public)
		require.Equal(t, "Not posted: body has 4001 characters; the limit is 4000.",
			b.command(t, "U0ALICE", "post #general "+strings.Repeat("a", 4001), "t"))
		require.Empty(t, b.Stored(t, chat.SourceSlack))
	})
}
