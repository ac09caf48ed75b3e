package hub

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// catchUpPage is how many events (messages and updates) a catch-up or gap
// fetch reads at a time.
const catchUpPage = 200

// room is the local delivery state of one room with local subscribers.
type room struct {
	id string
	h  *Hub

	refs int // guarded by Hub.mu

	initMu sync.Mutex // held while the first subscriber initialises the room

	mu      sync.Mutex
	ready   bool            // lastSeq is known
	lastSeq int64           // every seq up to here has been handed to live subs, in order
	pending map[int64]Event // arrived ahead of lastSeq+1
	filling bool            // a gap fetch is scheduled or running
	again   bool            // a resync came while filling: fetch everything once more
	subs    map[*conn]*sub
	stopped bool
}

// sub is one connection's subscription. cursor is the last seq handed to
// the connection; a sub that is not live is catching up from the store and
// live delivery skips it.
type sub struct {
	cursor int64
	live   bool
}

func newRoom(h *Hub, id string) *room {
	return &room{id: id, h: h, pending: make(map[int64]Event), subs: make(map[*conn]*sub)}
}

func (r *room) initialized() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ready
}

// initialize sets the room's position once the store has told it, then
// delivers whatever arrived meanwhile and is next in line.
func (r *room) initialize(lastSeq int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ready = true
	r.lastSeq = lastSeq
	r.advance()
}

func (r *room) stop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stopped = true
}

// receive takes one stored message from the broker.
func (r *room) receive(ev Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopped || (r.ready && ev.Seq <= r.lastSeq) {
		return // a repeat, or already fetched from the store
	}
	r.pending[ev.Seq] = ev
	if r.ready {
		r.advance()
	}
}

// advance delivers pending events in seq order for as long as the next one
// is there, and schedules a store fetch when one is missing. Called with
// r.mu held.
func (r *room) advance() {
	for seq := range r.pending {
		if seq <= r.lastSeq {
			delete(r.pending, seq)
		}
	}
	for {
		ev, ok := r.pending[r.lastSeq+1]
		if !ok {
			break
		}
		delete(r.pending, ev.Seq)
		r.lastSeq = ev.Seq
		r.deliver(ev)
	}
	if len(r.pending) > 0 && !r.filling {
		r.filling = true
		time.AfterFunc(r.h.cfg.GapWait, r.fillGap)
	}
}

// deliver hands an in-order message to every live subscriber. Called with
// r.mu held.
func (r *room) deliver(ev Event) {
	handed := 0
	for c, s := range r.subs {
		if !s.live || ev.Seq <= s.cursor {
			continue
		}
		if ev.Seq != s.cursor+1 {
			// Cannot happen while live subs follow lastSeq; recover anyway.
			s.live = false
			go r.catchUp(c, s)
			continue
		}
		s.cursor = ev.Seq
		c.enqueueMessage(r.id, ev.Seq, ev.Frame)
		handed++
	}
	r.h.cfg.metrics.Delivered.Add(float64(handed))
}

// fillGap fetches from the store the messages that are missing before the
// pending ones (another node's publish may be late or lost) and delivers
// them in order.
func (r *room) fillGap() { r.fetchMissing(false) }

// resync fetches whatever the store has after the room's position, even
// with nothing pending: after a broker outage, messages may have been
// published that never arrived and nothing later has arrived to show a gap.
func (r *room) resync() {
	r.mu.Lock()
	if r.filling {
		// The running fetch may have read before the broker went live
		// again; run a full one after it.
		r.again = true
	}
	if !r.ready || r.filling || r.stopped {
		r.mu.Unlock()
		return
	}
	r.filling = true
	r.mu.Unlock()
	r.fetchMissing(true)
}

