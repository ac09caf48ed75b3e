package main

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-chat/switchboard/chat"
)

// metricValue reads one series of /metrics (name with its labels, as
// printed), or fails when it is missing.
func metricValue(t *testing.T, s *testServer, series string) float64 {
	t.Helper()
	r := s.do(t, "GET", "/metrics", "", nil)
	require.Equal(t, http.StatusOK, r.Status)
	for _, line := range strings.Split(string(r.Raw), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			var f float64
			_, err := fmt.Sscan(v, &f)
			require.NoError(t, err)
			return f
		}
	}
	t.Fatalf("/metrics has no %s", series)
	return 0
}

// TestMetricsDeliveryAndPools: after messages reach two connections,
// /metrics shows one delivery-latency observation per message and
// connection, an empty send queue, and the Postgres and Redis pools.
func TestMetricsDeliveryAndPools(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, nil)
	alice, bob := s.register(t, "alice"), s.register(t, "bob")
	room := s.createRoom(t, alice, chat.Private)
	s.addMember(t, alice, room, bob)
	a, b := s.dialWS(t, alice.Token), s.dialWS(t, bob.Token)
	a.ready()
	b.ready()
	for i := range 3 {
		a.send(map[string]any{"type": "send", "id": fmt.Sprint(i), "room": room, "body": "hello", "client_id": fmt.Sprint("m-", i)})
	}
	expectMessages(t, a, room, 1, 3)
	expectMessages(t, b, room, 1, 3)

	// Both counters move after the frame may already have reached the
	// client: the flush observes when its write returns, and the room
	// counts its hand-offs once it has queued the message for everyone.
	require.Eventually(t, func() bool {
		return metricValue(t, s, "switchboard_delivery_seconds_count") == 6 &&
			metricValue(t, s, "switchboard_messages_out_total") == 6
	}, 5*time.Second, 10*time.Millisecond, "3 messages to 2 connections")
	require.Equal(t, 0.0, metricValue(t, s, "switchboard_send_queue_bytes"))
	require.GreaterOrEqual(t, metricValue(t, s, "switchboard_postgres_pool_connections"), 1.0)
	require.Greater(t, metricValue(t, s, "switchboard_postgres_pool_acquires_total"), 0.0)
	require.GreaterOrEqual(t, metricValue(t, s, "switchboard_redis_pool_connections"), 1.0)
}
