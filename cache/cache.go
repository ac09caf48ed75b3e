// Package cache serves the HTTP API's reads (profiles, memberships, room
// history and threads) from the node's memory and keeps them correct
// across a cluster.
//
// Every cached answer depends on counters kept in one Redis sorted set
// (Config.Key), read with a single ZMSCORE per request:
//
//   - member <room id>: the highest seq stored in the room. The broker
//     raises it (ZADD GT) in the same round trip as each publish, before
//     the sender's ack, so a node that reads it after an ack sees the
//     message. A room's cached window is used only while it holds that seq.
//   - member "u:<user id>": bumped after the user's profile changes or the
//     user leaves a room; cached profiles and memberships are tagged with it.
//   - member "names": bumped after any display name changes, since every
//     cached message carries its sender's name; windows are tagged with it.
//
// A tag is always a value read before the Postgres read it guards, and
// every bump follows the Postgres commit it announces, so a change on any
// node makes older entries unusable everywhere before it is acknowledged.
// Two failures can leave an entry stale for at most Config.MaxAge: a node
// that commits while it cannot reach Redis (its bump or publish fails; the
// broker publishes the room's head again once Redis is back), and Redis
// losing the sorted set. When Redis cannot be read, requests go to Postgres.
package cache

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/singleflight"

	"github.com/switchboard-chat/switchboard/auth"
	"github.com/switchboard-chat/switchboard/chat"
	"github.com/switchboard-chat/switchboard/storage"
)

// Config configures a Store. Store, Redis and Key are required.
type Config struct {
	Store *storage.Store
	Redis redis.UniversalClient
	// Key is the sorted set of versions; the broker's RoomHeadsKey must
	// name the same key.
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
	// Metrics registers the hit and miss counters; nil leaves them
	// unregistered.
	Metrics prometheus.Registerer
	Logger  *slog.Logger
}

// Store is a *storage.Store whose reads for the HTTP API come from memory
// when they can, and whose writes that would make them wrong bump the
// versions. Its other methods are storage's.
type Store struct {
	*storage.Store
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

// New returns a Store on cfg.
func New(cfg Config) (*Store, error) {
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
	s := &Store{
		Store: cfg.Store, cfg: cfg, log: cfg.Logger, rdb: cfg.Redis,
		lookups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchboard_cache_lookups_total",
			Help: "Reads of the HTTP API's cache, by cache (profile, membership, history) and result (hit, miss).",
		}, []string{"cache", "result"}),
	}
	s.profiles, _ = lru.New[string, profileEntry](cfg.Entries)
	s.members, _ = lru.New[memberKey, stamp](cfg.Entries)
	s.windows, _ = lru.New[string, *window](cfg.Rooms)
	s.threads, _ = lru.New[string, *thread](cfg.Threads)
	s.roomOf, _ = lru.New[string, string](cfg.Entries)
	if cfg.Metrics != nil {
		if err := cfg.Metrics.Register(s.lookups); err != nil {
			return nil, fmt.Errorf("cache: %w", err)
		}
	}
	return s, nil
}

func (s *Store) count(cache string, hit bool) {
	result := "miss"
	if hit {
		result = "hit"
	}
	s.lookups.WithLabelValues(cache, result).Inc()
}

func (s *Store) fresh(st stamp, version float64) bool {
	return st.version == version && time.Since(st.loaded) < s.cfg.MaxAge
}

// versions reads the given members of the sorted set in one round trip; a
// missing member reads as 0.
func (s *Store) versions(ctx context.Context, members ...string) ([]float64, error) {
	return s.rdb.ZMScore(ctx, s.cfg.Key, members...).Result()
}

// bump raises the version of each member by one, after a change to what
// they guard has been committed. A failure is logged, not returned: the
// change is made, and MaxAge bounds how long other nodes may miss it.
func (s *Store) bump(ctx context.Context, members ...string) {
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, m := range members {
			p.ZIncrBy(ctx, s.cfg.Key, 1, m)
		}
		return nil
	})
	if err != nil {
		s.log.WarnContext(ctx, "cache: cannot announce a change to other nodes; their cached reads may lag",
			slog.Any("members", members), slog.Duration("for at most", s.cfg.MaxAge), slog.Any("error", err))
	}
}

// Profile returns the user's profile.
func (s *Store) Profile(ctx context.Context, userID string) (chat.Profile, error) {
	vs, err := s.versions(ctx, userMember(userID))
	if err != nil {
		return s.Store.Profile(ctx, userID)
	}
	return s.profile(ctx, userID, vs[0])
}

