// Package broker carries hub events between the nodes of a cluster. It is
// its own package so that the Redis client stays out of hub, whose only job
// is connections.
//
// Redis is the hub.Broker of a cluster: every node publishes the events of
// its rooms to Redis PUB/SUB and subscribes to the rooms it has local
// connections for.
//
// Channels on one Redis server (or a Sentinel-managed primary):
// "<prefix>room:<room id>", one per room, and "<prefix>control", which every
// node subscribes to, for the hub's controls (membership changes and ended
// sessions, JSON in the envelope's frame); all on one PUB/SUB connection per
// node.
//
// On a Redis Cluster (a *redis.ClusterClient) plain PUB/SUB would copy every
// message to every Redis node, so rooms use sharded PUB/SUB instead
// (SSUBSCRIBE/SPUBLISH): a message goes only to the shard that owns its
// channel's slot. Rooms are spread over Config.Partitions partitions whose
// channels share a hash tag, "<prefix>room:{<partition>}<room id>", so that
// the channels of one partition live on one slot and can be subscribed on
// one connection (a multi-channel SSUBSCRIBE must not cross slots, and
// go-redis re-subscribes all of a connection's channels in one command
// after reconnecting). A node opens one subscriber connection per partition
// it has rooms in, plus one for the control channel; each follows its slot
// to whichever primary serves it after a failover or a slot move.
//
// Envelope: each PUBLISH payload is
//
//	version byte (1) | origin node id (8 bytes) | uvarint seq |
//	uvarint len(from) | from | frame
//
// where frame is the hub's encoded frame, sent as is and never re-encoded;
// the room comes from the channel name. A node drops the events it
// published itself: its hub has delivered them locally already.
//
// Outages: Subscribe and Unsubscribe only record which rooms are wanted and
// never wait on a Redis that is known to be down; one goroutine per
// subscriber connection applies the set to go-redis's PubSub, which
// re-subscribes every channel after it reconnects. The node learns that it
// may have missed messages from the subscription confirmations: a
// confirmation that no Subscribe call is waiting for means a channel became
// live at a moment the hub did not see (a reconnect, a failover, or a
// Subscribe that stopped waiting), so the receiver's Resync reads from
// Postgres what the rooms missed. A connection that delivers nothing, not
// even the pong of the ping sent every HealthInterval, for two intervals is
// treated as dead and replaced. Stored events whose PUBLISH failed are
// published again, the latest per room, once Redis is back: other nodes
// then see the gap and fetch it. Controls whose PUBLISH failed are
// published again in order; past maxRepublish of them the oldest are
// dropped and one OpReconcile, which makes every node re-check all its
// connections, is published after the rest.
package broker

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard-chat/switchboard/hub"
	"github.com/switchboard-chat/switchboard/internal/groupcommit"
)

// Receiver is what the broker delivers to: *hub.Hub is one.
type Receiver interface {
	// Receive takes one event from another node; it must not block.
	Receive(ev hub.Event)
	// ReceiveControl takes one control from another node; it must not
	// block.
	ReceiveControl(ctl hub.Control)
	// Resync reads from the store whatever the local rooms may have missed.
	Resync()
}

// Config configures a Redis broker.
type Config struct {
	// Redis is the client; required. A *redis.ClusterClient makes the
	// broker use sharded PUB/SUB. The broker takes connections of its own
	// for PUB/SUB and PUBLISHes through the pool. It never closes Redis.
	Redis redis.UniversalClient
	// Prefix starts every channel name; nodes of one cluster share it. It
	// must not contain '{' or '}', which would change the channels' hash
	// tags. Zero value means "switchboard:".
	Prefix string
	// Logger; nil discards logs.
	Logger *slog.Logger
	// HealthInterval is how often each subscriber connection is pinged. A
	// connection that delivers nothing for two intervals is replaced. Zero
	// means 5 s.
	HealthInterval time.Duration
	// PublishTimeout bounds each PUBLISH. Zero means 2 s.
	PublishTimeout time.Duration
	// Partitions is how many groups of sharded channels rooms are spread
	// over on a Redis Cluster: at most that many subscriber connections per
	// node, and that many slots carrying room traffic. Zero means 64;
	// ignored unless Redis is a *redis.ClusterClient. Every node of a
	// cluster must use the same value.
	Partitions int
}

