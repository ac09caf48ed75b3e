// Package hub holds a node's WebSocket connections and delivers each room's
// messages to them in seq order, without gaps or repeats, whatever order the
// broker brings them in.
//
// Shape: each connection has one goroutine, its reader, started fresh
// after setup so that the handler's deep stack is not kept; a writer
// goroutine runs only while something is queued (conn.go), and the
// hijacked socket has tiny buffers (hijack.go). Rooms with local connections have a *room
// (room.go) that puts broker events back in seq order, fetching missing seqs
// from the store, and hands each message, encoded once, to the bounded send
// queue of every subscribed connection. A subscription that starts behind
// the room catches up from the store and then switches to live delivery
// under the room's lock, so nothing is lost or repeated at the switch.
//
// Lock order: Hub.mu, then room.mu, then conn.mu. Nothing slow (I/O, store
// calls) happens while holding any of them.
package hub

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard-chat/switchboard/chat"
)

// Store is the part of storage the hub uses.
type Store interface {
	// EventsAfter returns a room's events (messages and updates, SPEC
	// §13) after a seq, in order.
	EventsAfter(ctx context.Context, room string, afterSeq int64, limit int) ([]chat.RoomEvent, error)
	LastSeq(ctx context.Context, room string) (int64, error)
	CheckMember(ctx context.Context, userID, roomID string) error
	RoomsOf(ctx context.Context, userID string) ([]chat.Room, error)
	Cursors(ctx context.Context, userID string) ([]chat.Cursor, error)
	Profile(ctx context.Context, userID string) (chat.Profile, error)
	// MarkDelivered moves delivery cursors forward: user → room → seq. It
	// returns in busy the cursors it could not write now without waiting
	// (rows other writers hold), for a later try.
	MarkDelivered(ctx context.Context, seqs map[string]map[string]int64) (busy map[string]map[string]int64, err error)
	MarkRead(ctx context.Context, userID, roomID string, seq int64) (chat.Room, error)
}

// Presence records which users have live connections across all nodes.
type Presence interface {
	// Connect records a connection unless its user has limit live ones
	// already (allowed false; limit < 1: no limit), and reports whether the
	// user just came online.
	Connect(ctx context.Context, userID, connID string, limit int) (cameOnline, allowed bool, err error)
	// Disconnect removes a connection and reports whether its user has no
	// live connection left (also when the entry was gone already: the
	// caller announces them offline).
	Disconnect(ctx context.Context, userID, connID string) (offline bool, err error)
	// Refresh keeps the given connections (user id → connection ids)
	// alive, adding back those Presence lost whatever the cap, and
	// returns the users who had none live until then.
	Refresh(ctx context.Context, conns map[string][]string) (cameOnline []string, err error)
	// Sweep returns users whose connections all expired (their node died);
	// each is returned to one hub of the cluster, which announces them.
	Sweep(ctx context.Context) ([]string, error)
}

// Poster stores a message or a change to one and delivers it (package
// poster): what send, edit, delete and react frames do.
type Poster interface {
	Post(ctx context.Context, m chat.NewMessage) (chat.Message, bool, error)
	Update(ctx context.Context, u chat.Update) (chat.Message, bool, error)
}

// History answers history reads (package history): what a history frame
// does.
type History interface {
	Page(ctx context.Context, userID, roomID string, q chat.HistoryQuery) (chat.Page, error)
}

// Authenticator turns an access token into a session.
type Authenticator interface {
	Authenticate(ctx context.Context, token string) (chat.Session, error)
}

// Sessions tells which sessions ended (logout, logout-all, a password
// change), for the re-check of open connections after a broker outage.
type Sessions interface {
	Ended(ctx context.Context, sessionIDs ...string) ([]string, error)
}

