package main

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-chat/switchboard/broker/brokertest"
	"github.com/switchboard-chat/switchboard/chat"
	"github.com/switchboard-chat/switchboard/hub"
	"github.com/switchboard-chat/switchboard/presence"
	"github.com/switchboard-chat/switchboard/storage/storagetest"
)

// TestPresenceAcrossNodes: online/offline events reach members on other
// nodes once per transition (not per connection), never the user's own
// connections, and GET .../presence lists who is online on any node.
func TestPresenceAcrossNodes(t *testing.T) {
	t.Parallel()
	nodes := newTestCluster(t, 2, nil)
	a, b := nodes[0], nodes[1]
	alice, bob := a.register(t, "alice"), b.register(t, "bob")
	room := a.createRoom(t, alice, chat.Private)
	a.addMember(t, alice, room, bob)

	watcher := b.subscribedClient(t, bob, 1)
	watcher.WithPresence = true

	online := func(s *testServer) []string {
		r := s.do(t, "GET", "/api/v1/rooms/"+room+"/presence", bob.Token, nil)
		require.Equal(t, http.StatusOK, r.Status, "%s", r.Raw)
		var names []string
		for _, u := range r.Body["online"].([]any) {
			names = append(names, u.(map[string]any)["username"].(string))
		}
		return names
	}
	require.Equal(t, []string{bob.Username}, online(a))

	// Alice's first connection (node A) is a transition; her second (node
	// B) is not.
	first := a.subscribedClient(t, alice, 1)
	ev := watcher.nextOf("presence")
	require.Equal(t, "online", ev["status"])
	require.Equal(t, room, ev["room"])
	require.Equal(t, alice.Username, ev["user"].(map[string]any)["username"])
	second := b.subscribedClient(t, alice, 1)
	require.ElementsMatch(t, []string{alice.Username, bob.Username}, online(b))

	// Closing one of two connections changes nothing; closing the last is
	// one offline event. Alice's own connections never got her events.
	second.Conn.CloseNow()
	watcher.send(map[string]any{"type": "ping", "id": "fence"})
	require.Equal(t, "fence", watcher.nextOf("pong")["id"], "no presence event before the fence")
	first.Conn.CloseNow()
	ev = watcher.nextOf("presence")
	require.Equal(t, "offline", ev["status"])
	require.Equal(t, []string{bob.Username}, online(a))
	time.Sleep(200 * time.Millisecond) // room for a wrong second event to show up
	watcher.send(map[string]any{"type": "ping", "id": "fence2"})
	require.Equal(t, "fence2", watcher.nextOf("pong")["id"], "exactly one offline event")

	// Non-members may not look.
	carol := a.register(t, "carol")
	r := a.do(t, "GET", "/api/v1/rooms/"+room+"/presence", carol.Token, nil)
	require.Equal(t, http.StatusNotFound, r.Status)
}

// TestPresenceDeadNodeAnnouncedOffline: a user whose only connection was on
// a node that died (its presence entry is never refreshed or removed) is
// announced offline once by a surviving node after the entry expires.
func TestPresenceDeadNodeAnnouncedOffline(t *testing.T) {
	t.Parallel()
	db, prefix := storagetest.NewDatabase(t), brokertest.Prefix()
	s := newTestServerWith(t, nodeOptions{databaseURL: db, redisPrefix: prefix,
		tune: func(c *hub.Config) { c.PresenceRefresh = 100 * time.Millisecond }})
	alice, bob := s.register(t, "alice"), s.register(t, "bob")
	room := s.createRoom(t, alice, chat.Private)
	s.addMember(t, alice, room, bob)
	watcher := s.subscribedClient(t, bob, 1)
	watcher.WithPresence = true

	// Alice's connection on a node that then died: an entry with a short
	// life that nobody refreshes.
	client := brokertest.Current().Client()
	defer client.Close()
	deadNode, err := presence.New(presence.Config{Redis: client, Prefix: prefix, TTL: 300 * time.Millisecond})
	require.NoError(t, err)
	_, _, err = deadNode.Connect(t.Context(), alice.ID, "conn-on-dead-node", 0)
	require.NoError(t, err)

	ev := watcher.nextOf("presence")
	require.Equal(t, "offline", ev["status"])
	require.Equal(t, alice.Username, ev["user"].(map[string]any)["username"])
	time.Sleep(300 * time.Millisecond) // further sweeps must not repeat it
	watcher.send(map[string]any{"type": "ping", "id": "fence"})
	require.Equal(t, "fence", watcher.nextOf("pong")["id"])
}
