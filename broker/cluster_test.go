package broker

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/switchboard-chat/switchboard/broker/brokertest"
	"github.com/switchboard-chat/switchboard/hub"
	"github.com/switchboard-chat/switchboard/internal/redistopo"
)

// newClusterClient connects to the Redis Cluster at addrs with short
// timeouts, so that a dead primary is noticed fast.
func newClusterClient(t *testing.T, addrs []string) *redis.ClusterClient {
	t.Helper()
	c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs,
		ClusterStateReloadInterval: time.Second, DialTimeout: 300 * time.Millisecond, ReadTimeout: 300 * time.Millisecond, WriteTimeout: 300 * time.Millisecond})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// shardSubscribers returns how many connections of the primary at addr
// are subscribed to the sharded channel.
func shardSubscribers(t *testing.T, addr, channel string) int64 {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	n, err := c.PubSubShardNumSub(context.Background(), channel).Result()
	require.NoError(t, err)
	return n[channel]
}

// TestRedisClusterShardedDelivery: on a Redis Cluster, rooms travel on
// sharded channels spread over every primary, each subscribed on the
// primary that owns its slot, and events and controls reach the other
// node as on a single Redis.
func TestRedisClusterShardedDelivery(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := redistopo.StartCluster(t)
	prefix := brokertest.Prefix()
	a, ra := startBroker(t, Config{Redis: newClusterClient(t, c.Addrs()), Prefix: prefix})
	b, rb := startBroker(t, Config{Redis: newClusterClient(t, c.Addrs()), Prefix: prefix})

	const rooms = 30
	primaries := map[string]bool{}
	for i := range rooms {
		room := fmt.Sprint(1000 + i)
		require.NoError(t, b.Subscribe(ctx, room))
		channel, _ := b.roomChannel(room)
		owner := c.PrimaryOf(t, channel).Addr()
		primaries[owner] = true
		require.Equal(t, int64(1), shardSubscribers(t, owner, channel), "room %s subscribed on its slot's primary", room)
	}
	require.Len(t, primaries, 3, "rooms spread over every primary")

	for i := range rooms {
		require.NoError(t, a.Publish(ctx, event(fmt.Sprint(1000+i), 1, "hello")))
	}
	got := map[string]bool{}
	for range rooms {
		ev := rb.next(t)
		require.Equal(t, int64(1), ev.Seq)
		got[ev.Room] = true
	}
	require.Len(t, got, rooms, "each room's event once")
	require.NoError(t, a.Publish(ctx, event("unsubscribed room", 1, "nobody")))

	join := hub.Control{Op: hub.OpJoin, User: "7", Room: "42", FromSeq: 3}
	require.NoError(t, b.PublishControl(ctx, join))
	require.Equal(t, join, ra.nextControl(t))
	time.Sleep(100 * time.Millisecond)
	require.Empty(t, rb.events)
	require.Empty(t, ra.events, "a subscribed to nothing")
	require.Zero(t, rb.resyncs.Load(), "no Resync without a failure")
}

// TestRedisClusterFailover: when the primary that owns a room's slot dies
// and its replica takes over, the subscriber follows the slot to the new
// primary and asks its hub to read what it missed, the event that could
// not be published is published again, and later events flow as before.
func TestRedisClusterFailover(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := redistopo.StartCluster(t)
	prefix := brokertest.Prefix()
	a, _ := startBroker(t, Config{Redis: newClusterClient(t, c.Addrs()), Prefix: prefix, HealthInterval: 200 * time.Millisecond})
	b, rb := startBroker(t, Config{Redis: newClusterClient(t, c.Addrs()), Prefix: prefix, HealthInterval: 200 * time.Millisecond})
	const room = "4242"
	require.NoError(t, b.Subscribe(ctx, room))
	require.NoError(t, a.Publish(ctx, event(room, 1, "before")))
	require.Equal(t, int64(1), rb.next(t).Seq)

	channel, _ := b.roomChannel(room)
	dead := c.PrimaryOf(t, channel)
	dead.Kill(t)
	// Published while the slot has no primary: kept, and published again
	// once it has one.
	_ = a.Publish(ctx, event(room, 2, "during"))
	c.WaitHealthy(t)
	require.NotEqual(t, dead.Addr(), c.PrimaryOf(t, channel).Addr(), "the replica took over")

	require.Eventually(t, func() bool { return rb.resyncs.Load() >= 1 }, 20*time.Second, 20*time.Millisecond,
		"b resubscribed on the new primary and resynced")
	seen := map[int64]bool{}
	deadline := time.Now().Add(20 * time.Second)
	for !seen[3] && time.Now().Before(deadline) {
		_ = a.Publish(ctx, event(room, 3, "after")) // fails until a learns the new primary
		select {
		case ev := <-rb.events:
			seen[ev.Seq] = true
		case <-time.After(200 * time.Millisecond):
		}
	}
	require.True(t, seen[3], "events flow through the new primary")
}