// Config configures a Hub. Store, Broker, Auth, Poster and History are
// required.
type Config struct {
	Store   Store
	Broker  Broker
	Auth    Authenticator
	Poster  Poster
	History History
	// Presence, if not nil, is told of every connection, and online/offline
	// transitions are broadcast to the user's rooms as presence events. It
	// also enforces MaxConnsPerUser.
	Presence Presence
	// Sessions, if not nil, is read after a broker outage to close the
	// connections of sessions that ended meanwhile.
	Sessions Sessions
	// MaxConnsPerUser bounds each user's open connections on all nodes
	// together (through Presence). Zero means 20; negative, no limit.
	MaxConnsPerUser int
	// MaxUnauthedPerIP bounds, per client IP, the connections of this node
	// that have not authenticated yet; more are refused with 429 before
	// the upgrade. Zero means 50.
	MaxUnauthedPerIP int
	// ClientIP tells the client address of an upgrade request (trusted
	// proxies); nil means the TCP peer.
	ClientIP func(*http.Request) string
	// PresenceRefresh is how often live connections are refreshed in
	// Presence; keep it well under its TTL. Zero means 20 s.
	PresenceRefresh time.Duration
	// Logger; nil discards logs.
	Logger *slog.Logger
	// AllowedOrigins are the Origin values allowed to open a WebSocket, as
	// "scheme://host[:port]". An upgrade without Origin is always allowed.
	AllowedOrigins []string
	// RateLimit and RateBurst bound sends per connection. Zero means 10/s
	// with bursts of 20.
	RateLimit float64
	RateBurst int
	// TypingLimit and TypingBurst bound typing events per connection. Zero
	// means 1/s with bursts of 3.
	TypingLimit float64
	TypingBurst int
	// RequestLimit and RequestBurst bound every other request (subscribe,
	// unsubscribe, history, read, ping, auth) per connection. Zero means
	// 20/s with bursts of 40.
	RequestLimit float64
	RequestBurst int
	// QueueBytes bounds each connection's send queue. Zero means 1 MiB.
	QueueBytes int
	// MaxFrameBytes is the largest client frame. Zero means 64 KiB.
	MaxFrameBytes int64
	// AuthTimeout is how long a connection may take to authenticate. Zero
	// means 10 s.
	AuthTimeout time.Duration
	// PingInterval is how often the server pings. Zero means 25 s.
	PingInterval time.Duration
	// IdleTimeout closes a connection that answers no ping for this long.
	// Zero means 60 s.
	IdleTimeout time.Duration
	// WriteTimeout bounds each frame write. Zero means 5 s.
	WriteTimeout time.Duration
	// WriteInterval is the least time between two writes of messages to
	// one connection: what arrives meanwhile goes out in one frame, one
	// syscall, unless four frames are queued sooner. Answers to the client
	// (acks, pongs, errors) and a connection's first write after a quiet
	// spell do not wait. Zero means 50 ms; negative turns it off.
	WriteInterval time.Duration
	// GapWait is how long an out-of-order message waits for the ones before
	// it before they are fetched from the store. Zero means 50 ms.
	GapWait time.Duration
	// DeliveredFlush is how often delivery cursors are written. Zero means 1 s.
	DeliveredFlush time.Duration
	// Registerer registers the hub's metrics; nil leaves them unregistered.
	Registerer prometheus.Registerer

	metrics *metrics
}

