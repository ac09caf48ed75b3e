package cache_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/switchboard-chat/switchboard/auth"
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
	rdb     *redis.Client
	key     string
	revoked *denylist.Redis
}

func newCluster(t *testing.T) *cluster {
	t.Helper()
	opts, err := redis.ParseURL(brokertest.RedisURL())
	require.NoError(t, err)
	rdb := redis.NewClient(opts)
	prefix := brokertest.Prefix()
	revoked, err := denylist.NewRedis(rdb, prefix)
	require.NoError(t, err)
	c := &cluster{ctx: t.Context(), store: storage.New(storagetest.NewPool(t)), rdb: rdb, key: prefix + "versions", revoked: revoked}
	t.Cleanup(func() {
		_ = brokertest.DeleteKeys(context.Background(), rdb, prefix+"*")
		_ = rdb.Close()
	})
	return c
}

// node is one node's cache; reg holds its hit and miss counters.
type node struct {
	*cache.Store
	reg *prometheus.Registry
}

func (c *cluster) node(t *testing.T, rdb *redis.Client) node {
	t.Helper()
	reg := prometheus.NewRegistry()
	s, err := cache.New(cache.Config{Store: c.store, Redis: rdb, Key: c.key, EndedKey: c.revoked.Key, Metrics: reg})
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

// post stores a message and raises its room's head as the broker does with
// each publish, before the sender is answered.
func (c *cluster) post(t *testing.T, roomID, senderID, parentID, body string) chat.Message {
	t.Helper()
	m, created, err := c.store.SaveMessage(c.ctx, chat.NewMessage{RoomID: roomID, SenderID: senderID, ParentID: parentID, Body: body, Source: chat.SourceWeb})
	require.NoError(t, err)
	require.True(t, created)
	require.NoError(t, c.rdb.ZAddGT(c.ctx, c.key, redis.Z{Score: float64(m.Seq), Member: roomID}).Err())
	return m
}

// want is what Postgres answers for q now, encoded as the API sends it.
func (c *cluster) want(t *testing.T, roomID string, q chat.HistoryQuery) []string {
	t.Helper()
	if !q.Since.IsZero() {
		seq, err := c.store.SeqBefore(c.ctx, roomID, q.Since)
		require.NoError(t, err)
		q.After, q.Seq = true, seq
	}
	var msgs []chat.Message
	var err error
	if q.After {
		msgs, err = c.store.MessagesAfter(c.ctx, roomID, q.Seq, q.Limit)
	} else {
		msgs, err = c.store.MessagesBefore(c.ctx, roomID, q.Seq, q.Limit)
	}
	require.NoError(t, err)
	out := []string{}
	for _, m := range msgs {
		b, err := json.Marshal(m)
		require.NoError(t, err)
		out = append(out, string(b))
	}
	return out
}

func texts(ms []chat.EncodedMessage) []string {
	out := []string{}
	for _, m := range ms {
		out = append(out, string(m.JSON))
	}
	return out
}

// TestHistoryIsWhatPostgresSays: every kind of page, read through the
// cache, is byte for byte what Postgres answers, in a room longer than a
// window; and again after new messages and replies (to parents inside and
// outside the window), read on a node whose window predates them.
func TestHistoryIsWhatPostgresSays(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	alice := c.user(t, "alice")
	room := c.room(t, alice, "long", chat.Public)
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
		msgs = append(msgs, c.post(t, room.ID, alice, parent, fmt.Sprint("message ", i)))
	}
	a, b := c.node(t, c.rdb), c.node(t, c.rdb)

	check := func(n node) {
		t.Helper()
		last := msgs[len(msgs)-1]
		queries := []chat.HistoryQuery{}
		for _, limit := range []int{1, 50, 201} {
			for _, before := range []int64{math.MaxInt64, last.Seq + 5, last.Seq, 100, 60, 45, 2, 1, 0} {
				queries = append(queries, chat.HistoryQuery{Seq: before, Limit: limit})
			}
			for _, after := range []int64{0, 40, 44, 45, 100, last.Seq - 1, last.Seq, last.Seq + 5} {
				queries = append(queries, chat.HistoryQuery{After: true, Seq: after, Limit: limit})
			}
			for _, i := range []int{0, 43, 44, 150, len(msgs) - 2, len(msgs) - 1} {
				queries = append(queries, chat.HistoryQuery{Since: msgs[i].CreatedAt, Limit: limit})
			}
			for _, since := range []time.Time{msgs[0].CreatedAt.Add(-time.Hour), last.CreatedAt.Add(time.Hour)} {
				queries = append(queries, chat.HistoryQuery{Since: since, Limit: limit})
			}
		}
		for _, q := range queries {
			got, err := n.History(c.ctx, alice, room.ID, q)
			require.NoError(t, err)
			require.Equal(t, c.want(t, room.ID, q), texts(got), "%+v", q)
		}
	}
	check(a)
	check(b)
	require.Positive(t, a.lookups(t, "hit"))

	// New messages, some replies: to a parent in b's window and to one
	// outside it, whose reply_count b must not miss either.
	for i := range 20 {
		parent := ""
		switch i % 3 {
		case 1:
			parent = msgs[280].ID
		case 2:
			parent = msgs[3].ID
		}
		msgs = append(msgs, c.post(t, room.ID, alice, parent, fmt.Sprint("later ", i)))
		if i == 9 {
			check(b) // the window is extended from Postgres
		}
	}
	hits := b.lookups(t, "hit")
	check(b)
	require.Greater(t, b.lookups(t, "hit"), hits, "the extended window answers")

	p, replies, err := b.Thread(c.ctx, alice, msgs[3].ID, 0, 200)
	require.NoError(t, err)
	var parent chat.Message
	require.NoError(t, json.Unmarshal(p.JSON, &parent))
	require.Equal(t, 1+6, parent.ReplyCount, "one seeded reply, six later")
	require.Len(t, replies, parent.ReplyCount)
}

