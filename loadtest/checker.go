package main

import (
	"fmt"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// The delivery checker. Every member connection keeps, for each room it
// belongs to, the highest seq it has received (a roomTrack). A message
// whose seq is last+1 is delivered in order; a seq at or below last is a
// repeat; a seq above last+1 is a gap (the seqs jumped over were skipped).
// Since a room's seqs are gapless (SPEC §5) and only the load test writes
// into its rooms, a connection that saw 1, 2, …, last each once and in
// order and reached the room's highest acked seq has had every acked
// message of the room exactly once, in order. After the senders stop, the
// run waits (bounded) for every connection to reach its rooms' highest
// acked seqs; what a connection has not reached by then is missing. A
// repeat, a gap or a missing message fails the run.

// roomTrack is one room as one connection has seen it.
type roomTrack struct {
	last    int64 // highest seq received
	repeats int64 // since the last take
	gaps    int64
	skipped int64 // seqs jumped over by gaps
}

// see checks seq and says whether it came in order.
func (t *roomTrack) see(seq int64) bool {
	switch {
	case seq == t.last+1:
		t.last = seq
		return true
	case seq <= t.last:
		t.repeats++
	default:
		t.gaps++
		t.skipped += seq - t.last - 1
		t.last = seq
	}
	return false
}

// checkCounts are what the checker found.
type checkCounts struct {
	Repeats int64 `json:"repeated"`
	Gaps    int64 `json:"gaps"`
	Skipped int64 `json:"skipped"`
	Missing int64 `json:"missing"` // acked messages a connection never reached
}

func (c checkCounts) ok() bool { return c.Repeats == 0 && c.Gaps == 0 && c.Missing == 0 }

func (c *checkCounts) add(o checkCounts) {
	c.Repeats += o.Repeats
	c.Gaps += o.Gaps
	c.Skipped += o.Skipped
	c.Missing += o.Missing
}

func (c checkCounts) String() string {
	return fmt.Sprintf("%d missing, %d repeated, %d gaps (%d seqs skipped)", c.Missing, c.Repeats, c.Gaps, c.Skipped)
}

// pendingSend is a WebSocket send waiting for its answer.
type pendingSend struct {
	intended time.Time
	room     string
	update   bool // an edit or reaction, not a send
}

// memberStats is what a member connection measured since the last take.
type memberStats struct {
	sent, acked int64
	achieved    int64 // acks received before the phase's end
	ackLat      []time.Duration
	ackAt       []time.Time     // intended send time of each ackLat
	delLat      []time.Duration // from the message's intended send time
	late        []time.Duration // how late each send left
	codes       map[string]int  // error answers by code
	deliveries  int64           // in order, of messages other connections sent
	echoes      int64           // in order, of the connection's own messages
	foreign     int64           // messages of rooms the connection is not checking
	malformed   int64
	updates     int64           // update frames received in order (SPEC §13)
	updAcked    int64           // acks of the connection's edits and reactions
	updAckLat   []time.Duration // their latency, from the intended time
}

// member is one connection of a user: it receives (and checks) every
// room of the user, and may send.
type member struct {
	idx   int // in its fleet; the bodies it sends carry it
	user  account
	node  *node
	ws    *websocket.Conn
	rooms []string // the rooms it sends into
	fleet *fleet

	subscribed chan string   // rooms as their subscribed frames arrive
	ready      chan struct{} // closed on the ready frame

	mu      sync.Mutex
	tracks  map[string]*roomTrack // the rooms it checks; keys fixed at creation
	pending map[string]pendingSend
	st      memberStats
	nextID  int64 // sender goroutine only
	inHTTP  int64 // HTTP sends in flight
	// own is, per room, the last message of this connection acked there:
	// what its edits and reactions change.
	own map[string]string
	// reacted: message ids this connection's reaction is on (sender
	// goroutine only), so that reactions alternate add and remove.
	reacted map[string]bool
}

// fleet is the member connections of a run and what they share.
type fleet struct {
	members  []*member
	maxAcked map[string]*atomic.Int64 // per room: highest acked seq; keys fixed
	acked    map[string]*atomic.Int64 // per room: acks since the last take
	conns    map[string]int           // per room: member connections checking it
	phaseEnd atomic.Int64             // Unix ns: acks after it do not count as achieved
	clk      clock
}

func newFleet(clk clock) *fleet {
	return &fleet{maxAcked: map[string]*atomic.Int64{}, acked: map[string]*atomic.Int64{}, conns: map[string]int{}, clk: clk}
}

// addMember makes a member connection that checks rooms (before any is
// dialled: the room maps are fixed afterwards).
func (f *fleet) addMember(user account, n *node, checks []string, sendsInto []string) *member {
	m := &member{idx: len(f.members), user: user, node: n, rooms: sendsInto, fleet: f,
		subscribed: make(chan string, len(checks)+8), ready: make(chan struct{}), tracks: map[string]*roomTrack{},
		pending: map[string]pendingSend{}, st: memberStats{codes: map[string]int{}}, own: map[string]string{},
		reacted: map[string]bool{}}
	for _, r := range checks {
		m.tracks[r] = &roomTrack{}
		f.conns[r]++
		if f.maxAcked[r] == nil {
			f.maxAcked[r], f.acked[r] = &atomic.Int64{}, &atomic.Int64{}
		}
	}
	f.members = append(f.members, m)
	return m
}

// onLine handles one server object.
func (m *member) onLine(line []byte) {
	switch frameType(line) {
	case "message":
		room, seq, body, ok := messageFields(line)
		now := m.fleet.clk.Now()
		m.mu.Lock()
		defer m.mu.Unlock()
		if !ok {
			m.st.malformed++
			return
		}
		t := m.tracks[room]
		if t == nil {
			m.st.foreign++
			return
		}
		if !t.see(seq) {
			return
		}
		intended, from, ok := bodyStamp(body)
		if from == m.idx {
			m.st.echoes++
		} else {
			m.st.deliveries++
		}
		if ok {
			m.st.delLat = append(m.st.delLat, now.Sub(intended))
		}
	case "update":
		// An edit or reaction takes the room's next seq: it is checked in
		// order with the messages, and counted apart.
		room, seq, _, ok := messageFields(line)
		m.mu.Lock()
		defer m.mu.Unlock()
		if !ok {
			m.st.malformed++
			return
		}
		if t := m.tracks[room]; t == nil {
			m.st.foreign++
		} else if t.see(seq) {
			m.st.updates++
		}
	case "ack", "error":
		rp, ok := decodeReply(line)
		if !ok {
			m.mu.Lock()
			m.st.malformed++
			m.mu.Unlock()
			return
		}
		now := m.fleet.clk.Now()
		var p pendingSend
		found := false
		m.mu.Lock()
		if rp.ID != nil {
			p, found = m.pending[*rp.ID]
			delete(m.pending, *rp.ID)
		}
		m.mu.Unlock()
		switch {
		case rp.Type == "ack" && found && p.update:
			m.mu.Lock()
			m.st.updAcked++
			m.st.updAckLat = append(m.st.updAckLat, now.Sub(p.intended))
			if now.UnixNano() < m.fleet.phaseEnd.Load() {
				m.st.achieved++ // offered counts sends and updates alike
			}
			m.mu.Unlock()
		case rp.Type == "ack" && found:
			m.recordAck(p.intended, rp.Message.RoomID, rp.Message.Seq, now)
			m.mu.Lock()
			m.own[rp.Message.RoomID] = rp.Message.ID
			m.mu.Unlock()
		case rp.Type == "error":
			code := rp.Code
			if !found {
				code += " (not answering a send)"
			}
			m.recordError(code)
		}
	case "ready":
		select {
		case <-m.ready:
		default:
			close(m.ready)
		}
	case "subscribed":
		if rp, ok := decodeReply(line); ok {
			select {
			case m.subscribed <- rp.Room:
			default:
			}
		}
	}
}

// recordAck counts an acknowledged send of intended time into room at seq,
// answered at now.
func (m *member) recordAck(intended time.Time, room string, seq int64, now time.Time) {
	f := m.fleet
	if max := f.maxAcked[room]; max != nil {
		for cur := max.Load(); seq > cur && !max.CompareAndSwap(cur, seq); cur = max.Load() {
		}
		f.acked[room].Add(1)
	}
	m.mu.Lock()
	m.st.acked++
	if now.UnixNano() < f.phaseEnd.Load() {
		m.st.achieved++
	}
	m.st.ackLat = append(m.st.ackLat, now.Sub(intended))
	m.st.ackAt = append(m.st.ackAt, intended)
	m.mu.Unlock()
}

func (m *member) recordError(code string) {
	m.mu.Lock()
	m.st.codes[code]++
	m.mu.Unlock()
}

// outstanding is how many of m's sends wait for an answer.
func (m *member) outstanding() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.pending) + int(m.inHTTP)
}

