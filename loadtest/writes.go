package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// logOut takes the progress lines of setup and sweeps.
var logOut io.Writer = os.Stderr

// targetP99 is the write path's latency target: p99 ack under 50 ms.
const targetP99 = 50 * time.Millisecond

// achievedShare is how close achieved must come to offered for a point to
// count as keeping up: acks received within the window over the window,
// which falls short of offered by about the latency over the window even
// when nothing queues.
const achievedShare = 0.95

// writeSession is the accounts, rooms and member connections of an
// open-loop writes run, kept open so that several rates (a sweep, or the
// suite's writes, writes-http and mixed) measure on one setup.
type writeSession struct {
	e       *env
	run     string
	shape   *shape
	fleet   *fleet
	readers sync.WaitGroup
	httpSem chan struct{} // HTTP sends in flight
	httpWG  sync.WaitGroup
}

// prepareWrites registers the shape's users, makes its rooms and opens
// one connection per user, each subscribed to the user's rooms.
func prepareWrites(ctx context.Context, e *env, sp shapeParams) (*writeSession, error) {
	s := &writeSession{e: e, run: e.run, fleet: newFleet(realClock{}), httpSem: make(chan struct{}, 4096)}
	var err error
	if s.shape, err = buildShape(ctx, e, e.run+"-w", sp); err != nil {
		return nil, err
	}
	sh := s.shape
	for i, u := range sh.users {
		rooms := []string{sh.homes[sh.homeOf[i]]}
		if sh.bigOf[i] >= 0 {
			rooms = append(rooms, sh.bigs[sh.bigOf[i]])
		}
		s.fleet.addMember(u, e.nodes[i%len(e.nodes)], rooms, rooms)
	}
	if err := dialFleet(ctx, e, s.fleet, &s.readers); err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

func (s *writeSession) close() { closeFleet(s.fleet, &s.readers) }

// pointParams are one measured rate.
type pointParams struct {
	Rate        float64 // msgs/s offered, all connections together
	Arrival     arrival
	HTTP        bool
	Duration    time.Duration
	Drain       time.Duration // bound on the wait for answers and deliveries
	MaxLateness time.Duration // p99 of the generator's lateness it may have
	MaxMessages int           // bound on sends; 0: Duration alone
	// UpdateShare is the share of sends replaced by an edit or a reaction
	// (SPEC §13) of the connection's last acked message in the room.
	UpdateShare float64
	Seed        uint64
}

// writePoint is what one rate measured.
type writePoint struct {
	Offered    float64            `json:"offered_msgs_per_s"`
	Achieved   float64            `json:"achieved_msgs_per_s"` // acks (of sends and updates) received within the window, per second of it
	Arrival    string             `json:"arrival"`
	HTTP       bool               `json:"http,omitempty"`
	Seconds    float64            `json:"seconds"`
	Sent       int64              `json:"sent"`
	Acked      int64              `json:"acked"`
	Ack        Summary            `json:"ack"`      // from the intended send time
	Delivery   Summary            `json:"delivery"` // from the intended send time, every member connection
	Lateness   Summary            `json:"generator_lateness"`
	KeptUp     bool               `json:"generator_kept_up"`
	Deliveries int64              `json:"deliveries_to_other_members"`
	Echoes     int64              `json:"echoes_to_sender"`
	Expected   int64              `json:"expected_deliveries"` // acked × member connections of the room
	Check      checkCounts        `json:"check"`
	Errors     map[string]int     `json:"errors,omitempty"`
	Unanswered int64              `json:"unanswered,omitempty"`
	Settled    bool               `json:"settled"`
	CPU        map[string]float64 `json:"cpu_cores"`
	Frames     *frameCounts       `json:"frames,omitempty"` // WebSocket frames the servers wrote during the point
	Good       bool               `json:"within_target"`
	Machine    string             `json:"machine"` // at the end of the window
	Timeline   []second           `json:"timeline,omitempty"`
	Foreign    int64              `json:"foreign,omitempty"`
	Malformed  int64              `json:"malformed,omitempty"`
	// Edits and reactions (UpdateShare): acked, their ack latency, and
	// the update frames delivered in seq order.
	UpdatesAcked int64    `json:"updates_acked,omitempty"`
	UpdateAck    *Summary `json:"update_ack,omitempty"`
	Updates      int64    `json:"update_deliveries,omitempty"`
}

// point offers p.Rate for p.Duration, open loop, then waits for every
// answer and delivery (at most p.Drain) and checks them.
func (s *writeSession) point(ctx context.Context, p pointParams) *writePoint {
	return runPoint(ctx, s.e, s.fleet, s.run, p, func(m *member, rng *rand.Rand) string {
		return pickRoom(m.rooms, s.shape.p.BigShare, rng)
	}, s.httpSem, &s.httpWG)
}

// pointIDs numbers the points of a process, so that client_ids never repeat.
var pointIDs atomic.Int64

// runPoint drives every sending member of f at its share of p.Rate and
// measures the point.
func runPoint(ctx context.Context, e *env, f *fleet, run string, p pointParams, room func(*member, *rand.Rand) string,
	httpSem chan struct{}, httpWG *sync.WaitGroup) *writePoint {
	f.take() // anything left from before is not this point's
	var senders []*member
	for _, m := range f.members {
		if len(m.rooms) > 0 {
			senders = append(senders, m)
		}
	}
	perConn := 0.0
	if len(senders) > 0 {
		perConn = p.Rate / float64(len(senders))
	}
	pid := pointIDs.Add(1)
	before, countersBefore := sampleCPU(ctx, e.nodes), serverCounters(ctx, e.nodes)
	start := time.Now().Add(50 * time.Millisecond)
	end := start.Add(p.Duration)
	f.phaseEnd.Store(end.UnixNano())
	var budget atomic.Int64
	var wg sync.WaitGroup
	for _, m := range senders {
		rng := rand.New(rand.NewPCG(p.Seed+uint64(pid), uint64(m.idx)))
		sched := newSchedule(p.Arrival, perConn, start, rng)
		wg.Go(func() {
			pace(ctx, realClock{}, sched, end, 0, m.noteLate, func(intended time.Time) bool {
				if p.MaxMessages > 0 && budget.Add(1) > int64(p.MaxMessages) {
					return false
				}
				r := room(m, rng)
				if p.UpdateShare > 0 && !p.HTTP && rng.Float64() < p.UpdateShare && m.sendUpdate(ctx, intended, r, rng) {
					return true
				}
				if p.HTTP {
					return m.sendHTTP(ctx, intended, r, fmt.Sprintf("%s-p%d", run, pid), httpSem, httpWG)
				}
				return m.sendWS(ctx, intended, r, fmt.Sprintf("%s-p%d", run, pid))
			})
		})
	}
	wg.Wait()
	after, countersAfter := sampleCPU(ctx, e.nodes), serverCounters(ctx, e.nodes)
	machine := machineState()
	settled := f.drain(p.Drain)
	var unanswered int64
	if !settled {
		for _, m := range f.members {
			unanswered += int64(m.abandon())
			m.mu.Lock()
			unanswered += m.inHTTP
			m.mu.Unlock()
		}
	}
	st := f.take()
	pt := &writePoint{Offered: p.Rate, Arrival: string(p.Arrival), HTTP: p.HTTP, Seconds: p.Duration.Seconds(),
		Sent: st.sent, Acked: st.acked, Achieved: float64(st.achieved) / p.Duration.Seconds(),
		Ack: st.ack.summary(), Delivery: st.delivery.summary(), Lateness: st.late.summary(),
		Deliveries: st.deliveries, Echoes: st.echoes, Expected: st.expected, Check: st.check,
		Unanswered: unanswered, Settled: settled, CPU: cores(before, after), Foreign: st.foreign, Malformed: st.malformed, Machine: machine,
		Frames: framesBetween(countersBefore, countersAfter)}
	if len(st.codes) > 0 {
		pt.Errors = st.codes
	}
	if st.updAcked > 0 {
		s := st.updAck.summary()
		pt.UpdatesAcked, pt.UpdateAck, pt.Updates = st.updAcked, &s, st.updates
	}
	pt.Timeline = timeline(start, end, st.ackAt, st.ack.d)
	pt.KeptUp = keptUp(pt.Lateness, p.MaxLateness)
	pt.Good = pt.Achieved >= achievedShare*pt.Offered && pt.Ack.P99 < ms(targetP99) && pt.KeptUp &&
		pt.Check.ok() && len(pt.Errors) == 0 && pt.Unanswered == 0 && pt.Settled
	return pt
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// second is one second of a point: the acks answered in it (throughput as
// the server gave it), and the latency of the sends intended in it (when
// a stall began shows as a second whose p99 jumps).
type second struct {
	Answered int     `json:"answered"`
	Intended int     `json:"intended_acked"`
	P50      float64 `json:"p50_ms"`
	P99      float64 `json:"p99_ms"`
	Max      float64 `json:"max_ms"`
}

// timeline buckets acks (intended time at[i], latency lat[i]) by second
// from start; answers after end (the drain) fall in extra seconds.
func timeline(start, end time.Time, at []time.Time, lat []time.Duration) []second {
	n := int(math.Ceil(end.Sub(start).Seconds()))
	for i := range at {
		n = max(n, int(at[i].Add(lat[i]).Sub(start)/time.Second)+1)
	}
	n = min(n, 600)
	secs := make([]second, n)
	byIntended := make([][]time.Duration, n)
	for i := range at {
		if k := int(at[i].Sub(start) / time.Second); k >= 0 && k < n {
			byIntended[k] = append(byIntended[k], lat[i])
		}
		if k := int(at[i].Add(lat[i]).Sub(start) / time.Second); k >= 0 && k < n {
			secs[k].Answered++
		}
	}
	for k, ds := range byIntended {
		sum := summarize(ds)
		secs[k].Intended, secs[k].P50, secs[k].P99, secs[k].Max = sum.Count, sum.P50, sum.P99, sum.Max
	}
	return secs
}

// timelineLine formats a timeline compactly: per second, acks answered /
// p99 ms of the sends intended in it.
func timelineLine(secs []second) string {
	var parts []string
	for _, s := range secs {
		parts = append(parts, fmt.Sprintf("%d/%.0f", s.Answered, s.P99))
	}
	return strings.Join(parts, " ")
}

// noteLate records how late one of m's sends left.
func (m *member) noteLate(d time.Duration) {
	m.mu.Lock()
	m.st.late = append(m.st.late, d)
	m.mu.Unlock()
}

// sendWS sends one message into room over m's WebSocket; its ack (or
// error) is matched by request id.
func (m *member) sendWS(ctx context.Context, intended time.Time, room, run string) bool {
	m.nextID++
	id := strconv.FormatInt(m.nextID, 10)
	m.mu.Lock()
	m.pending[id] = pendingSend{intended: intended, room: room}
	m.st.sent++
	m.mu.Unlock()
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	err := m.ws.Write(wctx, websocket.MessageText, sendFrame(id, room, stampBody(intended, m.idx), fmt.Sprintf("%s-%d-%s", run, m.idx, id)))
	if err != nil {
		m.mu.Lock()
		delete(m.pending, id)
		m.st.codes["write failed (connection closed)"]++
		m.mu.Unlock()
		return false
	}
	return true
}

// sendUpdate edits, or adds or removes a reaction to, m's last acked
// message in room, half and half; false when m has none there yet (or the
// write failed), and the caller sends instead.
func (m *member) sendUpdate(ctx context.Context, intended time.Time, room string, rng *rand.Rand) bool {
	m.mu.Lock()
	target, ok := m.own[room]
	m.mu.Unlock()
	if !ok {
		return false
	}
	m.nextID++
	id := strconv.FormatInt(m.nextID, 10)
	frame := map[string]any{"type": "edit", "id": id, "message_id": target, "body": stampBody(intended, m.idx) + " edited"}
	if rng.IntN(2) == 0 {
		op := "add"
		if m.reacted[target] {
			op = "remove"
		}
		m.reacted[target] = !m.reacted[target]
		frame = map[string]any{"type": "react", "id": id, "message_id": target, "emoji": "👍", "op": op}
	}
	raw, _ := json.Marshal(frame)
	m.mu.Lock()
	m.pending[id] = pendingSend{intended: intended, room: room, update: true}
	m.mu.Unlock()
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := m.ws.Write(wctx, websocket.MessageText, raw); err != nil {
		m.mu.Lock()
		delete(m.pending, id)
		m.mu.Unlock()
		return false
	}
	return true
}

// sendHTTP posts one message into room, in a goroutine of its own (HTTP/1.1
// answers one request at a time per connection, so an open loop cannot
// wait for one before sending the next); at most cap(sem) are in flight,
// and a send that waits for a slot is late.
func (m *member) sendHTTP(ctx context.Context, intended time.Time, room, run string, sem chan struct{}, wg *sync.WaitGroup) bool {
	select {
	case sem <- struct{}{}:
	case <-ctx.Done():
		return false
	}
	m.nextID++
	clientID := fmt.Sprintf("%s-%d-%d", run, m.idx, m.nextID)
	m.mu.Lock()
	m.inHTTP++
	m.st.sent++
	m.mu.Unlock()
	wg.Go(func() {
		defer func() { <-sem }()
		var msg struct {
			RoomID string `json:"room_id"`
			Seq    int64  `json:"seq"`
		}
		err := m.node.do(ctx, "POST", "/api/v1/rooms/"+room+"/messages", m.user.Token,
			map[string]string{"body": stampBody(intended, m.idx), "client_id": clientID}, &msg, 201)
		now := m.fleet.clk.Now()
		if err != nil {
			m.recordError(errorCode(err))
		} else {
			m.recordAck(intended, msg.RoomID, msg.Seq, now)
		}
		m.mu.Lock()
		m.inHTTP--
		m.mu.Unlock()
	})
	return true
}

// writesParams shape the open-loop writes scenario.
type writesParams struct {
	Shape shapeParams
	Point pointParams
}

// usersFor is how many users (one connection each) rate needs so that each
// stays at or under perUser.
func usersFor(rate, perUser float64, atLeast int) int {
	return max(atLeast, int(math.Ceil(rate/perUser)))
}

// runWritesOpen runs the writes scenario open loop: every user's
// connection sends at its share of the rate, on its own schedule.
func runWritesOpen(ctx context.Context, e *env, p writesParams) (*Result, error) {
	s, err := prepareWrites(ctx, e, p.Shape)
	if err != nil {
		return nil, err
	}
	defer s.close()
	e.startMeasuring()
	pt := s.point(ctx, p.Point)
	name := "writes"
	if p.Point.HTTP {
		name = "writes-http"
	}
	return pointResult(name, e, pt, s.shape.describe(len(e.nodes))), nil
}

// pointResult reports one point as a scenario's result.
func pointResult(name string, e *env, pt *writePoint, shapeDesc string) *Result {
	res := newResult(name, e.nodes, map[string]any{"rate": pt.Offered, "arrival": pt.Arrival, "http": pt.HTTP,
		"duration": fmt.Sprintf("%gs", pt.Seconds), "shape": shapeDesc})
	res.Loop = openLoop
	res.Seconds = pt.Seconds
	res.CPU = pt.CPU
	addPointValues(res, "", pt)
	res.Notes = append(res.Notes, "shape: "+shapeDesc)
	res.Failed = pointFailed(pt)
	return res
}

// pointFailed: a check failed (something missing, repeated or skipped), a
// user under its limits was refused, or nothing was acked.
func pointFailed(pt *writePoint) bool {
	return !pt.Check.ok() || pt.Errors["rate_limited"] > 0 || pt.Acked == 0 || pt.Malformed > 0
}

// addPointValues adds pt's figures to res, each name prefixed.
func addPointValues(res *Result, prefix string, pt *writePoint) {
	res.add(prefix+"offered rate", pt.Offered, "msgs/s")
	res.add(prefix+"sent rate (as scheduled)", float64(pt.Sent)/pt.Seconds, "msgs/s")
	res.add(prefix+"achieved (acked) rate", pt.Achieved, "msgs/s")
	res.add(prefix+"messages sent", float64(pt.Sent), "msgs")
	res.add(prefix+"messages acked", float64(pt.Acked), "msgs")
	res.add(prefix+"deliveries to other members (in order)", float64(pt.Deliveries), "msgs")
	res.add(prefix+"own messages back to the sender", float64(pt.Echoes), "msgs")
	res.add(prefix+"deliveries expected (acked × member connections)", float64(pt.Expected), "msgs")
	res.add(prefix+"delivery rate", float64(pt.Deliveries+pt.Echoes)/pt.Seconds, "msgs/s")
	res.add(prefix+"missing", float64(pt.Check.Missing), "msgs")
	res.add(prefix+"repeated", float64(pt.Check.Repeats), "msgs")
	res.add(prefix+"gaps (out of order)", float64(pt.Check.Gaps), "")
	res.add(prefix+"rate-limit refusals", float64(pt.Errors["rate_limited"]), "")
	var errs int
	for _, n := range pt.Errors {
		errs += n
	}
	res.add(prefix+"errors", float64(errs), "")
	res.add(prefix+"unanswered after the drain", float64(pt.Unanswered), "")
	if pt.Acked > 0 {
		res.add(prefix+"server CPU per message", pt.CPU["server"]*pt.Seconds/float64(pt.Acked)*1e6, "µs")
		res.add(prefix+"postgres CPU per message", pt.CPU["postgres"]*pt.Seconds/float64(pt.Acked)*1e6, "µs")
	}
	if pt.UpdateAck != nil {
		res.add(prefix+"edits and reactions acked", float64(pt.UpdatesAcked), "")
		res.add(prefix+"update frames delivered (in order)", float64(pt.Updates), "")
		res.Latencies[prefix+"edit/reaction ack (from intended send)"] = *pt.UpdateAck
	}
	res.Latencies[prefix+"ack (from intended send)"] = pt.Ack
	res.Latencies[prefix+"delivery (from intended send)"] = pt.Delivery
	res.Latencies[prefix+"generator lateness"] = pt.Lateness
	if len(pt.Errors) > 0 {
		res.Notes = append(res.Notes, fmt.Sprintf("%serrors by code: %v", prefix, pt.Errors))
	}
	if !pt.Check.ok() {
		res.Notes = append(res.Notes, prefix+"DELIVERY CHECK FAILED: "+pt.Check.String())
	}
	if pt.Foreign > 0 || pt.Malformed > 0 {
		res.Notes = append(res.Notes, fmt.Sprintf("%s%d messages of rooms not checked, %d malformed", prefix, pt.Foreign, pt.Malformed))
	}
	if !pt.Settled {
		res.Notes = append(res.Notes, prefix+"answers or deliveries still outstanding when the drain ended")
	}
	res.Notes = append(res.Notes, prefix+generatorNote(pt.Lateness, pt.KeptUp))
	res.Notes = append(res.Notes, prefix+"verdict: "+verdict(pt))
	res.Notes = append(res.Notes, prefix+"per second, acks answered / p99 ms of the sends intended in it: "+timelineLine(pt.Timeline))
}

// generatorNote says whether the generator kept its schedule.
func generatorNote(l Summary, ok bool) string {
	if ok {
		return fmt.Sprintf("generator kept its schedule (lateness p99 %.2f ms, max %.1f ms)", l.P99, l.Max)
	}
	return fmt.Sprintf("GENERATOR FELL BEHIND ITS SCHEDULE (lateness p99 %.1f ms, max %.1f ms): latencies from the intended time "+
		"include up to that much of its own; a figure within target would be invalid", l.P99, l.Max)
}

// sortedCodes formats error counts in a stable order.
func sortedCodes(m map[string]int) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}
