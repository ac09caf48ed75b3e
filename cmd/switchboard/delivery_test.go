package main

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/switchboard-chat/switchboard/chat"
	"github.com/switchboard-chat/switchboard/hub"
	"github.com/switchboard-chat/switchboard/storage"
)

// fastCursors writes delivery cursors quickly so reconnect tests need not wait.
func fastCursors(c *hub.Config) { c.DeliveredFlush = 20 * time.Millisecond }

func TestDeliveryLiveBetweenTwoUsers(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, nil)
	alice, bob := s.register(t, "alice"), s.register(t, "bob")
	room := s.createRoom(t, alice, chat.Private)
	s.addMember(t, alice, room, bob)

	a, b := s.dialWS(t, alice.Token), s.dialWS(t, bob.Token)
	a.ready()
	b.ready()
	a.send(map[string]any{"type": "send", "id": "r1", "room": room, "body": "hi bob", "client_id": "c-1"})
	ack := a.nextOf("ack", "subscribed", "message")
	require.Equal(t, "r1", ack["id"])
	acked := ack["message"].(map[string]any)
	require.Equal(t, "web", acked["source"])

	got := expectMessages(t, b, room, 1, 1)
	require.Equal(t, "hi bob", got[0]["body"])
	require.Equal(t, acked["id"], got[0]["id"])
	require.Equal(t, alice.Username, got[0]["sender"].(map[string]any)["username"])

	// The HTTP API delivers live too, as a WebSocket send would.
	r := s.do(t, "POST", "/api/v1/rooms/"+room+"/messages", bob.Token, map[string]any{"body": "hi alice"})
	require.Equal(t, http.StatusCreated, r.Status)
	expectMessages(t, a, room, 2, 2) // alice saw seq 1 before its ack
}

func TestDeliveryOfflineUserGetsMissedMessagesOnce(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, fastCursors)
	alice, bob := s.register(t, "alice"), s.register(t, "bob")
	room := s.createRoom(t, alice, chat.Public)
	s.addMember(t, alice, room, bob)

	// Bob reads two messages, then goes away.
	b := s.dialWS(t, bob.Token)
	b.ready()
	for i := 1; i <= 2; i++ {
		s.do(t, "POST", "/api/v1/rooms/"+room+"/messages", alice.Token, map[string]any{"body": fmt.Sprint("before ", i)})
	}
	expectMessages(t, b, room, 1, 2)
	time.Sleep(100 * time.Millisecond) // let the delivery cursor be written
	b.Conn.CloseNow()

	for i := 3; i <= 7; i++ {
		s.do(t, "POST", "/api/v1/rooms/"+room+"/messages", alice.Token, map[string]any{"body": fmt.Sprint("while away ", i)})
	}

	// On his next connection he gets exactly 3..7, then live ones.
	b = s.dialWS(t, bob.Token)
	b.ready()
	got := expectMessages(t, b, room, 3, 7)
	require.Equal(t, "while away 3", got[0]["body"])
	s.do(t, "POST", "/api/v1/rooms/"+room+"/messages", alice.Token, map[string]any{"body": "live"})
	expectMessages(t, b, room, 8, 8)
	time.Sleep(100 * time.Millisecond)
	b.Conn.CloseNow()

	// Nothing is delivered twice: a third connection has nothing to catch up.
	b = s.dialWS(t, bob.Token)
	b.ready()
	s.do(t, "POST", "/api/v1/rooms/"+room+"/messages", alice.Token, map[string]any{"body": "after"})
	expectMessages(t, b, room, 9, 9)
}

