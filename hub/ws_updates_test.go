package hub_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-chat/switchboard/hub"
)

// TestWSUpdates covers the edit, delete and react frames of SPEC §13: acks
// with the new state, the error each refusal gets, and the send budget
// they share with send.
func TestWSUpdates(t *testing.T) {
	t.Parallel()

	t.Run("AcksAndRefusals", func(t *testing.T) {
		t.Parallel()
		b := setupInput(t, nil)
		a := b.s.DialWS(t, b.alice.Token)
		a.Ready()
		bob := b.s.DialWS(t, b.bob.Token)
		bob.Ready()
		m := b.s.Say(t, b.alice, b.room, "hello")
		asked := 0
		ask := func(u string, frame map[string]any) map[string]any {
			t.Helper()
			c := a
			if u == "bob" {
				c = bob
			}
			asked++
			id := fmt.Sprint("req-", asked)
			frame["id"] = id
			c.Send(frame)
			obj := nextExcept(t, c, "subscribed", "message", "update")
			require.Equal(t, id, obj["id"], "%v", obj)
			return obj
		}
		ack := ask("alice", map[string]any{"type": "edit", "message_id": m.ID, "body": " hello, world "})
		require.Equal(t, "ack", ack["type"], "%v", ack)
		require.Equal(t, "hello, world", ack["message"].(map[string]any)["body"])
		require.NotNil(t, ack["message"].(map[string]any)["edited_at"])

		ack = ask("bob", map[string]any{"type": "react", "message_id": m.ID, "emoji": "👍", "op": "add"})
		require.Equal(t, "ack", ack["type"], "%v", ack)
		require.Len(t, ack["message"].(map[string]any)["reactions"], 1)
		ack = ask("bob", map[string]any{"type": "react", "message_id": m.ID, "emoji": "👍", "op": "remove"})
		require.Empty(t, ack["message"].(map[string]any)["reactions"])

		for _, tt := range []struct {
			who   string
			frame map[string]any
			code  string
		}{
			{"bob", map[string]any{"type": "edit", "message_id": m.ID, "body": "mine now"}, "forbidden"},
			{"bob", map[string]any{"type": "delete", "message_id": m.ID}, "forbidden"},
			{"bob", map[string]any{"type": "edit", "message_id": "999999", "body": "x"}, "not_found"},
			{"alice", map[string]any{"type": "edit", "message_id": m.ID, "body": strings.Repeat("x", 4001)}, "too_large"},
			{"alice", map[string]any{"type": "edit", "message_id": m.ID, "body": " "}, "bad_request"},
			{"bob", map[string]any{"type": "react", "message_id": m.ID, "emoji": "two words", "op": "add"}, "bad_request"},
			{"bob", map[string]any{"type": "react", "message_id": m.ID, "emoji": "👍", "op": "toggle"}, "bad_request"},
			{"bob", map[string]any{"type": "react", "message_id": m.ID, "op": "add"}, "bad_request"},
			{"bob", map[string]any{"type": "delete"}, "bad_request"},
		} {
			obj := ask(tt.who, tt.frame)
			require.Equal(t, "error", obj["type"], "%v", obj)
			require.Equal(t, tt.code, obj["code"], "%v: %v", tt.frame, obj)
		}

		ack = ask("alice", map[string]any{"type": "delete", "message_id": m.ID})
		require.Equal(t, true, ack["message"].(map[string]any)["deleted"])
		for _, frame := range []map[string]any{
			{"type": "edit", "message_id": m.ID, "body": "back"},
			{"type": "react", "message_id": m.ID, "emoji": "👍", "op": "add"},
		} {
			obj := ask("alice", frame)
			require.Equal(t, "conflict", obj["code"], "%v", obj)
		}
		// Deleting twice is a repeat: the tombstone, no new event.
		ack = ask("alice", map[string]any{"type": "delete", "message_id": m.ID})
		require.Equal(t, "ack", ack["type"])
		require.EqualValues(t, 6, b.s.Say(t, b.alice, b.room, "next").Seq, "the edit, two reactions and the delete took seqs 2-5; refusals and repeats none")
		b.requireNodeWorks(t)
	})

	t.Run("SendBudget", func(t *testing.T) {
		t.Parallel()
		b := setupInput(t, func(c *hub.Config) { c.RateLimit, c.RateBurst = 0.05, 20 })
		m := b.s.Say(t, b.alice, b.room, "react to me")
		c := b.s.DialWS(t, b.alice.Token)
		c.Ready()
		for i := range 10 {
			c.Send(map[string]any{"type": "send", "id": fmt.Sprint("s", i), "room": b.room, "body": "budget"})
		}
		for i := range 15 {
			c.Send(map[string]any{"type": "react", "id": fmt.Sprint("r", i), "message_id": m.ID, "emoji": fmt.Sprintf(":e%d:", i), "op": "add"})
		}
		acks, limited := 0, 0
		for acks+limited < 25 {
			obj := nextExcept(t, c, "subscribed", "message", "update")
			if obj["type"] == "ack" {
				acks++
				continue
			}
			require.Equal(t, "rate_limited", obj["code"], "%v", obj)
			require.True(t, strings.HasPrefix(obj["id"].(string), "r"), "sends come first: %v", obj)
			limited++
		}
		require.Equal(t, 20, acks, "reactions share the send budget")
		require.Equal(t, 5, limited)
	})
}