// ProfileUnlessEnded returns the user's profile unless the session
// sessionID ended, reading both from Redis in one round trip (auth uses it
// for every request). Without Config.EndedKey it cannot tell, and says so.
func (s *Store) ProfileUnlessEnded(ctx context.Context, userID, sessionID string) (chat.Profile, bool, error) {
	if s.cfg.EndedKey == nil {
		return chat.Profile{}, false, fmt.Errorf("%w: cache has no EndedKey", auth.ErrRevocationUnknown)
	}
	var revoked *redis.IntCmd
	var vs *redis.FloatSliceCmd
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		revoked = p.Exists(ctx, s.cfg.EndedKey(sessionID))
		vs = p.ZMScore(ctx, s.cfg.Key, userMember(userID))
		return nil
	})
	if err != nil {
		return chat.Profile{}, false, fmt.Errorf("%w: %w", auth.ErrRevocationUnknown, err)
	}
	if revoked.Val() > 0 {
		return chat.Profile{}, true, nil
	}
	p, err := s.profile(ctx, userID, vs.Val()[0])
	return p, false, err
}

// profile returns the user's profile, checked against version.
func (s *Store) profile(ctx context.Context, userID string, version float64) (chat.Profile, error) {
	if e, ok := s.profiles.Get(userID); ok && s.fresh(e.stamp, version) {
		s.count("profile", true)
		return e.profile, nil
	}
	s.count("profile", false)
	p, err := s.Store.Profile(ctx, userID)
	if err == nil {
		s.profiles.Add(userID, profileEntry{stamp{version, time.Now()}, p})
	}
	return p, err
}

// UpdateProfile changes the user's profile and announces it.
func (s *Store) UpdateProfile(ctx context.Context, userID string, u chat.ProfileUpdate) (chat.Profile, error) {
	p, err := s.Store.UpdateProfile(ctx, userID, u)
	if err != nil {
		return p, err
	}
	if u.DisplayName != nil {
		s.bump(ctx, userMember(userID), namesMember)
	} else {
		s.bump(ctx, userMember(userID))
	}
	return p, nil
}

// VerifyPhone verifies the user's phone number and announces it.
func (s *Store) VerifyPhone(ctx context.Context, userID string, codeHash []byte) (chat.Profile, error) {
	p, err := s.Store.VerifyPhone(ctx, userID, codeHash)
	if err != nil {
		return p, err
	}
	s.bump(ctx, userMember(userID))
	return p, nil
}

// Leave removes the user from the room and announces it.
func (s *Store) Leave(ctx context.Context, userID, roomID string) error {
	if err := s.Store.Leave(ctx, userID, roomID); err != nil {
		return err
	}
	s.bump(ctx, userMember(userID))
	return nil
}

// checkMember is storage's CheckMember, with a member (never a refusal)
// remembered under the user's version.
func (s *Store) checkMember(ctx context.Context, userID, roomID string, version float64) error {
	k := memberKey{userID, roomID}
	if st, ok := s.members.Get(k); ok && s.fresh(st, version) {
		s.count("membership", true)
		return nil
	}
	s.count("membership", false)
	if err := s.Store.CheckMember(ctx, userID, roomID); err != nil {
		return err
	}
	s.members.Add(k, stamp{version, time.Now()})
	return nil
}

// roomVersions reads what a read of roomID by userID depends on.
func (s *Store) roomVersions(ctx context.Context, roomID, userID string) (head, user, names float64, err error) {
	vs, err := s.versions(ctx, roomID, userMember(userID), namesMember)
	if err != nil {
		return 0, 0, 0, err
	}
	return vs[0], vs[1], vs[2], nil
}

// History returns the page q of roomID's history if userID may read it.
func (s *Store) History(ctx context.Context, userID, roomID string, q chat.HistoryQuery) ([]chat.EncodedMessage, error) {
	head, user, names, err := s.roomVersions(ctx, roomID, userID)
	if err != nil {
		return s.historyFromStore(ctx, userID, roomID, q)
	}
	if err := s.checkMember(ctx, userID, roomID, user); err != nil {
		return nil, err
	}
	if w := s.window(ctx, roomID, head, names); w != nil {
		if page, ok := w.page(q); ok {
			s.count("history", true)
			return page, nil
		}
	}
	s.count("history", false)
	return s.page(ctx, roomID, q)
}

// historyFromStore is History without the cache.
func (s *Store) historyFromStore(ctx context.Context, userID, roomID string, q chat.HistoryQuery) ([]chat.EncodedMessage, error) {
	if err := s.Store.CheckMember(ctx, userID, roomID); err != nil {
		return nil, err
	}
	return s.page(ctx, roomID, q)
}

// page reads q from Postgres.
func (s *Store) page(ctx context.Context, roomID string, q chat.HistoryQuery) ([]chat.EncodedMessage, error) {
	if !q.Since.IsZero() {
		seq, err := s.Store.SeqBefore(ctx, roomID, q.Since)
		if err != nil {
			return nil, err
		}
		q.After, q.Seq = true, seq
	}
	var msgs []chat.Message
	var err error
	if q.After {
		msgs, err = s.Store.MessagesAfter(ctx, roomID, q.Seq, q.Limit)
	} else {
		msgs, err = s.Store.MessagesBefore(ctx, roomID, q.Seq, q.Limit)
	}
	if err != nil {
		return nil, err
	}
	return encodeAll(msgs)
}

