package hub

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// deliveryCursors collects, per user and room, the highest seq written to
// any of the user's connections. The hub writes them to the store in one
// statement for every user each DeliveredFlush, and a user's own at once
// when one of their connections closes (writeDelivered), so that a
// reconnect right after a close is not sent those messages again.
type deliveryCursors struct {
	mu      sync.Mutex
	pending map[string]map[string]int64 // user → room → seq
	// writing serialises the writes, so that a close's write waits for a
	// periodic one that may hold its user's cursors.
	writing sync.Mutex
}

func newDeliveryCursors() *deliveryCursors {
	return &deliveryCursors{pending: make(map[string]map[string]int64)}
}

func (d *deliveryCursors) advance(user, room string, seq int64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.advanceLocked(user, room, seq)
}

func (d *deliveryCursors) advanceLocked(user, room string, seq int64) {
	rooms := d.pending[user]
	if rooms == nil {
		rooms = make(map[string]int64)
		d.pending[user] = rooms
	}
	rooms[room] = max(rooms[room], seq)
}

// take removes and returns what is pending: every user's when user is "",
// else that user's alone (nil when nothing is).
func (d *deliveryCursors) take(user string) map[string]map[string]int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	if user == "" {
		p := d.pending
		d.pending = make(map[string]map[string]int64)
		return p
	}
	rooms, ok := d.pending[user]
	if !ok {
		return nil
	}
	delete(d.pending, user)
	return map[string]map[string]int64{user: rooms}
}

// putBack returns cursors whose write failed, for the next write.
func (d *deliveryCursors) putBack(seqs map[string]map[string]int64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for user, rooms := range seqs {
		for room, seq := range rooms {
			d.advanceLocked(user, room, seq)
		}
	}
}

// flushLoop writes delivery cursors until the hub stops, then once more.
func (h *Hub) flushLoop() {
	defer close(h.flushDone)
	t := time.NewTicker(h.cfg.DeliveredFlush)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			h.flushDelivered(h.ctx, "")
		case <-h.ctx.Done():
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			h.flushDelivered(ctx, "")
			cancel()
			return
		}
	}
}

// writeDelivered writes user's pending delivery cursors now, waiting for a
// periodic write in progress, and trying again for a while those whose
// rows were busy (a message of the user being stored holds its row for
// milliseconds). A connection's close calls it before its close frame goes
// out.
func (h *Hub) writeDelivered(user string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(h.ctx), 2*time.Second)
	defer cancel()
	for wait := time.Millisecond; h.flushDelivered(ctx, user) && ctx.Err() == nil; wait = min(2*wait, 50*time.Millisecond) {
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
	}
}

// flushDelivered writes the pending cursors of user ("": everyone's) and
// reports whether some are left for later: their write failed, or their
// rows were busy.
func (h *Hub) flushDelivered(ctx context.Context, user string) (left bool) {
	d := h.delivery
	d.writing.Lock()
	defer d.writing.Unlock()
	seqs := d.take(user)
	if len(seqs) == 0 {
		return false
	}
	busy, err := h.cfg.Store.MarkDelivered(ctx, seqs)
	if err != nil {
		// Not fatal: the client's resume seqs, or at worst a repeat of
		// already delivered messages, cover it.
		h.log.WarnContext(h.ctx, "write delivery cursors failed", slog.Int("users", len(seqs)), slog.Any("error", err))
		d.putBack(seqs)
		return true
	}
	d.putBack(busy)
	return len(busy) > 0
}
