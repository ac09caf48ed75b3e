package broker

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/switchboard-chat/switchboard/broker/brokertest"
	"github.com/switchboard-chat/switchboard/hub"
)

func TestMain(m *testing.M) {
	// go-redis retries a failed dial (to a killed Cluster node) in a
	// goroutine of its pool that outlives Close by up to a second.
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("github.com/redis/go-redis/v9/internal/pool.(*ConnPool).tryDial"))
}

// newClient connects to addr ("" means the test server) with short timeouts,
// so that a cut proxy fails fast.
func newClient(t *testing.T, addr string) *redis.Client {
	t.Helper()
	opts, err := redis.ParseURL(brokertest.RedisURL())
	require.NoError(t, err)
	if addr != "" {
		opts.Addr = addr
	}
	opts.DialTimeout, opts.ReadTimeout, opts.WriteTimeout = 300*time.Millisecond, 300*time.Millisecond, 300*time.Millisecond
	c := redis.NewClient(opts)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// fakeReceiver records what a broker delivers.
type fakeReceiver struct {
	events   chan hub.Event
	controls chan hub.Control
	resyncs  atomic.Int32
}

var _ Receiver = (*fakeReceiver)(nil)

func newFakeReceiver() *fakeReceiver {
	return &fakeReceiver{events: make(chan hub.Event, 1024), controls: make(chan hub.Control, 1024)}
}

func (r *fakeReceiver) Receive(ev hub.Event)           { r.events <- ev }
func (r *fakeReceiver) ReceiveControl(ctl hub.Control) { r.controls <- ctl }
func (r *fakeReceiver) Resync()                        { r.resyncs.Add(1) }

// nextControl returns the next delivered control, failing after 5 s.
func (r *fakeReceiver) nextControl(t *testing.T) hub.Control {
	t.Helper()
	select {
	case ctl := <-r.controls:
		return ctl
	case <-time.After(5 * time.Second):
		t.Fatal("no control delivered within 5 s")
		return hub.Control{}
	}
}

// next returns the next delivered event, failing after 5 s.
func (r *fakeReceiver) next(t *testing.T) hub.Event {
	t.Helper()
	select {
	case ev := <-r.events:
		return ev
	case <-time.After(5 * time.Second):
		t.Fatal("no event delivered within 5 s")
		return hub.Event{}
	}
}

type testLogWriter struct{ t *testing.T }

func (w testLogWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// startBroker starts a broker on client and closes it when the test ends.
func startBroker(t *testing.T, cfg Config) (*Redis, *fakeReceiver) {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(testLogWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	if cfg.PublishTimeout == 0 {
		cfg.PublishTimeout = 500 * time.Millisecond
	}
	b, err := New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, b.Close()) })
	r := newFakeReceiver()
	require.NoError(t, b.Start(r))
	waitUp(t, b, true)
	return b, r
}

// waitUp waits until the broker sees its connection up (or down).
func waitUp(t *testing.T, b *Redis, up bool) {
	t.Helper()
	require.Eventually(t, func() bool { return b.reachable(b.controlShardKey()) == up }, 5*time.Second, 5*time.Millisecond,
		"broker connection up=%v", up)
}

func numSub(t *testing.T, c *redis.Client, channel string) int64 {
	t.Helper()
	n, err := c.PubSubNumSub(context.Background(), channel).Result()
	require.NoError(t, err)
	return n[channel]
}

func event(room string, seq int64, body string) hub.Event {
	return hub.Event{Room: room, Seq: seq, From: "user-1", Frame: []byte(`{"type":"message","body":"` + body + `"}`)}
}

func TestRedisDeliversBetweenNodes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	prefix := brokertest.Prefix()
	a, ra := startBroker(t, Config{Redis: newClient(t, ""), Prefix: prefix})
	b, rb := startBroker(t, Config{Redis: newClient(t, ""), Prefix: prefix})
	require.NoError(t, a.Subscribe(ctx, "r1"))
	require.NoError(t, b.Subscribe(ctx, "r1"))
	require.Equal(t, int64(2), numSub(t, newClient(t, ""), prefix+"room:r1"), "one channel per room, confirmed before Subscribe returns")

	// A stored message and a typing event from a to b, as they were sent.
	sent := event("r1", 1, "héllo")
	require.NoError(t, a.Publish(ctx, sent))
	require.Equal(t, sent, rb.next(t))
	typing := hub.Event{Room: "r1", From: "user-2", Frame: []byte(`{"type":"typing"}`)}
	require.NoError(t, a.Publish(ctx, typing))
	require.Equal(t, typing, rb.next(t))

	// a does not get its own events back: the first thing it receives is b's.
	// A room a did not subscribe to is not delivered to it.
	require.NoError(t, b.Publish(ctx, event("r2", 1, "elsewhere")))
	require.NoError(t, b.Publish(ctx, event("r1", 2, "from b")))
	require.Equal(t, event("r1", 2, "from b"), ra.next(t))
	require.Empty(t, ra.events)
	require.Zero(t, ra.resyncs.Load(), "no Resync without an outage")
	require.Zero(t, rb.resyncs.Load(), "no Resync without an outage")
}

