package web_test

import (
	"fmt"
	"net/http"
	"net/url"
	"testing"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"

	"github.com/switchboard-chat/switchboard/chat"
	"github.com/switchboard-chat/switchboard/internal/apitest"
)

// TestExactIDs: another spelling of an id ("0"+id, "+"+id, " "+id, ...)
// names nothing on any path (SPEC §2): HTTP answers 404, WebSocket frames
// not_found, and nothing is stored, joined, left or subscribed.
func TestExactIDs(t *testing.T) {
	t.Parallel()
	s := newAPIServer(t)
	alice, bob := s.Register(t, "alice"), s.Register(t, "bob")
	room := s.CreateRoom(t, alice, chat.Public)
	other := s.CreateRoom(t, alice, chat.Public)
	s.AddMember(t, alice, room, bob)
	s.AddMember(t, alice, other, bob)
	wa := s.SubscribedClient(t, alice, 2)
	wb := s.SubscribedClient(t, bob, 2)
	parent := apitest.SendWS(t, wa, room, "parent")["id"].(string)
	apitest.ExpectMessages(t, wb, room, 1, 1)

	aliases := func(id string) []string {
		return []string{"0" + id, "00" + id, "+" + id, "-" + id, " " + id, id + " ", id + ".0", id + "\x00", "0x" + id}
	}
	for _, alias := range aliases(room) {
		path := "/api/v1/rooms/" + url.PathEscape(alias)
		for _, req := range []struct{ method, path string }{
			{"GET", path + "/messages"},
			{"POST", path + "/messages"},
			{"POST", path + "/join"},
			{"POST", path + "/members"},
			{"DELETE", path + "/members/me"},
			{"GET", path + "/presence"},
		} {
			r := s.Do(t, req.method, req.path, bob.Token, map[string]any{"body": "via alias", "username": "alice"})
			apitest.RequireError(t, r, http.StatusNotFound, "not_found")
		}
		// A connection of its own for each alias: the typing budget is 3.
		c := s.SubscribedClient(t, bob, 2)
		for _, typ := range []string{"subscribe", "unsubscribe", "history", "typing", "send", "read"} {
			id := fmt.Sprintf("%s-%q", typ, alias)
			c.Send(map[string]any{"type": typ, "id": id, "room": alias, "body": "via alias", "seq": 1})
			e := c.NextOf("error", "message")
			require.Equal(t, id, e["id"])
			require.Equal(t, "not_found", e["code"], "%s %q: %v", typ, alias, e)
		}
	}
	for _, alias := range aliases(parent) {
		for _, path := range []string{"/api/v1/messages/" + url.PathEscape(alias), "/api/v1/messages/" + url.PathEscape(alias) + "/replies"} {
			apitest.RequireError(t, s.Do(t, "GET", path, bob.Token, nil), http.StatusNotFound, "not_found")
		}
		wb.Send(map[string]any{"type": "send", "id": "reply", "room": room, "body": "reply", "parent_id": alias})
		require.Equal(t, "bad_request", wb.NextOf("error")["code"], "parent_id %q", alias)
	}

	// Nothing changed: bob is still a member, still subscribed once, and
	// the history holds the one message.
	require.Len(t, s.History(t, bob, room, "limit=100").Messages, 1)
	apitest.SendWS(t, wa, room, "after the aliases")
	got := apitest.ExpectMessages(t, wb, room, 2, 2)
	require.Equal(t, "after the aliases", got[0]["body"])
	apitest.RequireQuiet(t, room, wa, other, wb)

	// A resume map keyed by an alias resumes nothing: the stored cursor
	// applies, so nothing is delivered twice.
	require.NoError(t, wb.Conn.Close(websocket.StatusNormalClosure, ""))
	c := s.DialWS(t, "")
	c.Send(map[string]any{"type": "auth", "token": bob.Token, "resume": map[string]any{"0" + room: 0}})
	c.Ready()
	c.Send(map[string]any{"type": "ping", "id": "p"})
	for {
		obj := c.Next()
		require.NotEqual(t, "message", obj["type"], "%v", obj)
		if obj["type"] == "pong" {
			break
		}
	}
}
