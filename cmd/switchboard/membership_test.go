package main

import (
	"net/http"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"

	"github.com/switchboard-chat/switchboard/broker/brokertest"
	"github.com/switchboard-chat/switchboard/chat"
	"github.com/switchboard-chat/switchboard/internal/apitest"
	"github.com/switchboard-chat/switchboard/storage/storagetest"
)

// This file tests the rules that hold on live connections of every node
// (SPEC §2, §4): exact ids, and membership changes that reach open
// sockets wherever they are.

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
	wb.WithPresence = true

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
		apitest.RequireQuiet(t, room, wa.WS, barrier, wb.WS, wbLocal.WS)
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

// TestModerationReachesEveryNode: removing and banning on node a reach
// bob's socket on node b within a second with their reasons (SPEC §4,
// §14), and nothing of the room reaches it afterwards; a rename reaches
// the members on b as a room_update frame.
func TestModerationReachesEveryNode(t *testing.T) {
	t.Parallel()
	nodes := newTestCluster(t, 2, nil)
	a, b := nodes[0], nodes[1]
	alice, bob, carol := a.register(t, "alice"), a.register(t, "bob"), a.register(t, "carol")
	dave := a.register(t, "dave") // connects and leaves, for presence events
	room := a.createRoom(t, alice, chat.Public)
	barrier := a.createRoom(t, alice, chat.Private)
	for _, u := range []testUser{bob, carol} {
		a.addMember(t, alice, room, u)
		a.addMember(t, alice, barrier, u)
	}
	a.addMember(t, alice, room, dave)
	wa := a.subscribedClient(t, alice, 2)
	wb := b.subscribedClient(t, bob, 2)
	wc := b.subscribedClient(t, carol, 2)
	wb.WithPresence = true

	t.Run("Rename", func(t *testing.T) {
		name := apitest.Unique("renamed-")
		start := time.Now()
		r := a.do(t, "PATCH", "/api/v1/rooms/"+room, alice.Token, map[string]any{"name": name, "topic": "launch"})
		require.Equal(t, http.StatusOK, r.Status, "%s", r.Raw)
		for _, c := range []*wsClient{wa, wb, wc} {
			u := c.nextOf("room_update", "presence")["room"].(map[string]any)
			require.Equal(t, name, u["name"])
			require.Equal(t, "launch", u["topic"])
		}
		require.Less(t, time.Since(start), time.Second)
	})

	for _, tc := range []struct {
		name, reason string
		act          func(t *testing.T) apiResponse
	}{
		{"Remove", "removed", func(t *testing.T) apiResponse {
			return a.do(t, "DELETE", "/api/v1/rooms/"+room+"/members/"+bob.ID, alice.Token, nil)
		}},
		{"Ban", "banned", func(t *testing.T) apiResponse {
			return a.do(t, "POST", "/api/v1/rooms/"+room+"/bans", alice.Token, map[string]any{"user_id": bob.ID})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a.addMember(t, alice, room, bob) // back in (after a removal)
			if tc.name != "Remove" {
				require.Equal(t, room, wb.nextOf("subscribed", "presence", "room_update")["room"])
			}
			start := time.Now()
			r := tc.act(t)
			require.Equal(t, http.StatusNoContent, r.Status, "%s", r.Raw)
			u := wb.nextOf("unsubscribed", "presence", "room_update", "subscribed")
			require.Equal(t, room, u["room"])
			require.Equal(t, tc.reason, u["reason"])
			require.Less(t, time.Since(start), time.Second)

			// Nothing of the room reaches bob: messages, typing, presence
			// (dave comes online and goes offline in the room).
			sendWS(t, wa, room, "after "+tc.reason)
			wa.send(map[string]any{"type": "typing", "room": room})
			wd := a.subscribedClient(t, dave, 1)
			require.NoError(t, wd.Conn.Close(websocket.StatusNormalClosure, ""))
			time.Sleep(200 * time.Millisecond) // dave's offline event is on its way
			apitest.RequireQuiet(t, room, wa.WS, barrier, wb.WS)
			r = b.do(t, "POST", "/api/v1/rooms/"+room+"/messages", bob.Token, map[string]any{"body": "let me in"})
			requireAPIError(t, r, http.StatusForbidden, "forbidden")
		})
	}

	t.Run("BannedCannotRejoin", func(t *testing.T) {
		r := b.do(t, "POST", "/api/v1/rooms/"+room+"/join", bob.Token, nil)
		requireAPIError(t, r, http.StatusForbidden, "forbidden")
		r = b.do(t, "POST", "/api/v1/rooms/"+room+"/members", carol.Token, map[string]any{"username": bob.Username})
		requireAPIError(t, r, http.StatusForbidden, "forbidden")
	})
}
