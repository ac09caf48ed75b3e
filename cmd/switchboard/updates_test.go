package main

import (
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-chat/switchboard/broker/brokertest"
	"github.com/switchboard-chat/switchboard/chat"
	"github.com/switchboard-chat/switchboard/hub"
	"github.com/switchboard-chat/switchboard/internal/apitest"
	"github.com/switchboard-chat/switchboard/storage/storagetest"
)

// eventOf is one message or update frame, reduced to what the tests
// compare: seq, kind ("message", "edit", …) and the message's id.
type eventOf struct {
	Seq       int64
	Kind, Msg string
}

func frameEvent(obj map[string]any) eventOf {
	m := obj["message"].(map[string]any)
	kind := "message"
	if obj["type"] == "update" {
		kind = obj["kind"].(string)
	}
	return eventOf{apitest.EventSeq(obj), kind, m["id"].(string)}
}

// readEvents reads n message and update frames of room from c, skipping
// the rest, and requires seqs from+1, from+2, … in order.
func readEvents(t *testing.T, c *wsClient, room string, from int64, n int) ([]eventOf, []map[string]any) {
	t.Helper()
	var evs []eventOf
	var objs []map[string]any
	for len(evs) < n {
		obj := apitest.NextEvent(t, c.WS)
		if obj["message"].(map[string]any)["room_id"] != room {
			continue
		}
		ev := frameEvent(obj)
		require.Equal(t, from+int64(len(evs))+1, ev.Seq, "event order in room %s: %v", room, obj)
		evs = append(evs, ev)
		objs = append(objs, obj)
	}
	return evs, objs
}

// eventsEndpoint reads GET /rooms/{id}/events after afterSeq as u.
func eventsEndpoint(t *testing.T, s *testServer, u testUser, room string, afterSeq int64) []eventOf {
	t.Helper()
	r := s.do(t, "GET", fmt.Sprintf("/api/v1/rooms/%s/events?after_seq=%d&limit=500", room, afterSeq), u.Token, nil)
	require.Equal(t, http.StatusOK, r.Status, "%s", r.Raw)
	var out []eventOf
	for _, e := range r.Body["events"].([]any) {
		obj := e.(map[string]any)
		m := obj["message"].(map[string]any)
		out = append(out, eventOf{int64(obj["seq"].(float64)), obj["kind"].(string), m["id"].(string)})
	}
	return out
}

// TestClusterUpdatesInterleaveWithMessages: senders on node a send
// messages and edit and react to them at once; a reader on node b gets
// message and update frames interleaved in exact seq order, as the events
// endpoint lists them.
func TestClusterUpdatesInterleaveWithMessages(t *testing.T) {
	t.Parallel()
	nodes := newTestCluster(t, 2, func(c *hub.Config) { c.RateLimit, c.RateBurst = 1000, 1000 })
	a, b := nodes[0], nodes[1]
	owner := a.register(t, "owner")
	room := a.createRoom(t, owner, chat.Public)
	reader := b.register(t, "reader")
	a.addMember(t, owner, room, reader)
	rb := b.subscribedClient(t, reader, 1)

	const senders, perSender = 4, 15
	var wg sync.WaitGroup
	for i := range senders {
		u := a.register(t, "sender")
		a.addMember(t, owner, room, u)
		c := a.subscribedClient(t, u, 1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range perSender {
				id := fmt.Sprintf("%d-%d", i, j)
				c.Send(map[string]any{"type": "send", "id": "s" + id, "room": room, "body": "message " + id})
				msg := awaitAck(t, c.WS, "s"+id)
				c.Send(map[string]any{"type": "edit", "id": "e" + id, "message_id": msg["id"], "body": "edited " + id})
				c.Send(map[string]any{"type": "react", "id": "r" + id, "message_id": msg["id"], "emoji": "👍", "op": "add"})
				awaitAck(t, c.WS, "e"+id)
				awaitAck(t, c.WS, "r"+id)
			}
		}()
	}
	wg.Wait()

	const total = senders * perSender * 3
	frames, _ := readEvents(t, rb, room, 0, total)
	kinds := map[string]int{}
	for _, ev := range frames {
		kinds[ev.Kind]++
	}
	require.Equal(t, map[string]int{"message": senders * perSender, "edit": senders * perSender, "reaction": senders * perSender}, kinds)
	require.Equal(t, frames, eventsEndpoint(t, b, reader, room, 0), "the events endpoint lists what the socket got")
}

// awaitAck reads c until the ack of request id and returns its message,
// failing on an error answer.
func awaitAck(t *testing.T, c *apitest.WS, id string) map[string]any {
	t.Helper()
	for {
		obj := c.Next()
		require.NotEqual(t, "error", obj["type"], "request %s: %v", id, obj)
		if obj["type"] == "ack" && obj["id"] == id {
			return obj["message"].(map[string]any)
		}
	}
}