// fetchMissing reads the page after lastSeq from the store and delivers it.
// Unless all is set, it does so only while events wait behind a gap. The
// caller has set r.filling.
func (r *room) fetchMissing(all bool) {
	r.mu.Lock()
	if r.stopped || (!all && len(r.pending) == 0) {
		r.filling = false
		r.mu.Unlock()
		return
	}
	from := r.lastSeq
	r.mu.Unlock()

	ctx, cancel := context.WithTimeout(r.h.ctx, 10*time.Second)
	evs, err := r.h.cfg.Store.EventsAfter(ctx, r.id, from, catchUpPage)
	cancel()

	r.mu.Lock()
	defer r.mu.Unlock()
	r.filling = false
	if err != nil {
		r.h.log.WarnContext(r.h.ctx, "gap fetch failed", slog.String("room", r.id), slog.Any("error", err))
		if r.h.ctx.Err() == nil && !r.stopped {
			r.filling = true
			time.AfterFunc(time.Second, func() { r.fetchMissing(all) })
		}
		return
	}
	r.h.cfg.metrics.GapFetches.Inc()
	for i := range evs {
		if ev := &evs[i]; ev.Seq > r.lastSeq {
			r.pending[ev.Seq] = Event{Room: r.id, Seq: ev.Seq, From: ev.Message.Sender.ID, Frame: eventFrame(*ev)}
		}
	}
	r.advance()
	more := all && len(evs) == catchUpPage
	if (more || r.again) && !r.filling && !r.stopped {
		r.again = false
		r.filling = true
		go r.fetchMissing(true)
	}
}

// addSub subscribes c from afterSeq: it sends the subscribed frame, then
// catches up from the store, then goes live.
func (r *room) addSub(c *conn, afterSeq int64, id *string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := &sub{cursor: afterSeq}
	r.subs[c] = s
	c.enqueueFrame(encode(subscribedFrame{Type: "subscribed", ID: id, Room: r.id, LastSeq: r.lastSeq}))
	if afterSeq >= r.lastSeq {
		s.cursor = afterSeq
		s.live = true
		return
	}
	go r.catchUp(c, s)
}

func (r *room) removeSub(c *conn) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.subs, c)
}

// catchUp reads what s missed from the store, page by page, and makes s live
// once it has reached the room's position. The switch happens under r.mu,
// where live delivery also runs, so no message falls between the two.
func (r *room) catchUp(c *conn, s *sub) {
	backoff := 100 * time.Millisecond
	for {
		r.mu.Lock()
		if r.subs[c] != s {
			r.mu.Unlock()
			return
		}
		from := s.cursor
		r.mu.Unlock()

		evs, err := r.h.cfg.Store.EventsAfter(c.ctx, r.id, from, catchUpPage)
		if err != nil {
			if c.ctx.Err() != nil {
				return
			}
			r.h.log.WarnContext(c.ctx, "catch-up fetch failed", slog.String("room", r.id), slog.Any("error", err))
			select {
			case <-time.After(backoff):
				backoff = min(2*backoff, 5*time.Second)
				continue
			case <-c.ctx.Done():
				return
			}
		}

		// Live delivery skips s while it is not live, so r.mu need not be
		// held across the wait for room in c's queue.
		for i := range evs {
			ev := &evs[i]
			data := eventFrame(*ev)
			if !c.waitRoom(len(data)) {
				return
			}
			r.mu.Lock()
			if r.subs[c] != s {
				r.mu.Unlock()
				return
			}
			if ev.Seq == s.cursor+1 {
				s.cursor = ev.Seq
				c.enqueueMessage(r.id, ev.Seq, data)
			}
			r.mu.Unlock()
		}
		r.mu.Lock()
		if r.subs[c] != s {
			r.mu.Unlock()
			return
		}
		if len(evs) < catchUpPage && s.cursor >= r.lastSeq {
			s.live = true
			r.mu.Unlock()
			return
		}
		r.mu.Unlock()
	}
}

// broadcastEphemeral hands a typing (or later presence) event to every
// subscriber except the connections of the user who caused it.
func (r *room) broadcastEphemeral(ev Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for c := range r.subs {
		if c.user.ID != ev.From {
			c.enqueueEphemeral(ev.Frame)
		}
	}
}
