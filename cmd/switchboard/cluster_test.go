package main

import (
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-chat/switchboard/broker/brokertest"
	"github.com/switchboard-chat/switchboard/chat"
	"github.com/switchboard-chat/switchboard/hub"
	"github.com/switchboard-chat/switchboard/storage/storagetest"
)

// newTestCluster starts n nodes on one fresh database and one Redis prefix,
// as `switchboard serve` processes of one cluster run. tune may adjust
// every node's hub.
func newTestCluster(t testing.TB, n int, tune func(*hub.Config)) []*testServer {
	t.Helper()
	db, prefix := storagetest.NewDatabase(t), brokertest.Prefix()
	nodes := make([]*testServer, n)
	for i := range nodes {
		nodes[i] = newTestServerWith(t, nodeOptions{databaseURL: db, redisPrefix: prefix, tune: tune})
	}
	return nodes
}

func TestClusterLiveDeliveryAcrossNodes(t *testing.T) {
	t.Parallel()
	nodes := newTestCluster(t, 3, nil)
	a, b, c := nodes[0], nodes[1], nodes[2]
	alice, bob, carol := a.register(t, "alice"), b.register(t, "bob"), c.register(t, "carol")
	room := a.createRoom(t, alice, chat.Private)
	a.addMember(t, alice, room, bob)
	a.addMember(t, alice, room, carol)

	// Each is connected to a different node, subscribed before anything is
	// sent: what they get next can only come through Redis.
	wa := a.subscribedClient(t, alice, 1)
	wb := b.subscribedClient(t, bob, 1)
	wc := c.subscribedClient(t, carol, 1)

	wa.send(map[string]any{"type": "send", "id": "s1", "room": room, "body": "hello from a"})
	ack := wa.nextOf("ack", "message")
	require.Equal(t, "s1", ack["id"])
	got := expectMessages(t, wb, room, 1, 1)
	require.Equal(t, "hello from a", got[0]["body"])
	require.Equal(t, ack["message"].(map[string]any)["id"], got[0]["id"])
	require.Equal(t, "hello from a", expectMessages(t, wc, room, 1, 1)[0]["body"])

	// The HTTP API of node c delivers to the WebSockets of a and b.
	r := c.do(t, "POST", "/api/v1/rooms/"+room+"/messages", carol.Token, map[string]any{"body": "hello from c"})
	require.Equal(t, http.StatusCreated, r.Status, "%s", r.Raw)
	require.Equal(t, "hello from c", expectMessages(t, wa, room, 2, 2)[0]["body"])
	require.Equal(t, "hello from c", expectMessages(t, wb, room, 2, 2)[0]["body"])
	require.Equal(t, "hello from c", expectMessages(t, wc, room, 2, 2)[0]["body"])

	// Typing events cross nodes too, and never come back to their sender.
	wb.send(map[string]any{"type": "typing", "room": room})
	typing := wa.nextOf("typing")
	require.Equal(t, bob.ID, typing["user"].(map[string]any)["id"])
	require.Equal(t, bob.ID, wc.nextOf("typing")["user"].(map[string]any)["id"])
}

// TestClusterConcurrentSendersOnTwoNodes: senders on both nodes write into
// one room at once; a reader on each node, and every sender, sees one order
// without gap or repeat.
func TestClusterConcurrentSendersOnTwoNodes(t *testing.T) {
	t.Parallel()
	nodes := newTestCluster(t, 2, func(c *hub.Config) { c.RateLimit, c.RateBurst = 1000, 1000 })
	owner := nodes[0].register(t, "owner")
	room := nodes[0].createRoom(t, owner, chat.Public)

	const sendersPerNode, perSender = 4, 50
	const total = 2 * sendersPerNode * perSender
	var readers, senders []*wsClient
	for _, s := range nodes {
		u := s.register(t, "reader")
		nodes[0].addMember(t, owner, room, u)
		readers = append(readers, s.subscribedClient(t, u, 1))
		for range sendersPerNode {
			u := s.register(t, "sender")
			nodes[0].addMember(t, owner, room, u)
			senders = append(senders, s.subscribedClient(t, u, 1))
		}
	}

	var wg sync.WaitGroup
	for i, c := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range perSender {
				c.send(map[string]any{"type": "send", "room": room, "body": fmt.Sprintf("%d/%d", i, j)})
			}
		}()
	}
	wg.Wait()

	// Senders read too: their own messages come from their node, the
	// others' through Redis, interleaved with their acks.
	for _, c := range append(readers, senders...) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			expectMessages(t, c, room, 1, total)
		}()
	}
	wg.Wait()
}

