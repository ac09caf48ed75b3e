package main

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-chat/switchboard/broker/brokertest"
	"github.com/switchboard-chat/switchboard/chat"
	"github.com/switchboard-chat/switchboard/hub"
	"github.com/switchboard-chat/switchboard/internal/redistopo"
	"github.com/switchboard-chat/switchboard/storage/storagetest"
)

// TestRedisFailoverUnderTraffic kills the Redis primary that carries a busy
// room while a sender on one node writes into it at a steady rate, on a
// Redis Cluster (the primary owning the room's slot; its replica takes
// over) and behind Sentinel (the primary; Sentinel promotes the replica).
// Every message is acked and stored, and a reader on the other node gets
// every one exactly once in seq order without reconnecting.
func TestRedisFailoverUnderTraffic(t *testing.T) {
	t.Parallel()
	brokertest.RequireSingle(t) // it starts its own topologies
	for _, tc := range []struct {
		name  string
		start func(t *testing.T, room func() string) (brokertest.Topology, func())
	}{
		{"cluster", func(t *testing.T, channel func() string) (brokertest.Topology, func()) {
			c := redistopo.StartCluster(t)
			return brokertest.Topology{ClusterAddrs: c.Addrs()}, func() {
				c.PrimaryOf(t, channel()).Kill(t)
				c.WaitHealthy(t)
			}
		}},
		{"sentinel", func(t *testing.T, _ func() string) (brokertest.Topology, func()) {
			s := redistopo.StartSentinel(t)
			return brokertest.Topology{SentinelAddrs: s.SentinelAddrs(), SentinelMaster: s.MasterName()}, func() {
				old := s.Primary(t)
				old.Kill(t)
				s.WaitPrimary(t, old)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var a, b *testServer
			var room string
			topology, kill := tc.start(t, func() string { return a.node.broker.Channel(room) })
			db, prefix := storagetest.NewDatabase(t), brokertest.Prefix()
			fast := func(c *hub.Config) { c.RateLimit, c.RateBurst = 1000, 1000 }
			a = newTestServerWith(t, nodeOptions{databaseURL: db, redisPrefix: prefix, redis: &topology, tune: fast})
			b = newTestServerWith(t, nodeOptions{databaseURL: db, redisPrefix: prefix, redis: &topology, tune: fast})
			alice, bob := a.register(t, "alice"), b.register(t, "bob")
			room = a.createRoom(t, alice, chat.Private)
			a.addMember(t, alice, room, bob)
			sender, reader := a.subscribedClient(t, alice, 1), b.subscribedClient(t, bob, 1)

			// 300 messages at 100/s; the primary dies after the first 100.
			const total, killAt = 300, 100
			halfway, sent := make(chan struct{}), make(chan struct{})
			go func() {
				defer close(sent)
				tick := time.NewTicker(10 * time.Millisecond)
				defer tick.Stop()
				for i := range total {
					if i == killAt {
						close(halfway)
					}
					<-tick.C
					sender.send(map[string]any{"type": "send", "id": fmt.Sprint(i), "room": room, "body": fmt.Sprint("message ", i)})
				}
			}()
			acks := make(chan error, 1)
			go func() {
				for acked := 0; acked < total; {
					obj, err := sender.nextErr(30 * time.Second)
					switch {
					case err != nil:
						acks <- fmt.Errorf("after %d acks: %w", acked, err)
						return
					case obj["type"] == "error":
						acks <- fmt.Errorf("send refused: %v", obj)
						return
					case obj["type"] == "ack":
						acked++
					}
				}
				acks <- nil
			}()
			<-halfway
			killed := time.Now()
			kill()
			t.Logf("the topology healed %s after the kill", time.Since(killed).Round(time.Millisecond))
			<-sent
			require.NoError(t, <-acks, "every send acked")
			got := expectMessages(t, reader, room, 1, total)
			require.Len(t, got, total, "the reader got every message once, in order")
			var stored int
			require.NoError(t, a.node.pool.QueryRow(t.Context(), `SELECT count(*) FROM messages`).Scan(&stored))
			require.Equal(t, total, stored)
		})
	}
}
