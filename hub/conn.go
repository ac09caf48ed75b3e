package hub

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"golang.org/x/time/rate"

	"github.com/switchboard-chat/switchboard/chat"
)

// Abuse thresholds: how many bad frames in a row, and how many refused sends
// in a row, a connection may send before it is closed with 1008.
const (
	maxBadFrames   = 10
	maxRateRefused = 50
)

// maxBatchBytes bounds how much queued output goes into one frame.
const maxBatchBytes = 64 << 10

// outFrame is one queued server frame. Messages carry their room and seq so
// that the writer can advance delivery cursors once they are written.
type outFrame struct {
	data []byte
	room string
	seq  int64 // 0: not a stored message
}

// conn is one authenticated WebSocket connection.
type conn struct {
	// Static after construction.
	h         *Hub
	ws        *websocket.Conn // read only by serve; data frames written only by writeLoop
	user      chat.User
	sessionID string
	log       *slog.Logger
	ctx       context.Context // cancelled when the connection ends
	cancel    context.CancelFunc

	// Owned by serve (the reader goroutine).
	sendLimit   *rate.Limiter
	typingLimit *rate.Limiter
	badFrames   int
	rateRefused int

	// Guarded by mu.
	mu         sync.Mutex
	queue      []outFrame
	queueBytes int
	closed     bool             // no more frames are queued
	subs       map[string]*room // rooms this connection is subscribed to

	wake      chan struct{} // capacity 1; never closed: tells writeLoop the queue has frames
	drained   chan struct{} // capacity 1; never closed: tells waitRoom the writer took frames
	closeOnce sync.Once
	pinging   atomic.Bool
}

func (h *Hub) newConn(ws *websocket.Conn, s chat.Session) *conn {
	ctx, cancel := context.WithCancel(h.ctx)
	id := newSessionID()
	return &conn{
		h:           h,
		ws:          ws,
		user:        s.User,
		sessionID:   id,
		log:         h.log.With(slog.String("session_id", id), slog.String("user_id", s.User.ID)),
		ctx:         ctx,
		cancel:      cancel,
		sendLimit:   rate.NewLimiter(rate.Limit(h.cfg.RateLimit), h.cfg.RateBurst),
		typingLimit: rate.NewLimiter(rate.Limit(h.cfg.TypingLimit), h.cfg.TypingBurst),
		subs:        make(map[string]*room),
		wake:        make(chan struct{}, 1),
		drained:     make(chan struct{}, 1),
	}
}

func (c *conn) setRoom(roomID string, r *room) (old *room) {
	c.mu.Lock()
	defer c.mu.Unlock()
	old = c.subs[roomID]
	if r == nil {
		delete(c.subs, roomID)
	} else {
		c.subs[roomID] = r
	}
	return old
}

func (c *conn) rooms() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	ids := make([]string, 0, len(c.subs))
	for id := range c.subs {
		ids = append(ids, id)
	}
	return ids
}

func (c *conn) subscribedTo(roomID string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.subs[roomID] != nil
}

// enqueueMessage queues a stored message. It never blocks: a connection
// whose queue is full is closed as a slow consumer (it lost nothing durable
// and catches up from the store when it reconnects).
func (c *conn) enqueueMessage(room string, seq int64, data []byte) {
	c.push(outFrame{data: data, room: room, seq: seq}, true)
}

// enqueueFrame queues an answer or notice; like messages, these are never
// dropped, so a full queue closes the connection.
func (c *conn) enqueueFrame(data []byte) { c.push(outFrame{data: data}, true) }

// enqueueEphemeral queues a typing or presence event, dropping it when the
// queue is full: it would be stale by the time the client read it.
func (c *conn) enqueueEphemeral(data []byte) { c.push(outFrame{data: data}, false) }

func (c *conn) push(f outFrame, mustDeliver bool) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	if c.queueBytes > 0 && c.queueBytes+len(f.data) > c.h.cfg.QueueBytes {
		c.mu.Unlock()
		if mustDeliver {
			c.h.cfg.Metrics.Dropped.WithLabelValues("slow_consumer").Inc()
			c.closeWith(closeTryLater, "slow consumer: send queue full")
		} else {
			c.h.cfg.Metrics.Dropped.WithLabelValues("ephemeral").Inc()
		}
		return
	}
	c.queue = append(c.queue, f)
	c.queueBytes += len(f.data)
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// closeWith stops queueing, and closes the WebSocket with code from its own
// goroutine (a close handshake waits for the peer, and callers hold locks).
// Frames still queued are not flushed: the client resumes from the store.
func (c *conn) closeWith(code websocket.StatusCode, reason string) {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.closed = true
		c.queue, c.queueBytes = nil, 0
		c.mu.Unlock()
		c.log.Info("closing connection", slog.Int("code", int(code)), slog.String("reason", reason))
		go func() {
			_ = c.ws.Close(code, reason)
			c.cancel()
		}()
	})
}

