// Package cache keeps storage's reads that every request makes (profiles,
// memberships, the newest messages of each room and their threads) in the
// node's memory, and keeps them correct across a cluster. It is a
// read-through cache: its reads have storage's own signatures, so either
// can serve a reader.
//
// Every cached answer depends on counters kept in one Redis sorted set
// (Config.Key), read with a single ZMSCORE per read. This package alone
// writes them, when told of a change:
//
//   - member <room id>: the highest seq stored in the room, raised by
//     MessageStored (ZADD GT) after a message or an update to one (SPEC
//     §13) is stored and before its sender is answered, so a node that
//     reads it after an ack sees it. A room's cached window is used only
//     while it holds every event up to that seq; a newer head extends it
//     with the events after its own (new messages, changed ones).
//   - member "u:<user id>": raised by UserChanged after the user's profile
//     or memberships change; cached profiles and memberships are tagged
//     with it.
//   - member "names": raised by UserChanged when a display name changes,
//     since every cached message carries its sender's name; windows are
//     tagged with it.
//
// A tag is always a value read before the Postgres read it guards, and
// every raise follows the Postgres commit it announces, so a change made
// on any node makes older entries unusable everywhere before it is
// acknowledged. Two failures can leave an entry stale for at most
// Config.MaxAge: a node that cannot reach Redis when it announces (a room
// head is announced again until Redis takes it), and Redis losing the
// sorted set. When Redis cannot be read, reads go to Postgres.
package cache

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/singleflight"

	"github.com/switchboard-chat/switchboard/chat"
	"github.com/switchboard-chat/switchboard/internal/groupcommit"
)

// Backing is what the cache reads through to: storage's reads.
type Backing interface {
	Profile(ctx context.Context, userID string) (chat.Profile, error)
	CheckMember(ctx context.Context, userID, roomID string) error
	SeqBefore(ctx context.Context, roomID string, since time.Time) (int64, error)
	MessagesAfter(ctx context.Context, roomID string, afterSeq int64, limit int) ([]chat.EncodedMessage, error)
	EventsAfter(ctx context.Context, roomID string, afterSeq int64, limit int) ([]chat.RoomEvent, error)
	MessagesBefore(ctx context.Context, roomID string, beforeSeq int64, limit int) ([]chat.EncodedMessage, error)
	Message(ctx context.Context, id string) (chat.EncodedMessage, error)
	Replies(ctx context.Context, parentID string, afterSeq int64, limit int) ([]chat.EncodedMessage, error)
}

// Config configures a Cache. Store, Redis and Key are required.
type Config struct {
	Store Backing
	Redis redis.UniversalClient
	// Key is the sorted set of versions (see the package comment); every
	// node of a cluster names the same.
	Key string
	// EndedKey, when set, names the key that exists while a session is
	// ended (the denylist's), so that ProfileUnlessEnded reads it with the
	// user's version in one round trip.
	EndedKey func(sessionID string) string
	// Rooms is how many room windows are kept (default 1,000), Window how
	// many of a room's newest messages each holds (default 256; at least
	// one page of the largest limit, 201), Threads how many threads whose
	// parent is older than its room's window (default 1,000, each with up
	// to 1,000 replies), Entries how many profiles, memberships and
	// message→room ids (default 100,000 each).
	Rooms, Window, Threads, Entries int
	// MaxAge bounds how long an entry is used without reading Postgres
	// again (default 30 s); see the package comment for why it exists.
	MaxAge time.Duration
	// Registerer registers the hit and miss counters; nil leaves them
	// unregistered.
	Registerer prometheus.Registerer
	Logger     *slog.Logger
}

// Cache is a read-through cache of storage's reads.
type Cache struct {
	store   Backing
	cfg     Config
	log     *slog.Logger
	rdb     redis.UniversalClient
	lookups *prometheus.CounterVec

	profiles *lru.Cache[string, profileEntry]
	members  *lru.Cache[memberKey, stamp]
	windows  *lru.Cache[string, *window]
	threads  *lru.Cache[string, *thread]
	roomOf   *lru.Cache[string, string] // message id → room id; never changes
	loads    singleflight.Group         // one Postgres load per room at a time

	announcements groupcommit.Queue[*announcement] // MessageStored calls waiting for a round trip

	headsMu sync.Mutex
	heads   map[string]int64 // room heads whose announcement failed, retried by retryHeads
}

