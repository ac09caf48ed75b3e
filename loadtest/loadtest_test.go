package main

import (
	"bytes"
	"context"
	"encoding/xml"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
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
// fresh test database and a Redis prefix of their own, with their abuse
// limits at the defaults.
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
			RedisPrefix: prefix, SecretFile: secret, LogPath: filepath.Join(dir, fmt.Sprintf("server-%d.log", i)),
			Args: limitsDefault.args})
		require.NoError(t, err)
		t.Cleanup(s.stop)
		nodes = append(nodes, newNode(s.URL))
	}
	return nodes
}

// TestFanoutAcrossTwoNodes runs the fanout scenario briefly, open loop,
// against a real two-node cluster with its abuse limits at their defaults:
// every member connection, on either node, gets every acked message of its
// room once and in order, and no sender is refused.
func TestFanoutAcrossTwoNodes(t *testing.T) {
	t.Parallel()
	nodes := startTestCluster(t, 2)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	e := &env{nodes: nodes, dialer: newDialer(1), run: runID()}
	// 25 messages a second per room from 5 senders: 5 a second each, under
	// the per-connection budget of 10.
	res, err := runFanout(ctx, e, fanoutParams{Rooms: 2, Subscribers: 10, UsersPerRoom: 3, Senders: 5,
		Interval: 40 * time.Millisecond, Duration: 2 * time.Second, Drain: 10 * time.Second, Arrival: arrivalPoisson,
		Loop: openLoop, MaxLateness: 50 * time.Millisecond})
	require.NoError(t, err)
	logResult(t, res)

	acked := res.value("messages acked")
	require.Greater(t, acked, 40.0, "the senders got acks")
	require.Zero(t, res.value("missing"))
	require.Zero(t, res.value("repeated"))
	require.Zero(t, res.value("gaps (out of order)"))
	require.Zero(t, res.value("rate-limit refusals"))
	require.Zero(t, res.value("send errors"))
	require.Equal(t, acked*10, res.value("deliveries (in order)"), "each of the 10 connections of each room got each message")
	require.Equal(t, acked*10, res.value("deliveries expected (acked × subscribers)"))
	require.False(t, res.Failed)
	require.Equal(t, int(acked*10), res.Latencies["end-to-end (from intended send)"].Count)
	require.Equal(t, openLoop, res.Loop)
}

// TestWritesOpenLoopAcrossTwoNodes runs the open-loop writes on the
// realistic shape, small, against two real nodes with the limits at their
// defaults, and then a second point on the same setup as the sweep does.
func TestWritesOpenLoopAcrossTwoNodes(t *testing.T) {
	t.Parallel()
	nodes := startTestCluster(t, 2)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	e := &env{nodes: nodes, dialer: newDialer(1), run: runID()}
	s, err := prepareWrites(ctx, e, shapeParams{Users: 22, HomeSizes: []int{4, 6}, BigSize: 11, BigShare: 0.2})
	require.NoError(t, err)
	defer s.close()
	require.Len(t, s.shape.homes, 4, "22 users in rooms of 4, 6, 4 and 6+2")
	require.Len(t, s.shape.bigs, 2)
	for _, ws := range []bool{false, true} {
		pt := s.point(ctx, pointParams{Rate: 44, Arrival: arrivalConstant, HTTP: ws, Duration: 2 * time.Second,
			Drain: 10 * time.Second, MaxLateness: 50 * time.Millisecond})
		t.Log(pointLine(pt))
		require.True(t, pt.Settled)
		require.True(t, pt.Check.ok(), pt.Check.String())
		require.Empty(t, pt.Errors)
		require.InDelta(t, 88, float64(pt.Acked), 3, "2 s at 44/s")
		require.Equal(t, pt.Expected, pt.Deliveries+pt.Echoes, "every acked message reached every member connection of its room")
		require.Equal(t, pt.Acked, pt.Echoes, "and its sender's own connection once")
		require.Equal(t, int(pt.Acked), pt.Ack.Count)
		require.Equal(t, int(pt.Deliveries+pt.Echoes), pt.Delivery.Count)
		require.NotNil(t, pt.Frames, "the servers' frame counters were read")
		require.Positive(t, pt.Frames.PerStoredMessage)
	}

	// A third of the sends replaced by edits and reactions (SPEC §13):
	// their update frames take seqs among the messages, and every
	// connection still sees each room's seqs in order without a gap.
	pt := s.point(ctx, pointParams{Rate: 44, Arrival: arrivalConstant, Duration: 2 * time.Second,
		Drain: 10 * time.Second, MaxLateness: 50 * time.Millisecond, UpdateShare: 0.3})
	t.Log(pointLine(pt))
	require.True(t, pt.Settled)
	require.True(t, pt.Check.ok(), pt.Check.String())
	require.Empty(t, pt.Errors)
	require.Positive(t, pt.UpdatesAcked)
	require.Equal(t, int(pt.UpdatesAcked), pt.UpdateAck.Count)
	require.GreaterOrEqual(t, pt.Updates, pt.UpdatesAcked, "each changing update reached at least its sender")
	require.InDelta(t, 88, float64(pt.Acked+pt.UpdatesAcked), 3, "2 s at 44/s, sends and updates together")
	require.Equal(t, pt.Expected, pt.Deliveries+pt.Echoes)
}