// waitRoom blocks until n more bytes fit in the send queue (or it is
// empty). It is how the connection's own work (catch-up, answers) waits for
// a slow client instead of closing it. It returns false once the connection
// is closed.
func (c *conn) waitRoom(n int) bool {
	for {
		c.mu.Lock()
		closed := c.closed
		fits := c.queueBytes == 0 || c.queueBytes+n <= c.h.cfg.QueueBytes
		c.mu.Unlock()
		if closed {
			return false
		}
		if fits {
			return true
		}
		select {
		case <-c.drained:
		case <-c.ctx.Done():
			return false
		}
	}
}

// closeAndWait closes with code and returns once the close handshake is
// over. The reader uses it before returning: the handler's cleanup stops the
// writer, whose CloseNow would otherwise drop the TCP connection before the
// close frame is out.
func (c *conn) closeAndWait(code websocket.StatusCode, reason string) {
	c.closeWith(code, reason)
	<-c.ctx.Done()
}

// closeGoingAway tells the client the server is shutting down, lets the
// writer flush that notice, and closes with 1001. It returns once closed.
func (c *conn) closeGoingAway() {
	c.enqueueFrame(encode(errorFrame{Type: "error", Code: string(chat.CodeUnavailable),
		Message: "server is shutting down; reconnect to resume"}))
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		c.mu.Lock()
		empty := len(c.queue) == 0
		c.mu.Unlock()
		if empty {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.closed = true
		c.mu.Unlock()
		_ = c.ws.Close(closeGoingAway, "server shutting down")
		c.cancel()
	})
}

// writeLoop is the only goroutine that writes data frames. It batches what
// is queued into one frame of newline-separated objects, and pings.
func (c *conn) writeLoop() {
	defer c.ws.CloseNow() // a dead writer unblocks the reader
	ping := time.NewTicker(c.h.cfg.PingInterval)
	defer ping.Stop()
	var buf bytes.Buffer
	delivered := make(map[string]int64) // reused: one map per connection, not per batch
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-ping.C:
			c.ping()
			continue
		case <-c.wake:
		}
		for {
			batch := c.takeBatch(&buf, delivered)
			if batch == nil {
				break
			}
			wctx, cancel := context.WithTimeout(c.ctx, c.h.cfg.WriteTimeout)
			err := c.ws.Write(wctx, websocket.MessageText, batch)
			cancel()
			if err != nil {
				if !isNormalClose(err) {
					c.log.Debug("write failed", slog.Any("error", err))
				}
				return
			}
			c.h.cfg.Metrics.FramesOut.Inc()
			for room, seq := range delivered {
				c.h.delivery.advance(c.user.ID, room, seq)
			}
			clear(delivered)
		}
	}
}

// takeBatch moves queued frames into buf, up to maxBatchBytes (at least one
// frame), records in delivered the highest message seq per room among them,
// and returns the bytes (nil when the queue is empty).
func (c *conn) takeBatch(buf *bytes.Buffer, delivered map[string]int64) []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.queue) == 0 {
		return nil
	}
	buf.Reset()
	n := 0
	for n < len(c.queue) && (n == 0 || buf.Len()+1+len(c.queue[n].data) <= maxBatchBytes) {
		f := c.queue[n]
		if n > 0 {
			buf.WriteByte('\n')
		}
		buf.Write(f.data)
		if f.seq > 0 {
			delivered[f.room] = max(delivered[f.room], f.seq)
		}
		c.queueBytes -= len(f.data)
		c.queue[n] = outFrame{}
		n++
	}
	c.queue = c.queue[n:]
	if len(c.queue) == 0 {
		c.queue = nil // let an idle connection hold no buffer
	}
	select {
	case c.drained <- struct{}{}:
	default:
	}
	return buf.Bytes()
}

// ping sends a WebSocket ping from its own goroutine (a ping waits for the
// pong, which the reader receives) and closes the connection if no pong
// comes back within the idle timeout less the ping interval.
func (c *conn) ping() {
	if !c.pinging.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer c.pinging.Store(false)
		ctx, cancel := context.WithTimeout(c.ctx, c.h.cfg.IdleTimeout-c.h.cfg.PingInterval)
		defer cancel()
		if err := c.ws.Ping(ctx); err != nil && c.ctx.Err() == nil {
			c.closeWith(closePolicy, "no pong: connection is silent")
		}
	}()
}

func isNormalClose(err error) bool {
	if errors.Is(err, context.Canceled) {
		return true
	}
	switch websocket.CloseStatus(err) {
	case closeNormal, closeGoingAway:
		return true
	}
	return false
}