// TestThreadsFollowNewReplies: a thread read on one node shows a reply
// stored through another at once, whether its parent is inside the room's
// window or older.
func TestThreadsFollowNewReplies(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	alice := c.user(t, "alice")
	room := c.room(t, alice, "threads", chat.Private)
	old := c.post(t, room.ID, alice, "", "old parent")
	for i := range 300 {
		c.post(t, room.ID, alice, "", fmt.Sprint("filler ", i))
	}
	recent := c.post(t, room.ID, alice, "", "recent parent")
	n := c.node(t, c.rdb)
	for _, parent := range []chat.Message{old, recent} {
		for round := 1; round <= 3; round++ {
			_, replies, err := n.Thread(c.ctx, alice, parent.ID, 0, 200)
			require.NoError(t, err)
			require.Len(t, replies, round-1)
			_, replies, err = n.Thread(c.ctx, alice, parent.ID, 0, 200) // from memory
			require.NoError(t, err)
			require.Len(t, replies, round-1)
			c.post(t, room.ID, alice, parent.ID, fmt.Sprint("reply ", round))
		}
		p, replies, err := n.Thread(c.ctx, alice, parent.ID, 1, 1)
		require.NoError(t, err)
		var m chat.Message
		require.NoError(t, json.Unmarshal(p.JSON, &m))
		require.Equal(t, 3, m.ReplyCount)
		require.Len(t, replies, 1)
	}
	require.Positive(t, n.lookups(t, "hit"))
	_, _, err := n.Thread(c.ctx, alice, "999999999", 0, 10)
	require.ErrorIs(t, err, chat.ErrNotFound)
}

