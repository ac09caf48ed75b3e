// Package denylist is the Redis auth.Denylist: the sessions that ended
// (logout, logout-all, a password change), seen by every node. It is its
// own package, apart from ratelimit, because it does a different job and
// only shares Redis with it; and it keeps the Redis client out of auth.
//
// Keys: "<prefix>ended:<session id>", set with a TTL that lasts until the
// session's last access token has expired, plus Skew, so that Redis forgets
// a session only once every node refuses its tokens as expired.
package denylist

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Skew is how long a key outlives its tokens, for nodes whose clocks run
// behind the one that ended the session.
const Skew = time.Minute

// Redis is a denylist in Redis, shared by every node with the same server
// and prefix. It is safe for concurrent use.
type Redis struct {
	client redis.UniversalClient
	prefix string
	now    func() time.Time
}

// Config configures a denylist.
type Config struct {
	// Redis holds the ended sessions; required.
	Redis redis.UniversalClient
	// Prefix starts every key.
	Prefix string
}

// New returns a denylist.
func New(cfg Config) (*Redis, error) {
	if cfg.Redis == nil {
		return nil, errors.New("denylist: Config needs Redis")
	}
	return &Redis{client: cfg.Redis, prefix: cfg.Prefix, now: time.Now}, nil
}

// Key is the Redis key that exists while session sessionID is ended, for
// readers that check it together with other keys in one round trip.
func (d *Redis) Key(sessionID string) string { return d.prefix + "ended:" + sessionID }

// EndSessions refuses the sessions until until (plus Skew): the moment
// their last access token expires. Ending a session twice is not an error.
func (d *Redis) EndSessions(ctx context.Context, until time.Time, sessionIDs ...string) error {
	ttl := until.Sub(d.now()) + Skew
	if ttl <= 0 || len(sessionIDs) == 0 {
		return nil
	}
	// Whole seconds, rounded up so the entry never ends early: go-redis
	// then sends SET ... EX.
	ttl = ttl.Truncate(time.Second) + time.Second
	_, err := d.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, id := range sessionIDs {
			p.Set(ctx, d.Key(id), "1", ttl)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("denylist: end sessions: %w", err)
	}
	return nil
}

// Ended returns those of sessionIDs that ended and have not expired yet, in
// one round trip.
func (d *Redis) Ended(ctx context.Context, sessionIDs ...string) ([]string, error) {
	if len(sessionIDs) == 0 {
		return nil, nil
	}
	cmds := make([]*redis.IntCmd, len(sessionIDs))
	_, err := d.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range sessionIDs {
			cmds[i] = p.Exists(ctx, d.Key(id))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("denylist: ended: %w", err)
	}
	var ended []string
	for i, c := range cmds {
		if c.Val() > 0 {
			ended = append(ended, sessionIDs[i])
		}
	}
	return ended, nil
}
