package hub_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/switchboard-chat/switchboard/chat"
	"github.com/switchboard-chat/switchboard/hub"
	"github.com/switchboard-chat/switchboard/internal/apitest"
)

// These tests drive hubs through their WebSocket endpoint with fakes of the
// hub's own small interfaces: an in-memory store and poster, and a
// LocalBroker standing in for the cluster. The ws_*_test.go files test the
// protocol on a real node (internal/apitest: real Postgres and Redis), and
// cmd/switchboard the cluster through the Redis broker.

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// memStore is an in-memory hub.Store, hub.History, hub.Poster and
// hub.Authenticator: rooms with members and messages, users by token.
type memStore struct {
	mu       sync.Mutex
	rooms    map[string]*memRoom
	users    map[string]chat.User    // by token
	sessions map[string]chat.Session // by token
	publish  func(context.Context, hub.Event) error
	// busyWrites is how many more MarkDelivered calls find every row
	// busy, as when messages of the users are being stored.
	busyWrites int
}

type memRoom struct {
	evs     []chat.RoomEvent // evs[i] has seq i+1
	members map[string]int64 // user id → delivered seq
}

var (
	_ hub.Store         = (*memStore)(nil)
	_ hub.Poster        = (*memStore)(nil)
	_ hub.History       = (*memStore)(nil)
	_ hub.Authenticator = (*memStore)(nil)
	_ hub.Broker        = (*hub.LocalBroker)(nil)
)

func newMemStore() *memStore {
	return &memStore{rooms: map[string]*memRoom{}, users: map[string]chat.User{}, sessions: map[string]chat.Session{}}
}

func (s *memStore) user(id string) (chat.User, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := chat.User{ID: id, Username: "user" + id, DisplayName: "User " + id}
	token := "token-" + id
	s.users[token] = u
	s.sessions[token] = chat.Session{User: u, ID: "session-" + id, ExpiresAt: time.Now().Add(time.Hour)}
	return u, token
}

func (s *memStore) room(id string, members ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := &memRoom{members: map[string]int64{}}
	for _, m := range members {
		r.members[m] = 0
	}
	s.rooms[id] = r
}

func (s *memStore) Authenticate(_ context.Context, token string) (chat.Session, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sess, ok := s.sessions[token]; ok {
		return sess, nil
	}
	return chat.Session{}, chat.Errorf(chat.CodeUnauthorized, "no such token")
}

func (s *memStore) Post(ctx context.Context, nm chat.NewMessage) (chat.Message, bool, error) {
	if err := nm.Validate(); err != nil {
		return chat.Message{}, false, err
	}
	s.mu.Lock()
	r := s.rooms[nm.RoomID]
	if r == nil {
		s.mu.Unlock()
		return chat.Message{}, false, chat.ErrNotFound
	}
	if _, ok := r.members[nm.SenderID]; !ok {
		s.mu.Unlock()
		return chat.Message{}, false, chat.ErrForbidden
	}
	m := chat.Message{ID: fmt.Sprintf("%s-%d", nm.RoomID, len(r.evs)+1), RoomID: nm.RoomID, Seq: int64(len(r.evs) + 1),
		Sender: chat.User{ID: nm.SenderID}, Body: nm.Body, Source: nm.Source, CreatedAt: time.Now().UTC()}
	enc := chat.Encode(m)
	r.evs = append(r.evs, chat.RoomEvent{Seq: m.Seq, Kind: chat.KindMessage, Message: enc})
	publish := s.publish
	s.mu.Unlock()
	if publish != nil {
		_ = publish(ctx, hub.MessageEvent(enc))
	}
	return m, true, nil
}