func TestRedisPrefixSeparatesClusters(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p1, p2 := brokertest.Prefix(), brokertest.Prefix()
	other, _ := startBroker(t, Config{Redis: newClient(t, ""), Prefix: p1})
	same, _ := startBroker(t, Config{Redis: newClient(t, ""), Prefix: p2})
	b, rb := startBroker(t, Config{Redis: newClient(t, ""), Prefix: p2})
	require.NoError(t, b.Subscribe(ctx, "r"))

	require.NoError(t, other.Publish(ctx, event("r", 1, "other cluster")))
	require.NoError(t, same.Publish(ctx, event("r", 2, "same cluster")))
	require.Equal(t, int64(2), rb.next(t).Seq)
	require.Empty(t, rb.events)
}

func TestRedisUnsubscribeAndSubscribeAgain(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	prefix := brokertest.Prefix()
	admin := newClient(t, "")
	pub, _ := startBroker(t, Config{Redis: newClient(t, ""), Prefix: prefix})
	b, rb := startBroker(t, Config{Redis: newClient(t, ""), Prefix: prefix, HealthInterval: 100 * time.Millisecond})
	channel := prefix + "room:r"

	require.NoError(t, b.Subscribe(ctx, "r"))
	require.Equal(t, int64(1), numSub(t, admin, channel))
	require.NoError(t, b.Unsubscribe(ctx, "r"))
	require.Eventually(t, func() bool { return numSub(t, admin, channel) == 0 }, 2*time.Second, 10*time.Millisecond)

	// Subscribing again is live when Subscribe returns.
	require.NoError(t, b.Subscribe(ctx, "r"))
	require.NoError(t, pub.Publish(ctx, event("r", 7, "back")))
	require.Equal(t, int64(7), rb.next(t).Seq)

	// Unsubscribe then Subscribe before the lazy UNSUBSCRIBE goes out, and
	// the other way round: the room stays subscribed.
	require.NoError(t, b.Unsubscribe(ctx, "r"))
	require.NoError(t, b.Subscribe(ctx, "r"))
	time.Sleep(350 * time.Millisecond) // several health ticks
	require.Equal(t, int64(1), numSub(t, admin, channel))
	require.NoError(t, pub.Publish(ctx, event("r", 8, "still")))
	require.Equal(t, int64(8), rb.next(t).Seq)
}

func TestRedisOutageResyncs(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	prefix := brokertest.Prefix()
	p := brokertest.NewProxy(t)
	pub, rpub := startBroker(t, Config{Redis: newClient(t, ""), Prefix: prefix})
	b, rb := startBroker(t, Config{Redis: newClient(t, p.Addr()), Prefix: prefix})
	require.NoError(t, pub.Subscribe(ctx, "r"))
	require.NoError(t, b.Subscribe(ctx, "r"))
	require.NoError(t, pub.Publish(ctx, event("r", 1, "before")))
	require.Equal(t, int64(1), rb.next(t).Seq)

	p.Cut()
	waitUp(t, b, false)

	// While Redis is down, nothing the hub calls waits or fails.
	start := time.Now()
	require.NoError(t, b.Subscribe(ctx, "new-room"))
	require.NoError(t, b.Unsubscribe(ctx, "gone"))
	require.ErrorIs(t, b.Publish(ctx, event("r", 3, "from b, lost")), ErrDisconnected)
	require.ErrorIs(t, b.Publish(ctx, event("r", 4, "from b, kept")), ErrDisconnected)
	require.ErrorIs(t, b.Publish(ctx, hub.Event{Room: "r", From: "u", Frame: []byte("typing")}), ErrDisconnected)
	require.Less(t, time.Since(start), 100*time.Millisecond)

	// What the others publish meanwhile never reaches b.
	require.NoError(t, pub.Publish(ctx, event("r", 2, "during")))
	require.NoError(t, pub.Publish(ctx, event("new-room", 1, "during")))
	time.Sleep(300 * time.Millisecond)
	require.Empty(t, rb.events)
	require.Zero(t, rb.resyncs.Load())

	p.Restore()
	// b re-subscribes both rooms and asks its hub to read what it missed.
	require.Eventually(t, func() bool { return rb.resyncs.Load() >= 1 }, 5*time.Second, 10*time.Millisecond)
	admin := newClient(t, "")
	require.Equal(t, int64(2), numSub(t, admin, prefix+"room:r"))
	require.Equal(t, int64(1), numSub(t, admin, prefix+"room:new-room"))
	require.NoError(t, pub.Publish(ctx, event("new-room", 2, "after")))
	require.Equal(t, event("new-room", 2, "after"), rb.next(t))

	// b publishes again the latest stored event it could not publish, so
	// that the others see the gap; not the older one, not the typing event.
	require.Equal(t, event("r", 4, "from b, kept"), rpub.next(t))
	time.Sleep(100 * time.Millisecond)
	require.Empty(t, rpub.events)
}