// TestUpdatesReplayOnEveryCatchUp: a member away while a message is
// edited, reacted to and deleted (on the other node) gets exactly those
// updates when coming back, whether by resume seq, by stored delivery
// cursor or by subscribe after_seq, and ends with the message's current
// state; idempotent repeats add no event.
func TestUpdatesReplayOnEveryCatchUp(t *testing.T) {
	t.Parallel()
	nodes := newTestCluster(t, 2, nil)
	a, b := nodes[0], nodes[1]
	alice, bob := a.register(t, "alice"), a.register(t, "bob")
	room := a.createRoom(t, alice, chat.Public)
	a.addMember(t, alice, room, bob)

	wb := b.subscribedClient(t, bob, 1)
	first := apitest.SendWS(t, a.subscribedClient(t, alice, 1).WS, room, "tpyo")
	readEvents(t, wb, room, 0, 1)
	time.Sleep(100 * time.Millisecond) // let the delivery cursor be written
	wb.Conn.CloseNow()

	id := first["id"].(string)
	path := "/api/v1/messages/" + id
	for _, req := range []struct {
		method, path string
		body         any
	}{
		{"PATCH", path, map[string]any{"body": "typo"}},
		{"PATCH", path, map[string]any{"body": "typo"}}, // a repeat
		{"PUT", path + "/reactions/" + url.PathEscape("🎉"), nil},
		{"PUT", path + "/reactions/" + url.PathEscape("🎉"), nil}, // a repeat
		{"DELETE", path, nil},
		{"DELETE", path, nil}, // a repeat
	} {
		r := a.do(t, req.method, req.path, alice.Token, req.body)
		require.Equal(t, http.StatusOK, r.Status, "%s %s: %s", req.method, req.path, r.Raw)
	}
	want := []eventOf{{2, "edit", id}, {3, "reaction", id}, {4, "delete", id}}
	require.Equal(t, want, eventsEndpoint(t, b, bob, room, 1))

	check := func(t *testing.T, c *wsClient, from int64) {
		t.Helper()
		got, objs := readEvents(t, c, room, from, len(want)-int(from-1))
		require.Equal(t, want[from-1:], got)
		last := objs[len(objs)-1]["message"].(map[string]any)
		require.Equal(t, true, last["deleted"])
		require.Equal(t, "", last["body"])
		require.Empty(t, last["reactions"])
		require.NotNil(t, last["edited_at"])
	}
	// The stored delivery cursor (1), on the other node.
	c := a.dialWS(t, bob.Token)
	c.ready()
	check(t, c, 1)
	// A resume seq, on node b: only what came after it.
	c = b.dialWS(t, "")
	c.send(map[string]any{"type": "auth", "token": bob.Token, "resume": map[string]int64{room: 2}})
	c.ready()
	check(t, c, 2)
	// subscribe after_seq replays from there.
	c.send(map[string]any{"type": "subscribe", "id": "again", "room": room, "after_seq": 1})
	check(t, c, 1)
	// Live: a new message comes next, seq 5, nothing repeated.
	apitest.SendWS(t, a.subscribedClient(t, alice, 1).WS, room, "after")
	got, _ := readEvents(t, c, room, 4, 1)
	require.Equal(t, "message", got[0].Kind)
}

// TestClusterRedisOutageReplaysUpdates: node b loses Redis while node a
// stores messages and changes to them, the last event a change; once Redis
// is back, b's reader gets them all, updates included, in seq order,
// without reconnecting (the resync reads events, not only messages).
func TestClusterRedisOutageReplaysUpdates(t *testing.T) {
	t.Parallel()
	db, prefix := storagetest.NewDatabase(t), brokertest.Prefix()
	proxy := brokertest.NewProxy(t)
	a := newTestServerWith(t, nodeOptions{databaseURL: db, redisPrefix: prefix})
	b := newTestServerWith(t, nodeOptions{databaseURL: db, redisPrefix: prefix, redisURL: proxy.URL()})
	alice, bob := a.register(t, "alice"), a.register(t, "bob")
	room := a.createRoom(t, alice, chat.Public)
	a.addMember(t, alice, room, bob)
	wa := a.subscribedClient(t, alice, 1)
	wb := b.subscribedClient(t, bob, 1)
	first := apitest.SendWS(t, wa.WS, room, "first")["id"].(string)
	readEvents(t, wb, room, 0, 1)

	proxy.Cut()
	cutAt := time.Now()
	change := func(method, path string, body any) {
		r := a.do(t, method, path, alice.Token, body)
		require.Equal(t, http.StatusOK, r.Status, "%s %s: %s", method, path, r.Raw)
	}
	change("PATCH", "/api/v1/messages/"+first, map[string]any{"body": "first, edited"})
	second := apitest.SendWS(t, wa.WS, room, "second")["id"].(string)
	change("PUT", "/api/v1/messages/"+second+"/reactions/"+url.PathEscape("👍"), nil)
	change("DELETE", "/api/v1/messages/"+first, nil)
	time.Sleep(time.Until(cutAt.Add(10 * time.Second)))
	proxy.Restore()

	got, objs := readEvents(t, wb, room, 1, 4)
	require.Equal(t, []eventOf{{2, "edit", first}, {3, "message", second}, {4, "reaction", second}, {5, "delete", first}}, got)
	require.Equal(t, true, objs[3]["message"].(map[string]any)["deleted"])
}
