package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// fanoutParams shape the fanout scenario.
type fanoutParams struct {
	Rooms        int           // rooms, each with its own sender
	Subscribers  int           // receiving connections per room
	UsersPerRoom int           // accounts the subscribers of a room share
	Interval     time.Duration // one message per room every Interval
	Duration     time.Duration // how long senders send
	MaxMessages  int           // per room; 0: no bound but Duration
	Drain        time.Duration // how long to wait for the last deliveries
}

// receiver is one subscribed connection and its delivery check: it must
// get every seq of its room exactly once, in order.
type receiver struct {
	room       string
	subscribed chan struct{} // closed on the room's subscribed frame
	last       atomic.Int64  // highest seq received
	// Owned by the read goroutine until it ends.
	inOrder   int64 // messages that came as last+1
	repeats   int64 // seq <= last
	gaps      int64 // seq > last+1: something before it was skipped
	lat       []time.Duration
	malformed int64
}

func (r *receiver) onLine(line []byte) {
	switch frameType(line) {
	case "message":
		room, seq, body, ok := messageFields(line)
		if !ok {
			r.malformed++
			return
		}
		if room != r.room {
			return
		}
		now := time.Now()
		last := r.last.Load()
		switch {
		case seq == last+1:
			r.inOrder++
			r.last.Store(seq)
		case seq <= last:
			r.repeats++
			return
		default:
			r.gaps++
			r.last.Store(seq)
		}
		if sent, ok := bodyStamp(body); ok {
			r.lat = append(r.lat, now.Sub(sent))
		}
	case "subscribed":
		var rp reply
		if json.Unmarshal(line, &rp) == nil && rp.Room == r.room {
			select {
			case <-r.subscribed:
			default:
				close(r.subscribed)
			}
		}
	}
}

// sender sends one room's messages over its own connection and records
// acks.
type sender struct {
	room    string
	ws      *websocket.Conn
	mu      sync.Mutex
	sentAt  map[string]time.Time // request id → send time, until answered
	maxSeq  int64                // highest acked seq
	acked   int64
	limited int64      // rate_limited answers
	errors  int64      // other error answers and failed writes
	ackLat  *latencies // shared by the senders of a run
}

func (s *sender) onLine(line []byte) {
	switch frameType(line) {
	case "ack", "error":
	default:
		return
	}
	var rp reply
	if json.Unmarshal(line, &rp) != nil || rp.ID == nil {
		return
	}
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	at, ok := s.sentAt[*rp.ID]
	if !ok {
		return
	}
	delete(s.sentAt, *rp.ID)
	switch {
	case rp.Type == "ack":
		s.acked++
		s.maxSeq = max(s.maxSeq, rp.Message.Seq)
		s.ackLat.add(now.Sub(at))
	case rp.Code == "rate_limited":
		s.limited++
	default:
		s.errors++
	}
}

func (s *sender) outstanding() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sentAt)
}