const (
	envelopeVersion = 1
	nodeIDLen       = 8

	// subscribeWait bounds how long Subscribe waits for Redis to confirm a
	// subscription while the connection looks healthy.
	subscribeWait = time.Second
	// resyncSettle lets the rest of a burst of subscription confirmations
	// (a reconnect re-subscribes every channel) arrive before one Resync.
	resyncSettle = 20 * time.Millisecond
	// maxBackoff bounds the wait between reconnection attempts.
	maxBackoff = time.Second
	// maxRepublish bounds the rooms whose failed publish is kept for later.
	maxRepublish = 10000
	// controlShard is the key of the control channel's subscriber on a
	// Cluster; partitions are 0 and up.
	controlShard = -1
)

var (
	// ErrClosed is returned by calls on a closed broker.
	ErrClosed = errors.New("broker: closed")
	// ErrDisconnected is returned by Publish while the broker knows Redis
	// is unreachable; a stored event is published once it is back, an
	// ephemeral one is dropped.
	ErrDisconnected = errors.New("broker: redis unreachable")
)

// Redis is a hub.Broker on Redis PUB/SUB. Start it with a receiver, Close
// it before closing the Redis client.
type Redis struct {
	// Static after New.
	client     redis.UniversalClient
	cluster    *redis.ClusterClient // nil unless sharded
	roomPrefix string               // "<Prefix>room:"
	control    string               // "<Prefix>control"
	cfg        Config
	log        *slog.Logger
	nodeID     [nodeIDLen]byte
	ctx        context.Context // cancelled by Close
	cancel     context.CancelFunc
	resync     chan struct{} // capacity 1: tells resyncLoop to call Resync

	publishes groupcommit.Queue[*publishCall] // PUBLISHes waiting for a round trip

	// Set by Start, read-only afterwards by the loops it starts.
	receiver Receiver

	nFailed   atomic.Int32 // len(failed), read without mu on the publish path
	wg        sync.WaitGroup
	closeOnce sync.Once
	lastDrop  atomic.Int64 // unix nanos of the last undecodable-payload log
	// republishing is held by the one shard loop republishing at a time,
	// so that a kept control is published once.
	republishing sync.Mutex

	started atomic.Bool // written under mu
	closed  atomic.Bool // written under mu

	mu           sync.Mutex
	shards       map[int]*shard       // subscriber connections by partition (or controlShard)
	failed       map[string]hub.Event // room → latest stored event whose publish failed
	controls     []hub.Control        // controls whose publish failed, oldest first
	lostControls bool                 // some were dropped: an OpReconcile is owed
}

var _ hub.Broker = (*Redis)(nil)

