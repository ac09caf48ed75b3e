// Package broker carries hub events between the nodes of a cluster. It is
// its own package so that the Redis client stays out of hub, whose only job
// is connections.
//
// Redis is the hub.Broker of a cluster: every node publishes the events of
// its rooms to Redis PUB/SUB and subscribes to the rooms it has local
// connections for, on one connection per node.
//
// Channels: "<prefix>room:<room id>", one per room, and "<prefix>control",
// which every node subscribes to, for the hub's controls (membership
// changes and ended sessions, JSON in the envelope's frame).
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
// never wait on a Redis that is known to be down; one goroutine applies the
// set to go-redis's PubSub, which re-subscribes every channel after it
// reconnects. The node learns that it may have missed messages from the
// subscription confirmations: a confirmation that no Subscribe call is
// waiting for means a channel became live at a moment the hub did not see
// (a reconnect, or a Subscribe that stopped waiting), so the receiver's
// Resync reads from Postgres what the rooms missed. A connection that
// delivers nothing, not even the pong of the ping sent every HealthInterval,
// for two intervals is treated as dead and replaced. Stored events whose
// PUBLISH failed are published again, the latest per room, once Redis is
// back: other nodes then see the gap and fetch it. Controls whose PUBLISH
// failed are published again in order; past maxRepublish of them the
// oldest are dropped and one OpReconcile, which makes every node re-check
// all its connections, is published after the rest.
package broker

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard-chat/switchboard/hub"
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

// RedisConfig configures a Redis broker.
type RedisConfig struct {
	// Client is the Redis connection; required. The broker takes one
	// connection of its own for PUB/SUB and PUBLISHes through the pool. It
	// never closes Client.
	Client redis.UniversalClient
	// Prefix starts every channel name; nodes of one cluster share it.
	// Zero value means "switchboard:".
	Prefix string
	// Logger; nil discards logs.
	Logger *slog.Logger
	// HealthInterval is how often the subscriber connection is pinged. A
	// connection that delivers nothing for two intervals is replaced. Zero
	// means 5 s.
	HealthInterval time.Duration
	// PublishTimeout bounds each PUBLISH. Zero means 2 s.
	PublishTimeout time.Duration
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
	// Static after NewRedis.
	client  redis.UniversalClient
	prefix  string // "<Prefix>room:"
	control string // "<Prefix>control"
	cfg     RedisConfig
	log     *slog.Logger
	nodeID  [nodeIDLen]byte
	ps      *redis.PubSub
	ctx     context.Context // cancelled by Close
	cancel  context.CancelFunc
	wake    chan struct{} // capacity 1: tells syncLoop to subscribe or republish
	resync  chan struct{} // capacity 1: tells resyncLoop to call Resync

	// Set by Start, read-only afterwards by the loops it starts.
	receiver Receiver

	up        atomic.Bool  // the subscriber connection delivered something since its last error; written under mu
	nFailed   atomic.Int32 // len(failed), read without mu on the publish path
	wg        sync.WaitGroup
	closeOnce sync.Once
	lastDrop  atomic.Int64 // unix nanos of the last undecodable-payload log

	started atomic.Bool // written under mu
	closed  atomic.Bool // written under mu

	mu           sync.Mutex
	wanted       map[string]struct{}      // channels the hub asked for
	toSend       map[string]struct{}      // channels syncLoop must SUBSCRIBE
	waiters      map[string]chan struct{} // closed when the channel's subscription is confirmed
	unsubPending map[string]int           // UNSUBSCRIBEs sent on this connection and not confirmed
	failed       map[string]hub.Event     // room → latest stored event whose publish failed
	controls     []hub.Control            // controls whose publish failed, oldest first
	lostControls bool                     // some were dropped: an OpReconcile is owed
}

var _ hub.Broker = (*Redis)(nil)