func (c *Config) setDefaults() error {
	if c.Store == nil || c.Broker == nil || c.Auth == nil || c.Poster == nil || c.History == nil {
		return errors.New("hub: Config needs Store, Broker, Auth, Poster and History")
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	setDefault(&c.RateLimit, 10)
	setDefault(&c.RateBurst, 20)
	setDefault(&c.TypingLimit, 1)
	setDefault(&c.TypingBurst, 3)
	setDefault(&c.RequestLimit, 20)
	setDefault(&c.RequestBurst, 40)
	setDefault(&c.MaxConnsPerUser, 20)
	setDefault(&c.MaxUnauthedPerIP, 50)
	setDefault(&c.QueueBytes, 1<<20)
	setDefault(&c.MaxFrameBytes, 64<<10)
	setDefault(&c.AuthTimeout, 10*time.Second)
	setDefault(&c.PingInterval, 25*time.Second)
	setDefault(&c.IdleTimeout, 60*time.Second)
	setDefault(&c.WriteTimeout, 5*time.Second)
	setDefault(&c.WriteInterval, 50*time.Millisecond)
	setDefault(&c.GapWait, 50*time.Millisecond)
	setDefault(&c.DeliveredFlush, time.Second)
	setDefault(&c.PresenceRefresh, 20*time.Second)
	var err error
	c.metrics, err = newMetrics(c.Registerer)
	return err
}

func setDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

// Hub holds the connections of one node.
type Hub struct {
	cfg Config
	log *slog.Logger

	ctx       context.Context // cancelled by Shutdown; parent of every connection's context
	cancel    context.CancelFunc
	conns     sync.WaitGroup // one per connection handler
	flushDone chan struct{}

	mu       sync.RWMutex
	closing  bool
	rooms    map[string]*room
	users    map[string]map[*conn]struct{} // user id → that user's connections
	subMu    sync.Mutex                    // serialises broker Subscribe/Unsubscribe
	delivery *deliveryCursors

	// unauthed counts the connections still authenticating; its context is
	// cancelled when Shutdown begins, which closes them at once instead of
	// at their deadline.
	unauthed     ipCounter
	reconcileSem chan struct{} // bounds the store reads of a reconcile

	// Presence bookkeeping (presence.go). Lock order: presenceMu, then mu.
	presenceMu      sync.Mutex
	refreshing      map[*conn]bool      // the connections a refresh on its way re-asserts; nil between refreshes
	handedOff       []goneConn          // closed during that refresh: removed after it
	pendingCleanups map[string]goneConn // by connection id: Disconnects that failed, retried at each refresh
}

// New returns a running Hub.
func New(cfg Config) (*Hub, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	unauthed, stopUnauthed := context.WithCancel(ctx)
	h := &Hub{
		cfg:             cfg,
		log:             cfg.Logger,
		ctx:             ctx,
		cancel:          cancel,
		flushDone:       make(chan struct{}),
		rooms:           make(map[string]*room),
		users:           make(map[string]map[*conn]struct{}),
		delivery:        newDeliveryCursors(),
		unauthed:        ipCounter{ctx: unauthed, cancel: stopUnauthed, n: make(map[string]int)},
		reconcileSem:    make(chan struct{}, 8),
		pendingCleanups: make(map[string]goneConn),
	}
	go h.flushLoop()
	if cfg.Presence != nil {
		go h.refreshPresence()
	}
	return h, nil
}

// Publish hands ev to this node's connections at once and to the broker
// for the other nodes. A stored event is durable already, so a broker
// failure only delays remote delivery until the gap is noticed there; the
// error says so.
func (h *Hub) Publish(ctx context.Context, ev Event) error {
	h.Receive(ev)
	return h.cfg.Broker.Publish(ctx, ev)
}

// publish is Publish for the hub's own events, logging a broker failure.
func (h *Hub) publish(ctx context.Context, ev Event) {
	if err := h.Publish(ctx, ev); err != nil {
		h.log.WarnContext(h.ctx, "broker publish failed", slog.String("room", ev.Room), slog.Int64("seq", ev.Seq), slog.Any("error", err))
	}
}

// Receive takes an event from the broker. It never blocks on a connection.
func (h *Hub) Receive(ev Event) {
	h.mu.RLock()
	r := h.rooms[ev.Room]
	h.mu.RUnlock()
	if r == nil {
		return
	}
	if ev.Seq == 0 {
		r.broadcastEphemeral(ev)
		return
	}
	r.receive(ev)
}

// Resync makes every local room read from the store what it may have missed
// from the broker, and re-checks every connection's session and rooms (the
// controls of that time may be lost too). A broker calls it after
// reconnecting: connections then get what was published during the outage
// without reconnecting themselves.
func (h *Hub) Resync() {
	h.mu.RLock()
	rooms := make([]*room, 0, len(h.rooms))
	for _, r := range h.rooms {
		rooms = append(rooms, r)
	}
	h.mu.RUnlock()
	for _, r := range rooms {
		go r.resync()
	}
	go h.reconcile()
}

func (h *Hub) connsOf(userID string) []*conn {
	h.mu.RLock()
	defer h.mu.RUnlock()
	cs := make([]*conn, 0, len(h.users[userID]))
	for c := range h.users[userID] {
		cs = append(cs, c)
	}
	return cs
}

func (h *Hub) allConns() []*conn {
	h.mu.RLock()
	defer h.mu.RUnlock()
	var cs []*conn
	for _, set := range h.users {
		for c := range set {
			cs = append(cs, c)
		}
	}
	return cs
}

// register adds an authenticated connection; it fails once Shutdown began.
func (h *Hub) register(c *conn) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closing {
		return false
	}
	set := h.users[c.user.ID]
	if set == nil {
		set = make(map[*conn]struct{})
		h.users[c.user.ID] = set
	}
	set[c] = struct{}{}
	h.cfg.metrics.Connections.Inc()
	return true
}

