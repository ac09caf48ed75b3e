package hub

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"golang.org/x/time/rate"

	"github.com/switchboard-chat/switchboard/chat"
)

// Abuse thresholds (SPEC §6): a connection that sends more than
// maxBadFrames bad frames within badFrameWindow, or maxRateRefused refused
// requests of one budget in a row, is closed with 1008.
const (
	maxBadFrames   = 10
	badFrameWindow = time.Minute
	maxRateRefused = 50
)

// maxBatchBytes bounds how much queued output goes into one frame.
const maxBatchBytes = 64 << 10

// outFrame is one queued server frame. Messages carry their room and seq so
// that the writer can advance delivery cursors once they are written.
type outFrame struct {
	data   []byte
	room   string
	seq    int64         // 0: not a stored message
	queued time.Duration // when it was queued, on monoClock
}

// monoStart is the origin of monoClock.
var monoStart = time.Now()

// monoClock is a monotonic time that fits in 8 bytes.
func monoClock() time.Duration { return time.Since(monoStart) }

// conn is one authenticated WebSocket connection.
type conn struct {
	// Static after construction.
	h    *Hub
	ws   *websocket.Conn // read only by serve; data frames written only by flush
	raw  net.Conn        // the socket under ws; flush sets its write deadline
	user chat.User
	id   string // this connection's id: its entry in Presence
	// ctx is cancelled when the connection ends. What an idle connection
	// does (read, write, ping) uses no context derived from it: each
	// child would leave it a map of children and a channel for good.
	ctx    context.Context
	cancel context.CancelFunc

	// Owned by serve (the reader goroutine).
	sendLimit    *rate.Limiter                // made on first use: most connections never send
	typingLimit  *rate.Limiter                // made on first use
	requestLimit *rate.Limiter                // made on first use
	badFrames    *[maxBadFrames]time.Duration // when the last bad frames came (ring, on monoClock); made on the first
	badNext      int                          // next slot of badFrames
	refused      [2]int32                     // requests refused in a row, per budget

	// Guarded by memberMu, which is held while the connection's
	// subscriptions change for membership reasons: by the reader (start,
	// subscribe and unsubscribe frames), the control applier and
	// unregister. It orders a membership check and the subscription it
	// allows against a control that revokes it.
	memberMu sync.Mutex
	optedOut []string // rooms the client unsubscribed from: a reconcile leaves them
	gone     bool     // unregistered: controls no longer apply

	// Guarded by mu.
	mu          sync.Mutex
	session     string      // the session of the token it authenticated with (SPEC §3)
	expiry      *time.Timer // closes the connection when that token expires
	controls    []Control   // waiting for the applier
	controlling bool        // an applier goroutine runs
	queue       []outFrame
	queueBytes  int
	closed      bool          // no more frames are queued
	writing     bool          // a flush goroutine is running; it alone writes data frames
	urgent      bool          // an answer, lingerFrames frames or lingerLimit bytes are queued: write without waiting for WriteInterval
	subs        []*room       // rooms this connection is subscribed to (few: a slice is smaller than a map)
	linger      *time.Timer   // times flush's waits for WriteInterval; made by the first, then reused
	wake        chan struct{} // capacity 1: ends a flush's wait early (see urgent; the end)
	lingering   bool          // flush waits on linger or wake
	pingTimer   *time.Timer   // fires the next ping; nil once stopped
	drained     chan struct{} // made by the first waitRoom; capacity 1, never closed: the writer took frames

	// Owned by the flush goroutine that runs (one at a time, handed over
	// under mu).
	lastWrite time.Duration    // on monoClock
	lastFull  bool             // the last batch was cut at maxBatchBytes
	inflight  map[string]int64 // highest message seq per room of the frame being written

	writers   sync.WaitGroup // the running flush goroutine, if any
	closeOnce sync.Once
	pinging   atomic.Bool
	// present is set once Presence counts the connection, or would have
	// had Redis answered: the refresh re-asserts it, its close removes it.
	present atomic.Bool
}

