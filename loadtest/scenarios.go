package main

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// env is what every scenario runs against.
type env struct {
	nodes  []*node
	dialer *dialer
	run    string // unique per run: prefixes every name the run creates
	// measuring, if set, is called when a scenario's measured phase begins
	// (the suite starts a server profile then).
	measuring func()
	// debug are the pprof listeners of servers the load test started; the
	// connections scenario collects their garbage before measuring memory.
	debug []string
	// pointStart, if set, is called as each point of a sweep begins; the
	// function it returns waits for what it started (a profile).
	pointStart func(rate float64) func()
}

// startMeasuring tells e's hook that setup is over.
func (e *env) startMeasuring() {
	if e.measuring != nil {
		e.measuring()
	}
}

// writeParams shape the closed-loop writes scenario.
type writeParams struct {
	Users       int // sending connections (or HTTP clients), one account each
	Rooms       int // rooms; user i writes to and receives room i%Rooms
	Window      int // WebSocket sends in flight per connection
	HTTP        bool
	Duration    time.Duration
	MaxMessages int // in all; 0: no bound but Duration
}

// runWritesClosed is the writes scenario closed loop, as the first version
// of the load test ran it: Users accounts send as fast as acks come back,
// over WebSocket (Window sends in flight each) or HTTP POST, round-robin
// over the nodes. The offered rate follows the server's answers, so
// queueing never shows (Little's law: the latency is what is in flight
// over the throughput); kept for comparison with the open loop. It needs
// the servers' send limits off.
func runWritesClosed(ctx context.Context, e *env, p writeParams) (*Result, error) {
	name := "writes"
	if p.HTTP {
		name = "writes-http"
	}
	p.Rooms = max(min(p.Rooms, p.Users), 1)
	res := newResult(name, e.nodes, map[string]any{
		"users": p.Users, "rooms": p.Rooms, "window": p.Window, "http": p.HTTP,
		"duration": p.Duration.String(), "max_messages": p.MaxMessages})
	res.Loop = closedLoop
	first := e.nodes[0]
	accts, err := first.registerMany(ctx, e.run+"-w", p.Users)
	if err != nil {
		return nil, err
	}
	rooms := make([]string, p.Rooms)
	for r := range rooms {
		if rooms[r], err = first.createRoom(ctx, accts[r], fmt.Sprintf("%s-writes-%d", e.run, r)); err != nil {
			return nil, err
		}
	}
	for i, a := range accts {
		if i >= p.Rooms {
			if err := first.joinAll(ctx, rooms[i%p.Rooms], []account{a}); err != nil {
				return nil, err
			}
		}
	}

	var lat latencies
	var sent, acked, limited, errs atomic.Int64
	codes := &codeCounts{n: map[string]int{}}
	take := func() bool {
		return p.MaxMessages == 0 || sent.Add(1) <= int64(p.MaxMessages)
	}
	before := sampleCPU(ctx, e.nodes)
	e.startMeasuring()
	start := time.Now()
	end := start.Add(p.Duration)
	var wg sync.WaitGroup
	for i, a := range accts {
		n, room := e.nodes[i%len(e.nodes)], rooms[i%p.Rooms]
		if p.HTTP {
			wg.Go(func() {
				for k := 0; time.Now().Before(end) && ctx.Err() == nil && take(); k++ {
					t := time.Now()
					err := n.do(ctx, "POST", "/api/v1/rooms/"+room+"/messages", a.Token,
						map[string]string{"body": stampBody(t, -1), "client_id": fmt.Sprintf("%s-%d-%d", e.run, i, k)}, nil, 201)
					switch {
					case err == nil:
						acked.Add(1)
						lat.add(time.Since(t))
					case status(err) == 429:
						limited.Add(1)
					default:
						errs.Add(1)
						codes.add(fmt.Sprintf("HTTP %d", status(err)))
					}
				}
			})
			continue
		}
		ws, err := e.dialer.dial(ctx, n, a.Token, i)
		if err != nil {
			return nil, err
		}
		defer ws.CloseNow()
		wg.Go(func() {
			w := &wsWriter{ws: ws, room: room, client: fmt.Sprintf("%s-%d", e.run, i), window: max(p.Window, 1),
				lat: &lat, acked: &acked, limited: &limited, errs: &errs, codes: codes}
			w.run(ctx, end, take)
		})
	}
	wg.Wait()
	secs := time.Since(start).Seconds()
	res.Seconds = secs
	res.CPU = cores(before, sampleCPU(ctx, e.nodes))
	res.add("messages acked", float64(acked.Load()), "msgs")
	res.add("ack rate", float64(acked.Load())/secs, "msgs/s")
	res.add("rate-limit refusals", float64(limited.Load()), "")
	res.add("errors", float64(errs.Load()), "")
	if n := acked.Load(); n > 0 {
		res.add("server CPU per message", res.CPU["server"]*secs/float64(n)*1e6, "µs")
		res.add("postgres CPU per message", res.CPU["postgres"]*secs/float64(n)*1e6, "µs")
	}
	res.Latencies["ack (from actual send)"] = lat.summary()
	if len(codes.n) > 0 {
		res.Notes = append(res.Notes, fmt.Sprintf("errors by kind: %v", codes.n))
	}
	res.Failed = acked.Load() == 0
	return res, nil
}

// wsWriter is one sending connection of the writes scenario.
type wsWriter struct {
	ws                   *websocket.Conn
	room, client         string
	window               int
	lat                  *latencies
	acked, limited, errs *atomic.Int64
	codes                *codeCounts
	mu                   sync.Mutex
	sentAt               map[string]time.Time
}

func (w *wsWriter) run(ctx context.Context, end time.Time, take func() bool) {
	w.sentAt = map[string]time.Time{}
	slots := make(chan struct{}, w.window)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = readLines(w.ws, func(line []byte) {
			t := frameType(line)
			if t != "ack" && t != "error" {
				return
			}
			rp, ok := decodeReply(line)
			if !ok || rp.ID == nil {
				return
			}
			w.mu.Lock()
			at, ok := w.sentAt[*rp.ID]
			delete(w.sentAt, *rp.ID)
			w.mu.Unlock()
			if !ok {
				return
			}
			switch {
			case t == "ack":
				w.acked.Add(1)
				w.lat.add(time.Since(at))
			case rp.Code == "rate_limited":
				w.limited.Add(1)
			default:
				w.errs.Add(1)
				w.codes.add(rp.Code)
			}
			<-slots
		})
	}()
	stop := time.NewTimer(time.Until(end))
	defer stop.Stop()
send:
	for k := 0; ctx.Err() == nil && take(); k++ {
		select {
		case slots <- struct{}{}:
		case <-done:
			return
		case <-stop.C:
			break send
		}
		id := strconv.Itoa(k)
		now := time.Now()
		w.mu.Lock()
		w.sentAt[id] = now
		w.mu.Unlock()
		if err := w.ws.Write(ctx, websocket.MessageText, sendFrame(id, w.room, stampBody(now, -1), w.client+"-"+id)); err != nil {
			w.errs.Add(1)
			return
		}
	}
	// Wait (bounded) for the answers to what is in flight.
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		w.mu.Lock()
		n := len(w.sentAt)
		w.mu.Unlock()
		if n == 0 {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	w.mu.Lock()
	w.errs.Add(int64(len(w.sentAt)))
	for range w.sentAt {
		w.codes.add("unanswered after 10 s")
	}
	w.mu.Unlock()
}

// codeCounts counts errors by kind.
type codeCounts struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *codeCounts) add(code string) {
	c.mu.Lock()
	c.n[code]++
	c.mu.Unlock()
}