// Thread returns the message messageID and up to limit of its replies with
// a seq greater than afterSeq, if userID may read its room. A message one
// may not read is chat.ErrNotFound, or what the room's rule says.
func (s *Store) Thread(ctx context.Context, userID, messageID string, afterSeq int64, limit int) (chat.EncodedMessage, []chat.EncodedMessage, error) {
	roomID, known := s.roomOf.Get(messageID)
	var parent *chat.Message
	if !known {
		m, err := s.Store.Message(ctx, messageID)
		if err != nil {
			return chat.EncodedMessage{}, nil, err
		}
		roomID, parent = m.RoomID, &m
		s.roomOf.Add(messageID, roomID)
	}
	head, user, names, err := s.roomVersions(ctx, roomID, userID)
	if err != nil {
		if err := s.Store.CheckMember(ctx, userID, roomID); err != nil {
			return chat.EncodedMessage{}, nil, err
		}
		return s.threadFromStore(ctx, messageID, parent, afterSeq, limit)
	}
	if err := s.checkMember(ctx, userID, roomID, user); err != nil {
		return chat.EncodedMessage{}, nil, err
	}
	if w := s.window(ctx, roomID, head, names); w != nil {
		if p, replies, ok := w.thread(messageID, afterSeq, limit); ok {
			s.count("history", true)
			return p, replies, nil
		}
	}
	th, ok := s.threads.Get(messageID)
	hit := ok && th.usable(head, names, s.cfg.MaxAge)
	if !hit {
		// Tagged with the versions read before it is read from Postgres.
		th = &thread{head: head, names: names, loaded: time.Now()}
		if err := s.loadThread(ctx, th, messageID, parent); err != nil {
			return chat.EncodedMessage{}, nil, err
		}
		s.threads.Add(messageID, th)
	}
	s.count("history", hit)
	if replies, ok := th.replies(afterSeq, limit); ok {
		return th.parent, replies, nil
	}
	return s.threadFromStore(ctx, messageID, parent, afterSeq, limit)
}

// loadThread reads a thread whole (up to maxThreadReplies) into th.
func (s *Store) loadThread(ctx context.Context, th *thread, messageID string, parent *chat.Message) error {
	var err error
	th.parent, th.all, err = s.threadFromStore(ctx, messageID, parent, 0, maxThreadReplies)
	th.complete = len(th.all) < maxThreadReplies
	return err
}

// threadFromStore reads a thread from Postgres; parent, when not nil, is
// the message already read.
func (s *Store) threadFromStore(ctx context.Context, messageID string, parent *chat.Message, afterSeq int64, limit int) (chat.EncodedMessage, []chat.EncodedMessage, error) {
	if parent == nil {
		m, err := s.Store.Message(ctx, messageID)
		if err != nil {
			return chat.EncodedMessage{}, nil, err
		}
		parent = &m
	}
	replies, err := s.Store.Replies(ctx, messageID, afterSeq, limit)
	if err != nil {
		return chat.EncodedMessage{}, nil, err
	}
	p, err := encode(parent)
	if err != nil {
		return chat.EncodedMessage{}, nil, err
	}
	rs, err := encodeAll(replies)
	return p, rs, err
}

// window returns roomID's window if it holds every message up to head
// with the display names of version names, loading or extending it from
// Postgres when needed; nil when that fails.
func (s *Store) window(ctx context.Context, roomID string, head, names float64) *window {
	if w, ok := s.windows.Get(roomID); ok && w.usable(head, names, s.cfg.MaxAge) {
		return w
	}
	v, err, _ := s.loads.Do(roomID, func() (any, error) {
		old, ok := s.windows.Get(roomID)
		if ok && old.usable(head, names, s.cfg.MaxAge) {
			return old, nil
		}
		var w *window
		if ok && old.names == names && time.Since(old.loaded) < s.cfg.MaxAge {
			newer, err := s.Store.MessagesAfter(ctx, roomID, old.last(), s.cfg.Window)
			if err != nil {
				return nil, err
			}
			if len(newer) < s.cfg.Window {
				if w, err = old.extend(newer, s.cfg.Window); err != nil {
					return nil, err
				}
			}
		}
		if w == nil {
			msgs, err := s.Store.MessagesBefore(ctx, roomID, math.MaxInt64, s.cfg.Window)
			if err != nil {
				return nil, err
			}
			if w, err = newWindow(msgs, names, s.cfg.Window, time.Now()); err != nil {
				return nil, err
			}
		}
		s.windows.Add(roomID, w)
		for _, e := range w.msgs {
			s.roomOf.Add(e.msg.ID, roomID)
		}
		return w, nil
	})
	if err != nil {
		s.log.WarnContext(ctx, "cache: cannot load a room's history", slog.String("room", roomID), slog.Any("error", err))
		return nil
	}
	// A load another request started may predate this request's versions.
	if w := v.(*window); w.usable(head, names, s.cfg.MaxAge) {
		return w
	}
	return nil
}
