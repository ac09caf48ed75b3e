package cache_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/switchboard-chat/switchboard/broker/brokertest"
	"github.com/switchboard-chat/switchboard/cache"
	"github.com/switchboard-chat/switchboard/chat"
	"github.com/switchboard-chat/switchboard/denylist"
	"github.com/switchboard-chat/switchboard/storage"
	"github.com/switchboard-chat/switchboard/storage/storagetest"
)

// cluster is one database and one Redis prefix shared by the caches of
// several nodes, as in a deployment.
type cluster struct {
	ctx     context.Context
	store   *storage.Store
	rdb     redis.UniversalClient
	key     string
	revoked *denylist.Redis
}

func newCluster(t *testing.T) *cluster {
	t.Helper()
	rdb, prefix := brokertest.NewClient(t)
	revoked, err := denylist.New(denylist.Config{Redis: rdb, Prefix: prefix})
	require.NoError(t, err)
	return &cluster{ctx: t.Context(), store: storage.New(storagetest.NewPool(t)), rdb: rdb, key: prefix + "versions", revoked: revoked}
}

// node is one node's cache; reg holds its hit and miss counters.
type node struct {
	*cache.Cache
	reg *prometheus.Registry
}

var _ cache.Backing = (*cache.Cache)(nil) // a cache can stand where storage does

func (c *cluster) node(t *testing.T, rdb redis.UniversalClient) node {
	t.Helper()
	reg := prometheus.NewRegistry()
	s, err := cache.New(t.Context(), cache.Config{Store: c.store, Redis: rdb, Key: c.key, EndedKey: c.revoked.Key, Registerer: reg})
	require.NoError(t, err)
	return node{s, reg}
}

// lookups is the node's count of cache lookups with the given result.
func (n node) lookups(t *testing.T, result string) float64 {
	t.Helper()
	mfs, err := n.reg.Gather()
	require.NoError(t, err)
	var sum float64
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" && l.GetValue() == result {
					sum += m.GetCounter().GetValue()
				}
			}
		}
	}
	return sum
}

func (c *cluster) user(t *testing.T, name string) string {
	t.Helper()
	p, err := c.store.CreateUser(c.ctx, name, "$2a$10$hash", "Display "+name)
	require.NoError(t, err)
	return p.ID
}

func (c *cluster) room(t *testing.T, creatorID, name, visibility string) chat.Room {
	t.Helper()
	r, err := c.store.CreateRoom(c.ctx, creatorID, name, visibility)
	require.NoError(t, err)
	return r
}

// post stores a message and announces it through announcer, as the poster
// does before the sender is answered.
func (c *cluster) post(t *testing.T, announcer node, roomID, senderID, parentID, body string) chat.Message {
	t.Helper()
	m, created, err := c.store.SaveMessage(c.ctx, chat.NewMessage{RoomID: roomID, SenderID: senderID, ParentID: parentID, Body: body, Source: chat.SourceWeb})
	require.NoError(t, err)
	require.True(t, created)
	require.NoError(t, announcer.MessageStored(c.ctx, roomID, m.Seq))
	return m
}

// change stores an update and announces it through announcer, as the
// poster does.
func (c *cluster) change(t *testing.T, announcer node, u chat.Update) {
	t.Helper()
	require.NoError(t, u.Validate())
	ev, changed, err := c.store.UpdateMessage(c.ctx, u)
	require.NoError(t, err)
	require.True(t, changed)
	require.NoError(t, announcer.MessageStored(c.ctx, ev.Message.RoomID, ev.Seq))
}

func texts(ms []chat.EncodedMessage) []string {
	out := []string{}
	for _, m := range ms {
		out = append(out, string(m.JSON))
	}
	return out
}

// read is one read, made through a Backing: storage or a cache.
type read struct {
	name string
	do   func(b cache.Backing) ([]chat.EncodedMessage, error)
}

// requireSame checks that n answers every read as Postgres does now, byte
// for byte.
func (c *cluster) requireSame(t *testing.T, n node, reads []read) {
	t.Helper()
	for _, r := range reads {
		want, err := r.do(c.store)
		require.NoError(t, err)
		got, err := r.do(n)
		require.NoError(t, err, r.name)
		require.Equal(t, texts(want), texts(got), r.name)
	}
}

