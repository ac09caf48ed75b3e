package broker

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// A shard is one subscriber connection and the channels wanted on it: the
// only one on a single Redis, one per partition (and one for the control
// channel) on a Cluster. Its sync loop owns the writes to the PubSub, its
// receive loop the reads.
type shard struct {
	b       *Redis
	key     int
	sharded bool          // SSUBSCRIBE, on a Cluster
	wake    chan struct{} // capacity 1: tells syncLoop to subscribe, republish or replace
	done    chan struct{} // closed by close

	// up: the connection delivered something since its last error; written
	// under b.mu.
	up atomic.Bool

	psMu sync.Mutex // guards ps, which syncLoop replaces after a slot moved, live and closed
	ps   *redis.PubSub
	// live is closed once ps may be read: at once on a single Redis; on a
	// Cluster once a channel was subscribed on it, since go-redis connects
	// a sharded PubSub to the owner of its first channel's slot, and to any
	// node when it has none.
	live   chan struct{}
	closed bool

	// Under b.mu.
	everUp       bool                     // the connection has been up once
	wanted       map[string]struct{}      // channels the hub asked for
	toSend       map[string]struct{}      // channels syncLoop must subscribe
	waiters      map[string]chan struct{} // closed when the channel's subscription is confirmed
	unsubPending map[string]int           // unsubscribes sent on this connection and not confirmed
	moved        bool                     // Redis unsubscribed a wanted channel: replace the connection
}

func newShard(b *Redis, key int) *shard {
	s := &shard{
		b:            b,
		key:          key,
		sharded:      b.cluster != nil,
		wake:         make(chan struct{}, 1),
		done:         make(chan struct{}),
		wanted:       make(map[string]struct{}),
		toSend:       make(map[string]struct{}),
		waiters:      make(map[string]chan struct{}),
		unsubPending: make(map[string]int),
	}
	s.ps, s.live = s.newPubSub()
	return s
}

// newPubSub returns a PubSub with no channels, which connects on first use,
// and its live channel.
func (s *shard) newPubSub() (*redis.PubSub, chan struct{}) {
	live := make(chan struct{})
	if !s.sharded {
		close(live)
		return s.b.client.Subscribe(s.b.ctx), live
	}
	return s.b.client.SSubscribe(s.b.ctx), live
}

func (s *shard) pubsub() *redis.PubSub {
	s.psMu.Lock()
	defer s.psMu.Unlock()
	return s.ps
}

// current returns the PubSub and its live channel.
func (s *shard) current() (*redis.PubSub, chan struct{}) {
	s.psMu.Lock()
	defer s.psMu.Unlock()
	return s.ps, s.live
}

// close ends the shard's connection; b.ctx is cancelled already.
func (s *shard) close() {
	close(s.done)
	s.psMu.Lock()
	s.closed = true
	ps := s.ps
	s.psMu.Unlock()
	_ = ps.Close()
}

// want adds channel to the wanted set and returns a channel closed when
// its subscription is confirmed, or nil when wait is false. Called with
// b.mu held.
func (s *shard) want(channel string, wait bool) chan struct{} {
	s.wanted[channel] = struct{}{}
	s.toSend[channel] = struct{}{}
	if !wait {
		return nil
	}
	w := s.waiters[channel]
	if w == nil {
		w = make(chan struct{})
		s.waiters[channel] = w
	}
	return w
}

// stopWaiting forgets w, a waiter that gave up. Called with b.mu held.
func (s *shard) stopWaiting(channel string, w chan struct{}) {
	if s.waiters[channel] == w {
		delete(s.waiters, channel)
	}
}

// unwant drops channel from the wanted set. Called with b.mu held.
func (s *shard) unwant(channel string) {
	delete(s.wanted, channel)
	delete(s.toSend, channel)
	if w := s.waiters[channel]; w != nil {
		close(w)
		delete(s.waiters, channel)
	}
}

