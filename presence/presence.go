// Package presence tracks who is online across every node in Redis: a user
// is online while at least one of their connections is alive on any node.
//
// Keys. Users are spread over Config.Partitions partitions by a hash of
// their id (FNV-1a, modulo the partitions); partition k's hash tag is
// "{p<k>}", so that the keys of one partition live on one slot of a Redis
// Cluster and every script touches keys of one slot only (SPEC §15):
//
//	<prefix>presence:{p<k>}<user id>   sorted set: the user's connection ids,
//	                                   scored by when they expire (Unix ms,
//	                                   Redis's clock); TTL as long as the
//	                                   latest entry
//	<prefix>presence-index:{p<k>}      sorted set: the partition's users with
//	                                   connections, scored by their latest
//	                                   expiry
//
// The prefix must not hold '{' or '}', which would change the hash tags.
//
// A node adds an entry when a connection authenticates, refreshes its
// entries every TTL/3, and removes them when connections close; entries of a
// node that died without cleanup expire within TTL (60 s), so its users stop
// counting by then. Connect and Disconnect report transitions atomically
// (one Lua script each), so online/offline is announced once per
// transition, not once per connection; Connect also enforces a cap on a
// user's live connections across the cluster. Refresh re-asserts entries:
// it adds those Redis lost (a restart without persistence, a failover to a
// replica that lagged) and reports the users it found with none, who come
// online again. Sweep goes over every partition's index and hands each user
// whose entries all expired to one caller, which announces them offline.
package presence

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Config configures a Redis presence tracker.
type Config struct {
	// Redis is the client; required.
	Redis redis.UniversalClient
	// Prefix starts every key; it must not contain '{' or '}'. Zero value
	// means "switchboard:".
	Prefix string
	// TTL is how long a connection counts without a refresh. Zero means 60 s.
	TTL time.Duration
	// Partitions is how many partitions (hash tags) users are spread over.
	// Zero means 64. Every node of a cluster must use the same value.
	Partitions int
}

// Redis tracks presence in Redis.
type Redis struct {
	client     redis.UniversalClient
	prefix     string // the Config's
	ttl        time.Duration
	partitions int
}

// New checks cfg and returns a tracker.
func New(cfg Config) (*Redis, error) {
	if cfg.Redis == nil {
		return nil, errors.New("presence: Config needs Redis")
	}
	if cfg.Prefix == "" {
		cfg.Prefix = "switchboard:"
	}
	if strings.ContainsAny(cfg.Prefix, "{}") {
		return nil, fmt.Errorf("presence: prefix %q has a brace, which would change the keys' hash tags", cfg.Prefix)
	}
	if cfg.TTL == 0 {
		cfg.TTL = 60 * time.Second
	}
	if cfg.Partitions == 0 {
		cfg.Partitions = 64
	}
	if cfg.Partitions < 0 || cfg.TTL < 0 {
		return nil, errors.New("presence: negative TTL or Partitions")
	}
	return &Redis{client: cfg.Redis, prefix: cfg.Prefix, ttl: cfg.TTL, partitions: cfg.Partitions}, nil
}

// TTL is how long an entry lives without a refresh; refresh well within it.
func (p *Redis) TTL() time.Duration { return p.ttl }

// partition is the partition of userID.
func (p *Redis) partition(userID string) int {
	h := fnv.New32a()
	h.Write([]byte(userID))
	return int(h.Sum32() % uint32(p.partitions))
}

func tag(partition int) string { return "{p" + strconv.Itoa(partition) + "}" }

// userKey is the sorted set of userID's connections.
func (p *Redis) userKey(userID string) string {
	return p.prefix + "presence:" + tag(p.partition(userID)) + userID
}

// indexKey is the index of the users of partition k.
func (p *Redis) indexKey(k int) string { return p.prefix + "presence-index:" + tag(k) }

// keys are the keys a script about userID touches: the user's set and the
// index of the user's partition, on one slot.
func (p *Redis) keys(userID string) []string {
	return []string{p.userKey(userID), p.indexKey(p.partition(userID))}
}

var (
	//go:embed connect.lua
	connectLua    string
	connectScript = redis.NewScript(connectLua)
	//go:embed disconnect.lua
	disconnectLua    string
	disconnectScript = redis.NewScript(disconnectLua)
	//go:embed refresh.lua
	refreshLua    string
	refreshScript = redis.NewScript(refreshLua)
	//go:embed sweep.lua
	sweepLua    string
	sweepScript = redis.NewScript(sweepLua)
)

// Connect records connection connID of userID, unless the user has limit
// live connections on every node together already (allowed false; limit
// below 1: no limit), and reports whether the user was offline until now.
// The connections of a node that died stop counting when they expire (TTL).
func (p *Redis) Connect(ctx context.Context, userID, connID string, limit int) (cameOnline, allowed bool, err error) {
	n, err := connectScript.Run(ctx, p.client, p.keys(userID), connID, p.ttl.Milliseconds(), userID, max(limit, 0)).Int()
	if err != nil {
		return false, false, fmt.Errorf("presence connect: %w", err)
	}
	return n == 1, n >= 0, nil
}