// stamp is what an entry was checked against: a version, and when it was
// read from Postgres.
type stamp struct {
	version float64
	loaded  time.Time
}

type profileEntry struct {
	stamp
	profile chat.Profile
}

type memberKey struct{ user, room string }

const namesMember = "names"

func userMember(userID string) string { return "u:" + userID }

// New returns a Cache on cfg. Its context, when cancelled, stops the
// announcements it retries (see MessageStored).
func New(ctx context.Context, cfg Config) (*Cache, error) {
	if cfg.Store == nil || cfg.Redis == nil || cfg.Key == "" {
		return nil, errors.New("cache: Config needs Store, Redis and Key")
	}
	if cfg.Rooms == 0 {
		cfg.Rooms = 1000
	}
	if cfg.Window == 0 {
		cfg.Window = 256
	}
	if cfg.Threads == 0 {
		cfg.Threads = 1000
	}
	if cfg.Entries == 0 {
		cfg.Entries = 100_000
	}
	if cfg.MaxAge == 0 {
		cfg.MaxAge = 30 * time.Second
	}
	if cfg.Window < 201 || cfg.Rooms < 1 || cfg.Threads < 1 || cfg.Entries < 1 || cfg.MaxAge < 0 {
		return nil, errors.New("cache: Window must be at least 201, Rooms, Threads and Entries at least 1, MaxAge not negative")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	c := &Cache{
		store: cfg.Store, cfg: cfg, log: cfg.Logger, rdb: cfg.Redis,
		lookups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchboard_cache_lookups_total",
			Help: "Reads of the cache, by cache (profile, membership, history) and result (hit, miss).",
		}, []string{"cache", "result"}),
		heads: make(map[string]int64),
	}
	c.announcements.Run = c.announce
	c.profiles, _ = lru.New[string, profileEntry](cfg.Entries)
	c.members, _ = lru.New[memberKey, stamp](cfg.Entries)
	c.windows, _ = lru.New[string, *window](cfg.Rooms)
	c.threads, _ = lru.New[string, *thread](cfg.Threads)
	c.roomOf, _ = lru.New[string, string](cfg.Entries)
	if cfg.Registerer != nil {
		if err := cfg.Registerer.Register(c.lookups); err != nil {
			return nil, fmt.Errorf("cache: %w", err)
		}
	}
	go c.retryHeads(ctx)
	return c, nil
}

func (c *Cache) count(cache string, hit bool) {
	result := "miss"
	if hit {
		result = "hit"
	}
	c.lookups.WithLabelValues(cache, result).Inc()
}

func (c *Cache) fresh(st stamp, version float64) bool {
	return st.version == version && time.Since(st.loaded) < c.cfg.MaxAge
}

// versions reads the given members of the sorted set in one round trip, or
// from the request's versions when Begin read them all; a missing member
// reads as 0.
func (c *Cache) versions(ctx context.Context, members ...string) ([]float64, error) {
	if rv, ok := ctx.Value(requestVersionsKey{}).(*requestVersions); ok && rv.cache == c {
		out := make([]float64, len(members))
		for i, m := range members {
			v, ok := rv.versions[m]
			if !ok {
				return c.rdb.ZMScore(ctx, c.cfg.Key, members...).Result()
			}
			out[i] = v
		}
		return out, nil
	}
	return c.rdb.ZMScore(ctx, c.cfg.Key, members...).Result()
}

// requestVersions are the versions one request's reads depend on, read
// once by Begin.
type requestVersions struct {
	cache    *Cache
	versions map[string]float64
}

type requestVersionsKey struct{}

// RoomOf returns the room of the message id if the cache knows it (it
// never changes), without any I/O.
func (c *Cache) RoomOf(id string) (string, bool) { return c.roomOf.Get(id) }

// Begin reads in one round trip the versions that reads of roomID by
// userID depend on (the user's, the room's head, the names), and returns a
// context that carries them: the reads made with it use them instead of
// reading their own. They are as old as the request, which is what its
// reads may answer: pass the context to one request's reads only. If Redis
// cannot answer, ctx is returned as it is.
func (c *Cache) Begin(ctx context.Context, userID, roomID string) context.Context {
	members := []string{userMember(userID), roomID, namesMember}
	vs, err := c.rdb.ZMScore(ctx, c.cfg.Key, members...).Result()
	if err != nil {
		return ctx
	}
	rv := &requestVersions{cache: c, versions: make(map[string]float64, len(members))}
	for i, m := range members {
		rv.versions[m] = vs[i]
	}
	return context.WithValue(ctx, requestVersionsKey{}, rv)
}