// TestReadsAreWhatPostgresSays: every read, through the cache, is byte for
// byte what Postgres answers, in a room longer than a window; and again
// after new messages and replies (to parents inside and outside the
// window), read on a node whose window predates them.
func TestReadsAreWhatPostgresSays(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	alice := c.user(t, "alice")
	room := c.room(t, alice, "long", chat.Public)
	a, b := c.node(t, c.rdb), c.node(t, c.rdb)
	var msgs []chat.Message
	for i := range 300 {
		parent := ""
		if i%7 == 6 { // a reply, to an old or a recent top-level message
			p := i / 2
			for p%7 == 6 {
				p--
			}
			parent = msgs[p].ID
		}
		msgs = append(msgs, c.post(t, a, room.ID, alice, parent, fmt.Sprint("message ", i)))
	}

	reads := func() []read {
		last := msgs[len(msgs)-1]
		var rs []read
		for _, limit := range []int{1, 50, 201} {
			for _, before := range []int64{math.MaxInt64, last.Seq + 5, last.Seq, 100, 60, 45, 2, 1, 0} {
				rs = append(rs, read{fmt.Sprintf("before %d limit %d", before, limit), func(b cache.Backing) ([]chat.EncodedMessage, error) {
					return b.MessagesBefore(c.ctx, room.ID, before, limit)
				}})
			}
			for _, after := range []int64{0, 40, 44, 45, 100, last.Seq - 1, last.Seq, last.Seq + 5} {
				rs = append(rs, read{fmt.Sprintf("after %d limit %d", after, limit), func(b cache.Backing) ([]chat.EncodedMessage, error) {
					return b.MessagesAfter(c.ctx, room.ID, after, limit)
				}})
			}
		}
		var sinces []time.Time
		for _, i := range []int{0, 43, 44, 150, len(msgs) - 2, len(msgs) - 1} {
			sinces = append(sinces, msgs[i].CreatedAt)
		}
		sinces = append(sinces, msgs[0].CreatedAt.Add(-time.Hour), last.CreatedAt.Add(time.Hour))
		for _, since := range sinces {
			rs = append(rs, read{fmt.Sprintf("since %s", since), func(b cache.Backing) ([]chat.EncodedMessage, error) {
				seq, err := b.SeqBefore(c.ctx, room.ID, since)
				if err != nil {
					return nil, err
				}
				return []chat.EncodedMessage{{Message: chat.Message{Seq: seq}, JSON: []byte(fmt.Sprint(seq))}}, nil
			}})
		}
		for _, i := range []int{0, 3, 6, 150, 280, len(msgs) - 1} {
			rs = append(rs, read{fmt.Sprintf("message %d and its replies", i), func(b cache.Backing) ([]chat.EncodedMessage, error) {
				m, err := b.Message(c.ctx, msgs[i].ID)
				if err != nil {
					return nil, err
				}
				replies, err := b.Replies(c.ctx, msgs[i].ID, 0, 200)
				return append([]chat.EncodedMessage{m}, replies...), err
			}})
		}
		return rs
	}
	c.requireSame(t, a, reads())
	c.requireSame(t, b, reads())
	require.Positive(t, a.lookups(t, "hit"))

	// New messages, some replies: to a parent in b's window and to one
	// outside it, whose reply_count b must not miss either. They are
	// announced through a: b learns of them through Redis alone.
	for i := range 20 {
		parent := ""
		switch i % 3 {
		case 1:
			parent = msgs[280].ID
		case 2:
			parent = msgs[3].ID
		}
		msgs = append(msgs, c.post(t, a, room.ID, alice, parent, fmt.Sprint("later ", i)))
		if i == 9 {
			c.requireSame(t, b, reads()) // the window is extended from Postgres
		}
	}
	hits := b.lookups(t, "hit")
	c.requireSame(t, b, reads())
	require.Greater(t, b.lookups(t, "hit"), hits, "the extended window answers")

	p, err := b.Message(c.ctx, msgs[3].ID)
	require.NoError(t, err)
	require.Equal(t, 1+6, p.ReplyCount, "one seeded reply, six later")
	replies, err := b.Replies(c.ctx, msgs[3].ID, 0, 200)
	require.NoError(t, err)
	require.Len(t, replies, p.ReplyCount)

	// Updates (SPEC §13) between new messages, to messages inside b's
	// window and older, top-level and replies: b's reads stay what
	// Postgres says, its window extended with the changed messages.
	updates := []chat.Update{
		{Action: chat.ActionEdit, MessageID: msgs[310].ID, Body: "edited inside"},
		{Action: chat.ActionEdit, MessageID: msgs[3].ID, Body: "edited outside"},
		{Action: chat.ActionReact, MessageID: msgs[280].ID, Emoji: "👍"},
		{Action: chat.ActionReact, MessageID: msgs[311].ID, Emoji: ":shipit:"},
		{Action: chat.ActionDelete, MessageID: msgs[280].ID},
		{Action: chat.ActionDelete, MessageID: msgs[2].ID},
		{Action: chat.ActionUnreact, MessageID: msgs[311].ID, Emoji: ":shipit:"},
	}
	for i, u := range updates {
		u.UserID = alice
		c.change(t, a, u)
		msgs = append(msgs, c.post(t, a, room.ID, alice, msgs[280].ID, fmt.Sprint("after update ", i)))
		if i%3 == 0 {
			c.requireSame(t, b, reads())
		}
	}
	hits = b.lookups(t, "hit")
	c.requireSame(t, b, reads())
	require.Greater(t, b.lookups(t, "hit"), hits, "the window extended with updates answers")
	deleted, err := b.Message(c.ctx, msgs[280].ID)
	require.NoError(t, err)
	require.True(t, deleted.Deleted)
	require.Equal(t, "", deleted.Body)
}

