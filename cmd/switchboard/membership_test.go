package main

import (
	"fmt"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"

	"github.com/switchboard-chat/switchboard/broker/brokertest"
	"github.com/switchboard-chat/switchboard/chat"
	"github.com/switchboard-chat/switchboard/storage/storagetest"
)

// This file tests the rules that hold on live connections of every node
// (SPEC §2, §4): exact ids, and membership changes that reach open
// sockets wherever they are.

// requireQuiet checks that nothing of room reaches the clients: it sends a
// message into barrier through sender (published after whatever was sent
// to room before, from the same node, so it arrives after it) and reads
// each client up to it.
func requireQuiet(t *testing.T, room string, sender *wsClient, barrier string, clients ...*wsClient) {
	t.Helper()
	id := sendWS(t, sender, barrier, "barrier")["id"]
	for _, c := range clients {
		for {
			obj := c.next()
			require.NotEqual(t, room, obj["room"], "room %s reached the connection: %v", room, obj)
			if obj["type"] == "message" {
				m := obj["message"].(map[string]any)
				require.NotEqual(t, room, m["room_id"], "a message of room %s reached the connection: %v", room, obj)
				if m["id"] == id {
					break
				}
			}
		}
	}
}

// TestExactIDs: another spelling of an id ("0"+id, "+"+id, " "+id, ...)
// names nothing on any path (SPEC §2): HTTP answers 404, WebSocket frames
// not_found, and nothing is stored, joined, left or subscribed.
func TestExactIDs(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, nil)
	alice, bob := s.register(t, "alice"), s.register(t, "bob")
	room := s.createRoom(t, alice, chat.Public)
	other := s.createRoom(t, alice, chat.Public)
	s.addMember(t, alice, room, bob)
	s.addMember(t, alice, other, bob)
	wa := s.subscribedClient(t, alice, 2)
	wb := s.subscribedClient(t, bob, 2)
	parent := sendWS(t, wa, room, "parent")["id"].(string)
	expectMessages(t, wb, room, 1, 1)

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
			r := s.do(t, req.method, req.path, bob.Token, map[string]any{"body": "via alias", "username": "alice"})
			requireAPIError(t, r, http.StatusNotFound, "not_found")
		}
		// A connection of its own for each alias: the typing budget is 3.
		c := s.subscribedClient(t, bob, 2)
		for _, typ := range []string{"subscribe", "unsubscribe", "history", "typing", "send", "read"} {
			id := fmt.Sprintf("%s-%q", typ, alias)
			c.send(map[string]any{"type": typ, "id": id, "room": alias, "body": "via alias", "seq": 1})
			e := c.nextOf("error", "message")
			require.Equal(t, id, e["id"])
			require.Equal(t, "not_found", e["code"], "%s %q: %v", typ, alias, e)
		}
	}
	for _, alias := range aliases(parent) {
		for _, path := range []string{"/api/v1/messages/" + url.PathEscape(alias), "/api/v1/messages/" + url.PathEscape(alias) + "/replies"} {
			requireAPIError(t, s.do(t, "GET", path, bob.Token, nil), http.StatusNotFound, "not_found")
		}
		wb.send(map[string]any{"type": "send", "id": "reply", "room": room, "body": "reply", "parent_id": alias})
		require.Equal(t, "bad_request", wb.nextOf("error")["code"], "parent_id %q", alias)
	}

	// Nothing changed: bob is still a member, still subscribed once, and
	// the history holds the one message.
	require.Len(t, s.history(t, bob, room), 1)
	sendWS(t, wa, room, "after the aliases")
	got := expectMessages(t, wb, room, 2, 2)
	require.Equal(t, "after the aliases", got[0]["body"])
	requireQuiet(t, room, wa, other, wb)

	// A resume map keyed by an alias resumes nothing: the stored cursor
	// applies, so nothing is delivered twice.
	require.NoError(t, wb.ws.Close(websocket.StatusNormalClosure, ""))
	c := s.dialWS(t, "")
	c.send(map[string]any{"type": "auth", "token": bob.Token, "resume": map[string]any{"0" + room: 0}})
	c.ready()
	c.send(map[string]any{"type": "ping", "id": "p"})
	for {
		obj := c.next()
		require.NotEqual(t, "message", obj["type"], "%v", obj)
		if obj["type"] == "pong" {
			break
		}
	}
}