func (h *Hub) newConn(ws *websocket.Conn, raw net.Conn, fw *frameWriter, s chat.Session) *conn {
	ctx, cancel := context.WithCancel(h.ctx)
	c := &conn{
		h:       h,
		ws:      ws,
		raw:     raw,
		user:    s.User,
		id:      newConnID(),
		ctx:     ctx,
		cancel:  cancel,
		session: s.ID,
	}
	if fw != nil {
		fw.frameStart, fw.frameSent = c.frameStart, c.frameSent
	}
	if !s.ExpiresAt.IsZero() {
		c.expiry = time.AfterFunc(time.Until(s.ExpiresAt), c.expire)
	}
	return c
}

// currentSession is the session the connection speaks for now.
func (c *conn) currentSession() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.session
}

// reauthenticate moves the connection to session s (an auth frame with a
// fresh token of the same user) and its expiry to s's.
func (c *conn) reauthenticate(s chat.Session) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.session = s.ID
	if c.expiry != nil {
		c.expiry.Reset(time.Until(s.ExpiresAt))
	}
}

// expire closes a connection whose token expired without a fresh one
// (SPEC §3).
func (c *conn) expire() {
	c.closeWithNotice(encode(errorFrame{Type: "error", Code: string(chat.CodeUnauthorized),
		Message: "access token expired; send a fresh one in an auth frame before it does"}),
		closeUnauthorized, "token expired")
}

// frameStart is told by the frame writer of each frame it is about to put
// on the wire. Before the close frame, the user's delivery cursors are
// written, so that a client that reconnects once the close completes, on
// any node, is not sent again what this connection delivered.
func (c *conn) frameStart(op byte) {
	if op == opClose {
		c.h.writeDelivered(c.user.ID)
	}
}

// frameSent is told by the frame writer of each frame it wrote whole. A
// data frame's messages count as delivered from then on; the writer calls
// it under the WebSocket's write lock, so before any close frame follows.
func (c *conn) frameSent(op byte) {
	if op != opText || c.inflight == nil {
		return
	}
	for room, seq := range c.inflight {
		c.h.delivery.advance(c.user.ID, room, seq)
	}
	c.inflight = nil
}

// sendLimiter, typingLimiter and requestLimiter return the connection's
// rate limits, making them on first use. Called by the reader only.
func (c *conn) sendLimiter() *rate.Limiter {
	if c.sendLimit == nil {
		c.sendLimit = rate.NewLimiter(rate.Limit(c.h.cfg.RateLimit), c.h.cfg.RateBurst)
	}
	return c.sendLimit
}

func (c *conn) typingLimiter() *rate.Limiter {
	if c.typingLimit == nil {
		c.typingLimit = rate.NewLimiter(rate.Limit(c.h.cfg.TypingLimit), c.h.cfg.TypingBurst)
	}
	return c.typingLimit
}

func (c *conn) requestLimiter() *rate.Limiter {
	if c.requestLimit == nil {
		c.requestLimit = rate.NewLimiter(rate.Limit(c.h.cfg.RequestLimit), c.h.cfg.RequestBurst)
	}
	return c.requestLimit
}

// badFrame counts a bad frame and reports whether the connection has now
// sent more than maxBadFrames within badFrameWindow. Valid frames do not
// reset the count. Called by the reader only.
func (c *conn) badFrame() (tooMany bool) {
	now := monoClock()
	if c.badFrames == nil {
		c.badFrames = new([maxBadFrames]time.Duration)
		for i := range c.badFrames {
			c.badFrames[i] = -badFrameWindow
		}
	}
	// The slot to overwrite holds the oldest of the last maxBadFrames.
	oldest := c.badFrames[c.badNext]
	c.badFrames[c.badNext] = now
	c.badNext = (c.badNext + 1) % maxBadFrames
	return now-oldest < badFrameWindow
}

// logger is the connection's logger. It is made when something is logged,
// not held by every idle connection.
func (c *conn) logger() *slog.Logger {
	return c.h.log.With(slog.String("conn_id", c.id), slog.String("user_id", c.user.ID))
}

// setRoom makes r the connection's room roomID (r nil: none) and returns
// the one it replaces.
func (c *conn) setRoom(roomID string, r *room) (old *room) {
	c.mu.Lock()
	defer c.mu.Unlock()
	i := c.roomIndex(roomID)
	switch {
	case i < 0 && r != nil:
		c.subs = append(c.subs, r)
	case i >= 0 && r != nil:
		old, c.subs[i] = c.subs[i], r
	case i >= 0:
		old = c.subs[i]
		c.subs = slices.Delete(c.subs, i, i+1)
		if len(c.subs) == 0 {
			c.subs = nil
		}
	}
	return old
}