// TestThreadsFollowNewReplies: a thread read on one node shows a reply
// stored through another at once, whether its parent is inside the room's
// window or older.
func TestThreadsFollowNewReplies(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	alice := c.user(t, "alice")
	room := c.room(t, alice, "threads", chat.Private)
	other := c.node(t, c.rdb)
	old := c.post(t, other, room.ID, alice, "", "old parent")
	for i := range 300 {
		c.post(t, other, room.ID, alice, "", fmt.Sprint("filler ", i))
	}
	recent := c.post(t, other, room.ID, alice, "", "recent parent")
	n := c.node(t, c.rdb)
	for _, parent := range []chat.Message{old, recent} {
		for round := 1; round <= 3; round++ {
			replies, err := n.Replies(c.ctx, parent.ID, 0, 200)
			require.NoError(t, err)
			require.Len(t, replies, round-1)
			replies, err = n.Replies(c.ctx, parent.ID, 0, 200) // from memory
			require.NoError(t, err)
			require.Len(t, replies, round-1)
			c.post(t, other, room.ID, alice, parent.ID, fmt.Sprint("reply ", round))
		}
		p, err := n.Message(c.ctx, parent.ID)
		require.NoError(t, err)
		require.Equal(t, 3, p.ReplyCount)
		replies, err := n.Replies(c.ctx, parent.ID, 1, 1)
		require.NoError(t, err)
		require.Len(t, replies, 1)
	}
	require.Positive(t, n.lookups(t, "hit"))
	_, err := n.Message(c.ctx, "999999999")
	require.ErrorIs(t, err, chat.ErrNotFound)
	_, err = n.Replies(c.ctx, "999999999", 0, 10)
	require.ErrorIs(t, err, chat.ErrNotFound)
}

// TestChangesOnOneNodeShowOnAnother: what a node has cached gives way at
// once to a display name change, a leave and a logout announced by
// another node.
func TestChangesOnOneNodeShowOnAnother(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	alice, bob := c.user(t, "alice"), c.user(t, "bob")
	room := c.room(t, alice, "general", chat.Private)
	_, _, err := c.store.AddMember(c.ctx, alice, room.ID, "bob")
	require.NoError(t, err)
	a, b := c.node(t, c.rdb), c.node(t, c.rdb)
	c.post(t, a, room.ID, alice, "", "hello")
	read := func() chat.Message {
		t.Helper()
		got, err := b.MessagesBefore(c.ctx, room.ID, math.MaxInt64, 50)
		require.NoError(t, err)
		require.Len(t, got, 1)
		var m chat.Message
		require.NoError(t, json.Unmarshal(got[0].JSON, &m))
		return m
	}
	require.Equal(t, "Display alice", read().Sender.DisplayName)
	read() // cached now
	p, ended, err := b.ProfileUnlessEnded(c.ctx, alice, "session-1")
	require.NoError(t, err)
	require.False(t, ended)
	require.Equal(t, "Display alice", p.DisplayName)

	name := "Alice Liddell"
	_, err = c.store.UpdateProfile(c.ctx, alice, chat.ProfileUpdate{DisplayName: &name})
	require.NoError(t, err)
	a.UserChanged(c.ctx, alice, true)
	require.Equal(t, name, read().Sender.DisplayName)
	p, _, err = b.ProfileUnlessEnded(c.ctx, alice, "session-1")
	require.NoError(t, err)
	require.Equal(t, name, p.DisplayName)

	require.NoError(t, c.revoked.EndSessions(c.ctx, time.Now().Add(time.Minute), "session-1"))
	_, ended, err = b.ProfileUnlessEnded(c.ctx, alice, "session-1")
	require.NoError(t, err)
	require.True(t, ended)

	require.NoError(t, b.CheckMember(c.ctx, bob, room.ID))
	require.NoError(t, b.CheckMember(c.ctx, bob, room.ID)) // cached now
	require.NoError(t, c.store.Leave(c.ctx, bob, room.ID))
	a.UserChanged(c.ctx, bob, false)
	require.ErrorIs(t, b.CheckMember(c.ctx, bob, room.ID), chat.ErrNotFound, "a private room one left is not found")
}