// TestChangesOnOneNodeShowOnAnother: what a node has cached gives way at
// once to a display name change, a leave and a logout made through another
// node.
func TestChangesOnOneNodeShowOnAnother(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	alice, bob := c.user(t, "alice"), c.user(t, "bob")
	room := c.room(t, alice, "general", chat.Private)
	_, _, err := c.store.AddMember(c.ctx, alice, room.ID, "bob")
	require.NoError(t, err)
	c.post(t, room.ID, alice, "", "hello")
	a, b := c.node(t, c.rdb), c.node(t, c.rdb)
	latest := chat.HistoryQuery{Seq: math.MaxInt64, Limit: 50}
	read := func() chat.Message {
		t.Helper()
		got, err := b.History(c.ctx, bob, room.ID, latest)
		require.NoError(t, err)
		require.Len(t, got, 1)
		var m chat.Message
		require.NoError(t, json.Unmarshal(got[0].JSON, &m))
		return m
	}
	require.Equal(t, "Display alice", read().Sender.DisplayName)
	read() // cached now
	p, revoked, err := b.ProfileUnlessEnded(c.ctx, alice, "session-1")
	require.NoError(t, err)
	require.False(t, revoked)
	require.Equal(t, "Display alice", p.DisplayName)

	name := "Alice Liddell"
	_, err = a.UpdateProfile(c.ctx, alice, chat.ProfileUpdate{DisplayName: &name})
	require.NoError(t, err)
	require.Equal(t, name, read().Sender.DisplayName)
	p, _, err = b.ProfileUnlessEnded(c.ctx, alice, "session-1")
	require.NoError(t, err)
	require.Equal(t, name, p.DisplayName)

	require.NoError(t, c.revoked.EndSessions(c.ctx, time.Now().Add(time.Minute), "session-1"))
	_, revoked, err = b.ProfileUnlessEnded(c.ctx, alice, "session-1")
	require.NoError(t, err)
	require.True(t, revoked)

	require.NoError(t, a.Leave(c.ctx, bob, room.ID))
	_, err = b.History(c.ctx, bob, room.ID, latest)
	require.ErrorIs(t, err, chat.ErrNotFound, "a private room one left is not found")
	_, _, err = b.Thread(c.ctx, bob, newestID(t, c, room.ID), 0, 10)
	require.ErrorIs(t, err, chat.ErrNotFound)
}

// newestID is the id of the room's newest message.
func newestID(t *testing.T, c *cluster, roomID string) string {
	t.Helper()
	msgs, err := c.store.MessagesBefore(c.ctx, roomID, math.MaxInt64, 1)
	require.NoError(t, err)
	require.Len(t, msgs, 1)
	return msgs[0].ID
}

// TestRedisDown: without Redis the cache answers history from Postgres
// (correct, uncached), and refuses to say a token is not revoked.
func TestRedisDown(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	alice := c.user(t, "alice")
	room := c.room(t, alice, "down", chat.Public)
	proxy := brokertest.NewProxy(t)
	opts, err := redis.ParseURL(proxy.URL())
	require.NoError(t, err)
	opts.MaxRetries = -1
	viaProxy := redis.NewClient(opts)
	t.Cleanup(func() { _ = viaProxy.Close() })
	n := c.node(t, viaProxy)
	latest := chat.HistoryQuery{Seq: math.MaxInt64, Limit: 50}
	c.post(t, room.ID, alice, "", "one")
	got, err := n.History(c.ctx, alice, room.ID, latest)
	require.NoError(t, err)
	require.Len(t, got, 1)

	proxy.Cut()
	// Stored while this node cannot see Redis: Postgres still shows it.
	m, _, err := c.store.SaveMessage(c.ctx, chat.NewMessage{RoomID: room.ID, SenderID: alice, Body: "two", Source: chat.SourceWeb})
	require.NoError(t, err)
	got, err = n.History(c.ctx, alice, room.ID, latest)
	require.NoError(t, err)
	require.Len(t, got, 2)
	require.Equal(t, m.Seq, got[1].Seq)
	_, _, err = n.ProfileUnlessEnded(c.ctx, alice, "session-1")
	require.ErrorIs(t, err, auth.ErrRevocationUnknown)
}