func (s *shard) kick() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// syncLoop owns the writes to the PubSub: it subscribes what Subscribe
// asked for, and on every health tick pings, unsubscribes what is no longer
// wanted and retries failed subscribes and publishes.
func (s *shard) syncLoop() {
	defer s.b.wg.Done()
	applied := make(map[string]struct{}) // channels handed to go-redis's PubSub
	tick := time.NewTicker(s.b.cfg.HealthInterval)
	defer tick.Stop()
	s.ping(applied)
	s.subscribePending(applied)
	for {
		select {
		case <-s.done:
			return
		case <-s.wake:
		case <-tick.C:
			s.ping(applied)
			s.unsubscribeUnwanted(applied)
		}
		s.replaceIfMoved(applied)
		s.subscribePending(applied)
		s.b.republish()
	}
}

// ping checks the connection. A sharded one is left alone while it has no
// channel: go-redis would connect it to any node, not the slot's owner.
func (s *shard) ping(applied map[string]struct{}) {
	if s.sharded && len(applied) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(s.b.ctx, s.b.cfg.HealthInterval)
	defer cancel()
	if err := s.pubsub().Ping(ctx); err != nil && s.b.ctx.Err() == nil {
		s.b.log.DebugContext(ctx, "redis broker ping failed", slog.Int("shard", s.key), slog.Any("error", err))
	}
}

func (s *shard) subscribe(ctx context.Context, channels ...string) error {
	if s.sharded {
		return s.pubsub().SSubscribe(ctx, channels...)
	}
	return s.pubsub().Subscribe(ctx, channels...)
}

func (s *shard) unsubscribe(ctx context.Context, channels ...string) error {
	if s.sharded {
		return s.pubsub().SUnsubscribe(ctx, channels...)
	}
	return s.pubsub().Unsubscribe(ctx, channels...)
}

func (s *shard) subscribePending(applied map[string]struct{}) {
	b := s.b
	b.mu.Lock()
	chans := make([]string, 0, len(s.toSend))
	for ch := range s.toSend {
		if _, ok := s.wanted[ch]; ok {
			chans = append(chans, ch)
		}
	}
	clear(s.toSend)
	b.mu.Unlock()
	if len(chans) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(b.ctx, b.cfg.HealthInterval)
	err := s.subscribe(ctx, chans...)
	cancel()
	if err == nil {
		s.psMu.Lock()
		select {
		case <-s.live:
		default:
			close(s.live) // the PubSub is on its channels' node now
		}
		s.psMu.Unlock()
	}
	// go-redis records the channels even when the write fails and sends
	// them again after reconnecting; but a failed write may reconnect before
	// they are recorded, so they are sent again at the next tick as well.
	for _, ch := range chans {
		applied[ch] = struct{}{}
	}
	if err != nil {
		if b.ctx.Err() == nil {
			b.log.DebugContext(b.ctx, "redis subscribe failed", slog.Int("shard", s.key), slog.Int("channels", len(chans)), slog.Any("error", err))
		}
		b.mu.Lock()
		for _, ch := range chans {
			if _, ok := s.wanted[ch]; ok {
				s.toSend[ch] = struct{}{}
			}
		}
		b.mu.Unlock()
	}
}

