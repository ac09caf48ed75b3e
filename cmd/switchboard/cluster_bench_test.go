package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/switchboard-chat/switchboard/chat"
	"github.com/switchboard-chat/switchboard/hub"
)

// crossNodeWindow bounds the messages in flight (sent on node A, not yet
// received on node B) in BenchmarkCrossNode. A window of 1 measures the
// unloaded latency of one message; a large one measures throughput, with
// latencies that include queueing behind the window.
var crossNodeWindow = flag.Int("crossnode.window", 64, "BenchmarkCrossNode: messages in flight")

// benchBody pads each message to a typical chat sentence after its index.
const benchBody = " Lunch at the usual place? I can book a table for six at half past twelve."

// BenchmarkCrossNode measures the cross-node path of a two-node cluster: a
// sender on node A sends over its WebSocket (round-robin over the rooms), a
// reader on node B, subscribed to every room, receives through Redis. One
// op is one message; it reports msgs/s and the p50/p99 latency from the
// moment the send frame is written on A to the moment the reader on B has
// read the message frame.
//
//	go test -run '^$' -bench BenchmarkCrossNode -benchtime 2000x ./cmd/switchboard
//
// -crossnode.window sets the messages in flight (default 64).
func BenchmarkCrossNode(b *testing.B) {
	nodes := newTestCluster(b, 2, func(c *hub.Config) { c.RateLimit, c.RateBurst = 1e6, 1e6 })
	a, n := nodes[0], nodes[1]

	for _, rooms := range []int{1, 100} {
		// Users and rooms are made once; each run of the sub-benchmark
		// (the testing package runs it once with b.N = 1 first) dials
		// fresh connections.
		sender, reader := a.register(b, "bsender"), a.register(b, "breader")
		ids := make([]string, rooms)
		for i := range ids {
			ids[i] = a.createRoom(b, sender, chat.Private)
			a.addMember(b, sender, ids[i], reader)
		}
		b.Run(fmt.Sprintf("rooms=%d", rooms), func(b *testing.B) {
			benchCrossNode(b, a, n, sender, reader, ids, max(*crossNodeWindow, 1))
		})
	}
}

func benchCrossNode(b *testing.B, a, n *testServer, sender, reader testUser, rooms []string, window int) {
	total := b.N
	// Everything, setup included, must be over by then.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second+time.Duration(total)*10*time.Millisecond)
	defer cancel()

	rd := n.dialWS(b, reader.Token).Conn
	sd := a.dialWS(b, sender.Token).Conn
	for _, c := range []*websocket.Conn{rd, sd} {
		if err := benchAwaitSubscribed(ctx, c, len(rooms)); err != nil {
			b.Fatalf("waiting for subscriptions: %v", err)
		}
	}

	base := time.Now()
	sentAt := make([]atomic.Int64, total) // ns since base
	lat := make([]time.Duration, 0, total)
	slots := make(chan struct{}, window)
	done := make(chan struct{})
	var failure atomic.Value // first error of a goroutine

	var wg sync.WaitGroup
	wg.Add(2)
	// Reader on B: records each message's latency and frees its slot.
	go func() {
		defer wg.Done()
		seen := make([]bool, total)
		got := 0
		err := benchReadFrames(ctx, rd, func(f benchFrame) error {
			switch f.Type {
			case "message":
				i, ok := benchIndex(f.Message.Body)
				if !ok || i >= total || seen[i] {
					return nil // not this run's, or a repeat
				}
				seen[i] = true
				lat = append(lat, time.Since(base)-time.Duration(sentAt[i].Load()))
				got++
				<-slots
				if got == total {
					close(done)
					return io.EOF
				}
			case "error":
				return fmt.Errorf("reader got an error frame: %s", f.raw)
			}
			return nil
		})
		if err != nil && err != io.EOF {
			failure.CompareAndSwap(nil, fmt.Errorf("reader on node B: %w (after %d of %d messages)", err, got, total))
			cancel()
		}
	}()
	// Sender's own connection: drained, so that its queue never fills;
	// an error frame (a refused send) ends the run.
	go func() {
		defer wg.Done()
		err := benchReadFrames(ctx, sd, func(f benchFrame) error {
			if f.Type == "error" {
				return fmt.Errorf("sender got an error frame: %s", f.raw)
			}
			return nil
		})
		if err != nil && ctx.Err() == nil {
			failure.CompareAndSwap(nil, fmt.Errorf("sender on node A: %w", err))
			cancel()
		}
	}()

	b.ResetTimer()
	start := time.Now()
	for i := range total {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			b.Fatalf("sending message %d of %d: %v (%v)", i, total, ctx.Err(), failure.Load())
		}
		raw, _ := json.Marshal(map[string]any{"type": "send", "id": strconv.Itoa(i),
			"room": rooms[i%len(rooms)], "body": strconv.Itoa(i) + benchBody})
		sentAt[i].Store(int64(time.Since(base)))
		if err := sd.Write(ctx, websocket.MessageText, raw); err != nil {
			b.Fatalf("sending message %d of %d: %v (%v)", i, total, err, failure.Load())
		}
	}
	select {
	case <-done:
	case <-ctx.Done():
		b.Fatalf("waiting for the reader on node B: %v (%v)", ctx.Err(), failure.Load())
	}
	elapsed := time.Since(start)
	b.StopTimer()

	cancel()
	_ = rd.CloseNow()
	_ = sd.CloseNow()
	wg.Wait()

	slices.Sort(lat)
	pct := func(p int) float64 {
		return float64(lat[min(len(lat)-1, len(lat)*p/100)]) / float64(time.Millisecond)
	}
	b.ReportMetric(float64(total)/elapsed.Seconds(), "msgs/s")
	b.ReportMetric(pct(50), "p50-ms")
	b.ReportMetric(pct(99), "p99-ms")
}

// benchIndex parses the index at the start of a message body.
func benchIndex(body string) (int, bool) {
	s, _, _ := strings.Cut(body, " ")
	i, err := strconv.Atoi(s)
	return i, err == nil && i >= 0
}

// benchFrame is the part of a server object the benchmark reads.
type benchFrame struct {
	Type    string `json:"type"`
	Message struct {
		Body string `json:"body"`
	} `json:"message"`
	raw []byte
}

// benchReadFrames calls fn for each server object until fn or the read
// fails.
func benchReadFrames(ctx context.Context, ws *websocket.Conn, fn func(benchFrame) error) error {
	for {
		typ, data, err := ws.Read(ctx)
		if err != nil {
			return err
		}
		if typ != websocket.MessageText {
			return fmt.Errorf("server sent a binary frame")
		}
		for line := range bytes.SplitSeq(data, []byte("\n")) {
			var f benchFrame
			if err := json.Unmarshal(line, &f); err != nil {
				return fmt.Errorf("server object %q: %w", line, err)
			}
			f.raw = line
			if err := fn(f); err != nil {
				return err
			}
		}
	}
}

// benchAwaitSubscribed reads the ready frame and one subscribed frame per
// room.
func benchAwaitSubscribed(ctx context.Context, ws *websocket.Conn, rooms int) error {
	ready, subscribed := false, 0
	errDone := fmt.Errorf("done")
	err := benchReadFrames(ctx, ws, func(f benchFrame) error {
		switch f.Type {
		case "ready":
			ready = true
		case "subscribed":
			subscribed++
		case "error":
			return fmt.Errorf("error frame: %s", f.raw)
		}
		if ready && subscribed == rooms {
			return errDone
		}
		return nil
	})
	if err == errDone {
		return nil
	}
	return err
}
