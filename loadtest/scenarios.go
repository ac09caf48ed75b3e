package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
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
}

// startMeasuring tells e's hook that setup is over.
func (e *env) startMeasuring() {
	if e.measuring != nil {
		e.measuring()
	}
}

// readParams shape the reads scenario.
type readParams struct {
	Users       int           // virtual users, each reading in a loop
	Seed        int           // messages stored before reading (every 10th a reply)
	Duration    time.Duration // how long to read
	MaxRequests int           // in all; 0: no bound but Duration
}

// readKinds are the history requests the reads scenario cycles through.
var readKinds = []string{"latest", "since", "thread"}

// runReads seeds a room, then has Users virtual users read its history
// (the latest 50, the 50 after an instant, a thread), round-robin over the
// nodes, as fast as answers come.
func runReads(ctx context.Context, e *env, p readParams) (*Result, error) {
	res := newResult("reads", e.nodes, map[string]any{
		"users": p.Users, "seed_messages": p.Seed, "duration": p.Duration.String(), "max_requests": p.MaxRequests})
	first := e.nodes[0]
	accts, err := first.registerMany(ctx, e.run+"-r", min(p.Users, 20)+1)
	if err != nil {
		return nil, err
	}
	owner, readers := accts[0], accts[1:]
	room, err := first.createRoom(ctx, owner, e.run+"-reads")
	if err != nil {
		return nil, err
	}
	if err := first.joinAll(ctx, room, readers); err != nil {
		return nil, err
	}
	parent, since, err := seedRoom(ctx, first, owner, room, p.Seed)
	if err != nil {
		return nil, err
	}
	paths := map[string]string{
		"latest": "/api/v1/rooms/" + room + "/messages?limit=50",
		"since":  "/api/v1/rooms/" + room + "/messages?limit=50&since=" + url.QueryEscape(since.Format(time.RFC3339Nano)),
		"thread": "/api/v1/messages/" + parent,
	}

	lat := map[string]*latencies{}
	for _, k := range readKinds {
		lat[k] = &latencies{}
	}
	var all latencies
	var requests, errs atomic.Int64
	countersBefore := serverCounters(ctx, e.nodes)
	before := sampleCPU(ctx, e.nodes)
	e.startMeasuring()
	start := time.Now()
	end := start.Add(p.Duration)
	var wg sync.WaitGroup
	for u := range p.Users {
		n, a := e.nodes[u%len(e.nodes)], readers[u%len(readers)]
		wg.Go(func() {
			for i := u; time.Now().Before(end) && ctx.Err() == nil; i++ {
				if p.MaxRequests > 0 && requests.Add(1) > int64(p.MaxRequests) {
					return
				}
				kind := readKinds[i%len(readKinds)]
				t := time.Now()
				err := n.do(ctx, "GET", paths[kind], a.Token, nil, nil)
				d := time.Since(t)
				if err != nil {
					errs.Add(1)
					continue
				}
				lat[kind].add(d)
				all.add(d)
			}
		})
	}
	wg.Wait()
	secs := time.Since(start).Seconds()
	res.Seconds = secs
	res.CPU = cores(before, sampleCPU(ctx, e.nodes))
	ok := all.summary().Count
	res.add("requests", float64(ok), "")
	res.add("request rate", float64(ok)/secs, "req/s")
	res.add("errors", float64(errs.Load()), "")
	if ok > 0 {
		res.add("server CPU per request", res.CPU["server"]*secs/float64(ok)*1e6, "µs")
	}
	res.Latencies["read (all)"] = all.summary()
	for _, k := range readKinds {
		res.Latencies["read "+k] = lat[k].summary()
	}
	addCacheHitRate(res, countersBefore, serverCounters(ctx, e.nodes))
	res.Failed = ok == 0
	return res, nil
}