func (s *shard) unsubscribeUnwanted(applied map[string]struct{}) {
	b := s.b
	b.mu.Lock()
	var chans []string
	for ch := range applied {
		if _, ok := s.wanted[ch]; !ok {
			chans = append(chans, ch)
			s.unsubPending[ch]++
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
	err := s.unsubscribe(ctx, chans...) // go-redis forgets them even if this fails
	cancel()
	if err != nil {
		// Nothing was sent, so no confirmation will come.
		b.mu.Lock()
		for _, ch := range chans {
			if s.unsubPending[ch]--; s.unsubPending[ch] <= 0 {
				delete(s.unsubPending, ch)
			}
		}
		b.mu.Unlock()
	}
}

// replaceIfMoved replaces the connection after Redis unsubscribed wanted
// channels by itself, which a Cluster does when their slot moves to another
// primary: the new connection goes to the slot's new owner and subscribes
// every wanted channel again, and their confirmations ask for a Resync.
func (s *shard) replaceIfMoved(applied map[string]struct{}) {
	b := s.b
	b.mu.Lock()
	if !s.moved {
		b.mu.Unlock()
		return
	}
	s.moved = false
	s.up.Store(false)
	s.releaseWaitersLocked()
	clear(s.unsubPending)
	for ch := range s.wanted {
		s.toSend[ch] = struct{}{}
	}
	b.mu.Unlock()
	clear(applied)
	if b.cluster != nil {
		b.cluster.ReloadState(b.ctx)
	}
	s.psMu.Lock()
	if s.closed {
		s.psMu.Unlock()
		return
	}
	old := s.ps
	s.ps, s.live = s.newPubSub()
	s.psMu.Unlock()
	_ = old.Close()
	b.log.InfoContext(b.ctx, "redis broker channels moved; resubscribing", slog.Int("shard", s.key))
}

// receiveLoop reads the PubSub connection. go-redis reconnects it after an
// error; a read that sees nothing (not even a pong) for two health intervals
// counts as an error, and go-redis then replaces the connection.
func (s *shard) receiveLoop() {
	b := s.b
	defer b.wg.Done()
	var backoff time.Duration
	for {
		ps, live := s.current()
		select {
		case <-live:
		case <-b.ctx.Done():
			return
		}
		ctx, cancel := context.WithTimeout(b.ctx, 2*b.cfg.HealthInterval)
		msg, err := ps.Receive(ctx)
		cancel()
		if b.ctx.Err() != nil {
			return
		}
		if err != nil {
			if ps != s.pubsub() {
				continue // replaced by syncLoop while this read waited
			}
			s.setDown(err)
			if b.cluster != nil {
				// After a failover the slot's primary is another node:
				// learn it before go-redis dials again.
				b.cluster.ReloadState(b.ctx)
			}
			backoff = min(max(2*backoff, 50*time.Millisecond), maxBackoff)
			select {
			case <-b.ctx.Done():
				return
			case <-time.After(backoff):
			}
			continue
		}
		backoff = 0
		s.setUp()
		switch m := msg.(type) {
		case *redis.Message:
			b.deliver(m)
		case *redis.Subscription:
			s.confirmed(m)
		}
	}
}

func (s *shard) setUp() {
	if s.up.Load() {
		return
	}
	s.b.mu.Lock()
	s.up.Store(true)
	s.everUp = true
	s.b.mu.Unlock()
	s.b.log.InfoContext(s.b.ctx, "redis broker connected", slog.Int("shard", s.key))
	s.b.kickAll() // retry failed subscribes and publishes now
}

func (s *shard) setDown(err error) {
	s.b.mu.Lock()
	was := s.up.Load()
	s.up.Store(false)
	s.releaseWaitersLocked()
	clear(s.unsubPending) // the connection that owed these confirmations is gone
	s.b.mu.Unlock()
	if was {
		s.b.log.WarnContext(s.b.ctx, "redis broker disconnected; reconnecting", slog.Int("shard", s.key), slog.Any("error", err))
	}
	if _, moved := redis.IsMovedError(err); moved {
		s.b.mu.Lock()
		s.moved = true
		s.b.mu.Unlock()
		s.kick()
	}
}

// releaseWaitersLocked ends every Subscribe wait; their confirmations, when
// they come, trigger a Resync. Called with b.mu held.
func (s *shard) releaseWaitersLocked() {
	for ch, w := range s.waiters {
		close(w)
		delete(s.waiters, ch)
	}
}

// confirmed handles Redis's answer to a subscribe or unsubscribe.
func (s *shard) confirmed(sub *redis.Subscription) {
	b := s.b
	b.mu.Lock()
	defer b.mu.Unlock()
	switch sub.Kind {
	case "unsubscribe", "sunsubscribe":
		if n, ok := s.unsubPending[sub.Channel]; ok {
			if n <= 1 {
				delete(s.unsubPending, sub.Channel)
			} else {
				s.unsubPending[sub.Channel] = n - 1
			}
			return
		}
		if _, ok := s.wanted[sub.Channel]; ok && sub.Kind == "sunsubscribe" {
			// Nobody asked: the Cluster moved the channel's slot.
			s.moved = true
			s.kick()
		}
	case "subscribe", "ssubscribe":
		if s.unsubPending[sub.Channel] > 0 {
			return // answers a subscribe sent before a pending unsubscribe
		}
		if w := s.waiters[sub.Channel]; w != nil {
			close(w)
			delete(s.waiters, sub.Channel)
			return
		}
		if _, ok := s.wanted[sub.Channel]; ok {
			b.askResync()
		}
	}
}