// TestRedisReplacesSilentConnection: a connection that stops answering
// (no reset, no EOF) is noticed by the health pings and replaced.
func TestRedisReplacesSilentConnection(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	prefix := brokertest.Prefix()
	p := brokertest.NewProxy(t)
	pub, _ := startBroker(t, Config{Redis: newClient(t, ""), Prefix: prefix})
	b, rb := startBroker(t, Config{Redis: newClient(t, p.Addr()), Prefix: prefix, HealthInterval: 100 * time.Millisecond})
	require.NoError(t, b.Subscribe(ctx, "r"))

	p.Freeze()
	waitUp(t, b, false)
	require.NoError(t, pub.Publish(ctx, event("r", 1, "during")))
	p.Restore()
	require.Eventually(t, func() bool { return rb.resyncs.Load() >= 1 }, 5*time.Second, 10*time.Millisecond)
	require.NoError(t, pub.Publish(ctx, event("r", 2, "after")))
	require.Equal(t, int64(2), rb.next(t).Seq, "the publish made on the silent connection is not delivered late")
}

func TestRedisLifecycle(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	client := newClient(t, "")

	_, err := New(Config{})
	require.Error(t, err)

	// Close before Start, twice; Start after Close.
	b, err := New(Config{Redis: client})
	require.NoError(t, err)
	require.Equal(t, "switchboard:room:", b.roomPrefix)
	require.NoError(t, b.Close())
	require.NoError(t, b.Close())
	require.ErrorIs(t, b.Start(newFakeReceiver()), ErrClosed)
	require.ErrorIs(t, b.Subscribe(ctx, "r"), ErrClosed)
	require.NoError(t, b.Unsubscribe(ctx, "r"))
	require.ErrorIs(t, b.Publish(ctx, event("r", 1, "x")), ErrClosed)

	// Start twice; Close while subscribed, twice.
	b, err = New(Config{Redis: client, Prefix: brokertest.Prefix()})
	require.NoError(t, err)
	require.Error(t, b.Start(nil))
	require.NoError(t, b.Start(newFakeReceiver()))
	require.Error(t, b.Start(newFakeReceiver()))
	waitUp(t, b, true)
	require.NoError(t, b.Subscribe(ctx, "r"))
	require.NoError(t, b.Close())
	require.NoError(t, b.Close())
	require.NoError(t, client.Ping(ctx).Err(), "Close leaves the client open")
}

func TestEnvelope(t *testing.T) {
	t.Parallel()
	node := [nodeIDLen]byte{1, 2, 3, 4, 5, 6, 7, 8}
	for _, tt := range []struct {
		name string
		ev   hub.Event
	}{
		{"message", hub.Event{Seq: 42, From: "7", Frame: []byte(`{"type":"message"}`)}},
		{"ephemeral", hub.Event{From: "user-ü", Frame: []byte(`{"type":"typing"}`)}},
		{"large seq", hub.Event{Seq: 1 << 50, From: "x", Frame: []byte("f")}},
		{"empty from and frame", hub.Event{Seq: 1, Frame: []byte{}}},
		{"binary frame", hub.Event{Seq: 3, From: "u", Frame: []byte{0, 0xff, '\n', 1}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := encodeEnvelope(node, tt.ev)
			gotNode, got, err := decodeEnvelope(string(p))
			require.NoError(t, err)
			require.Equal(t, node, gotNode)
			require.Equal(t, tt.ev, got)
			require.Equal(t, string(tt.ev.Frame), string(p[len(p)-len(tt.ev.Frame):]), "the frame is sent as is")
		})
	}

	valid := string(encodeEnvelope(node, hub.Event{Seq: 5, From: "abc", Frame: []byte("{}")}))
	for _, tt := range []struct{ name, payload string }{
		{"empty", ""},
		{"short", valid[:5]},
		{"other version", "\x02" + valid[1:]},
		{"no seq", valid[:1+nodeIDLen]},
		{"from longer than payload", valid[:1+nodeIDLen+1] + "\x7f" + "ab"},
		{"unterminated varint", valid[:1+nodeIDLen] + "\xff\xff"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, _, err := decodeEnvelope(tt.payload)
			require.ErrorIs(t, err, errEnvelope)
		})
	}
}