// roomIndex is where roomID is in c.subs, or -1. Called with c.mu held.
func (c *conn) roomIndex(roomID string) int {
	return slices.IndexFunc(c.subs, func(r *room) bool { return r.id == roomID })
}

// room returns the connection's room roomID, or nil.
func (c *conn) room(roomID string) *room {
	c.mu.Lock()
	defer c.mu.Unlock()
	if i := c.roomIndex(roomID); i >= 0 {
		return c.subs[i]
	}
	return nil
}

func (c *conn) rooms() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	ids := make([]string, len(c.subs))
	for i, r := range c.subs {
		ids[i] = r.id
	}
	return ids
}

func (c *conn) subscribedTo(roomID string) bool { return c.room(roomID) != nil }

// enqueueMessage queues a stored message. It never blocks: a connection
// whose queue is full is closed as a slow consumer (it lost nothing durable
// and catches up from the store when it reconnects).
func (c *conn) enqueueMessage(room string, seq int64, data []byte) {
	c.push(outFrame{data: data, room: room, seq: seq, queued: monoClock()}, true, false)
}

// enqueueFrame queues an answer or notice; like messages, these are never
// dropped, so a full queue closes the connection. It is written at once,
// not after WriteInterval: a client waits for it.
func (c *conn) enqueueFrame(data []byte) { c.push(outFrame{data: data}, true, true) }

// enqueueEphemeral queues a typing or presence event, dropping it when the
// queue is full: it would be stale by the time the client read it.
func (c *conn) enqueueEphemeral(data []byte) { c.push(outFrame{data: data}, false, false) }

func (c *conn) push(f outFrame, mustDeliver, urgent bool) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	if c.queueBytes > 0 && c.queueBytes+len(f.data) > c.h.cfg.QueueBytes {
		c.mu.Unlock()
		if mustDeliver {
			c.h.cfg.metrics.Dropped.WithLabelValues("slow_consumer").Inc()
			c.closeWith(closeTryLater, "slow consumer: send queue full")
		} else {
			c.h.cfg.metrics.Dropped.WithLabelValues("ephemeral").Inc()
		}
		return
	}
	c.queue = append(c.queue, f)
	c.queueBytes += len(f.data)
	c.h.cfg.metrics.QueuedBytes.Add(float64(len(f.data)))
	if urgent || c.queueBytes >= c.lingerLimit() || len(c.queue) >= lingerFrames {
		c.urgent = true
		c.wakeFlush()
	}
	start := !c.writing
	if start {
		c.writing = true
		c.writers.Add(1)
	}
	c.mu.Unlock()
	if start {
		go c.flush()
	}
}

// cork holds every frame queued from now on until uncork: start uses it so
// that ready goes out only once the connection is in its rooms' subscriber
// lists, where what others send after ready finds it. It marks a writer as
// running, so push starts none; call it before anything is queued.
func (c *conn) cork() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.writing = true
}

// uncork starts writing what was queued while corked.
func (c *conn) uncork() {
	c.mu.Lock()
	start := len(c.queue) > 0 && !c.closed
	if start {
		c.writers.Add(1)
	} else {
		c.writing = false
	}
	c.mu.Unlock()
	if start {
		go c.flush()
	}
}

