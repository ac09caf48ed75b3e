package hub

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// deliveryCursors collects, per user and room, the highest seq written to
// any of the user's connections, and the hub writes them to the store in one
// batch per user every DeliveredFlush instead of once per message.
type deliveryCursors struct {
	mu      sync.Mutex
	pending map[string]map[string]int64 // user → room → seq
}

func newDeliveryCursors() *deliveryCursors {
	return &deliveryCursors{pending: make(map[string]map[string]int64)}
}

func (d *deliveryCursors) advance(user, room string, seq int64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	rooms := d.pending[user]
	if rooms == nil {
		rooms = make(map[string]int64)
		d.pending[user] = rooms
	}
	rooms[room] = max(rooms[room], seq)
}

func (d *deliveryCursors) take() map[string]map[string]int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	p := d.pending
	d.pending = make(map[string]map[string]int64)
	return p
}

// flushLoop writes delivery cursors until the hub stops, then once more.
func (h *Hub) flushLoop() {
	defer close(h.flushDone)
	t := time.NewTicker(h.cfg.DeliveredFlush)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			h.flushDelivered(h.ctx)
		case <-h.ctx.Done():
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			h.flushDelivered(ctx)
			cancel()
			return
		}
	}
}

func (h *Hub) flushDelivered(ctx context.Context) {
	for user, rooms := range h.delivery.take() {
		if err := h.cfg.Store.MarkDelivered(ctx, user, rooms); err != nil {
			// Not fatal: the client's resume seqs, or at worst a repeat of
			// already delivered messages, cover it.
			h.log.Warn("write delivery cursors failed", slog.String("user_id", user), slog.Any("error", err))
			for room, seq := range rooms {
				h.delivery.advance(user, room, seq)
			}
		}
	}
}