func TestDeliveryResumeFromExplicitSeq(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, nil)
	alice := s.register(t, "alice")
	room := s.createRoom(t, alice, chat.Public)
	other := s.createRoom(t, alice, chat.Public)
	for i := 1; i <= 6; i++ {
		s.do(t, "POST", "/api/v1/rooms/"+room+"/messages", alice.Token, map[string]any{"body": fmt.Sprint("m", i)})
	}
	s.do(t, "POST", "/api/v1/rooms/"+other+"/messages", alice.Token, map[string]any{"body": "o1"})

	// A browser authenticates in its first frame and resumes after seq 4.
	c := s.dialWS(t, "")
	c.send(map[string]any{"type": "auth", "token": alice.Token, "resume": map[string]int64{room: 4, other: 1}})
	c.ready()
	expectMessages(t, c, room, 5, 6)

	// subscribe with after_seq replays from there. (The other room's
	// subscribed frame, from connecting, may come before or after.)
	c.send(map[string]any{"type": "subscribe", "id": "s1", "room": room, "after_seq": 2})
	sub := c.nextOf("subscribed", "message")
	if sub["room"] == other {
		sub = c.nextOf("subscribed", "message")
	}
	require.Equal(t, "s1", sub["id"])
	require.Equal(t, float64(6), sub["last_seq"])
	expectMessages(t, c, room, 3, 6)

	// history over the socket pages back.
	c.send(map[string]any{"type": "history", "id": "h1", "room": room, "before_seq": 4, "limit": 2})
	h := c.nextOf("history", "message")
	require.Equal(t, "h1", h["id"])
	msgs := h["messages"].([]any)
	require.Len(t, msgs, 2)
	require.Equal(t, float64(2), msgs[0].(map[string]any)["seq"])
	require.Equal(t, float64(3), msgs[1].(map[string]any)["seq"])
}

func TestDeliveryConcurrentSendersKeepOneOrder(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, func(c *hub.Config) { c.RateLimit, c.RateBurst = 1000, 1000 })
	owner := s.register(t, "owner")
	room := s.createRoom(t, owner, chat.Public)

	const senders, perSender = 8, 50
	const readers = 3
	var rs []*wsClient
	for range readers {
		u := s.register(t, "reader")
		s.addMember(t, owner, room, u)
		c := s.dialWS(t, u.Token)
		c.ready()
		rs = append(rs, c)
	}

	var wg sync.WaitGroup
	for i := range senders {
		u := s.register(t, "sender")
		s.addMember(t, owner, room, u)
		c := s.dialWS(t, u.Token)
		c.ready()
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range perSender {
				c.send(map[string]any{"type": "send", "room": room, "body": fmt.Sprintf("%d/%d", i, j)})
			}
		}()
	}
	wg.Wait()

	var rwg sync.WaitGroup
	for _, c := range rs {
		rwg.Add(1)
		go func() {
			defer rwg.Done()
			expectMessages(t, c, room, 1, senders*perSender)
		}()
	}
	rwg.Wait()

	r := s.do(t, "GET", "/api/v1/rooms/"+room+"/messages?after_seq=0&limit=200", owner.Token, nil)
	require.Equal(t, http.StatusOK, r.Status)
	var seqs []float64
	for r.Status == http.StatusOK {
		for _, m := range r.Body["messages"].([]any) {
			seqs = append(seqs, m.(map[string]any)["seq"].(float64))
		}
		next, _ := r.Body["next_cursor"].(string)
		if next == "" {
			break
		}
		r = s.do(t, "GET", "/api/v1/rooms/"+room+"/messages?cursor="+next, owner.Token, nil)
	}
	require.Len(t, seqs, senders*perSender)
	for i, seq := range seqs {
		require.Equal(t, float64(i+1), seq)
	}
}

// TestDeliveryOutOfOrderBrokerEvents feeds the hub what another node's
// publishes look like when they arrive late, out of order, twice or never,
// and checks that clients still see every seq once, in order.
func TestDeliveryOutOfOrderBrokerEvents(t *testing.T) {
	t.Parallel()
	s, room, b, saveElsewhere := setupRemoteSaves(t)
	var events []hub.Event
	for _, m := range saveElsewhere(5) {
		events = append(events, hub.Event{Room: room, Seq: m.Seq, From: m.Sender.ID,
			Frame: fmt.Appendf(nil, `{"type":"message","message":{"room_id":%q,"seq":%d,"body":%q}}`, room, m.Seq, m.Body)})
	}
	// 3 arrives first, then 5, then 1 twice; 2 and 4 never arrive.
	for _, i := range []int{2, 4, 0, 0} {
		s.node.hub.Receive(events[i])
	}
	expectMessages(t, b, room, 1, 5)
}