// TestClusterRedisOutageOnOneNode cuts node b from Redis (through a proxy;
// the real server keeps running for other tests) while node a's clients
// send. a acks every message; when the link is back, b's connected reader
// gets all of them, in order, without reconnecting. Then b sends during a
// second cut, and a's reader gets that message once b is back.
func TestClusterRedisOutageOnOneNode(t *testing.T) {
	t.Parallel()
	db, prefix := storagetest.NewDatabase(t), brokertest.Prefix()
	proxy := brokertest.NewProxy(t)
	a := newTestServerWith(t, nodeOptions{databaseURL: db, redisPrefix: prefix})
	b := newTestServerWith(t, nodeOptions{databaseURL: db, redisPrefix: prefix, redisURL: proxy.URL()})
	alice, bob, carol := a.register(t, "alice"), a.register(t, "bob"), a.register(t, "carol")
	room := a.createRoom(t, alice, chat.Public)
	a.addMember(t, alice, room, bob)
	a.addMember(t, alice, room, carol)

	wa := a.subscribedClient(t, alice, 1)
	wb := b.subscribedClient(t, bob, 1)
	wc := b.subscribedClient(t, carol, 1) // on b too: local delivery there
	wa.send(map[string]any{"type": "send", "id": "m1", "room": room, "body": "before"})
	wa.nextOf("ack", "message")
	expectMessages(t, wb, room, 1, 1)
	expectMessages(t, wc, room, 1, 1)

	// 10 s without Redis on b, while a keeps acking.
	proxy.Cut()
	cutAt := time.Now()
	for i := 2; i <= 6; i++ {
		id := fmt.Sprint("m", i)
		wa.send(map[string]any{"type": "send", "id": id, "room": room, "body": fmt.Sprint("during ", i)})
		ack := wa.nextOf("ack", "message")
		require.Equal(t, id, ack["id"])
		require.Equal(t, float64(i), ack["message"].(map[string]any)["seq"])
		time.Sleep(300 * time.Millisecond)
	}
	require.Equal(t, http.StatusServiceUnavailable, b.do(t, "GET", "/readyz", "", nil).Status, "b cannot reach Redis")
	time.Sleep(time.Until(cutAt.Add(10 * time.Second)))
	proxy.Restore()

	got := expectMessages(t, wb, room, 2, 6)
	require.Equal(t, "during 2", got[0]["body"])
	require.Equal(t, "during 6", got[4]["body"])
	expectMessages(t, wc, room, 2, 6)

	// Live delivery works again.
	wa.send(map[string]any{"type": "send", "id": "m7", "room": room, "body": "after"})
	wa.nextOf("ack", "message")
	expectMessages(t, wb, room, 7, 7)
	expectMessages(t, wc, room, 7, 7)

	// b's own message during a cut is acked, and reaches a once b is back.
	proxy.Cut()
	wb.send(map[string]any{"type": "send", "id": "b1", "room": room, "body": "from b while cut"})
	ack := wb.nextOf("ack", "message")
	require.Equal(t, float64(8), ack["message"].(map[string]any)["seq"])
	expectMessages(t, wc, room, 8, 8) // delivered on b while Redis is away
	proxy.Restore()
	require.Equal(t, "from b while cut", expectMessages(t, wa, room, 8, 8)[0]["body"])
}

// TestClusterHistoryCacheReadsYourWrites: node b answers history from its
// cache, yet every change acknowledged by node a shows on b at once: a new
// message, a reply (thread and reply_count), a display name, a leave and
// a logout.
func TestClusterHistoryCacheReadsYourWrites(t *testing.T) {
	t.Parallel()
	nodes := newTestCluster(t, 2, nil)
	a, b := nodes[0], nodes[1]
	alice, bob := a.register(t, "alice"), a.register(t, "bob")
	room := a.createRoom(t, alice, chat.Private)
	a.addMember(t, alice, room, bob)
	history := func() []any {
		t.Helper()
		r := b.do(t, "GET", "/api/v1/rooms/"+room+"/messages", bob.Token, nil)
		require.Equal(t, http.StatusOK, r.Status, "%s", r.Raw)
		return r.Body["messages"].([]any)
	}
	require.Empty(t, history())
	require.Empty(t, history())

	wa := a.subscribedClient(t, alice, 1)
	wa.send(map[string]any{"type": "send", "id": "s1", "room": room, "body": "first"})
	parent := wa.nextOf("ack", "message")["message"].(map[string]any)
	msgs := history()
	require.Len(t, msgs, 1, "the acked message, read on the other node at once")
	require.Equal(t, "first", msgs[0].(map[string]any)["body"])
	history()

	r := a.do(t, "POST", "/api/v1/rooms/"+room+"/messages", alice.Token, map[string]any{"body": "a reply", "parent_id": parent["id"]})
	require.Equal(t, http.StatusCreated, r.Status, "%s", r.Raw)
	msgs = history()
	require.Len(t, msgs, 2)
	require.Equal(t, 1.0, msgs[0].(map[string]any)["reply_count"])
	th := b.do(t, "GET", "/api/v1/messages/"+parent["id"].(string), bob.Token, nil)
	require.Equal(t, http.StatusOK, th.Status, "%s", th.Raw)
	require.Len(t, th.Body["replies"], 1)

	r = a.do(t, "PATCH", "/api/v1/me", alice.Token, map[string]any{"display_name": "Alice L."})
	require.Equal(t, http.StatusOK, r.Status, "%s", r.Raw)
	sender := history()[1].(map[string]any)["sender"].(map[string]any)
	require.Equal(t, "Alice L.", sender["display_name"])
	require.Greater(t, metricValue(t, b, `switchboard_cache_lookups_total{cache="history",result="hit"}`), 0.0)

	r = a.do(t, "DELETE", "/api/v1/rooms/"+room+"/members/me", bob.Token, nil)
	require.Equal(t, http.StatusNoContent, r.Status, "%s", r.Raw)
	r = b.do(t, "GET", "/api/v1/rooms/"+room+"/messages", bob.Token, nil)
	require.Equal(t, http.StatusNotFound, r.Status, "a private room bob left: %s", r.Raw)

	r = a.do(t, "POST", "/api/v1/auth/logout", alice.Token, nil)
	require.Equal(t, http.StatusNoContent, r.Status, "%s", r.Raw)
	r = b.do(t, "GET", "/api/v1/rooms/"+room+"/messages", alice.Token, nil)
	require.Equal(t, http.StatusUnauthorized, r.Status, "%s", r.Raw)
}