// closeWith stops queueing, and closes the WebSocket with code from its own
// goroutine (a close handshake waits for the peer, and callers hold locks).
// Frames still queued are not flushed: the client resumes from the store.
func (c *conn) closeWith(code websocket.StatusCode, reason string) {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.stopQueueing()
		c.dropQueue()
		c.mu.Unlock()
		c.logger().InfoContext(c.ctx, "closing connection", slog.Int("code", int(code)), slog.String("reason", reason))
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
		if !closed && !fits && c.drained == nil {
			c.drained = make(chan struct{}, 1)
		}
		drained := c.drained
		c.mu.Unlock()
		if closed {
			return false
		}
		if fits {
			return true
		}
		select {
		case <-drained:
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
	c.closeWithNotice(encode(errorFrame{Type: "error", Code: string(chat.CodeUnavailable),
		Message: "server is shutting down; reconnect to resume"}), closeGoingAway, "server shutting down")
}

// closeWithNotice queues notice, lets the writer flush it (for at most a
// second), then closes with code. It returns once closed.
func (c *conn) closeWithNotice(notice []byte, code websocket.StatusCode, reason string) {
	c.enqueueFrame(notice)
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		c.mu.Lock()
		empty := len(c.queue) == 0 && !c.writing
		closed := c.closed
		c.mu.Unlock()
		if empty || closed {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.stopQueueing()
		c.dropQueue()
		c.mu.Unlock()
		c.logger().InfoContext(c.ctx, "closing connection", slog.Int("code", int(code)), slog.String("reason", reason))
		_ = c.ws.Close(code, reason)
		c.cancel()
	})
}

// flushState is what a flush goroutine needs; pooled, so that an idle
// connection holds neither a buffer nor a map.
type flushState struct {
	buf       bytes.Buffer
	delivered map[string]int64 // highest message seq per room in the batch
	queued    []time.Duration  // when each message of the batch was queued
}

var flushPool = sync.Pool{New: func() any { return &flushState{delivered: make(map[string]int64)} }}

// flush is the only goroutine that writes data frames, and runs only while
// there is something to write: push starts it, and it ends when the queue is
// empty. It batches what is queued into one frame of newline-separated
// objects.
func (c *conn) flush() {
	defer c.writers.Done()
	st := flushPool.Get().(*flushState)
	defer func() {
		if st.buf.Cap() > maxBatchBytes {
			st.buf = bytes.Buffer{} // do not keep what a large history frame grew
		}
		clear(st.delivered)
		st.queued = st.queued[:0]
		flushPool.Put(st)
	}()
	for {
		c.waitWriteInterval()
		batch := c.takeBatch(st)
		if batch == nil {
			return
		}
		// A deadline on the socket rather than a context: coder/websocket
		// keeps the last write's context, and finish closes the socket to
		// end a write in progress.
		_ = c.raw.SetWriteDeadline(time.Now().Add(c.h.cfg.WriteTimeout))
		if len(st.delivered) > 0 {
			c.inflight = st.delivered // frameSent advances the cursors
		}
		err := c.ws.Write(context.Background(), websocket.MessageText, batch)
		c.inflight = nil
		_ = c.raw.SetWriteDeadline(time.Time{}) // control frames have their own
		if err != nil {
			if !isNormalClose(err) && c.ctx.Err() == nil {
				c.logger().DebugContext(c.ctx, "write failed", slog.Any("error", err))
			}
			c.ws.CloseNow() // the reader sees it and ends the connection
			return
		}
		now := monoClock()
		c.lastWrite, c.lastFull = now, len(batch) >= maxBatchBytes
		m := c.h.cfg.metrics
		m.FramesOut.Inc()
		for _, q := range st.queued {
			m.DeliveryLatency.Observe((now - q).Seconds())
		}
		st.queued = st.queued[:0]
		clear(st.delivered)
	}
}

// lingerFrames is how many queued frames end a wait for WriteInterval: a
// write costs about the same whatever it carries, and four messages make
// it worth its syscall. A connection that receives many messages a second
// then writes every four (at 100 a second, every 40 ms) while one that
// receives fewer waits out the interval, so that each write carries what
// it can: the interval bounds the wait, this the batch it is worth waiting
// for.
const lingerFrames = 4

// lingerLimit is how many queued bytes end a wait for WriteInterval: half
// a batch, or a quarter of the queue bound if that is less, so that
// waiting never brings the queue near the bound that closes the connection.
func (c *conn) lingerLimit() int { return min(maxBatchBytes/2, c.h.cfg.QueueBytes/4) }