// fakeClock is a clock the test moves.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) SleepUntil(_ context.Context, t time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if t.After(c.t) {
		c.t = t
	}
	return true
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// TestScheduleConstant: evenly spaced from a phase within the first gap,
// without drift.
func TestScheduleConstant(t *testing.T) {
	t.Parallel()
	t0 := time.Unix(1000, 0)
	s := newSchedule(arrivalConstant, 3, t0, rand.New(rand.NewPCG(1, 2)))
	first := s.Next()
	require.False(t, first.Before(t0))
	require.Less(t, first.Sub(t0), time.Second/3)
	var last time.Time
	for range 3000 {
		last = s.Next()
	}
	require.InDelta(t, float64(1000*time.Second), float64(last.Sub(first)), float64(time.Microsecond),
		"3,000 gaps at 3/s span 1,000 s, without drift")
	// Two streams do not fire in step.
	other := newSchedule(arrivalConstant, 3, t0, rand.New(rand.NewPCG(3, 4)))
	require.NotEqual(t, first, other.Next())
	// No rate, no arrival within a century.
	require.True(t, newSchedule(arrivalConstant, 0, t0, rand.New(rand.NewPCG(1, 1))).Next().After(t0.Add(99*365*24*time.Hour)))
}

// TestSchedulePoisson: exponential gaps, mean 1/rate and standard
// deviation as large, and about rate×T arrivals in T.
func TestSchedulePoisson(t *testing.T) {
	t.Parallel()
	t0 := time.Unix(1000, 0)
	s := newSchedule(arrivalPoisson, 100, t0, rand.New(rand.NewPCG(5, 6)))
	const n = 100_000
	prev := t0
	var sum, sumSq float64
	var inFirst100s int
	for range n {
		next := s.Next()
		gap := next.Sub(prev).Seconds()
		require.GreaterOrEqual(t, gap, 0.0)
		sum += gap
		sumSq += gap * gap
		if next.Sub(t0) < 100*time.Second {
			inFirst100s++
		}
		prev = next
	}
	mean := sum / n
	sd := math.Sqrt(sumSq/n - mean*mean)
	require.InDelta(t, 0.01, mean, 0.0002, "mean gap 1/rate")
	require.InDelta(t, 1, sd/mean, 0.03, "coefficient of variation 1, as exponential gaps have")
	require.InDelta(t, 10_000, inFirst100s, 400, "about rate × T arrivals")
}

// TestPaceFromIntendedTime: a send that blocks does not move the schedule;
// the sends after it leave late, and say by how much.
func TestPaceFromIntendedTime(t *testing.T) {
	t.Parallel()
	t0 := time.Unix(1000, 0)
	clk := &fakeClock{t: t0}
	s := newSchedule(arrivalConstant, 10, t0, rand.New(rand.NewPCG(1, 2)))
	phase := newSchedule(arrivalConstant, 10, t0, rand.New(rand.NewPCG(1, 2))).Next().Sub(t0)
	var intended []time.Time
	var late []time.Duration
	n := pace(context.Background(), clk, s, t0.Add(time.Second), 0, func(d time.Duration) { late = append(late, d) },
		func(at time.Time) bool {
			intended = append(intended, at)
			if len(intended) == 3 {
				clk.advance(350 * time.Millisecond) // this send blocks
			}
			return true
		})
	require.Equal(t, 10, n, "ten sends in a second at 10/s, blocked or not")
	for k, at := range intended {
		require.Equal(t, t0.Add(phase+time.Duration(k)*100*time.Millisecond), at, "send %d keeps its intended time", k)
	}
	ms := time.Millisecond
	require.Equal(t, []time.Duration{0, 0, 0, 250 * ms, 150 * ms, 50 * ms, 0, 0, 0, 0}, late)

	// A bound on the count stops it, and so does a send that fails.
	s = newSchedule(arrivalConstant, 10, t0, rand.New(rand.NewPCG(1, 2)))
	require.Equal(t, 4, pace(context.Background(), clk, s, t0.Add(time.Hour), 4, func(time.Duration) {}, func(time.Time) bool { return true }))
	require.Equal(t, 1, pace(context.Background(), clk, s, t0.Add(time.Hour), 0, func(time.Duration) {}, func(time.Time) bool { return false }))
}