// New returns a broker that does nothing on Redis until Start.
func New(cfg Config) (*Redis, error) {
	if cfg.Redis == nil {
		return nil, errors.New("broker: Config needs Redis")
	}
	if cfg.Prefix == "" {
		cfg.Prefix = "switchboard:"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.HealthInterval == 0 {
		cfg.HealthInterval = 5 * time.Second
	}
	if cfg.PublishTimeout == 0 {
		cfg.PublishTimeout = 2 * time.Second
	}
	if cfg.Partitions == 0 {
		cfg.Partitions = 64
	}
	switch {
	case cfg.HealthInterval < 0 || cfg.PublishTimeout < 0:
		return nil, errors.New("broker: negative HealthInterval or PublishTimeout")
	case cfg.Partitions < 0:
		return nil, errors.New("broker: negative Partitions")
	case strings.ContainsAny(cfg.Prefix, "{}"):
		return nil, fmt.Errorf("broker: prefix %q has a brace, which would change the channels' hash tags", cfg.Prefix)
	}
	ctx, cancel := context.WithCancel(context.Background())
	b := &Redis{
		client:     cfg.Redis,
		roomPrefix: cfg.Prefix + "room:",
		control:    cfg.Prefix + "control",
		cfg:        cfg,
		log:        cfg.Logger,
		ctx:        ctx,
		cancel:     cancel,
		resync:     make(chan struct{}, 1),
		shards:     make(map[int]*shard),
		failed:     make(map[string]hub.Event),
	}
	b.cluster, _ = cfg.Redis.(*redis.ClusterClient)
	b.publishes.Run = b.publishBatch
	_, _ = rand.Read(b.nodeID[:])
	return b, nil
}

// Start connects and delivers every event of the subscribed rooms that
// another node publishes to r, until Close. It returns an error when called
// twice or after Close.
func (b *Redis) Start(r Receiver) error {
	if r == nil {
		return errors.New("broker: Start needs a receiver")
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case b.closed.Load():
		return ErrClosed
	case b.started.Load():
		return errors.New("broker: already started")
	}
	b.receiver = r
	s := b.shardLocked(b.controlShardKey())
	s.want(b.control, true) // its first confirmation is expected: no Resync for it
	b.started.Store(true)
	for _, s := range b.shards {
		b.run(s)
	}
	b.wg.Add(1)
	go b.resyncLoop()
	return nil
}

// Close stops the broker and releases its PUB/SUB connections (not the
// client). It is safe to call twice, and before Start.
func (b *Redis) Close() error {
	b.closeOnce.Do(func() {
		b.mu.Lock()
		b.closed.Store(true)
		shards := make([]*shard, 0, len(b.shards))
		for _, s := range b.shards {
			s.releaseWaitersLocked()
			shards = append(shards, s)
		}
		b.mu.Unlock()
		b.cancel()
		for _, s := range shards {
			s.close()
		}
		b.wg.Wait()
	})
	return nil
}

// controlShardKey is the key of the shard that carries the control
// channel: the only one without sharding, its own on a Cluster.
func (b *Redis) controlShardKey() int {
	if b.cluster == nil {
		return 0
	}
	return controlShard
}

// roomChannel returns the channel of room and the key of its shard.
func (b *Redis) roomChannel(room string) (string, int) {
	if b.cluster == nil {
		return b.roomPrefix + room, 0
	}
	h := fnv.New32a()
	h.Write([]byte(room))
	p := int(h.Sum32() % uint32(b.cfg.Partitions))
	return b.roomPrefix + "{" + strconv.Itoa(p) + "}" + room, p
}

// Channel returns the channel room's events travel on.
func (b *Redis) Channel(room string) string {
	channel, _ := b.roomChannel(room)
	return channel
}

// roomOf returns the room of a room channel.
func (b *Redis) roomOf(channel string) (string, bool) {
	rest, ok := strings.CutPrefix(channel, b.roomPrefix)
	if !ok || b.cluster == nil {
		return rest, ok
	}
	_, room, ok := strings.Cut(rest, "}")
	return room, ok
}

// shardLocked returns the shard of key, making (and, once started,
// running) it the first time. Called with b.mu held.
func (b *Redis) shardLocked(key int) *shard {
	s := b.shards[key]
	if s == nil {
		s = newShard(b, key)
		b.shards[key] = s
		if b.started.Load() {
			b.run(s)
		}
	}
	return s
}

// run starts the loops of s.
func (b *Redis) run(s *shard) {
	b.wg.Add(2)
	go s.receiveLoop()
	go s.syncLoop()
}

// reachable reports whether Redis looks reachable for the shard of key:
// its connection is up, or, for a shard without a connection yet, the
// control channel's is.
func (b *Redis) reachable(key int) bool {
	if !b.started.Load() {
		return true
	}
	b.mu.Lock()
	s := b.shards[key]
	if s == nil {
		s = b.shards[b.controlShardKey()]
	}
	b.mu.Unlock()
	return s.up.Load()
}

// publishCall is one PUBLISH waiting for a round trip: its arguments and,
// once done is closed, its outcome.
type publishCall struct {
	channel string
	payload []byte
	err     error
	done    chan struct{}
}

// publishTo publishes payload to channel. Publishes that arrive while
// another round trip is in flight go together in the next one, pipelined
// (group commit): a node publishes the messages of one save batch, which
// are answered at the same moment, in a round trip or two instead of one
// each.
func (b *Redis) publishTo(ctx context.Context, channel string, payload []byte) error {
	c := &publishCall{channel: channel, payload: payload, done: make(chan struct{})}
	b.publishes.Add(c)
	select {
	case <-c.done:
		return c.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// publishBatch sends calls in one pipeline, within PublishTimeout:
// SPUBLISH on a Cluster, else PUBLISH.
func (b *Redis) publishBatch(calls []*publishCall) {
	ctx, cancel := context.WithTimeout(b.ctx, b.cfg.PublishTimeout)
	defer cancel()
	var pipe redis.Pipeliner
	if b.cluster != nil {
		pipe = b.cluster.Pipeline()
	} else {
		pipe = b.client.Pipeline()
	}
	cmds := make([]*redis.IntCmd, len(calls))
	for i, c := range calls {
		if b.cluster != nil {
			cmds[i] = pipe.SPublish(ctx, c.channel, c.payload)
		} else {
			cmds[i] = pipe.Publish(ctx, c.channel, c.payload)
		}
	}
	_, _ = pipe.Exec(ctx) // each command's error is its call's
	for i, c := range calls {
		c.err = cmds[i].Err()
		close(c.done)
	}
}

// Publish sends ev to every node subscribed to ev.Room. While Redis is known
// to be down it returns ErrDisconnected at once instead of waiting; stored
// events whose publish failed are published again, the latest per room,
// after reconnecting.
func (b *Redis) Publish(ctx context.Context, ev hub.Event) error {
	if b.closed.Load() {
		return ErrClosed
	}
	if _, key := b.roomChannel(ev.Room); !b.reachable(key) {
		b.keepFailed(ev)
		return ErrDisconnected
	}
	return b.publish(ctx, ev)
}

func (b *Redis) publish(ctx context.Context, ev hub.Event) error {
	channel, _ := b.roomChannel(ev.Room)
	if err := b.publishTo(ctx, channel, encodeEnvelope(b.nodeID, ev)); err != nil {
		b.keepFailed(ev)
		return fmt.Errorf("redis publish: %w", err)
	}
	if ev.Seq > 0 && b.nFailed.Load() > 0 {
		b.mu.Lock()
		if f, ok := b.failed[ev.Room]; ok && f.Seq <= ev.Seq {
			delete(b.failed, ev.Room)
			b.nFailed.Store(int32(len(b.failed)))
		}
		b.mu.Unlock()
	}
	return nil
}

// PublishControl sends ctl to every other node. While Redis is known to be
// down, or when the PUBLISH fails, it keeps ctl and publishes it, in order
// with the others kept, once Redis is back.
func (b *Redis) PublishControl(ctx context.Context, ctl hub.Control) error {
	if b.closed.Load() {
		return ErrClosed
	}
	b.mu.Lock()
	queued := len(b.controls) > 0 || b.lostControls
	b.mu.Unlock()
	if !b.reachable(b.controlShardKey()) || queued {
		b.keepControl(ctl) // behind the ones kept, to keep their order
		b.kickAll()
		return ErrDisconnected
	}
	if err := b.publishControl(ctx, ctl); err != nil {
		b.keepControl(ctl)
		return err
	}
	return nil
}

func (b *Redis) publishControl(ctx context.Context, ctl hub.Control) error {
	frame, err := json.Marshal(ctl)
	if err != nil {
		return fmt.Errorf("encode control: %w", err)
	}
	if err := b.publishTo(ctx, b.control, encodeEnvelope(b.nodeID, hub.Event{Frame: frame})); err != nil {
		return fmt.Errorf("redis publish control: %w", err)
	}
	return nil
}

func (b *Redis) keepControl(ctl hub.Control) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.controls) >= maxRepublish {
		b.controls = b.controls[1:]
		b.lostControls = true
	}
	b.controls = append(b.controls, ctl)
}

// republishControls publishes the kept controls in order, then an
// OpReconcile if some were dropped, stopping at the first failure.
func (b *Redis) republishControls() {
	for {
		b.mu.Lock()
		var ctl hub.Control
		switch {
		case len(b.controls) > 0:
			ctl = b.controls[0]
		case b.lostControls:
			ctl = hub.Control{Op: hub.OpReconcile}
		default:
			b.mu.Unlock()
			return
		}
		b.mu.Unlock()
		if err := b.publishControl(b.ctx, ctl); err != nil {
			b.log.DebugContext(b.ctx, "republish control failed", slog.Any("error", err))
			return
		}
		b.mu.Lock()
		if len(b.controls) > 0 {
			b.controls = b.controls[1:]
		} else {
			b.lostControls = false
		}
		b.mu.Unlock()
	}
}

// keepFailed remembers a stored event whose publish failed, if it is the
// latest of its room: publishing it later is enough for other nodes to see
// the gap and fetch everything before it. Ephemeral events are dropped.
func (b *Redis) keepFailed(ev hub.Event) {
	if ev.Seq <= 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	f, ok := b.failed[ev.Room]
	if ok && f.Seq >= ev.Seq {
		return
	}
	if !ok && len(b.failed) >= maxRepublish {
		return // other nodes will notice the gap at the room's next message
	}
	b.failed[ev.Room] = ev
	b.nFailed.Store(int32(len(b.failed)))
}

// republish publishes the kept controls and events again while Redis
// looks reachable.
func (b *Redis) republish() {
	if !b.reachable(b.controlShardKey()) || !b.republishing.TryLock() {
		return
	}
	defer b.republishing.Unlock()
	b.republishControls()
	if b.nFailed.Load() == 0 {
		return
	}
	b.mu.Lock()
	evs := make([]hub.Event, 0, len(b.failed))
	for _, ev := range b.failed {
		evs = append(evs, ev)
	}
	b.mu.Unlock()
	n := 0
	for _, ev := range evs {
		if _, key := b.roomChannel(ev.Room); !b.reachable(key) {
			continue
		}
		if err := b.publish(b.ctx, ev); err != nil {
			b.log.DebugContext(b.ctx, "republish failed", slog.String("room", ev.Room), slog.Any("error", err))
			continue
		}
		n++
	}
	if n > 0 {
		b.log.InfoContext(b.ctx, "republished events lost during a redis outage", slog.Int("rooms", n))
	}
}

// Subscribe asks for the events of room. While the connection is healthy
// it waits (at most a second) until Redis confirms the subscription, so
// that a message published after it returns is delivered; while Redis is
// down it returns at once, and the subscription is made, followed by a
// Resync, when Redis is back. It fails only after Close.
func (b *Redis) Subscribe(ctx context.Context, room string) error {
	channel, key := b.roomChannel(room)
	b.mu.Lock()
	if b.closed.Load() {
		b.mu.Unlock()
		return ErrClosed
	}
	s := b.shardLocked(key)
	// Wait while the connection is healthy, or, for a shard whose
	// connection is still to be made, while Redis answers the control
	// channel's.
	ctl := b.shards[b.controlShardKey()]
	healthy := s.up.Load() || (!s.everUp && ctl != nil && ctl.up.Load())
	wait := s.want(channel, healthy)
	b.mu.Unlock()
	s.kick()
	if wait == nil {
		return nil
	}
	t := time.NewTimer(subscribeWait)
	defer t.Stop()
	select {
	case <-wait:
		return nil
	case <-t.C:
	case <-ctx.Done():
	}
	// Stop waiting; the confirmation, when it comes, triggers a Resync.
	b.mu.Lock()
	s.stopWaiting(channel, wait)
	b.mu.Unlock()
	return nil
}

// Unsubscribe drops room from the wanted set and returns at once; the
// channel is unsubscribed at the next health tick (until then its events are
// still received, and the hub ignores them).
func (b *Redis) Unsubscribe(_ context.Context, room string) error {
	channel, key := b.roomChannel(room)
	b.mu.Lock()
	defer b.mu.Unlock()
	if s := b.shards[key]; s != nil {
		s.unwant(channel)
	}
	return nil
}

// kickAll wakes every shard's sync loop.
func (b *Redis) kickAll() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, s := range b.shards {
		s.kick()
	}
}

