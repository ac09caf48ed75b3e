package main

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/coder/websocket"
)

// connParams shape the connections scenario.
type connParams struct {
	Conns       int           // connections to open and hold
	Users       int           // accounts they share
	Rooms       int           // rooms; user i is a member of room i%Rooms
	Concurrency int           // dials in flight
	Hold        time.Duration // how long to hold them once all are up
	Settle      time.Duration // wait before measuring
}

// runConnections opens Conns authenticated WebSockets, round-robin over the
// nodes, waits for each one's ready frame, holds them, and reports the
// server's resident memory and goroutines per connection (the difference
// from before they were opened, divided by the connections).
func runConnections(ctx context.Context, e *env, p connParams) (*Result, error) {
	p.Users = max(min(p.Users, p.Conns), 1)
	p.Rooms = max(min(p.Rooms, p.Users), 1)
	res := newResult("connections", e.nodes, map[string]any{
		"conns": p.Conns, "users": p.Users, "rooms": p.Rooms, "concurrency": p.Concurrency,
		"hold": p.Hold.String(), "source_ips": len(e.dialer.clients)})
	first := e.nodes[0]
	accts, err := first.registerMany(ctx, e.run+"-c", p.Users)
	if err != nil {
		return nil, err
	}
	for r := range p.Rooms {
		id, err := first.createRoom(ctx, accts[r], fmt.Sprintf("%s-conns-%d", e.run, r))
		if err != nil {
			return nil, err
		}
		var members []account
		for i := r + p.Rooms; i < len(accts); i += p.Rooms {
			members = append(members, accts[i])
		}
		if err := first.joinAll(ctx, id, members); err != nil {
			return nil, err
		}
	}

	collectGarbage(ctx, e)
	baseline, err := serverMemory(ctx, e.nodes)
	if err != nil {
		return nil, err
	}
	before := sampleCPU(ctx, e.nodes)
	e.startMeasuring()
	conns := make([]*websocket.Conn, p.Conns)
	var readers sync.WaitGroup
	defer func() {
		closeAll(conns)
		readers.Wait()
	}()
	var ready, failed atomic.Int64
	var dialLat latencies
	sem := make(chan struct{}, max(p.Concurrency, 1))
	start := time.Now()
	var dials sync.WaitGroup
	for i := range p.Conns {
		sem <- struct{}{}
		dials.Go(func() {
			defer func() { <-sem }()
			t := time.Now()
			dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			ws, err := e.dialer.dial(dctx, e.nodes[i%len(e.nodes)], accts[i%p.Users].Token, i/len(e.nodes))
			if err != nil {
				failed.Add(1)
				return
			}
			conns[i] = ws
			got := make(chan struct{})
			readers.Go(func() {
				// Read (and discard) for as long as the connection is held:
				// the client answers the server's pings only while reading.
				seen := false
				_ = readLines(ws, func(line []byte) {
					if !seen && frameType(line) == "ready" {
						seen = true
						close(got)
					}
				})
				if !seen {
					close(got)
				}
			})
			select {
			case <-got:
				ready.Add(1)
				dialLat.add(time.Since(t))
			case <-dctx.Done():
				failed.Add(1)
			}
		})
	}
	dials.Wait()
	connectSecs := time.Since(start).Seconds()

	runtime.GC() // the load generator's own garbage does not count, but keep it small
	collectGarbage(ctx, e)
	time.Sleep(p.Settle)
	held, err := serverMemory(ctx, e.nodes)
	if err != nil {
		return nil, err
	}
	time.Sleep(p.Hold)
	end, err := serverMemory(ctx, e.nodes)
	if err != nil {
		return nil, err
	}
	res.CPU = cores(before, sampleCPU(ctx, e.nodes))
	res.Seconds = time.Since(start).Seconds()

	n := float64(ready.Load())
	res.add("connections held", n, "")
	res.add("connect failures", float64(failed.Load()), "")
	res.add("server connections (gauge)", end.conns, "")
	res.add("connect rate", n/connectSecs, "conns/s")
	res.add("server RSS before", baseline.rss/(1<<20), "MiB")
	res.add("server RSS held", held.rss/(1<<20), "MiB")
	res.add("server goroutines held", held.goroutines, "")
	if n > 0 {
		res.add("RSS per connection", (held.rss-baseline.rss)/n/1024, "KiB")
		res.add("Go heap per connection", (held.heap-baseline.heap)/n/1024, "KiB")
		res.add("goroutine stacks per connection", (held.stacks-baseline.stacks)/n/1024, "KiB")
		res.add("goroutines per connection", (held.goroutines-baseline.goroutines)/n, "")
	}
	res.add("server RSS after hold", end.rss/(1<<20), "MiB")
	res.Latencies["connect (dial to ready)"] = dialLat.summary()
	if len(e.debug) > 0 {
		res.Notes = append(res.Notes, "server garbage collected (pprof heap?gc=1) before each memory reading")
	}
	var lim syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim) == nil {
		res.Notes = append(res.Notes, fmt.Sprintf("open-file limit of the load generator (and of servers it starts): %d", lim.Cur))
	}
	res.Failed = ready.Load() != int64(p.Conns) || end.conns < n
	return res, nil
}

// collectGarbage makes the servers the load test started run a garbage
// collection (through their pprof listener), so that their memory is what
// the connections hold and not what connecting left behind; the Go runtime
// returns freed pages to the system in the background during Settle.
func collectGarbage(ctx context.Context, e *env) {
	for _, addr := range e.debug {
		fetch(ctx, "http://"+addr+"/debug/pprof/heap?gc=1", "")
	}
}

func closeAll(conns []*websocket.Conn) {
	for _, c := range conns {
		if c != nil {
			c.CloseNow()
		}
	}
}

// memory is what the server nodes hold, summed.
type memory struct {
	rss, heap, stacks, goroutines, conns float64
}

func serverMemory(ctx context.Context, nodes []*node) (memory, error) {
	var m memory
	for _, n := range nodes {
		v, err := n.scrape(ctx)
		if err != nil {
			return m, fmt.Errorf("%s: %w", n.base, err)
		}
		m.rss += v["process_resident_memory_bytes"]
		m.heap += v["go_memstats_heap_inuse_bytes"]
		m.stacks += v["go_memstats_stack_inuse_bytes"]
		m.goroutines += v["go_goroutines"]
		m.conns += v["switchboard_ws_connections"]
	}
	return m, nil
}