// Disconnect removes connection connID of userID and reports whether the
// user has no live connection left: the caller announces them offline.
// That holds too when Redis had no entry to remove (it expired, or Redis
// lost it), so a cleanup retried after an outage still announces the user
// offline; a connection's cleanup runs once, so a transition is announced
// once (around an outage, it may be announced by a sweep too).
func (p *Redis) Disconnect(ctx context.Context, userID, connID string) (offline bool, err error) {
	n, err := disconnectScript.Run(ctx, p.client, p.keys(userID), connID, userID).Int()
	if err != nil {
		return false, fmt.Errorf("presence disconnect: %w", err)
	}
	return n == 1, nil
}

// Refresh re-asserts the given live connections (user id → connection
// ids) until TTL from now, in one round trip: entries Redis lost are added
// again, with their user's index entry, whatever the cap on connections
// (they are counted already). It returns the users who had no live
// connection until then (Redis lost them, or they expired while this node
// could not refresh): they come online again. On an error some users may
// have been refreshed, and those of them who came online are returned.
func (p *Redis) Refresh(ctx context.Context, conns map[string][]string) (cameOnline []string, err error) {
	if len(conns) == 0 {
		return nil, nil
	}
	users := make([]string, 0, len(conns))
	calls := make([]call, 0, len(conns))
	for user, ids := range conns {
		args := make([]any, 0, len(ids)+2)
		args = append(args, p.ttl.Milliseconds(), user)
		for _, id := range ids {
			args = append(args, id)
		}
		users = append(users, user)
		calls = append(calls, call{keys: p.keys(user), args: args})
	}
	cmds, err := p.evalAll(ctx, refreshScript, calls)
	for i, c := range cmds {
		if n, cerr := c.Int(); cerr == nil && n == 1 {
			cameOnline = append(cameOnline, users[i])
		}
	}
	if err != nil {
		return cameOnline, fmt.Errorf("presence refresh: %w", err)
	}
	return cameOnline, nil
}

// Online returns which of userIDs have a live connection on any node.
func (p *Redis) Online(ctx context.Context, userIDs []string) ([]string, error) {
	if len(userIDs) == 0 {
		return nil, nil
	}
	now, err := p.client.Time(ctx).Result()
	if err != nil {
		return nil, fmt.Errorf("presence online: %w", err)
	}
	from := fmt.Sprint(now.UnixMilli())
	pipe := p.client.Pipeline()
	counts := make([]*redis.IntCmd, len(userIDs))
	for i, id := range userIDs {
		counts[i] = pipe.ZCount(ctx, p.userKey(id), "("+from, "+inf")
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("presence online: %w", err)
	}
	var online []string
	for i, c := range counts {
		if c.Val() > 0 {
			online = append(online, userIDs[i])
		}
	}
	return online, nil
}

// sweepBatch is the most users of one partition one Sweep looks at.
const sweepBatch = 1000

// Sweep returns users whose connections all expired without a Disconnect
// (their node died), at most sweepBatch per partition per call. Each such
// user is returned to exactly one caller on the whole cluster, which
// announces them offline. It reads each partition's due users first, then
// runs one script per partition that has some, with their sets among its
// keys.
func (p *Redis) Sweep(ctx context.Context) ([]string, error) {
	now, err := p.client.Time(ctx).Result()
	if err != nil {
		return nil, fmt.Errorf("presence sweep: %w", err)
	}
	pipe := p.client.Pipeline()
	due := make([]*redis.StringSliceCmd, p.partitions)
	for k := range due {
		due[k] = pipe.ZRangeByScore(ctx, p.indexKey(k), &redis.ZRangeBy{Min: "-inf", Max: strconv.FormatInt(now.UnixMilli(), 10), Count: sweepBatch})
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("presence sweep: %w", err)
	}
	var calls []call
	for k, cmd := range due {
		users := cmd.Val()
		if len(users) == 0 {
			continue
		}
		keys := make([]string, 0, len(users)+1)
		args := make([]any, len(users))
		keys = append(keys, p.indexKey(k))
		for i, u := range users {
			keys = append(keys, p.userKey(u))
			args[i] = u
		}
		calls = append(calls, call{keys: keys, args: args})
	}
	cmds, err := p.evalAll(ctx, sweepScript, calls)
	var gone []string
	for _, c := range cmds {
		users, cerr := c.StringSlice()
		if cerr == nil {
			gone = append(gone, users...)
		}
	}
	if err != nil {
		return gone, fmt.Errorf("presence sweep: %w", err)
	}
	return gone, nil
}

// call is one run of a script.
type call struct {
	keys []string
	args []any
}

// evalAll runs s once per call in one pipeline, loading the script first
// if Redis does not have it (it forgets scripts when it restarts).
func (p *Redis) evalAll(ctx context.Context, s *redis.Script, calls []call) ([]*redis.Cmd, error) {
	if len(calls) == 0 {
		return nil, nil
	}
	for loaded := false; ; loaded = true {
		pipe := p.client.Pipeline()
		cmds := make([]*redis.Cmd, len(calls))
		for i, c := range calls {
			cmds[i] = s.EvalSha(ctx, pipe, c.keys, c.args...)
		}
		_, err := pipe.Exec(ctx)
		if err == nil || loaded || !slices.ContainsFunc(cmds, func(c *redis.Cmd) bool { return redis.HasErrorPrefix(c.Err(), "NOSCRIPT") }) {
			return cmds, err
		}
		if err := s.Load(ctx, p.client).Err(); err != nil {
			return nil, err
		}
	}
}