// Update supports edits by the sender, enough for the hub's part: an
// update event in the room's order.
func (s *memStore) Update(ctx context.Context, u chat.Update) (chat.Message, bool, error) {
	if err := u.Validate(); err != nil {
		return chat.Message{}, false, err
	}
	s.mu.Lock()
	var ev chat.RoomEvent
	for _, r := range s.rooms {
		for _, e := range r.evs {
			if e.Kind != chat.KindMessage || e.Message.ID != u.MessageID {
				continue
			}
			if u.Action != chat.ActionEdit || e.Message.Sender.ID != u.UserID {
				s.mu.Unlock()
				return chat.Message{}, false, chat.ErrForbidden
			}
			m := e.Message.Message
			m.Body = u.Body
			ev = chat.RoomEvent{Seq: int64(len(r.evs) + 1), Kind: chat.KindEdit, Message: chat.Encode(m)}
			r.evs = append(r.evs, ev)
		}
	}
	publish := s.publish
	s.mu.Unlock()
	if ev.Seq == 0 {
		return chat.Message{}, false, chat.ErrNotFound
	}
	if publish != nil {
		_ = publish(ctx, hub.UpdateEvent(ev, u.UserID))
	}
	return ev.Message.Message, true, nil
}

func (s *memStore) EventsAfter(_ context.Context, room string, afterSeq int64, limit int) ([]chat.RoomEvent, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.rooms[room]
	if r == nil {
		return nil, chat.ErrNotFound
	}
	from := min(int(max(afterSeq, 0)), len(r.evs))
	return slices.Clone(r.evs[from:min(from+limit, len(r.evs))]), nil
}

func (s *memStore) LastSeq(_ context.Context, room string) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r := s.rooms[room]; r != nil {
		return int64(len(r.evs)), nil
	}
	return 0, chat.ErrNotFound
}

func (s *memStore) CheckMember(_ context.Context, userID, roomID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.rooms[roomID]
	if r == nil {
		return chat.ErrNotFound
	}
	if _, ok := r.members[userID]; !ok {
		return chat.ErrForbidden
	}
	return nil
}

func (s *memStore) RoomsOf(_ context.Context, userID string) ([]chat.Room, error) {
	cursors, _ := s.Cursors(context.Background(), userID)
	rooms := make([]chat.Room, len(cursors))
	for i, c := range cursors {
		rooms[i] = chat.Room{ID: c.RoomID, Name: "room" + c.RoomID, Visibility: chat.Private, LastSeq: c.LastSeq}
	}
	return rooms, nil
}

func (s *memStore) Cursors(_ context.Context, userID string) ([]chat.Cursor, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []chat.Cursor
	for id, r := range s.rooms {
		if seq, ok := r.members[userID]; ok {
			out = append(out, chat.Cursor{RoomID: id, LastSeq: int64(len(r.evs)), DeliveredSeq: seq})
		}
	}
	slices.SortFunc(out, func(a, b chat.Cursor) int { return strings.Compare(a.RoomID, b.RoomID) })
	return out, nil
}

func (s *memStore) Profile(_ context.Context, userID string) (chat.Profile, error) {
	return chat.Profile{User: chat.User{ID: userID}}, nil
}

func (s *memStore) MarkDelivered(_ context.Context, seqs map[string]map[string]int64) (map[string]map[string]int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.busyWrites > 0 {
		s.busyWrites--
		return seqs, nil
	}
	for user, rooms := range seqs {
		for room, seq := range rooms {
			if r := s.rooms[room]; r != nil {
				if old, ok := r.members[user]; ok {
					r.members[user] = max(old, seq)
				}
			}
		}
	}
	return nil, nil
}

func (s *memStore) MarkRead(context.Context, string, string, int64) (chat.Room, error) {
	return chat.Room{}, nil
}

func (s *memStore) Page(ctx context.Context, userID, roomID string, _ chat.HistoryQuery) (chat.Page, error) {
	if err := s.CheckMember(ctx, userID, roomID); err != nil {
		return chat.Page{}, err
	}
	evs, err := s.EventsAfter(ctx, roomID, 0, 1000)
	var msgs []chat.EncodedMessage
	for _, e := range evs {
		if e.Kind == chat.KindMessage {
			msgs = append(msgs, e.Message)
		}
	}
	return chat.Page{Messages: msgs}, err
}

// leave removes userID from roomID, as storage would before the control.
func (s *memStore) leave(userID, roomID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.rooms[roomID].members, userID)
}

// join adds userID to roomID from its current end and returns that seq.
func (s *memStore) join(userID, roomID string) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.rooms[roomID]
	r.members[userID] = int64(len(r.evs))
	return int64(len(r.evs))
}

// cluster is n hubs on one LocalBroker and one store, each behind its own
// httptest server.
type cluster struct {
	store *memStore
	hubs  []*hub.Hub
	urls  []string
}