// unregister removes a connection whose reader and writer are done: its
// subscriptions end (no control applies to it any more), its delivery
// cursors are written, and its user may go offline.
func (h *Hub) unregister(c *conn) {
	c.memberMu.Lock()
	c.gone = true
	rooms := c.rooms()
	for _, room := range rooms {
		h.unsubscribe(c, room)
	}
	c.memberMu.Unlock()
	h.writeDelivered(c.user.ID)
	h.mu.Lock()
	if set := h.users[c.user.ID]; set != nil {
		delete(set, c)
		if len(set) == 0 {
			delete(h.users, c.user.ID)
		}
		h.cfg.metrics.Connections.Dec()
	}
	h.mu.Unlock()
	h.leavePresence(c, rooms)
}

// acquireRoom returns the local state of roomID, creating it, subscribing
// the broker and reading the room's last seq on first use. Each successful
// call must be paired with releaseRoom.
func (h *Hub) acquireRoom(ctx context.Context, roomID string) (*room, error) {
	h.mu.Lock()
	r := h.rooms[roomID]
	if r == nil {
		r = newRoom(h, roomID)
		h.rooms[roomID] = r
	}
	r.refs++
	h.mu.Unlock()

	r.initMu.Lock()
	defer r.initMu.Unlock()
	if r.initialized() {
		return r, nil
	}
	// Subscribe before reading last_seq: a message committed in between is
	// then either counted in last_seq or delivered by the broker (or both,
	// and the repeat is dropped).
	h.subMu.Lock()
	err := h.cfg.Broker.Subscribe(ctx, roomID)
	h.subMu.Unlock()
	var seq int64
	if err == nil {
		seq, err = h.cfg.Store.LastSeq(ctx, roomID)
	}
	if err != nil {
		h.releaseRoom(r)
		return nil, err
	}
	r.initialize(seq)
	return r, nil
}

func (h *Hub) releaseRoom(r *room) {
	h.mu.Lock()
	r.refs--
	last := r.refs == 0
	if last {
		delete(h.rooms, r.id)
	}
	h.mu.Unlock()
	if last {
		r.stop()
		h.subMu.Lock()
		defer h.subMu.Unlock()
		h.mu.RLock()
		reacquired := h.rooms[r.id] != nil
		h.mu.RUnlock()
		if reacquired {
			return // a new subscriber came meanwhile: its Subscribe must stand
		}
		if err := h.cfg.Broker.Unsubscribe(context.WithoutCancel(h.ctx), r.id); err != nil {
			h.log.WarnContext(h.ctx, "broker unsubscribe failed", slog.String("room", r.id), slog.Any("error", err))
		}
	}
}

// subscribe starts delivering roomID to c from afterSeq on. A subscription
// that c already has is restarted from afterSeq. A subscribed frame (echoing
// id) goes out before any message.
func (h *Hub) subscribe(ctx context.Context, c *conn, roomID string, afterSeq int64, id *string) error {
	r, err := h.acquireRoom(ctx, roomID)
	if err != nil {
		return err
	}
	if old := c.setRoom(roomID, r); old != nil {
		old.removeSub(c)
		h.releaseRoom(old)
	}
	r.addSub(c, afterSeq, id)
	return nil
}

func (h *Hub) unsubscribe(c *conn, roomID string) bool {
	r := c.setRoom(roomID, nil)
	if r == nil {
		return false
	}
	r.removeSub(c)
	h.releaseRoom(r)
	return true
}

// Shutdown refuses new connections, closes every open one with 1001 after
// telling it why, waits for their handlers to return or ctx to end, and
// writes the last delivery cursors.
func (h *Hub) Shutdown(ctx context.Context) error {
	h.mu.Lock()
	if h.closing {
		h.mu.Unlock()
		return nil
	}
	h.closing = true
	h.unauthed.cancel()
	var all []*conn
	for _, set := range h.users {
		for c := range set {
			all = append(all, c)
		}
	}
	h.mu.Unlock()

	// Close at most 128 at a time: a close handshake waits for the peer.
	sem := make(chan struct{}, 128)
	var wg sync.WaitGroup
	for _, c := range all {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			c.closeGoingAway()
		}()
	}
	done := make(chan struct{})
	go func() {
		wg.Wait()
		h.conns.Wait()
		close(done)
	}()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = ctx.Err()
		// Readers block without a context: closing the socket ends them.
		for _, c := range all {
			_ = c.raw.Close()
		}
	}
	h.cancel() // ends the flush loop, and what handlers still wait for
	<-h.flushDone
	return err
}

func newConnID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