// TestRedisDown: without Redis the cache reads from Postgres (correct,
// uncached), refuses to say a session has not ended, and announces the
// room heads it could not once Redis is back.
func TestRedisDown(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	alice := c.user(t, "alice")
	rooms := []chat.Room{c.room(t, alice, "down", chat.Public), c.room(t, alice, "down-too", chat.Public)}
	proxy := brokertest.NewProxy(t)
	opts, err := redis.ParseURL(proxy.URL())
	require.NoError(t, err)
	opts.MaxRetries = -1
	viaProxy := redis.NewClient(opts)
	t.Cleanup(func() { _ = viaProxy.Close() })
	n, other := c.node(t, viaProxy), c.node(t, c.rdb)
	for _, room := range rooms {
		c.post(t, n, room.ID, alice, "", "one")
		got, err := other.MessagesBefore(c.ctx, room.ID, math.MaxInt64, 50)
		require.NoError(t, err)
		require.Len(t, got, 1)
	}

	proxy.Cut()
	// Stored while this node cannot see Redis: its own reads show it (from
	// Postgres), and its announcement waits.
	for _, room := range rooms {
		m, _, err := c.store.SaveMessage(c.ctx, chat.NewMessage{RoomID: room.ID, SenderID: alice, Body: "two", Source: chat.SourceWeb})
		require.NoError(t, err)
		require.Error(t, n.MessageStored(c.ctx, room.ID, m.Seq))
		got, err := n.MessagesBefore(c.ctx, room.ID, math.MaxInt64, 50)
		require.NoError(t, err)
		require.Len(t, got, 2)
		require.Equal(t, m.Seq, got[1].Seq)
	}
	require.NoError(t, n.CheckMember(c.ctx, alice, rooms[0].ID))
	_, _, err = n.ProfileUnlessEnded(c.ctx, alice, "session-1")
	require.ErrorIs(t, err, chat.ErrRevocationUnknown)
	// Retries that fail keep every head, not only the first they tried.
	time.Sleep(2500 * time.Millisecond)

	// Once Redis is back, the other node sees the messages: the heads are
	// announced again.
	proxy.Restore()
	for _, room := range rooms {
		require.Eventually(t, func() bool {
			got, err := other.MessagesBefore(c.ctx, room.ID, math.MaxInt64, 50)
			return err == nil && len(got) == 2
		}, 5*time.Second, 50*time.Millisecond, "room %s", room.Name)
	}
}

// TestConcurrentAnnouncements: announcements made at once, several per
// room and out of order (they share round trips), leave each room's head at
// its highest seq.
func TestConcurrentAnnouncements(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	n := c.node(t, c.rdb)
	const rooms, perRoom = 5, 40
	var wg sync.WaitGroup
	for r := range rooms {
		for s := range perRoom {
			wg.Go(func() {
				seq := int64((s*7)%perRoom + 1) // 1..perRoom in a shuffled order
				require.NoError(t, n.MessageStored(c.ctx, fmt.Sprint("room-", r), seq))
			})
		}
	}
	wg.Wait()
	for r := range rooms {
		head, err := c.rdb.ZScore(c.ctx, c.key, fmt.Sprint("room-", r)).Result()
		require.NoError(t, err)
		require.Equal(t, float64(perRoom), head, "room-%d", r)
	}
}