// TestMembershipReachesEveryNode: leaving, being added and joining on node
// a reach bob's socket on node b within a second (SPEC §4), and after the
// unsubscribed frame nothing of the room reaches it: messages, typing,
// presence.
func TestMembershipReachesEveryNode(t *testing.T) {
	t.Parallel()
	nodes := newTestCluster(t, 2, nil)
	a, b := nodes[0], nodes[1]
	alice, bob := a.register(t, "alice"), a.register(t, "bob")
	room := a.createRoom(t, alice, chat.Private)
	barrier := a.createRoom(t, alice, chat.Private)
	a.addMember(t, alice, room, bob)
	a.addMember(t, alice, barrier, bob)
	wa := a.subscribedClient(t, alice, 2)
	wb := b.subscribedClient(t, bob, 2)
	wbLocal := a.subscribedClient(t, bob, 2) // bob on a as well
	wb.withPresence = true

	t.Run("Leave", func(t *testing.T) {
		start := time.Now()
		r := a.do(t, "DELETE", "/api/v1/rooms/"+room+"/members/me", bob.Token, nil)
		require.Equal(t, http.StatusNoContent, r.Status, "%s", r.Raw)
		for _, c := range []*wsClient{wb, wbLocal} {
			u := c.nextOf("unsubscribed", "presence")
			require.Equal(t, room, u["room"])
			require.Equal(t, "left", u["reason"])
		}
		require.Less(t, time.Since(start), time.Second)

		sendWS(t, wa, room, "after bob left")
		wa.send(map[string]any{"type": "typing", "room": room})
		requireQuiet(t, room, wa, barrier, wb, wbLocal)
	})

	t.Run("Added", func(t *testing.T) {
		start := time.Now()
		a.addMember(t, alice, room, bob)
		for _, c := range []*wsClient{wb, wbLocal} {
			sub := c.nextOf("subscribed", "presence")
			require.Equal(t, room, sub["room"])
		}
		require.Less(t, time.Since(start), time.Second)
		// What came while bob was out is history, not delivery.
		m := sendWS(t, wa, room, "welcome back")
		seq := int64(m["seq"].(float64))
		require.Equal(t, "welcome back", expectMessages(t, wb, room, seq, seq)[0]["body"])
		require.Equal(t, "welcome back", expectMessages(t, wbLocal, room, seq, seq)[0]["body"])
	})

	t.Run("Joined", func(t *testing.T) {
		public := a.createRoom(t, alice, chat.Public)
		wa.nextOf("subscribed")
		sendWS(t, wa, public, "before bob")
		start := time.Now()
		r := a.do(t, "POST", "/api/v1/rooms/"+public+"/join", bob.Token, nil)
		require.Equal(t, http.StatusOK, r.Status, "%s", r.Raw)
		require.Equal(t, public, wb.nextOf("subscribed", "presence")["room"])
		require.Less(t, time.Since(start), time.Second)
		sendWS(t, wa, public, "after bob")
		require.Equal(t, "after bob", expectMessages(t, wb, public, 2, 2)[0]["body"])
		// Joining again changes nothing and sends nothing.
		r = a.do(t, "POST", "/api/v1/rooms/"+public+"/join", bob.Token, nil)
		require.Equal(t, http.StatusOK, r.Status, "%s", r.Raw)
		sendWS(t, wa, public, "once more")
		require.Equal(t, "once more", expectMessages(t, wb, public, 3, 3)[0]["body"])
	})

	t.Run("LeaveByAliasIsNotFound", func(t *testing.T) {
		r := a.do(t, "DELETE", "/api/v1/rooms/0"+room+"/members/me", bob.Token, nil)
		requireAPIError(t, r, http.StatusNotFound, "not_found")
		m := sendWS(t, wa, room, "still in")
		seq := int64(m["seq"].(float64))
		require.Equal(t, "still in", expectMessages(t, wb, room, seq, seq)[0]["body"])
	})
}

// TestMembershipAfterBrokerOutage: controls published while node b could
// not hear Redis are not lost for b's sockets: once b resubscribes it
// re-checks them against Postgres.
func TestMembershipAfterBrokerOutage(t *testing.T) {
	t.Parallel()
	db, prefix := storagetest.NewDatabase(t), brokertest.Prefix()
	proxy := brokertest.NewProxy(t)
	a := newTestServerWith(t, nodeOptions{databaseURL: db, redisPrefix: prefix})
	b := newTestServerWith(t, nodeOptions{databaseURL: db, redisPrefix: prefix, redisURL: proxy.URL()})
	alice, bob := a.register(t, "alice"), a.register(t, "bob")
	room := a.createRoom(t, alice, chat.Private)
	later := a.createRoom(t, alice, chat.Private)
	a.addMember(t, alice, room, bob)
	wb := b.subscribedClient(t, bob, 1)

	proxy.Cut()
	r := a.do(t, "DELETE", "/api/v1/rooms/"+room+"/members/me", bob.Token, nil)
	require.Equal(t, http.StatusNoContent, r.Status, "%s", r.Raw)
	a.addMember(t, alice, later, bob)
	time.Sleep(300 * time.Millisecond)
	proxy.Restore()

	got := map[string]map[string]any{}
	for len(got) < 2 {
		obj := wb.next()
		require.Contains(t, []any{"unsubscribed", "subscribed", "message"}, obj["type"], "%v", obj)
		if obj["type"] != "message" {
			got[obj["type"].(string)] = obj
		}
	}
	require.Equal(t, room, got["unsubscribed"]["room"])
	require.Equal(t, "removed", got["unsubscribed"]["reason"])
	require.Equal(t, later, got["subscribed"]["room"])
}