// NewRedis returns a broker that does nothing on Redis until Start.
func NewRedis(cfg RedisConfig) (*Redis, error) {
	if cfg.Client == nil {
		return nil, errors.New("broker: RedisConfig needs Client")
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
	if cfg.HealthInterval < 0 || cfg.PublishTimeout < 0 {
		return nil, errors.New("broker: negative HealthInterval or PublishTimeout")
	}
	ctx, cancel := context.WithCancel(context.Background())
	b := &Redis{
		client:       cfg.Client,
		prefix:       cfg.Prefix + "room:",
		control:      cfg.Prefix + "control",
		cfg:          cfg,
		log:          cfg.Logger,
		ps:           cfg.Client.Subscribe(ctx), // no channels: connects on first use
		ctx:          ctx,
		cancel:       cancel,
		wake:         make(chan struct{}, 1),
		resync:       make(chan struct{}, 1),
		wanted:       make(map[string]struct{}),
		toSend:       make(map[string]struct{}),
		waiters:      make(map[string]chan struct{}),
		unsubPending: make(map[string]int),
		failed:       make(map[string]hub.Event),
	}
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
	b.started.Store(true)
	b.receiver = r
	b.wanted[b.control] = struct{}{}
	b.toSend[b.control] = struct{}{}
	// Its first confirmation is expected: no Resync for it.
	b.waiters[b.control] = make(chan struct{})
	b.wg.Add(3)
	go b.receiveLoop()
	go b.syncLoop()
	go b.resyncLoop()
	return nil
}

// Close stops the broker and releases its PUB/SUB connection (not the
// client). It is safe to call twice, and before Start.
func (b *Redis) Close() error {
	b.closeOnce.Do(func() {
		b.mu.Lock()
		b.closed.Store(true)
		b.releaseWaitersLocked()
		b.mu.Unlock()
		b.cancel()
		_ = b.ps.Close()
		b.wg.Wait()
	})
	return nil
}

func (b *Redis) channel(room string) string { return b.prefix + room }

// Publish sends ev to every node subscribed to ev.Room. While Redis is known
// to be down it returns ErrDisconnected at once instead of waiting; stored
// events whose publish failed are published again, the latest per room,
// after reconnecting.
func (b *Redis) Publish(ctx context.Context, ev hub.Event) error {
	if b.closed.Load() {
		return ErrClosed
	}
	if b.started.Load() && !b.up.Load() {
		b.keepFailed(ev)
		return ErrDisconnected
	}
	return b.publish(ctx, ev)
}

func (b *Redis) publish(ctx context.Context, ev hub.Event) error {
	ctx, cancel := context.WithTimeout(ctx, b.cfg.PublishTimeout)
	defer cancel()
	if err := b.client.Publish(ctx, b.channel(ev.Room), encodeEnvelope(b.nodeID, ev)).Err(); err != nil {
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
	if (b.started.Load() && !b.up.Load()) || queued {
		b.keepControl(ctl) // behind the ones kept, to keep their order
		b.kick()
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
	ctx, cancel := context.WithTimeout(ctx, b.cfg.PublishTimeout)
	defer cancel()
	if err := b.client.Publish(ctx, b.control, encodeEnvelope(b.nodeID, hub.Event{Frame: frame})).Err(); err != nil {
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
	if !b.up.Load() {
		return
	}
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
	for _, ev := range evs {
		if err := b.publish(b.ctx, ev); err != nil {
			b.log.DebugContext(b.ctx, "republish failed", slog.String("room", ev.Room), slog.Any("error", err))
			return
		}
	}
	if len(evs) > 0 {
		b.log.InfoContext(b.ctx, "republished events lost during a redis outage", slog.Int("rooms", len(evs)))
	}
}

// Subscribe asks for the events of room. While the connection is healthy
// it waits (at most a second) until Redis confirms the subscription, so
// that a message published after it returns is delivered; while Redis is
// down it returns at once, and the subscription is made, followed by a
// Resync, when Redis is back. It fails only after Close.
func (b *Redis) Subscribe(ctx context.Context, room string) error {
	ch := b.channel(room)
	b.mu.Lock()
	if b.closed.Load() {
		b.mu.Unlock()
		return ErrClosed
	}
	b.wanted[ch] = struct{}{}
	b.toSend[ch] = struct{}{}
	var wait chan struct{}
	if b.up.Load() {
		wait = b.waiters[ch]
		if wait == nil {
			wait = make(chan struct{})
			b.waiters[ch] = wait
		}
	}
	b.mu.Unlock()
	b.kick()
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
	if b.waiters[ch] == wait {
		delete(b.waiters, ch)
	}
	b.mu.Unlock()
	return nil
}

// Unsubscribe drops room from the wanted set and returns at once; the
// channel is unsubscribed at the next health tick (until then its events are
// still received, and the hub ignores them).
func (b *Redis) Unsubscribe(_ context.Context, room string) error {
	ch := b.channel(room)
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.wanted, ch)
	delete(b.toSend, ch)
	if w := b.waiters[ch]; w != nil {
		close(w)
		delete(b.waiters, ch)
	}
	return nil
}

func (b *Redis) kick() {
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

// syncLoop owns the writes to the PubSub: it subscribes what Subscribe
// asked for, and on every health tick pings, unsubscribes what is no longer
// wanted and retries failed subscribes and publishes.
func (b *Redis) syncLoop() {
	defer b.wg.Done()
	applied := make(map[string]struct{}) // channels handed to go-redis's PubSub
	tick := time.NewTicker(b.cfg.HealthInterval)
	defer tick.Stop()
	b.ping()
	for {
		select {
		case <-b.ctx.Done():
			return
		case <-b.wake:
			b.subscribePending(applied)
			b.republish()
		case <-tick.C:
			b.ping()
			b.subscribePending(applied)
			b.unsubscribeUnwanted(applied)
			b.republish()
		}
	}
}

func (b *Redis) ping() {
	ctx, cancel := context.WithTimeout(b.ctx, b.cfg.HealthInterval)
	defer cancel()
	if err := b.ps.Ping(ctx); err != nil && b.ctx.Err() == nil {
		b.log.DebugContext(b.ctx, "redis broker ping failed", slog.Any("error", err))
	}
}

func (b *Redis) subscribePending(applied map[string]struct{}) {
	b.mu.Lock()
	chans := make([]string, 0, len(b.toSend))
	for ch := range b.toSend {
		if _, ok := b.wanted[ch]; ok {
			chans = append(chans, ch)
		}
	}
	clear(b.toSend)
	b.mu.Unlock()
	if len(chans) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(b.ctx, b.cfg.HealthInterval)
	err := b.ps.Subscribe(ctx, chans...)
	cancel()
	// go-redis records the channels even when the write fails and sends
	// them again after reconnecting; but a failed write may reconnect before
	// they are recorded, so they are sent again at the next tick as well.
	for _, ch := range chans {
		applied[ch] = struct{}{}
	}
	if err != nil {
		if b.ctx.Err() == nil {
			b.log.DebugContext(b.ctx, "redis subscribe failed", slog.Int("channels", len(chans)), slog.Any("error", err))
		}
		b.mu.Lock()
		for _, ch := range chans {
			if _, ok := b.wanted[ch]; ok {
				b.toSend[ch] = struct{}{}
			}
		}
		b.mu.Unlock()
	}
}

func (b *Redis) unsubscribeUnwanted(applied map[string]struct{}) {
	b.mu.Lock()
	var chans []string
	for ch := range applied {
		if _, ok := b.wanted[ch]; !ok {
			chans = append(chans, ch)
			b.unsubPending[ch]++
		}
	}
	b.mu.Unlock()
	if len(chans) == 0 {
		return
	}
	for _, ch := range chans {
		delete(applied, ch)
	}
	ctx, cancel := context.WithTimeout(b.ctx, b.cfg.HealthInterval)
	err := b.ps.Unsubscribe(ctx, chans...) // go-redis forgets them even if this fails
	cancel()
	if err != nil {
		// Nothing was sent, so no confirmation will come.
		b.mu.Lock()
		for _, ch := range chans {
			if b.unsubPending[ch]--; b.unsubPending[ch] <= 0 {
				delete(b.unsubPending, ch)
			}
		}
		b.mu.Unlock()
	}
}

// receiveLoop reads the PubSub connection. go-redis reconnects it after an
// error; a read that sees nothing (not even a pong) for two health intervals
// counts as an error, and go-redis then replaces the connection.
func (b *Redis) receiveLoop() {
	defer b.wg.Done()
	var backoff time.Duration
	for {
		ctx, cancel := context.WithTimeout(b.ctx, 2*b.cfg.HealthInterval)
		msg, err := b.ps.Receive(ctx)
		cancel()
		if b.ctx.Err() != nil {
			return
		}
		if err != nil {
			b.setDown(err)
			backoff = min(max(2*backoff, 50*time.Millisecond), maxBackoff)
			select {
			case <-b.ctx.Done():
				return
			case <-time.After(backoff):
			}
			continue
		}
		backoff = 0
		b.setUp()
		switch m := msg.(type) {
		case *redis.Message:
			b.deliver(m)
		case *redis.Subscription:
			b.confirmed(m)
		}
	}
}

func (b *Redis) setUp() {
	if b.up.Load() {
		return
	}
	b.mu.Lock()
	b.up.Store(true)
	b.mu.Unlock()
	b.log.InfoContext(b.ctx, "redis broker connected")
	b.kick() // retry failed subscribes and publishes now
}

func (b *Redis) setDown(err error) {
	b.mu.Lock()
	was := b.up.Load()
	b.up.Store(false)
	b.releaseWaitersLocked()
	clear(b.unsubPending) // the connection that owed these confirmations is gone
	b.mu.Unlock()
	if was {
		b.log.WarnContext(b.ctx, "redis broker disconnected; reconnecting", slog.Any("error", err))
	}
}

// releaseWaitersLocked ends every Subscribe wait; their confirmations, when
// they come, trigger a Resync. Called with b.mu held.
func (b *Redis) releaseWaitersLocked() {
	for ch, w := range b.waiters {
		close(w)
		delete(b.waiters, ch)
	}
}

// confirmed handles Redis's answer to a SUBSCRIBE or UNSUBSCRIBE.
func (b *Redis) confirmed(s *redis.Subscription) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch s.Kind {
	case "unsubscribe":
		if n, ok := b.unsubPending[s.Channel]; ok {
			if n <= 1 {
				delete(b.unsubPending, s.Channel)
			} else {
				b.unsubPending[s.Channel] = n - 1
			}
		}
	case "subscribe":
		if b.unsubPending[s.Channel] > 0 {
			return // answers a SUBSCRIBE sent before a pending UNSUBSCRIBE
		}
		if w := b.waiters[s.Channel]; w != nil {
			close(w)
			delete(b.waiters, s.Channel)
			return
		}
		if _, ok := b.wanted[s.Channel]; ok {
			select {
			case b.resync <- struct{}{}:
			default:
			}
		}
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
	room, isRoom := strings.CutPrefix(m.Channel, b.prefix)
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