// askResync asks resyncLoop for one Resync.
func (b *Redis) askResync() {
	select {
	case b.resync <- struct{}{}:
	default:
	}
}

// resyncLoop calls the receiver's Resync once per burst of unexpected
// subscription confirmations.
func (b *Redis) resyncLoop() {
	defer b.wg.Done()
	for {
		select {
		case <-b.ctx.Done():
			return
		case <-b.resync:
		}
		select {
		case <-b.ctx.Done():
			return
		case <-time.After(resyncSettle):
		}
		select { // the Resync below covers any confirmation signalled so far
		case <-b.resync:
		default:
		}
		b.log.InfoContext(b.ctx, "redis broker resubscribed; reading what may have been missed from the store")
		b.receiver.Resync()
	}
}

// deliver hands one published event or control to the receiver, unless
// this node published it.
func (b *Redis) deliver(m *redis.Message) {
	room, isRoom := b.roomOf(m.Channel)
	if !isRoom && m.Channel != b.control {
		return
	}
	origin, ev, err := decodeEnvelope(m.Payload)
	if err != nil {
		b.logDrop(m.Channel, err)
		return
	}
	if origin == b.nodeID {
		return
	}
	if isRoom {
		ev.Room = room
		b.receiver.Receive(ev)
		return
	}
	var ctl hub.Control
	if err := json.Unmarshal(ev.Frame, &ctl); err != nil {
		b.logDrop(m.Channel, err)
		return
	}
	b.receiver.ReceiveControl(ctl)
}