// MessageStored announces a stored message: its room's head becomes seq if
// higher. Call it after the commit and before the sender is answered. If
// Redis cannot take it now, it is announced again every second until it
// can (other nodes may answer without the message meanwhile, for at most
// MaxAge), and the error is returned for the caller to log.
//
// Announcements that arrive while another is in flight go together in one
// ZADD (group commit): a node announces the messages of one save batch,
// which are answered at the same moment, in a round trip or two.
func (c *Cache) MessageStored(ctx context.Context, roomID string, seq int64) error {
	a := &announcement{room: roomID, seq: seq, done: make(chan struct{})}
	c.announcements.Add(a)
	select {
	case <-a.done:
		return a.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// announcement is one MessageStored waiting for a round trip: its room
// head and, once done is closed, its outcome.
type announcement struct {
	room string
	seq  int64
	err  error
	done chan struct{}
}

// announceTimeout bounds one announcement's round trip: a head that Redis
// does not take by then is kept and announced again a second later.
const announceTimeout = time.Second

// announce sends the heads of batch in one ZADD GT. If Redis cannot take
// it, each head is kept for retryHeads.
func (c *Cache) announce(batch []*announcement) {
	heads := make([]redis.Z, len(batch))
	for i, a := range batch {
		heads[i] = redis.Z{Score: float64(a.seq), Member: a.room}
	}
	ctx, cancel := context.WithTimeout(context.Background(), announceTimeout)
	defer cancel()
	err := c.rdb.ZAddGT(ctx, c.cfg.Key, heads...).Err()
	if err != nil {
		c.headsMu.Lock()
		for _, a := range batch {
			c.heads[a.room] = max(c.heads[a.room], a.seq)
		}
		c.headsMu.Unlock()
		err = fmt.Errorf("cache: announce room head: %w", err)
	}
	for _, a := range batch {
		a.err = err
		close(a.done)
	}
}

// retryHeads announces again, every second, the room heads whose
// announcement failed, until ctx ends.
func (c *Cache) retryHeads(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		c.headsMu.Lock()
		heads := c.heads
		c.heads = make(map[string]int64)
		c.headsMu.Unlock()
		if len(heads) == 0 {
			continue
		}
		// All in one ZADD GT, beside the queue's own (a head only ever
		// rises, so the order of the two does not matter); if it fails,
		// announce keeps every one of them for the next tick.
		batch := make([]*announcement, 0, len(heads))
		for room, seq := range heads {
			batch = append(batch, &announcement{room: room, seq: seq, done: make(chan struct{})})
		}
		c.announce(batch)
	}
}

// UserChanged announces, after the commit, that userID's profile or
// memberships changed (names: the display name too, which every cached
// message of theirs carries). A failure is logged, not returned: the
// change is made, and MaxAge bounds how long other nodes may miss it.
func (c *Cache) UserChanged(ctx context.Context, userID string, names bool) {
	members := []string{userMember(userID)}
	if names {
		members = append(members, namesMember)
	}
	_, err := c.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, m := range members {
			p.ZIncrBy(ctx, c.cfg.Key, 1, m)
		}
		return nil
	})
	if err != nil {
		c.log.WarnContext(ctx, "cache: cannot announce a change to other nodes; their cached reads may lag",
			slog.Any("members", members), slog.Duration("at_most", c.cfg.MaxAge), slog.Any("error", err))
	}
}

// Profile returns the user's profile.
func (c *Cache) Profile(ctx context.Context, userID string) (chat.Profile, error) {
	vs, err := c.versions(ctx, userMember(userID))
	if err != nil {
		return c.store.Profile(ctx, userID)
	}
	return c.profile(ctx, userID, vs[0])
}

