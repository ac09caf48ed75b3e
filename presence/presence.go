// Package presence tracks who is online across every node in Redis: a user
// is online while at least one of their connections is alive on any node.
//
// Each user has a sorted set "<prefix>presence:<user id>" of connection ids
// scored by when they expire (Unix ms, Redis's clock). A node adds an entry
// when a connection authenticates, refreshes its entries every TTL/3, and
// removes them when connections close; entries of a node that died without
// cleanup expire within TTL (60 s), so its users stop counting by then.
// Connect and Disconnect report transitions atomically (one Lua script
// each), so online/offline is announced once per transition, not once per
// connection; Connect also enforces a cap on a user's live connections
// across the cluster. "<prefix>presence-index" holds every user with connections by
// their latest expiry; Sweep finds those whose entries all expired and hands
// each to one caller, which announces them offline. The scripts build user
// keys from the prefix, so all keys must live on one Redis (no Cluster).
package presence

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Config configures a Redis presence tracker.
type Config struct {
	// Client is the Redis connection; required.
	Client redis.UniversalClient
	// Prefix starts every key. Zero value means "switchboard:".
	Prefix string
	// TTL is how long a connection counts without a refresh. Zero means 60 s.
	TTL time.Duration
}

// Redis tracks presence in Redis.
type Redis struct {
	client redis.UniversalClient
	prefix string // "<Prefix>presence:"; a user's set is prefix + user id
	index  string // "<Prefix>presence-index": users with connections, by latest expiry
	ttl    time.Duration
}

// New checks cfg and returns a tracker.
func New(cfg Config) (*Redis, error) {
	if cfg.Client == nil {
		return nil, errors.New("presence: Config needs a Client")
	}
	if cfg.Prefix == "" {
		cfg.Prefix = "switchboard:"
	}
	if cfg.TTL == 0 {
		cfg.TTL = 60 * time.Second
	}
	return &Redis{client: cfg.Client, prefix: cfg.Prefix + "presence:", index: cfg.Prefix + "presence-index", ttl: cfg.TTL}, nil
}

// TTL is how long an entry lives without a refresh; refresh well within it.
func (p *Redis) TTL() time.Duration { return p.ttl }

var (
	//go:embed connect.lua
	connectLua    string
	connectScript = redis.NewScript(connectLua)
	//go:embed disconnect.lua
	disconnectLua    string
	disconnectScript = redis.NewScript(disconnectLua)
	//go:embed sweep.lua
	sweepLua    string
	sweepScript = redis.NewScript(sweepLua)
)

// Connect records connection connID of userID, unless the user has limit
// live connections on every node together already (allowed false; limit
// below 1: no limit), and reports whether the user was offline until now.
// The connections of a node that died stop counting when they expire (TTL).
func (p *Redis) Connect(ctx context.Context, userID, connID string, limit int) (cameOnline, allowed bool, err error) {
	n, err := connectScript.Run(ctx, p.client, []string{p.prefix + userID, p.index},
		connID, p.ttl.Milliseconds(), userID, max(limit, 0)).Int()
	if err != nil {
		return false, false, fmt.Errorf("presence connect: %w", err)
	}
	return n == 1, n >= 0, nil
}

// Disconnect removes connection connID of userID and reports whether it was
// the user's last live one.
func (p *Redis) Disconnect(ctx context.Context, userID, connID string) (wentOffline bool, err error) {
	n, err := disconnectScript.Run(ctx, p.client, []string{p.prefix + userID, p.index}, connID, userID).Int()
	if err != nil {
		return false, fmt.Errorf("presence disconnect: %w", err)
	}
	return n == 1, nil
}

// Refresh extends the life of the given connections (user id → connection
// ids) by TTL, in one round trip.
func (p *Redis) Refresh(ctx context.Context, conns map[string][]string) error {
	if len(conns) == 0 {
		return nil
	}
	now, err := p.client.Time(ctx).Result()
	if err != nil {
		return fmt.Errorf("presence refresh: %w", err)
	}
	expires := float64(now.Add(p.ttl).UnixMilli())
	pipe := p.client.Pipeline()
	for user, ids := range conns {
		members := make([]redis.Z, len(ids))
		for i, id := range ids {
			members[i] = redis.Z{Score: expires, Member: id}
		}
		pipe.ZAddXX(ctx, p.prefix+user, members...)
		pipe.PExpire(ctx, p.prefix+user, p.ttl)
		pipe.ZAddGT(ctx, p.index, redis.Z{Score: expires, Member: user})
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("presence refresh: %w", err)
	}
	return nil
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
		counts[i] = pipe.ZCount(ctx, p.prefix+id, "("+from, "+inf")
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

// Sweep returns users whose connections all expired without a Disconnect
// (their node died), at most 1000 per call. Each such user is returned to
// exactly one caller on the whole cluster, which announces them offline.
func (p *Redis) Sweep(ctx context.Context) ([]string, error) {
	users, err := sweepScript.Run(ctx, p.client, []string{p.index}, p.prefix, 1000).StringSlice()
	if err != nil {
		return nil, fmt.Errorf("presence sweep: %w", err)
	}
	return users, nil
}