// TestAckLatencyFromIntendedTime: an ack's latency counts from the
// intended send time, so a send that left late shows its lateness, and an
// ack after the phase's end is not achieved.
func TestAckLatencyFromIntendedTime(t *testing.T) {
	t.Parallel()
	t0 := time.Unix(1000, 0)
	clk := &fakeClock{t: t0}
	f := newFleet(clk)
	m := f.addMember(account{}, nil, []string{"7"}, []string{"7"})
	f.phaseEnd.Store(t0.Add(time.Second).UnixNano())
	m.pending["1"] = pendingSend{intended: t0, room: "7"}
	m.pending["2"] = pendingSend{intended: t0.Add(100 * time.Millisecond), room: "7"}
	clk.advance(80 * time.Millisecond) // sent 80 ms late…
	clk.advance(20 * time.Millisecond) // …and acked 20 ms after it left
	m.onLine([]byte(`{"type":"ack","id":"1","message":{"id":"50","room_id":"7","seq":1,"body":"x"}}`))
	clk.advance(2 * time.Second)
	m.onLine([]byte(`{"type":"error","id":"2","code":"rate_limited","message":"sending too fast","retry_after_ms":40}`))
	m.onLine([]byte(`{"type":"error","id":null,"code":"bad_request","message":"?"}`))
	st, c := m.take()
	require.Equal(t, []time.Duration{100 * time.Millisecond}, st.ackLat)
	require.Equal(t, int64(1), st.acked)
	require.Equal(t, int64(1), st.achieved)
	require.Equal(t, map[string]int{"rate_limited": 1, "bad_request (not answering a send)": 1}, st.codes)
	require.Equal(t, int64(1), f.maxAcked["7"].Load())
	require.Equal(t, int64(1), c.Missing, "seq 1 was acked and never delivered")
	require.Zero(t, m.outstanding())
}

// TestCheckerCounts feeds the checker a repeat, a gap, a foreign room and
// a room that stops short: each is counted, so that a run can fail.
func TestCheckerCounts(t *testing.T) {
	t.Parallel()
	t0 := time.Unix(1000, 0)
	clk := &fakeClock{t: t0.Add(30 * time.Millisecond)}
	f := newFleet(clk)
	m := f.addMember(account{}, nil, []string{"7", "8"}, nil)
	line := func(room string, seq, from int) []byte {
		return fmt.Appendf(nil, `{"type":"message","message":{"id":"%d","room_id":"%s","seq":%d,"sender":{"id":"1","username":"a","display_name":"\"body\":\"x"},"body":"%s","parent_id":null}}`,
			100+seq, room, seq, stampBody(t0, from))
	}
	for _, seq := range []int{1, 2, 2, 4, 5} {
		m.onLine(line("7", seq, 3))
	}
	m.onLine(line("8", 1, m.idx)) // its own
	m.onLine(line("8", 2, 3))
	m.onLine(line("9", 1, 3)) // a room it does not check
	m.onLine([]byte(`{"type":"message","message":{"id":"1"}}`))
	m.onLine([]byte(`{"type":"subscribed","id":null,"room":"8","last_seq":0}`))
	require.Equal(t, "8", <-m.subscribed)
	f.maxAcked["7"].Store(5)
	f.maxAcked["8"].Store(3) // acked, never delivered
	f.acked["7"].Store(5)
	f.acked["8"].Store(3)
	require.False(t, m.caughtUp())

	st := f.take()
	require.Equal(t, checkCounts{Repeats: 1, Gaps: 1, Skipped: 1, Missing: 1}, st.check)
	require.False(t, st.check.ok())
	require.Equal(t, int64(4), st.deliveries, "1, 2 and 5 of room 7 came as last+1, and 2 of room 8")
	require.Equal(t, int64(1), st.echoes, "1 of room 8 was its own")
	require.Equal(t, int64(1), st.foreign)
	require.Equal(t, int64(1), st.malformed)
	require.Equal(t, int64(5+3), st.expected, "acked × the one connection checking each room")
	require.Equal(t, 5, st.delivery.summary().Count)
	require.Equal(t, 30.0, st.delivery.summary().P50, "from the intended time in the body")

	// Repeats and gaps are counted once; what is missing stays missing.
	again := f.take()
	require.Equal(t, checkCounts{Missing: 1}, again.check)
	m.onLine(line("8", 3, 3))
	require.True(t, m.caughtUp())
	require.True(t, f.take().check.ok())
}