// runFanout runs the fanout scenario: each room gets Subscribers receiving
// connections, spread over the nodes, and one sender that sends a message
// every Interval. Every receiver must get every acked seq of its room
// exactly once and in order; the result counts what was lost or repeated.
func runFanout(ctx context.Context, e *env, p fanoutParams) (*Result, error) {
	p.UsersPerRoom = max(min(p.UsersPerRoom, p.Subscribers), 1)
	res := newResult("fanout", e.nodes, map[string]any{
		"rooms": p.Rooms, "subscribers_per_room": p.Subscribers, "users_per_room": p.UsersPerRoom,
		"interval": p.Interval.String(), "duration": p.Duration.String(), "max_messages": p.MaxMessages,
	})
	first := e.nodes[0]

	// Accounts and rooms: per room, a sender who owns it and the members
	// whose connections receive.
	senders := make([]*sender, p.Rooms)
	var ackLat latencies
	owners := make([]account, p.Rooms)
	members := make([][]account, p.Rooms)
	for r := range p.Rooms {
		accts, err := first.registerMany(ctx, fmt.Sprintf("%s-f%d", e.run, r), p.UsersPerRoom+1)
		if err != nil {
			return nil, err
		}
		owners[r], members[r] = accts[0], accts[1:]
		id, err := first.createRoom(ctx, owners[r], fmt.Sprintf("%s-fanout-%d", e.run, r))
		if err != nil {
			return nil, err
		}
		if err := first.joinAll(ctx, id, members[r]); err != nil {
			return nil, err
		}
		senders[r] = &sender{room: id, sentAt: map[string]time.Time{}, ackLat: &ackLat}
	}

	// Connections: subscribers round-robin over the nodes, each room's
	// sender on node r.
	var readers sync.WaitGroup
	var conns []*websocket.Conn
	defer func() {
		for _, c := range conns {
			c.CloseNow()
		}
		readers.Wait()
	}()
	var receivers []*receiver
	for r := range p.Rooms {
		for range p.Subscribers {
			receivers = append(receivers, &receiver{room: senders[r].room, subscribed: make(chan struct{})})
		}
	}
	// Dial a few at a time, each within its own timeout: 1,000 dials one
	// after another take long on a loaded machine.
	subConns := make([]*websocket.Conn, len(receivers))
	dialErrs := make([]error, len(receivers))
	sem := make(chan struct{}, 32)
	var dials sync.WaitGroup
	for k, rc := range receivers {
		r, i := k/p.Subscribers, k%p.Subscribers
		sem <- struct{}{}
		dials.Go(func() {
			defer func() { <-sem }()
			dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			ws, err := e.dialer.dial(dctx, e.nodes[i%len(e.nodes)], members[r][i%p.UsersPerRoom].Token, i)
			if err != nil {
				dialErrs[k] = fmt.Errorf("dial subscriber: %w", err)
				return
			}
			subConns[k] = ws
			readers.Go(func() { _ = readLines(ws, rc.onLine) })
		})
	}
	dials.Wait()
	for _, ws := range subConns {
		if ws != nil {
			conns = append(conns, ws)
		}
	}
	if err := errors.Join(dialErrs...); err != nil {
		return nil, err
	}
	for r, s := range senders {
		dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		ws, err := e.dialer.dial(dctx, e.nodes[r%len(e.nodes)], owners[r].Token, r)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("dial sender: %w", err)
		}
		conns = append(conns, ws)
		s.ws = ws
		readers.Go(func() { _ = readLines(ws, s.onLine) })
	}
	subscribed := time.After(time.Minute)
	for _, rc := range receivers {
		select {
		case <-rc.subscribed:
		case <-subscribed:
			return nil, fmt.Errorf("receivers not subscribed within a minute")
		}
	}

	// Send.
	framesBefore := serverCounters(ctx, e.nodes)
	before := sampleCPU(ctx, e.nodes)
	e.startMeasuring()
	start := time.Now()
	var sending sync.WaitGroup
	for r, s := range senders {
		sending.Go(func() { s.run(ctx, e.run, r, p) })
	}
	sending.Wait()
	sendSecs := time.Since(start).Seconds()

	// Wait for the answers, then for every receiver to reach its room's
	// last acked seq.
	deadline := time.Now().Add(p.Drain)
	for _, s := range senders {
		for s.outstanding() > 0 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
	}
	maxSeq := map[string]int64{}
	var acked, limited, sendErrors, unanswered int64
	for _, s := range senders {
		s.mu.Lock()
		maxSeq[s.room] = s.maxSeq
		acked += s.acked
		limited += s.limited
		sendErrors += s.errors
		unanswered += int64(len(s.sentAt))
		s.mu.Unlock()
	}
	for _, rc := range receivers {
		for rc.last.Load() < maxSeq[rc.room] && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
	}
	elapsed := time.Since(start).Seconds()
	after := sampleCPU(ctx, e.nodes)
	framesAfter := serverCounters(ctx, e.nodes)
	for _, c := range conns {
		c.CloseNow()
	}
	readers.Wait()
	conns = nil

	var delivered, lost, repeats, gaps, malformed int64
	var e2e latencies
	for _, rc := range receivers {
		want := maxSeq[rc.room]
		delivered += rc.inOrder
		repeats += rc.repeats
		gaps += rc.gaps
		malformed += rc.malformed
		// Every seq 1..want exists (seqs are gapless); a receiver that got
		// fewer of them in order lost the rest.
		lost += max(want-min(rc.inOrder, want), 0)
		e2e.addAll(rc.lat)
	}
	res.Seconds = elapsed
	res.CPU = cores(before, after)
	res.add("messages acked", float64(acked), "msgs")
	res.add("send rate", float64(acked)/sendSecs, "msgs/s")
	res.add("deliveries", float64(delivered), "msgs")
	res.add("delivery rate", float64(delivered)/sendSecs, "msgs/s")
	res.add("lost", float64(lost), "msgs")
	res.add("duplicated", float64(repeats), "msgs")
	res.add("out of order", float64(gaps), "msgs")
	res.add("rate-limit refusals", float64(limited), "")
	res.add("send errors", float64(sendErrors+unanswered), "")
	if delivered > 0 {
		res.add("server CPU per delivery", res.CPU["server"]*elapsed/float64(delivered)*1e6, "µs")
	}
	if frames := framesAfter["switchboard_ws_frames_out_total"] - framesBefore["switchboard_ws_frames_out_total"]; frames > 0 {
		res.add("messages per frame written", (framesAfter["switchboard_messages_out_total"]-framesBefore["switchboard_messages_out_total"])/frames, "")
	}
	res.Latencies["end-to-end"] = e2e.summary()
	res.Latencies["ack"] = ackLat.summary()
	res.Failed = lost > 0 || repeats > 0 || gaps > 0 || malformed > 0 || acked == 0
	if unanswered > 0 {
		res.Notes = append(res.Notes, fmt.Sprintf("%d sends unanswered after %s", unanswered, p.Drain))
	}
	return res, nil
}

// run sends a message every p.Interval until p.Duration or p.MaxMessages.
func (s *sender) run(ctx context.Context, run string, room int, p fanoutParams) {
	t := time.NewTicker(p.Interval)
	defer t.Stop()
	end := time.Now().Add(p.Duration)
	for n := 0; (p.MaxMessages == 0 || n < p.MaxMessages) && time.Now().Before(end); n++ {
		id := strconv.Itoa(n)
		now := time.Now()
		s.mu.Lock()
		s.sentAt[id] = now
		s.mu.Unlock()
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := s.ws.Write(wctx, websocket.MessageText,
			sendFrame(id, s.room, stampBody(now), fmt.Sprintf("%s-%d-%d", run, room, n)))
		cancel()
		if err != nil {
			s.mu.Lock()
			delete(s.sentAt, id)
			s.errors++
			s.mu.Unlock()
			return
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		}
	}
}