// waitWriteInterval delays a write that would follow the previous one by
// less than WriteInterval, so that a busy connection gets several messages
// per frame (one write syscall each) instead of one; a connection that
// wrote nothing lately, a queued answer, lingerFrames queued frames, a
// queue past lingerLimit, or a full last batch (catch-up) write at once.
// The end of the connection ends the wait too (stopQueueing), and
// takeBatch then finds nothing to write.
func (c *conn) waitWriteInterval() {
	wait := c.h.cfg.WriteInterval - (monoClock() - c.lastWrite)
	if c.h.cfg.WriteInterval <= 0 || wait <= 0 || c.lastFull {
		return
	}
	c.mu.Lock()
	if c.urgent || c.closed {
		c.mu.Unlock()
		return
	}
	if c.linger == nil {
		c.linger, c.wake = time.NewTimer(wait), make(chan struct{}, 1)
	} else {
		c.linger.Reset(wait)
	}
	c.lingering = true
	t, wake := c.linger, c.wake
	c.mu.Unlock()
	select {
	case <-t.C:
	case <-wake:
	}
	c.mu.Lock()
	c.lingering = false
	select {
	case <-wake: // sent as the timer fired: it must not end the next wait
	default:
	}
	c.mu.Unlock()
}

// wakeFlush ends a flush's wait for WriteInterval, if one waits. Called
// with c.mu held. A channel, not a reset of the timer to zero: moving a
// timer earlier makes the runtime walk and re-sort every timer of its P
// (runtime timers.adjust), and this happens once per answer.
func (c *conn) wakeFlush() {
	if c.lingering {
		select {
		case c.wake <- struct{}{}:
		default:
		}
	}
}

// schedulePing arms the timer of the next ping, unless the connection is
// over. A timer, not a goroutine, waits between pings.
func (c *conn) schedulePing() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || c.ctx.Err() != nil {
		return
	}
	c.pingTimer = time.AfterFunc(c.h.cfg.PingInterval, func() {
		c.ping()
		c.schedulePing()
	})
}

// stopQueueing marks the connection closed, so that nothing more is queued
// or written, and ends a flush's wait for WriteInterval. Called with c.mu
// held.
func (c *conn) stopQueueing() {
	c.closed = true
	c.wakeFlush()
}

// dropQueue forgets what is queued. Called with c.mu held.
func (c *conn) dropQueue() {
	c.h.cfg.metrics.QueuedBytes.Sub(float64(c.queueBytes))
	c.queue, c.queueBytes = nil, 0
}

// finish ends the connection: no more frames are queued or pings sent, the
// flush goroutine is done, and the socket is closed (its file descriptor
// released).
func (c *conn) finish() {
	c.mu.Lock()
	c.stopQueueing()
	c.dropQueue()
	if c.pingTimer != nil {
		c.pingTimer.Stop()
		c.pingTimer = nil
	}
	if c.expiry != nil {
		c.expiry.Stop()
		c.expiry = nil
	}
	c.mu.Unlock()
	c.cancel()
	c.ws.CloseNow() // also ends a write in progress
	c.writers.Wait()
}

// takeBatch moves queued frames into st.buf, up to maxBatchBytes (at least
// one frame), records in st.delivered the highest message seq per room
// among them and in st.queued when each message was queued, and returns the
// bytes. When the queue is empty it returns nil and the caller's flush ends
// (the next push starts another).
func (c *conn) takeBatch(st *flushState) []byte {
	buf := &st.buf
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.queue) == 0 || c.closed {
		c.writing = false
		return nil
	}
	buf.Reset()
	n, taken := 0, 0
	for n < len(c.queue) && (n == 0 || buf.Len()+1+len(c.queue[n].data) <= maxBatchBytes) {
		f := c.queue[n]
		if n > 0 {
			buf.WriteByte('\n')
		}
		buf.Write(f.data)
		if f.seq > 0 {
			st.delivered[f.room] = max(st.delivered[f.room], f.seq)
			st.queued = append(st.queued, f.queued)
		}
		taken += len(f.data)
		c.queue[n] = outFrame{}
		n++
	}
	c.queueBytes -= taken
	c.h.cfg.metrics.QueuedBytes.Sub(float64(taken))
	c.queue = c.queue[n:]
	if len(c.queue) == 0 {
		c.queue = nil // let an idle connection hold no buffer
		c.urgent = false
	}
	if c.drained != nil {
		select {
		case c.drained <- struct{}{}:
		default:
		}
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
		// Ping returns when the connection closes; the hub's context ends
		// it at shutdown.
		ctx, cancel := context.WithTimeout(c.h.ctx, c.h.cfg.IdleTimeout-c.h.cfg.PingInterval)
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