func FuzzDecodeEnvelope(f *testing.F) {
	f.Add(string(encodeEnvelope([nodeIDLen]byte{}, hub.Event{Seq: 5, From: "abc", Frame: []byte("{}")})))
	f.Add("")
	f.Fuzz(func(t *testing.T, p string) {
		node, ev, err := decodeEnvelope(p)
		if err != nil {
			return
		}
		again, ev2, err := decodeEnvelope(string(encodeEnvelope(node, ev)))
		require.NoError(t, err)
		require.Equal(t, node, again)
		require.Equal(t, ev, ev2)
	})
}

// TestRedisControls: controls reach every other node (not the publisher,
// whose hub applied them already), and those published while Redis is
// unreachable are kept and published in order once it answers again.
func TestRedisControls(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	prefix := brokertest.Prefix()
	p := brokertest.NewProxy(t)
	a, ra := startBroker(t, Config{Redis: newClient(t, p.Addr()), Prefix: prefix})
	_, rb := startBroker(t, Config{Redis: newClient(t, ""), Prefix: prefix})
	_, rc := startBroker(t, Config{Redis: newClient(t, ""), Prefix: prefix})

	join := hub.Control{Op: hub.OpJoin, User: "7", Room: "42", FromSeq: 3}
	require.NoError(t, a.PublishControl(ctx, join))
	require.Equal(t, join, rb.nextControl(t))
	require.Equal(t, join, rc.nextControl(t))

	p.Cut()
	waitUp(t, a, false)
	leave := hub.Control{Op: hub.OpLeave, User: "7", Room: "42", Reason: "left"}
	end := hub.Control{Op: hub.OpEndSessions, User: "7", Sessions: []string{"s1", "s2"}}
	require.ErrorIs(t, a.PublishControl(ctx, leave), ErrDisconnected)
	require.ErrorIs(t, a.PublishControl(ctx, end), ErrDisconnected)
	time.Sleep(100 * time.Millisecond)
	require.Empty(t, rb.controls)

	p.Restore()
	require.Equal(t, leave, rb.nextControl(t))
	require.Equal(t, end, rb.nextControl(t))
	require.Equal(t, leave, rc.nextControl(t))
	require.Equal(t, end, rc.nextControl(t))
	time.Sleep(100 * time.Millisecond)
	require.Empty(t, ra.controls, "a node does not receive its own controls")
	require.Empty(t, rb.controls, "each is published once")
}

// TestRedisControlsOverflow: past maxRepublish kept controls, the oldest
// are dropped and every node is told to reconcile instead.
func TestRedisControlsOverflow(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	prefix := brokertest.Prefix()
	p := brokertest.NewProxy(t)
	a, _ := startBroker(t, Config{Redis: newClient(t, p.Addr()), Prefix: prefix})
	_, rb := startBroker(t, Config{Redis: newClient(t, ""), Prefix: prefix})
	p.Cut()
	waitUp(t, a, false)
	for i := range maxRepublish + 5 {
		require.ErrorIs(t, a.PublishControl(ctx, hub.Control{Op: hub.OpLeave, User: fmt.Sprint(i), Room: "1", Reason: "left"}), ErrDisconnected)
	}
	p.Restore()
	first := rb.nextControl(t)
	require.Equal(t, "5", first.User, "the 5 oldest were dropped")
	for i := 6; i < maxRepublish+5; i++ {
		require.Equal(t, fmt.Sprint(i), rb.nextControl(t).User)
	}
	require.Equal(t, hub.Control{Op: hub.OpReconcile}, rb.nextControl(t))
}