func newCluster(t *testing.T, n int, tune func(*hub.Config)) *cluster {
	t.Helper()
	c := &cluster{store: newMemStore()}
	b := &hub.LocalBroker{}
	for range n {
		cfg := hub.Config{Store: c.store, Broker: b, Auth: c.store, Poster: c.store, History: c.store,
			WriteInterval: -1, GapWait: 10 * time.Millisecond}
		if tune != nil {
			tune(&cfg)
		}
		h, err := hub.New(cfg)
		require.NoError(t, err)
		b.Attach(h)
		srv := httptest.NewServer(h)
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			require.NoError(t, h.Shutdown(ctx))
			srv.Close()
		})
		c.hubs = append(c.hubs, h)
		c.urls = append(c.urls, "ws"+strings.TrimPrefix(srv.URL, "http"))
	}
	// The poster publishes through the first hub, as a node's does.
	c.store.publish = c.hubs[0].Publish
	return c
}

// dial connects to the node-th hub and authenticates with token.
func (c *cluster) dial(t *testing.T, node int, token string) *apitest.WS {
	t.Helper()
	cl := apitest.Dial(t, c.urls[node]+"/ws", nil)
	cl.Send(map[string]any{"type": "auth", "token": token})
	require.Equal(t, "ready", cl.Next()["type"])
	return cl
}

// nextOf returns the next object of type typ, skipping the others.
func nextOf(t *testing.T, c *apitest.WS, typ string) map[string]any {
	t.Helper()
	for {
		if obj := c.Next(); obj["type"] == typ {
			return obj
		}
	}
}

// TestDeliveryAcrossHubs: a message sent on one hub is acked and reaches
// the room's subscribers on every hub, in order, once.
func TestDeliveryAcrossHubs(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 2, nil)
	alice, aliceToken := c.store.user("1")
	_, bobToken := c.store.user("2")
	c.store.room("10", "1", "2")
	a := c.dial(t, 0, aliceToken)
	b := c.dial(t, 1, bobToken)
	nextOf(t, a, "subscribed")
	nextOf(t, b, "subscribed")
	for i := 1; i <= 20; i++ {
		a.Send(map[string]any{"type": "send", "id": fmt.Sprint(i), "room": "10", "body": fmt.Sprint("hello ", i)})
	}
	for i := int64(1); i <= 20; i++ {
		got := nextOf(t, b, "message")
		require.Equal(t, i, apitest.MessageSeq(got))
		require.Equal(t, alice.ID, got["message"].(map[string]any)["sender"].(map[string]any)["id"])
	}
	acks := 0
	for acks < 20 {
		if obj := a.Next(); obj["type"] == "ack" {
			acks++
		}
	}
}

// TestWriteInterval: messages that reach a connection less than
// WriteInterval after its last write wait and go out together in one
// frame, until four are queued; an answer to the client is written at
// once, also when its connection is waiting to write messages.
func TestWriteInterval(t *testing.T) {
	t.Parallel()
	const interval = time.Second
	c := newCluster(t, 1, func(cfg *hub.Config) { cfg.WriteInterval = interval })
	_, aliceToken := c.store.user("1")
	_, bobToken := c.store.user("2")
	c.store.room("10", "1", "2")
	a := c.dial(t, 0, aliceToken)
	b := c.dial(t, 0, bobToken)
	nextOf(t, a, "subscribed")
	nextOf(t, b, "subscribed")

	// send sends body and returns how long its ack took.
	send := func(body string) time.Duration {
		start := time.Now()
		a.Send(map[string]any{"type": "send", "id": body, "room": "10", "body": body})
		for {
			if obj := a.Next(); obj["type"] == "ack" && obj["id"] == body {
				return time.Since(start)
			}
		}
	}
	// frame returns the message bodies of b's next frame that holds any.
	frame := func() []string {
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 5*interval)
			_, data, err := b.Conn.Read(ctx)
			cancel()
			require.NoError(t, err)
			var bodies []string
			for _, line := range bytes.Split(data, []byte("\n")) {
				var obj struct {
					Type    string
					Message struct{ Body string }
				}
				require.NoError(t, json.Unmarshal(line, &obj))
				if obj.Type == "message" {
					bodies = append(bodies, obj.Message.Body)
				}
			}
			if len(bodies) > 0 {
				return bodies
			}
		}
	}

	send("one") // bob's first write after a quiet spell goes at once
	require.Equal(t, []string{"one"}, frame())
	first := time.Now()
	// Alice's connection wrote her echo of "one" just now, so her echoes
	// of these wait; her acks must not.
	require.Less(t, send("two"), interval/2, "an ack waited for the write interval")
	require.Less(t, send("three"), interval/2, "an ack waited for the write interval")
	require.Equal(t, []string{"two", "three"}, frame(), "messages within the interval share a frame")
	second := time.Now()
	require.GreaterOrEqual(t, second.Sub(first), interval*8/10, "the second frame came before the interval")
	// Four queued messages are worth a write: they need not wait.
	for _, body := range []string{"four", "five", "six", "seven"} {
		send(body)
	}
	require.Equal(t, []string{"four", "five", "six", "seven"}, frame())
	require.Less(t, time.Since(second), interval/2, "four messages waited for the interval")
}

