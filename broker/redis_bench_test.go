package broker

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard-chat/switchboard/broker/brokertest"
	"github.com/switchboard-chat/switchboard/hub"
)

// benchReceiver records when each event (identified by its Seq, 1..N) of a
// run arrives.
type benchReceiver struct {
	base   time.Time
	sentAt []atomic.Int64 // ns since base, by seq-1
	mu     sync.Mutex
	seen   []bool
	lat    []time.Duration
	done   chan struct{}
}

func (r *benchReceiver) Receive(ev hub.Event) {
	now := time.Since(r.base)
	i := int(ev.Seq) - 1
	r.mu.Lock()
	defer r.mu.Unlock()
	if i < 0 || i >= len(r.seen) || r.seen[i] {
		return
	}
	r.seen[i] = true
	r.lat = append(r.lat, now-time.Duration(r.sentAt[i].Load()))
	if len(r.lat) == len(r.seen) {
		close(r.done)
	}
}

func (r *benchReceiver) Resync()                    {}
func (r *benchReceiver) ReceiveControl(hub.Control) {}

// BenchmarkPublishReceive measures the broker alone: two brokers on one
// prefix (two nodes), publishers on one publish b.N events into one room,
// the other receives them. It reports msgs/s and the p50/p99 latency from
// the call to Publish to the receiver's Receive.
//
//	go test -run '^$' -bench BenchmarkPublishReceive -benchtime 20000x ./broker
func BenchmarkPublishReceive(b *testing.B) {
	for _, publishers := range []int{1, 16} {
		b.Run(fmt.Sprintf("publishers=%d", publishers), func(b *testing.B) {
			benchPublishReceive(b, publishers)
		})
	}
}

func benchPublishReceive(b *testing.B, publishers int) {
	opts, err := redis.ParseURL(brokertest.RedisURL())
	if err != nil {
		b.Fatal(err)
	}
	opts.PoolSize = max(opts.PoolSize, publishers+4)
	client := redis.NewClient(opts)
	b.Cleanup(func() { _ = client.Close() })
	prefix := brokertest.Prefix()
	const room = "bench"

	total := b.N
	recv := &benchReceiver{base: time.Now(), sentAt: make([]atomic.Int64, total),
		seen: make([]bool, total), lat: make([]time.Duration, 0, total), done: make(chan struct{})}
	pub, err := New(Config{Redis: client, Prefix: prefix})
	if err != nil {
		b.Fatal(err)
	}
	sub, err := New(Config{Redis: client, Prefix: prefix})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = pub.Close(); _ = sub.Close() })
	if err := pub.Start(recv); err != nil { // receives nothing: nobody else publishes
		b.Fatal(err)
	}
	if err := sub.Start(recv); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second+time.Duration(total)*time.Millisecond)
	defer cancel()
	if err := sub.Subscribe(ctx, room); err != nil {
		b.Fatal(err)
	}
	// Wait until the publisher's connection is up (Publish refuses before).
	for !pub.reachable(pub.controlShardKey()) {
		if ctx.Err() != nil {
			b.Fatal("publishing broker never connected")
		}
		time.Sleep(time.Millisecond)
	}
	frame := []byte(`{"type":"message","message":{"id":"1001","room_id":"42","seq":1,"sender":{"id":"7","username":"alice","display_name":"Alice Example"},"body":"Lunch at the usual place? I can book a table for six at half past twelve.","reply_count":2,"source":"web","client_id":"client-3f9a","created_at":"2026-11-25T10:00:00.123456Z"}}`)

	var next atomic.Int64
	var failure atomic.Value
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for range publishers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				seq := next.Add(1)
				if seq > int64(total) || ctx.Err() != nil {
					return
				}
				recv.sentAt[seq-1].Store(int64(time.Since(recv.base)))
				if err := pub.Publish(ctx, hub.Event{Room: room, Seq: seq, From: "7", Frame: frame}); err != nil {
					failure.CompareAndSwap(nil, err)
					cancel()
					return
				}
			}
		}()
	}
	wg.Wait()
	select {
	case <-recv.done:
	case <-ctx.Done():
		recv.mu.Lock()
		got := len(recv.lat)
		recv.mu.Unlock()
		b.Fatalf("received %d of %d events: %v (publish error: %v)", got, total, ctx.Err(), failure.Load())
	}
	elapsed := time.Since(start)
	b.StopTimer()

	recv.mu.Lock()
	lat := slices.Clone(recv.lat)
	recv.mu.Unlock()
	slices.Sort(lat)
	pct := func(p int) float64 {
		return float64(lat[min(len(lat)-1, len(lat)*p/100)]) / float64(time.Millisecond)
	}
	b.ReportMetric(float64(total)/elapsed.Seconds(), "msgs/s")
	b.ReportMetric(pct(50), "p50-ms")
	b.ReportMetric(pct(99), "p99-ms")
}