// ProfileUnlessEnded returns the user's profile unless the session
// sessionID ended, reading both from Redis in one round trip (auth uses it
// for every request). Without Config.EndedKey it cannot tell, and says so.
func (c *Cache) ProfileUnlessEnded(ctx context.Context, userID, sessionID string) (chat.Profile, bool, error) {
	if c.cfg.EndedKey == nil {
		return chat.Profile{}, false, fmt.Errorf("%w: cache has no EndedKey", chat.ErrRevocationUnknown)
	}
	var ended *redis.IntCmd
	var vs *redis.FloatSliceCmd
	_, err := c.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		ended = p.Exists(ctx, c.cfg.EndedKey(sessionID))
		vs = p.ZMScore(ctx, c.cfg.Key, userMember(userID))
		return nil
	})
	if err != nil {
		return chat.Profile{}, false, fmt.Errorf("%w: %w", chat.ErrRevocationUnknown, err)
	}
	if ended.Val() > 0 {
		return chat.Profile{}, true, nil
	}
	p, err := c.profile(ctx, userID, vs.Val()[0])
	return p, false, err
}

// profile returns the user's profile, checked against version.
func (c *Cache) profile(ctx context.Context, userID string, version float64) (chat.Profile, error) {
	if e, ok := c.profiles.Get(userID); ok && c.fresh(e.stamp, version) {
		c.count("profile", true)
		return e.profile, nil
	}
	c.count("profile", false)
	p, err := c.store.Profile(ctx, userID)
	if err == nil {
		c.profiles.Add(userID, profileEntry{stamp{version, time.Now()}, p})
	}
	return p, err
}

// CheckMember is storage's CheckMember, with a member (never a refusal)
// remembered under the user's version.
func (c *Cache) CheckMember(ctx context.Context, userID, roomID string) error {
	vs, err := c.versions(ctx, userMember(userID))
	if err != nil {
		return c.store.CheckMember(ctx, userID, roomID)
	}
	k := memberKey{userID, roomID}
	if st, ok := c.members.Get(k); ok && c.fresh(st, vs[0]) {
		c.count("membership", true)
		return nil
	}
	c.count("membership", false)
	if err := c.store.CheckMember(ctx, userID, roomID); err != nil {
		return err
	}
	c.members.Add(k, stamp{vs[0], time.Now()})
	return nil
}

// roomWindow returns roomID's window, usable for the versions read now;
// nil when Redis or Postgres cannot tell.
func (c *Cache) roomWindow(ctx context.Context, roomID string) (w *window, head, names float64) {
	vs, err := c.versions(ctx, roomID, namesMember)
	if err != nil {
		return nil, 0, 0
	}
	return c.window(ctx, roomID, vs[0], vs[1]), vs[0], vs[1]
}

// SeqBefore is storage's SeqBefore, from the room's window when it reaches
// back far enough.
func (c *Cache) SeqBefore(ctx context.Context, roomID string, since time.Time) (int64, error) {
	if w, _, _ := c.roomWindow(ctx, roomID); w != nil {
		if seq, ok := w.seqBefore(since); ok {
			c.count("history", true)
			return seq, nil
		}
	}
	c.count("history", false)
	return c.store.SeqBefore(ctx, roomID, since)
}

// MessagesAfter is storage's MessagesAfter, from the room's window when it
// holds the page.
func (c *Cache) MessagesAfter(ctx context.Context, roomID string, afterSeq int64, limit int) ([]chat.EncodedMessage, error) {
	if w, _, _ := c.roomWindow(ctx, roomID); w != nil {
		if page, ok := w.after(afterSeq, limit); ok {
			c.count("history", true)
			return page, nil
		}
	}
	c.count("history", false)
	return c.store.MessagesAfter(ctx, roomID, afterSeq, limit)
}

// MessagesBefore is storage's MessagesBefore, from the room's window when
// it holds the page.
func (c *Cache) MessagesBefore(ctx context.Context, roomID string, beforeSeq int64, limit int) ([]chat.EncodedMessage, error) {
	if w, _, _ := c.roomWindow(ctx, roomID); w != nil {
		if page, ok := w.before(beforeSeq, limit); ok {
			c.count("history", true)
			return page, nil
		}
	}
	c.count("history", false)
	return c.store.MessagesBefore(ctx, roomID, beforeSeq, limit)
}

// EventsAfter is storage's EventsAfter, not cached: catch-up reads it
// (the hub, GET /rooms/{id}/events), and each reads a room's events once.
func (c *Cache) EventsAfter(ctx context.Context, roomID string, afterSeq int64, limit int) ([]chat.RoomEvent, error) {
	return c.store.EventsAfter(ctx, roomID, afterSeq, limit)
}