// TestOutOfOrderEventsAreOrdered: events the broker delivers late or out
// of order reach a connection in seq order, the missing ones fetched.
func TestOutOfOrderEventsAreOrdered(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 2, nil)
	_, bobToken := c.store.user("2")
	c.store.room("10", "1", "2")
	c.store.publish = nil // stored only; the test delivers the events itself
	b := c.dial(t, 1, bobToken)
	nextOf(t, b, "subscribed")
	var events []hub.Event
	for i := range 6 {
		m, _, err := c.store.Post(context.Background(), chat.NewMessage{RoomID: "10", SenderID: "1", Body: fmt.Sprint(i), Source: chat.SourceWeb})
		require.NoError(t, err)
		evs, err := c.store.EventsAfter(context.Background(), "10", m.Seq-1, 1)
		require.NoError(t, err)
		events = append(events, hub.MessageEvent(evs[0].Message))
	}
	for _, i := range []int{5, 2, 2, 0, 4} { // 2 twice, 1 and 3 never
		c.hubs[1].Receive(events[i])
	}
	for seq := int64(1); seq <= 6; seq++ {
		require.Equal(t, seq, apitest.MessageSeq(nextOf(t, b, "message")))
	}
}

// TestUpdatesAreOrderedWithMessages: update events share the room's seq
// order with messages; one the broker lost is fetched from the store as a
// message would be, as an update frame.
func TestUpdatesAreOrderedWithMessages(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 2, nil)
	_, bobToken := c.store.user("2")
	c.store.room("10", "1", "2")
	var events []hub.Event
	c.store.publish = func(_ context.Context, ev hub.Event) error {
		events = append(events, ev)
		return nil
	}
	b := c.dial(t, 1, bobToken)
	nextOf(t, b, "subscribed")
	ctx := context.Background()
	m, _, err := c.store.Post(ctx, chat.NewMessage{RoomID: "10", SenderID: "1", Body: "tpyo", Source: chat.SourceWeb})
	require.NoError(t, err)
	_, _, err = c.store.Update(ctx, chat.Update{Action: chat.ActionEdit, MessageID: m.ID, UserID: "1", Body: "typo"})
	require.NoError(t, err)
	_, _, err = c.store.Post(ctx, chat.NewMessage{RoomID: "10", SenderID: "1", Body: "next", Source: chat.SourceWeb})
	require.NoError(t, err)
	_, _, err = c.store.Update(ctx, chat.Update{Action: chat.ActionEdit, MessageID: m.ID, UserID: "1", Body: "typo fixed"})
	require.NoError(t, err)
	require.Len(t, events, 4)
	for _, i := range []int{3, 0, 2} { // the first update is lost
		c.hubs[1].Receive(events[i])
	}
	kinds := []string{"message", "update", "message", "update"}
	var last map[string]any
	for i, kind := range kinds {
		last = apitest.NextEvent(t, b)
		require.Equal(t, kind, last["type"])
		require.EqualValues(t, i+1, apitest.EventSeq(last), "frame %v", last)
	}
	require.Equal(t, "edit", last["kind"])
	require.Equal(t, "typo fixed", last["message"].(map[string]any)["body"])
}