// logDrop logs an undecodable payload at most once every 10 s.
func (b *Redis) logDrop(channel string, err error) {
	now := time.Now().UnixNano()
	last := b.lastDrop.Load()
	if now-last < int64(10*time.Second) || !b.lastDrop.CompareAndSwap(last, now) {
		return
	}
	b.log.WarnContext(b.ctx, "redis broker dropped an undecodable event", slog.String("channel", channel), slog.Any("error", err))
}

// encodeEnvelope builds the PUBLISH payload of ev (see the package comment).
func encodeEnvelope(node [nodeIDLen]byte, ev hub.Event) []byte {
	buf := make([]byte, 0, 1+nodeIDLen+2*binary.MaxVarintLen64+len(ev.From)+len(ev.Frame))
	buf = append(buf, envelopeVersion)
	buf = append(buf, node[:]...)
	buf = binary.AppendUvarint(buf, uint64(max(ev.Seq, 0)))
	buf = binary.AppendUvarint(buf, uint64(len(ev.From)))
	buf = append(buf, ev.From...)
	return append(buf, ev.Frame...)
}

var errEnvelope = errors.New("malformed envelope")

// decodeEnvelope reads a payload built by encodeEnvelope; the event's Room
// is left empty.
func decodeEnvelope(p string) (node [nodeIDLen]byte, ev hub.Event, err error) {
	if len(p) < 1+nodeIDLen || p[0] != envelopeVersion {
		return node, ev, errEnvelope
	}
	copy(node[:], p[1:1+nodeIDLen])
	rest := []byte(p[1+nodeIDLen:])
	seq, n := binary.Uvarint(rest)
	if n <= 0 || seq > 1<<62 {
		return node, ev, errEnvelope
	}
	rest = rest[n:]
	fromLen, n := binary.Uvarint(rest)
	if n <= 0 || fromLen > uint64(len(rest)-n) {
		return node, ev, errEnvelope
	}
	rest = rest[n:]
	ev.Seq = int64(seq)
	ev.From = string(rest[:fromLen])
	ev.Frame = rest[fromLen:]
	return node, ev, nil
}