// Message is storage's Message, from its room's window or cached thread
// when they hold it.
func (c *Cache) Message(ctx context.Context, id string) (chat.EncodedMessage, error) {
	if roomID, ok := c.roomOf.Get(id); ok {
		w, head, names := c.roomWindow(ctx, roomID)
		if w != nil {
			if m, ok := w.message(id); ok {
				c.count("history", true)
				return m, nil
			}
		}
		if th, ok := c.threads.Get(id); ok && th.usable(head, names, c.cfg.MaxAge) {
			c.count("history", true)
			return th.parent, nil
		}
	}
	c.count("history", false)
	m, err := c.store.Message(ctx, id)
	if err == nil {
		c.roomOf.Add(id, m.RoomID)
	}
	return m, err
}

// Replies is storage's Replies, from the window of the parent's room or a
// cached thread.
func (c *Cache) Replies(ctx context.Context, parentID string, afterSeq int64, limit int) ([]chat.EncodedMessage, error) {
	roomID, known := c.roomOf.Get(parentID)
	if !known {
		m, err := c.store.Message(ctx, parentID)
		if err != nil {
			return nil, err
		}
		roomID = m.RoomID
		c.roomOf.Add(parentID, roomID)
	}
	vs, err := c.versions(ctx, roomID, namesMember)
	if err != nil {
		return c.store.Replies(ctx, parentID, afterSeq, limit)
	}
	head, names := vs[0], vs[1]
	if w := c.window(ctx, roomID, head, names); w != nil {
		if replies, ok := w.replies(parentID, afterSeq, limit); ok {
			c.count("history", true)
			return replies, nil
		}
	}
	th, ok := c.threads.Get(parentID)
	hit := ok && th.usable(head, names, c.cfg.MaxAge)
	if !hit {
		// Tagged with the versions read before it is read from Postgres.
		th = &thread{head: head, names: names, loaded: time.Now()}
		if err := c.loadThread(ctx, th, parentID); err != nil {
			return nil, err
		}
		c.threads.Add(parentID, th)
	}
	c.count("history", hit)
	if replies, ok := th.replies(afterSeq, limit); ok {
		return replies, nil
	}
	return c.store.Replies(ctx, parentID, afterSeq, limit)
}

// loadThread reads a thread whole (up to maxThreadReplies) into th.
func (c *Cache) loadThread(ctx context.Context, th *thread, parentID string) error {
	var err error
	if th.parent, err = c.store.Message(ctx, parentID); err != nil {
		return err
	}
	th.all, err = c.store.Replies(ctx, parentID, 0, maxThreadReplies)
	th.complete = len(th.all) < maxThreadReplies
	return err
}

// window returns roomID's window if it holds every message up to head
// with the display names of version names, loading or extending it from
// Postgres when needed; nil when that fails.
func (c *Cache) window(ctx context.Context, roomID string, head, names float64) *window {
	if w, ok := c.windows.Get(roomID); ok && w.usable(head, names, c.cfg.MaxAge) {
		return w
	}
	v, err, _ := c.loads.Do(roomID, func() (any, error) {
		old, ok := c.windows.Get(roomID)
		if ok && old.usable(head, names, c.cfg.MaxAge) {
			return old, nil
		}
		var w *window
		if ok && old.names == names && time.Since(old.loaded) < c.cfg.MaxAge {
			evs, err := c.store.EventsAfter(ctx, roomID, int64(old.head), c.cfg.Window)
			if err != nil {
				return nil, err
			}
			if len(evs) < c.cfg.Window {
				if w, err = old.extend(evs, head, c.cfg.Window); err != nil {
					return nil, err
				}
			}
		}
		if w == nil {
			msgs, err := c.store.MessagesBefore(ctx, roomID, math.MaxInt64, c.cfg.Window)
			if err != nil {
				return nil, err
			}
			if w, err = newWindow(msgs, head, names, c.cfg.Window, time.Now()); err != nil {
				return nil, err
			}
		}
		c.windows.Add(roomID, w)
		for _, m := range w.msgs {
			c.roomOf.Add(m.ID, roomID)
		}
		return w, nil
	})
	if err != nil {
		c.log.WarnContext(ctx, "cache: cannot load a room's history", slog.String("room", roomID), slog.Any("error", err))
		return nil
	}
	// A load another request started may predate this request's versions.
	if w := v.(*window); w.usable(head, names, c.cfg.MaxAge) {
		return w
	}
	return nil
}