// caughtUp says whether m has reached the highest acked seq of each of its
// rooms.
func (m *member) caughtUp() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	for r, t := range m.tracks {
		if t.last < m.fleet.maxAcked[r].Load() {
			return false
		}
	}
	return true
}

// take returns what m measured since the last take, and its check: the
// repeats and gaps since then, and what it is still missing now.
func (m *member) take() (memberStats, checkCounts) {
	m.mu.Lock()
	defer m.mu.Unlock()
	st := m.st
	m.st = memberStats{codes: map[string]int{}}
	var c checkCounts
	for r, t := range m.tracks {
		c.Repeats += t.repeats
		c.Gaps += t.gaps
		c.Skipped += t.skipped
		t.repeats, t.gaps, t.skipped = 0, 0, 0
		c.Missing += max(m.fleet.maxAcked[r].Load()-t.last, 0)
	}
	return st, c
}

// abandon forgets m's unanswered sends, returning how many there were.
func (m *member) abandon() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := len(m.pending)
	clear(m.pending)
	return n
}

// fleetStats is a fleet's take, summed.
type fleetStats struct {
	sent, acked, achieved int64
	ack, delivery, late   latencies
	ackAt                 []time.Time // intended send time of each ack latency, in the same order
	updates, updAcked     int64
	updAck                latencies
	codes                 map[string]int
	deliveries, echoes    int64
	foreign, malformed    int64
	expected              int64 // acked × the member connections of its room
	check                 checkCounts
}

