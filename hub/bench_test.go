package hub

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-chat/switchboard/chat"
)

// benchMessage is a typical chat message: a short sentence with a reply
// count, a client id and a timestamp.
func benchMessage(seq int64) *chat.Message {
	clientID := "client-3f9a"
	return &chat.Message{
		ID:         fmt.Sprint(1000 + seq),
		RoomID:     "42",
		Seq:        seq,
		Sender:     chat.User{ID: "7", Username: "alice", DisplayName: "Alice Example"},
		Body:       "Lunch at the usual place? I can book a table for six at half past twelve.",
		ReplyCount: 2,
		Source:     chat.SourceWeb,
		ClientID:   &clientID,
		CreatedAt:  time.Date(2026, 11, 25, 10, 0, 0, 123456000, time.UTC),
	}
}

// BenchmarkEncodeMessage: what delivering a new message costs to encode,
// once for every connection: the message, then its frame.
func BenchmarkEncodeMessage(b *testing.B) {
	m := benchMessage(1)
	b.SetBytes(int64(len(MessageEvent(chat.Encode(*m)).Frame)))
	b.ReportAllocs()
	for b.Loop() {
		MessageEvent(chat.Encode(*m))
	}
}

func BenchmarkDecodeFrame(b *testing.B) {
	frames := map[string]string{
		"ping":      `{"type":"ping","id":"p-1"}`,
		"send":      `{"type":"send","id":"r-17","room":"42","body":"Lunch at the usual place? I can book a table for six at half past twelve.","client_id":"client-3f9a"}`,
		"body=4000": `{"type":"send","id":"r-18","room":"42","body":"` + strings.Repeat("κ", 4000) + `"}`,
	}
	for _, name := range []string{"ping", "send", "body=4000"} {
		data := []byte(frames[name])
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := decodeFrame(data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkFanout measures handing one stored message to every subscriber
// of a room: Hub.Receive puts it in seq order and enqueues the one encoding
// on each connection's send queue, then each connection's writer takes its
// batch (takeBatch, as flush does, without the socket write). The
// writers' share is timed with the delivery that caused it.
//
// The connections have no WebSocket: nothing on this path touches conn.ws
// (only closeWith does, and the queue bound is set so that it never runs).
func BenchmarkFanout(b *testing.B) {
	for _, subs := range []int{1, 100, 10000} {
		b.Run(fmt.Sprintf("subs=%d", subs), func(b *testing.B) {
			h, r, conns := benchRoom(b, subs)
			frame := MessageEvent(chat.Encode(*benchMessage(1))).Frame
			st := &flushState{delivered: make(map[string]int64)}
			seq := int64(0)
			b.SetBytes(int64(len(frame) * subs)) // bytes handed to connections per message
			b.ReportAllocs()
			for b.Loop() {
				seq++
				h.Receive(Event{Room: r.id, Seq: seq, From: "7", Frame: frame})
				for _, c := range conns {
					st.queued = st.queued[:0]
					if batch := c.takeBatch(st); batch == nil {
						b.Fatal("nothing queued")
					}
				}
			}
		})
	}
}

// benchRoom builds a hub with one ready room and n live subscribers, without
// a store, broker or network.
func benchRoom(b *testing.B, n int) (*Hub, *room, []*conn) {
	b.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	m, err := newMetrics(nil)
	if err != nil {
		b.Fatal(err)
	}
	h := &Hub{
		cfg: Config{
			QueueBytes: 1 << 30,
			GapWait:    time.Hour, // never: events arrive in order
			metrics:    m,
			Logger:     slog.New(slog.DiscardHandler),
		},
		log:      slog.New(slog.DiscardHandler),
		ctx:      ctx,
		cancel:   cancel,
		rooms:    make(map[string]*room),
		users:    make(map[string]map[*conn]struct{}),
		delivery: newDeliveryCursors(),
	}
	r := newRoom(h, "42")
	r.refs = n
	r.initialize(0)
	h.rooms[r.id] = r
	conns := make([]*conn, n)
	for i := range conns {
		cctx, ccancel := context.WithCancel(ctx)
		c := &conn{
			h:      h,
			user:   chat.User{ID: fmt.Sprint(100 + i)},
			id:     fmt.Sprint(i),
			ctx:    cctx,
			cancel: ccancel,
			subs:   []*room{r},
			// As if a flush were running: the benchmark takes the
			// batches itself, and push starts no goroutine.
			writing: true,
		}
		r.subs[c] = &sub{cursor: 0, live: true}
		conns[i] = c
	}
	return h, r, conns
}