// TestDeliveryResyncAfterBrokerOutage: messages stored while the broker lost
// them reach connected clients, in order, when the hub resyncs.
func TestDeliveryResyncAfterBrokerOutage(t *testing.T) {
	t.Parallel()
	s, room, b, saveElsewhere := setupRemoteSaves(t)
	saveElsewhere(3) // their publishes were lost
	s.node.hub.Resync()
	got := expectMessages(t, b, room, 1, 3)
	require.Equal(t, "remote 1", got[0]["body"])
}

// setupRemoteSaves makes a room with alice and bob, bob connected, and
// returns a function that stores n messages from alice the way another node
// would: in Postgres, without publishing anything to this node.
func setupRemoteSaves(t *testing.T) (s *testServer, room string, bob *wsClient, saveElsewhere func(n int) []chat.Message) {
	t.Helper()
	s = newTestServer(t, nil)
	alice, b := s.register(t, "alice"), s.register(t, "bob")
	room = s.createRoom(t, alice, chat.Public)
	s.addMember(t, alice, room, b)
	bob = s.dialWS(t, b.Token)
	bob.ready()
	bob.nextOf("subscribed")

	pool, err := pgxpool.New(context.Background(), s.node.pool.Config().ConnString())
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	store := storage.New(pool)
	return s, room, bob, func(n int) []chat.Message {
		var saved []chat.Message
		for range n {
			m, _, err := store.SaveMessage(context.Background(), chat.NewMessage{
				RoomID: room, SenderID: alice.ID, Body: fmt.Sprint("remote ", len(saved)+1), Source: chat.SourceWeb})
			require.NoError(t, err)
			saved = append(saved, m)
		}
		return saved
	}
}

// TestDeliveryOnceOnQuickReconnect: a client that closes right after a
// message and reconnects within 100 ms, to either node and without resume
// seqs, is not sent that message again (SPEC §6: what was sent meanwhile,
// once): the closing connection writes its delivery cursor before its
// close completes.
func TestDeliveryOnceOnQuickReconnect(t *testing.T) {
	t.Parallel()
	nodes := newTestCluster(t, 2, nil)
	alice, bob := nodes[0].register(t, "alice"), nodes[0].register(t, "bob")
	room := nodes[0].createRoom(t, alice, chat.Private)
	nodes[0].addMember(t, alice, room, bob)
	wa := nodes[0].subscribedClient(t, alice, 1)

	// Delivery cursors are written once a second (the default), far later
	// than these reconnects.
	wb := nodes[0].subscribedClient(t, bob, 1)
	seq := int64(0)
	for i := range 10 {
		seq++
		sendWS(t, wa, room, fmt.Sprint("message ", seq))
		expectMessages(t, wb, room, seq, seq)
		require.NoError(t, wb.Conn.Close(websocket.StatusNormalClosure, ""))
		closed := time.Now()
		wb = nodes[i%2].dialWS(t, bob.Token)
		require.Less(t, time.Since(closed), 100*time.Millisecond)
		wb.ready()
		wb.nextOf("subscribed")
		// The next message is the first of the room it gets: no repeat.
		seq++
		sendWS(t, wa, room, fmt.Sprint("message ", seq))
		require.Equal(t, seq, messageSeq(wb.nextOf("message")), "reconnect %d", i)
	}
}

// TestTypingRightAfterReady: typing sent by someone on another node just
// after a connection's ready reaches it (its rooms' broker subscriptions
// stand before ready is sent).
func TestTypingRightAfterReady(t *testing.T) {
	t.Parallel()
	nodes := newTestCluster(t, 2, func(c *hub.Config) { c.TypingLimit, c.TypingBurst = 100, 100 })
	a, b := nodes[0], nodes[1]
	alice, bob := a.register(t, "alice"), a.register(t, "bob")
	room := a.createRoom(t, alice, chat.Private)
	a.addMember(t, alice, room, bob)
	wa := a.subscribedClient(t, alice, 1)
	for i := range 15 {
		wb := b.dialWS(t, bob.Token)
		wb.ready()
		wa.send(map[string]any{"type": "typing", "room": room})
		typing := wb.nextOf("typing", "subscribed")
		require.Equal(t, alice.ID, typing["user"].(map[string]any)["id"], "attempt %d", i)
		require.NoError(t, wb.Conn.Close(websocket.StatusNormalClosure, ""))
	}
}
