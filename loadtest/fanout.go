package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"
)

// fanoutParams shape the fanout scenario.
type fanoutParams struct {
	Rooms        int           // rooms
	Subscribers  int           // member connections per room, all receiving
	UsersPerRoom int           // accounts a room's connections share (at most 20 connections each)
	Senders      int           // per room: the first Senders connections also send
	Interval     time.Duration // one message per room every Interval, all its senders together
	Duration     time.Duration // how long senders send
	MaxMessages  int           // per room; 0: no bound but Duration
	Drain        time.Duration // how long to wait for the last deliveries
	Arrival      arrival
	Loop         string        // openLoop, or closedLoop: one sender per room on a ticker, latency from the actual send
	MaxLateness  time.Duration // the generator's p99 lateness it may have
}

// runFanout runs the fanout scenario: each room gets Subscribers member
// connections, spread round-robin over the nodes, of which Senders also
// send, open loop, each at its share of the room's rate (1/Interval), so
// that each stays under the per-connection send budget. Every connection
// must get every acked message of its room exactly once and in order (the
// checker of checker.go); the delivery latency counts from each message's
// intended send time.
func runFanout(ctx context.Context, e *env, p fanoutParams) (*Result, error) {
	p.UsersPerRoom = max(min(p.UsersPerRoom, p.Subscribers), 1)
	p.Senders = max(min(p.Senders, p.Subscribers), 1)
	if p.Loop == closedLoop {
		p.Senders = 1
	}
	res := newResult("fanout", e.nodes, map[string]any{
		"rooms": p.Rooms, "subscribers_per_room": p.Subscribers, "users_per_room": p.UsersPerRoom, "senders_per_room": p.Senders,
		"interval": p.Interval.String(), "duration": p.Duration.String(), "max_messages": p.MaxMessages, "arrival": string(p.Arrival),
	})
	res.Loop = p.Loop
	first := e.nodes[0]

	// Accounts and rooms: per room, UsersPerRoom members (the first owns it).
	f := newFleet(realClock{})
	for r := range p.Rooms {
		accts, err := first.registerMany(ctx, fmt.Sprintf("%s-f%d", e.run, r), p.UsersPerRoom)
		if err != nil {
			return nil, err
		}
		id, err := first.createRoom(ctx, accts[0], fmt.Sprintf("%s-fanout-%d", e.run, r))
		if err != nil {
			return nil, err
		}
		if err := first.joinAll(ctx, id, accts[1:]); err != nil {
			return nil, err
		}
		for k := range p.Subscribers {
			var sends []string
			if k < p.Senders {
				sends = []string{id}
			}
			f.addMember(accts[k%p.UsersPerRoom], e.nodes[k%len(e.nodes)], []string{id}, sends)
		}
	}
	var readers sync.WaitGroup
	defer closeFleet(f, &readers)
	if err := dialFleet(ctx, e, f, &readers); err != nil {
		return nil, err
	}

	e.startMeasuring()
	var pt *writePoint
	rate := float64(p.Rooms) / p.Interval.Seconds()
	if p.Loop == closedLoop {
		pt = fanoutTicker(ctx, e, f, p)
	} else {
		maxMsgs := 0
		if p.MaxMessages > 0 {
			maxMsgs = p.MaxMessages * p.Rooms
		}
		pt = runPoint(ctx, e, f, e.run, pointParams{Rate: rate, Arrival: p.Arrival, Duration: p.Duration, Drain: p.Drain,
			MaxLateness: p.MaxLateness, MaxMessages: maxMsgs, Seed: 1}, func(m *member, _ *rand.Rand) string { return m.rooms[0] }, nil, nil)
	}

	res.Seconds = pt.Seconds
	res.CPU = pt.CPU
	delivered := pt.Deliveries + pt.Echoes
	res.add("offered send rate", rate, "msgs/s")
	res.add("achieved (acked) send rate", pt.Achieved, "msgs/s")
	res.add("messages acked", float64(pt.Acked), "msgs")
	res.add("deliveries (in order)", float64(delivered), "msgs")
	res.add("deliveries expected (acked × subscribers)", float64(pt.Expected), "msgs")
	res.add("offered delivery rate", rate*float64(p.Subscribers), "msgs/s")
	res.add("delivery rate", float64(delivered)/pt.Seconds, "msgs/s")
	res.add("missing", float64(pt.Check.Missing), "msgs")
	res.add("repeated", float64(pt.Check.Repeats), "msgs")
	res.add("gaps (out of order)", float64(pt.Check.Gaps), "")
	res.add("rate-limit refusals", float64(pt.Errors["rate_limited"]), "")
	var errs int
	for _, n := range pt.Errors {
		errs += n
	}
	res.add("send errors", float64(errs)+float64(pt.Unanswered), "")
	if delivered > 0 {
		res.add("server CPU per delivery", pt.CPU["server"]*pt.Seconds/float64(delivered)*1e6, "µs")
	}
	if fc := pt.Frames; fc != nil {
		res.add("messages per frame written", fc.MessagesPerFrame, "")
	}
	if p.Loop == closedLoop {
		res.Latencies["end-to-end (from actual send)"] = pt.Delivery
		res.Latencies["ack (from actual send)"] = pt.Ack
		res.Notes = append(res.Notes, "closed loop: one sender per room on a ticker that drops ticks while a write blocks; latency from the actual send time")
	} else {
		res.Latencies["end-to-end (from intended send)"] = pt.Delivery
		res.Latencies["ack (from intended send)"] = pt.Ack
		res.Latencies["generator lateness"] = pt.Lateness
		res.Notes = append(res.Notes, generatorNote(pt.Lateness, pt.KeptUp))
	}
	if len(pt.Errors) > 0 {
		res.Notes = append(res.Notes, "errors by code: "+sortedCodes(pt.Errors))
	}
	if !pt.Check.ok() {
		res.Notes = append(res.Notes, "DELIVERY CHECK FAILED: "+pt.Check.String())
	}
	if pt.Unanswered > 0 {
		res.Notes = append(res.Notes, fmt.Sprintf("%d sends unanswered after %s", pt.Unanswered, p.Drain))
	}
	res.Failed = pointFailed(pt)
	return res, nil
}

