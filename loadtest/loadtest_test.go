package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-chat/switchboard/broker/brokertest"
	"github.com/switchboard-chat/switchboard/storage/storagetest"
)

// buildServer builds the switchboard binary once per test binary run.
func buildServer(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "switchboard")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/switchboard-chat/switchboard/cmd/switchboard")
	cmd.Stderr = os.Stderr
	require.NoError(t, cmd.Run(), "go build ./cmd/switchboard")
	return bin
}

// startTestCluster starts count real `switchboard serve` processes on a
// fresh test database and a Redis prefix of their own.
func startTestCluster(t *testing.T, count int) []*node {
	t.Helper()
	bin := buildServer(t)
	dir := t.TempDir()
	secret, err := secretFile(dir)
	require.NoError(t, err)
	db, prefix := storagetest.NewDatabase(t), brokertest.Prefix()
	var nodes []*node
	for i := range count {
		s, err := startServer(t.Context(), spawnOptions{Binary: bin, DatabaseURL: db, RedisURL: brokertest.RedisURL(),
			RedisPrefix: prefix, SecretFile: secret, LogPath: filepath.Join(dir, fmt.Sprintf("server-%d.log", i))})
		require.NoError(t, err)
		t.Cleanup(s.stop)
		nodes = append(nodes, newNode(s.URL))
	}
	return nodes
}

// TestFanoutAcrossTwoNodes runs the fanout scenario briefly against a real
// two-node cluster: every subscriber, on either node, gets every acked
// message of its room once and in order.
func TestFanoutAcrossTwoNodes(t *testing.T) {
	t.Parallel()
	nodes := startTestCluster(t, 2)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	e := &env{nodes: nodes, dialer: newDialer(1), run: runID()}
	res, err := runFanout(ctx, e, fanoutParams{Rooms: 2, Subscribers: 10, UsersPerRoom: 3,
		Interval: 5 * time.Millisecond, Duration: time.Second, MaxMessages: 100, Drain: 10 * time.Second})
	require.NoError(t, err)
	res.print(testWriter{t})

	acked := res.value("messages acked")
	require.Greater(t, acked, 20.0, "the senders got acks")
	require.Zero(t, res.value("lost"))
	require.Zero(t, res.value("duplicated"))
	require.Zero(t, res.value("out of order"))
	require.Equal(t, acked*10, res.value("deliveries"), "each of the 10 subscribers of each room got each message")
	require.False(t, res.Failed)
	require.Equal(t, int(acked*10), res.Latencies["end-to-end"].Count)
}

// TestReceiverCheck feeds the checker a repeat and a gap: it must count
// both, so that the fanout scenario can fail.
func TestReceiverCheck(t *testing.T) {
	t.Parallel()
	r := &receiver{room: "7", subscribed: make(chan struct{})}
	line := func(room string, seq int) []byte {
		return fmt.Appendf(nil, `{"type":"message","message":{"id":"%d","room_id":"%s","seq":%d,"sender":{"id":"1","username":"a","display_name":"\"body\":\"x"},"body":"%s","parent_id":null}}`,
			100+seq, room, seq, stampBody(time.Now()))
	}
	r.onLine([]byte(`{"type":"subscribed","id":null,"room":"7","last_seq":0}`))
	for _, seq := range []int{1, 2, 2, 4, 5} {
		r.onLine(line("7", seq))
	}
	r.onLine(line("8", 3)) // another room's message is not this check's business
	select {
	case <-r.subscribed:
	default:
		t.Fatal("subscribed frame not seen")
	}
	require.Equal(t, int64(3), r.inOrder, "1, 2 and 5 came as last+1")
	require.Equal(t, int64(1), r.repeats, "2 came twice")
	require.Equal(t, int64(1), r.gaps, "3 was skipped")
	require.Equal(t, int64(5), r.last.Load())
	require.Len(t, r.lat, 4)
	require.Zero(t, r.malformed)
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}

// TestConnectionsReleased holds connections on a real server, closes them
// from the client side without a close handshake, and checks that the
// server lets go of their file descriptors: a server that kept them would
// stop accepting anything once it reached its open-file limit.
func TestConnectionsReleased(t *testing.T) {
	t.Parallel()
	nodes := startTestCluster(t, 1)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	// Open files but the Postgres and Redis pools, which grow with the
	// load and keep idle connections.
	openFDs := func() float64 {
		nodes[0].http.CloseIdleConnections() // the load test's own keep-alive connections
		m, err := nodes[0].scrape(ctx)
		require.NoError(t, err)
		return m["process_open_fds"] - m["switchboard_postgres_pool_connections"] - m["switchboard_redis_pool_connections"]
	}
	e := &env{nodes: nodes, dialer: newDialer(1), run: runID()}
	// The same round first, so that the pools the server grows under this
	// load (Postgres, Redis) are in the baseline.
	p := connParams{Conns: 60, Users: 3, Rooms: 2, Concurrency: 16}
	_, err := runConnections(ctx, e, p)
	require.NoError(t, err)
	require.Eventually(t, func() bool { return openFDs() < 60 }, 10*time.Second, 50*time.Millisecond)
	before := openFDs()

	e.run = runID()
	res, err := runConnections(ctx, e, p)
	require.NoError(t, err)
	require.Equal(t, 60.0, res.value("connections held"))
	require.Eventually(t, func() bool { return openFDs() <= before+5 }, 10*time.Second, 50*time.Millisecond,
		"open files: %v before, %v after closing 60 connections", before, openFDs())
}