// TestPartition: every user in exactly one home room, sizes cycling, a
// small remainder joining the last room.
func TestPartition(t *testing.T) {
	t.Parallel()
	sizes := func(gs [][]int) []int {
		var out []int
		for _, g := range gs {
			out = append(out, len(g))
		}
		return out
	}
	require.Equal(t, []int{4, 6, 4, 6, 4}, sizes(partition(24, []int{4, 6})))
	require.Equal(t, []int{4, 6, 4, 8}, sizes(partition(22, []int{4, 6})), "2 left over join the last room")
	require.Equal(t, []int{3}, sizes(partition(3, []int{4})))
	gs := partition(550, defaultHomeSizes)
	seen := map[int]bool{}
	for _, g := range gs {
		for _, u := range g {
			require.False(t, seen[u])
			seen[u] = true
		}
	}
	require.Len(t, seen, 550)
	require.Equal(t, 11, bigRooms(550, 50))
	require.Equal(t, 1, bigRooms(20, 50))
	require.Zero(t, bigRooms(550, 0))
}

// TestFindKnee: the highest offered rate within target.
func TestFindKnee(t *testing.T) {
	t.Parallel()
	pts := []*writePoint{{Offered: 1000, Good: true}, {Offered: 2000, Good: true}, {Offered: 3000}, {Offered: 4000}}
	knee, note := findKnee(pts)
	require.Equal(t, 2000.0, knee)
	require.Contains(t, note, "2000 msgs/s")
	knee, note = findKnee([]*writePoint{{Offered: 1000}, {Offered: 2000, Good: true}})
	require.Equal(t, 2000.0, knee)
	require.Contains(t, note, "lower rates out of target too: 1000")
	knee, _ = findKnee([]*writePoint{{Offered: 1000}})
	require.Zero(t, knee)
}

// TestSweepChart: the chart is well-formed SVG with a point per rate.
func TestSweepChart(t *testing.T) {
	t.Parallel()
	pts := []*writePoint{
		{Offered: 1000, Achieved: 990, Ack: Summary{P50: 5, P99: 20, P999: 30}, KeptUp: true, Good: true},
		{Offered: 4000, Achieved: 2500, Ack: Summary{P50: 900, P99: 3000, P999: 3500}, KeptUp: false},
	}
	svg := sweepChart(pts, 1000, "a <title> & more")
	d := xml.NewDecoder(bytes.NewReader(svg))
	circles := 0
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		require.NoError(t, err)
		if el, ok := tok.(xml.StartElement); ok && el.Name.Local == "circle" {
			circles++
		}
	}
	require.Equal(t, 2*4, circles, "achieved, p50, p99 and p99.9 at each rate")
	require.Contains(t, string(svg), `fill="white"`, "the point whose generator fell behind is hollow")
	require.Contains(t, sweepTable(pts), "| 4,000 | 2,500 |")
	require.Equal(t, "within target", verdict(pts[0]))
	require.Contains(t, verdict(pts[1]), "out of target (the generator also fell behind")
	late := &writePoint{Offered: 1000, Achieved: 1000, Ack: Summary{P99: 60}, Lateness: Summary{P99: 15}, Settled: true}
	require.Contains(t, verdict(late), "INVALID", "60 ms less its 15 ms of lateness could be within 50 ms")
}

// TestBodyStamp: a body carries its intended time and its sender.
func TestBodyStamp(t *testing.T) {
	t.Parallel()
	at := time.Unix(1700000000, 123456789)
	got, conn, ok := bodyStamp(stampBody(at, 42))
	require.True(t, ok)
	require.True(t, got.Equal(at))
	require.Equal(t, 42, conn)
	_, conn, ok = bodyStamp(stampBody(at, -1))
	require.True(t, ok)
	require.Equal(t, -1, conn)
	_, _, ok = bodyStamp("hello")
	require.False(t, ok)
	rates, err := parseRates("2k, 1000,2.5k")
	require.NoError(t, err)
	require.Equal(t, []float64{1000, 2000, 2500}, rates)
}

// logResult prints res into the test's log in one piece.
func logResult(t *testing.T, res *Result) {
	var b bytes.Buffer
	res.print(&b)
	t.Log(b.String())
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