// fanoutTicker is the closed-loop fanout of the first version: one sender
// per room sends on a time.Ticker (which drops ticks while a send blocks),
// stamped with the actual send time.
func fanoutTicker(ctx context.Context, e *env, f *fleet, p fanoutParams) *writePoint {
	f.take()
	before, countersBefore := sampleCPU(ctx, e.nodes), serverCounters(ctx, e.nodes)
	start := time.Now()
	end := start.Add(p.Duration)
	f.phaseEnd.Store(end.UnixNano())
	var wg sync.WaitGroup
	for _, m := range f.members {
		if len(m.rooms) == 0 {
			continue
		}
		wg.Go(func() {
			t := time.NewTicker(p.Interval)
			defer t.Stop()
			for n := 0; (p.MaxMessages == 0 || n < p.MaxMessages) && time.Now().Before(end); n++ {
				if !m.sendWS(ctx, time.Now(), m.rooms[0], e.run) {
					return
				}
				select {
				case <-t.C:
				case <-ctx.Done():
					return
				}
			}
		})
	}
	wg.Wait()
	after, countersAfter := sampleCPU(ctx, e.nodes), serverCounters(ctx, e.nodes)
	secs := time.Since(start).Seconds()
	settled := f.drain(p.Drain)
	var unanswered int64
	for _, m := range f.members {
		unanswered += int64(m.abandon())
	}
	st := f.take()
	pt := &writePoint{Offered: float64(p.Rooms) / p.Interval.Seconds(), Seconds: secs, Sent: st.sent, Acked: st.acked,
		Achieved: float64(st.achieved) / secs, Ack: st.ack.summary(), Delivery: st.delivery.summary(),
		Deliveries: st.deliveries, Echoes: st.echoes, Expected: st.expected, Check: st.check, Unanswered: unanswered,
		Settled: settled, CPU: cores(before, after), KeptUp: true, Foreign: st.foreign, Malformed: st.malformed,
		Frames: framesBetween(countersBefore, countersAfter)}
	if len(st.codes) > 0 {
		pt.Errors = st.codes
	}
	return pt
}