// TestMembershipControls: leave and join controls published by one hub
// change the subscriptions of the user's sockets on the other.
func TestMembershipControls(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 2, nil)
	_, aliceToken := c.store.user("1")
	_, bobToken := c.store.user("2")
	c.store.room("10", "1", "2")
	c.store.room("20", "1")
	a := c.dial(t, 0, aliceToken)
	b := c.dial(t, 1, bobToken)
	nextOf(t, a, "subscribed")
	nextOf(t, b, "subscribed")

	c.store.leave("2", "10")
	c.hubs[0].Left(context.Background(), "2", "10", "left")
	u := nextOf(t, b, "unsubscribed")
	require.Equal(t, "10", u["room"])
	require.Equal(t, "left", u["reason"])
	a.Send(map[string]any{"type": "send", "id": "x", "room": "10", "body": "not for bob"})
	nextOf(t, a, "ack")

	from := c.store.join("2", "20")
	c.hubs[0].Joined(context.Background(), chat.Membership{UserID: "2", RoomID: "20", FromSeq: from, New: true})
	require.Equal(t, "20", nextOf(t, b, "subscribed")["room"])
	a.Send(map[string]any{"type": "send", "id": "y", "room": "20", "body": "for bob"})
	got := nextOf(t, b, "message")
	require.Equal(t, "20", got["message"].(map[string]any)["room_id"], "nothing of room 10 came first")
}

// TestEndedSessionCloses: ending a session closes its sockets on every hub
// with 4401, and only those.
func TestEndedSessionCloses(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 2, nil)
	_, bobToken := c.store.user("2")
	_, carolToken := c.store.user("3")
	b := c.dial(t, 1, bobToken)
	other := c.dial(t, 1, carolToken)
	c.hubs[0].EndSessions(context.Background(), "2", []string{"session-2"})
	for {
		_, err := b.NextErr(2 * time.Second)
		if err != nil {
			require.Equal(t, websocket.StatusCode(4401), websocket.CloseStatus(err))
			break
		}
	}
	other.Send(map[string]any{"type": "ping", "id": "p"})
	require.Equal(t, "p", nextOf(t, other, "pong")["id"])
}

// TestDeliveryCursorWaitsForBusyRows: when a socket closes, its delivery
// cursor is written before the close frame goes out, even if its row is
// busy at first, so that the next connection starts after what was
// delivered.
func TestDeliveryCursorWaitsForBusyRows(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 1, func(cfg *hub.Config) { cfg.DeliveredFlush = time.Hour })
	_, aliceToken := c.store.user("1")
	_, bobToken := c.store.user("2")
	c.store.room("10", "1", "2")
	a, b := c.dial(t, 0, aliceToken), c.dial(t, 0, bobToken)
	nextOf(t, a, "subscribed")
	nextOf(t, b, "subscribed")
	for i := 1; i <= 3; i++ {
		apitest.SendWS(t, a, "10", fmt.Sprint("hello ", i))
		require.Equal(t, int64(i), apitest.MessageSeq(nextOf(t, b, "message")))
	}
	c.store.mu.Lock()
	c.store.busyWrites = 3
	c.store.mu.Unlock()
	c.hubs[0].EndSessions(context.Background(), "2", []string{"session-2"})
	require.Equal(t, websocket.StatusCode(4401), b.CloseStatus(5*time.Second))
	c.store.mu.Lock()
	defer c.store.mu.Unlock()
	require.Zero(t, c.store.busyWrites, "tried again while busy")
	require.Equal(t, int64(3), c.store.rooms["10"].members["2"], "written before the close frame")
}

// TestShutdownClosesWithGoingAway: Shutdown closes every socket with 1001
// after telling it, and leaves no goroutine behind (TestMain checks).
func TestShutdownClosesWithGoingAway(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 1, nil)
	_, token := c.store.user("2")
	cl := c.dial(t, 0, token)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	go func() { _ = c.hubs[0].Shutdown(ctx) }()
	e := nextOf(t, cl, "error")
	require.Equal(t, "unavailable", e["code"])
	_, err := cl.NextErr(5 * time.Second)
	require.Equal(t, websocket.StatusGoingAway, websocket.CloseStatus(err))
}