// take sums every member's take and the rooms' acks since the last take.
func (f *fleet) take() *fleetStats {
	s := &fleetStats{codes: map[string]int{}}
	for _, m := range f.members {
		st, c := m.take()
		s.sent += st.sent
		s.acked += st.acked
		s.achieved += st.achieved
		s.ack.addAll(st.ackLat)
		s.ackAt = append(s.ackAt, st.ackAt...)
		s.delivery.addAll(st.delLat)
		s.late.addAll(st.late)
		for k, v := range st.codes {
			s.codes[k] += v
		}
		s.updates += st.updates
		s.updAcked += st.updAcked
		s.updAck.addAll(st.updAckLat)
		s.deliveries += st.deliveries
		s.echoes += st.echoes
		s.foreign += st.foreign
		s.malformed += st.malformed
		s.check.add(c)
	}
	for r, n := range f.acked {
		s.expected += n.Swap(0) * int64(f.conns[r])
	}
	return s
}

// settled says whether every send has its answer and every member has
// every acked message.
func (f *fleet) settled() bool {
	for _, m := range f.members {
		if m.outstanding() > 0 || !m.caughtUp() {
			return false
		}
	}
	return true
}

// drain waits, at most d, until the fleet is settled; it reports whether it
// settled.
func (f *fleet) drain(d time.Duration) bool {
	deadline := time.Now().Add(d)
	for !f.settled() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

// roomSizes returns how many member connections check each room, by room.
func (f *fleet) roomSizes() map[string]int { return maps.Clone(f.conns) }
