// Package denylist is the Redis auth.Denylist: the ids of access tokens
// revoked by logout, seen by every node. It is its own package, apart from
// ratelimit, because it does a different job and only shares Redis with it;
// and it keeps the Redis client out of auth.
//
// Keys: "<prefix>revoked:<jti>", set with a TTL equal to the token's
// remaining life plus Skew, so that Redis forgets a token only once every
// node refuses it as expired.
package denylist

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Skew is how long a key outlives its token, for nodes whose clocks run
// behind the one that revoked it.
const Skew = time.Minute

// Redis is a denylist in Redis, shared by every node with the same server
// and prefix. It is safe for concurrent use.
type Redis struct {
	client *redis.Client
	prefix string
	now    func() time.Time
}

// NewRedis returns a denylist with keys under prefix.
func NewRedis(client *redis.Client, prefix string) (*Redis, error) {
	if client == nil {
		return nil, errors.New("denylist: no Redis client")
	}
	return &Redis{client: client, prefix: prefix, now: time.Now}, nil
}

// Key is the Redis key that exists while jti is revoked, for readers that
// check it together with other keys in one round trip.
func (d *Redis) Key(jti string) string { return d.prefix + "revoked:" + jti }

// Revoke refuses jti until expires (plus Skew). Revoking twice is not an
// error; a token already expired for longer than Skew needs no entry.
func (d *Redis) Revoke(ctx context.Context, jti string, expires time.Time) error {
	ttl := expires.Sub(d.now()) + Skew
	if ttl <= 0 {
		return nil
	}
	// Whole seconds, rounded up so the entry never ends early: go-redis
	// then sends SET ... EX.
	ttl = ttl.Truncate(time.Second) + time.Second
	if err := d.client.Set(ctx, d.Key(jti), "1", ttl).Err(); err != nil {
		return fmt.Errorf("denylist: revoke: %w", err)
	}
	return nil
}

// IsRevoked reports whether jti was revoked and has not expired yet.
func (d *Redis) IsRevoked(ctx context.Context, jti string) (bool, error) {
	n, err := d.client.Exists(ctx, d.Key(jti)).Result()
	if err != nil {
		return false, fmt.Errorf("denylist: is revoked: %w", err)
	}
	return n > 0, nil
}
