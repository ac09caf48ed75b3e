package main

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-chat/switchboard/chat"
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
	watcher.withPresence = true

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
	second.ws.CloseNow()
	watcher.send(map[string]any{"type": "ping", "id": "fence"})
	require.Equal(t, "fence", watcher.nextOf("pong")["id"], "no presence event before the fence")
	first.ws.CloseNow()
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