// addCacheHitRate adds the share of history reads (pages and threads) the
// servers answered from their cache between two serverCounters.
func addCacheHitRate(res *Result, before, after map[string]float64) {
	const series = `switchboard_cache_lookups_total{cache="history",result="%s"}`
	hits := after[fmt.Sprintf(series, "hit")] - before[fmt.Sprintf(series, "hit")]
	misses := after[fmt.Sprintf(series, "miss")] - before[fmt.Sprintf(series, "miss")]
	if hits+misses > 0 {
		res.add("history cache hit rate", 100*hits/(hits+misses), "%")
		res.add("history cache misses", misses, "")
	}
}

// serverCounters scrapes every node and sums each metric over them.
func serverCounters(ctx context.Context, nodes []*node) map[string]float64 {
	sums := map[string]float64{}
	for _, n := range nodes {
		m, err := n.scrape(ctx)
		if err != nil {
			continue
		}
		for k, v := range m {
			sums[k] += v
		}
	}
	return sums
}

// seedRoom stores count messages in room over one WebSocket, every 10th a
// reply to the first, and returns the first's id and the creation time of
// the middle one (for since= reads).
func seedRoom(ctx context.Context, n *node, owner account, room string, count int) (parent string, mid time.Time, err error) {
	d := newDialer(1)
	ws, err := d.dial(ctx, n, owner.Token, 0)
	if err != nil {
		return "", time.Time{}, err
	}
	defer ws.CloseNow()
	type seedAck struct {
		Type    string `json:"type"`
		Code    string `json:"code"`
		Message struct {
			ID        string    `json:"id"`
			CreatedAt time.Time `json:"created_at"`
		} `json:"message"`
	}
	acks := make(chan seedAck, 1)
	go func() {
		defer close(acks)
		_ = readLines(ws, func(line []byte) {
			if t := frameType(line); t == "ack" || t == "error" {
				var a seedAck
				_ = json.Unmarshal(line, &a) // an error's "message" is a string: Type and Code still decode
				acks <- a
			}
		})
	}()
	for i := range count {
		f := map[string]string{"type": "send", "id": strconv.Itoa(i), "room": room, "body": fmt.Sprintf("seed message %d", i)}
		if i%10 == 9 {
			f["parent_id"] = parent
		}
		raw, _ := json.Marshal(f)
		if err := ws.Write(ctx, websocket.MessageText, raw); err != nil {
			return "", time.Time{}, err
		}
		select {
		case a, ok := <-acks:
			if !ok || a.Type != "ack" {
				return "", time.Time{}, fmt.Errorf("seed message %d: %s %s", i, a.Type, a.Code)
			}
			if i == 0 {
				parent = a.Message.ID
			}
			if i == count/2 {
				mid = a.Message.CreatedAt
			}
		case <-time.After(10 * time.Second):
			return "", time.Time{}, fmt.Errorf("seed message %d: no ack", i)
		}
	}
	return parent, mid, nil
}

// writeParams shape the writes scenario.
type writeParams struct {
	Users       int // sending connections (or HTTP clients), one account each
	Rooms       int // rooms; user i writes to and receives room i%Rooms
	Window      int // WebSocket sends in flight per connection
	HTTP        bool
	Duration    time.Duration
	MaxMessages int // in all; 0: no bound but Duration
}

// runWrites has Users accounts send as fast as acks come back, over
// WebSocket (Window sends in flight each) or HTTP POST, round-robin over
// the nodes.
func runWrites(ctx context.Context, e *env, p writeParams) (*Result, error) {
	name := "writes"
	if p.HTTP {
		name = "writes-http"
	}
	p.Rooms = max(min(p.Rooms, p.Users), 1)
	res := newResult(name, e.nodes, map[string]any{
		"users": p.Users, "rooms": p.Rooms, "window": p.Window, "http": p.HTTP,
		"duration": p.Duration.String(), "max_messages": p.MaxMessages})
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
						map[string]string{"body": stampBody(t), "client_id": fmt.Sprintf("%s-%d-%d", e.run, i, k)}, nil, 201)
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
	res.Latencies["ack"] = lat.summary()
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
			var rp reply
			if json.Unmarshal(line, &rp) != nil || rp.ID == nil {
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
		if err := w.ws.Write(ctx, websocket.MessageText, sendFrame(id, w.room, stampBody(now), w.client+"-"+id)); err != nil {
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
