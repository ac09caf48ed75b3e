package ratelimit

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// BackoffConfig configures a Backoff; every zero duration or count means
// the SPEC §3 default for failed logins.
type BackoffConfig struct {
	// Redis holds the failure records; required.
	Redis redis.UniversalClient
	// Prefix starts every key.
	Prefix string
	// Free is how many failures in a row cost nothing. Zero means 5.
	Free int
	// Base is the wait after the Free-th failure; it doubles with each
	// further one. Zero means 1 s.
	Base time.Duration
	// Max caps the wait. Zero means 15 minutes.
	Max time.Duration
	// Forget is how long a record outlives its wait without a new failure.
	// Zero means 24 hours.
	Forget time.Duration
}

// Backoff makes attempts for a key wait longer after each failure in a
// row, across every node: after Free failures, each further attempt waits
// Base, doubling up to Max; a success forgets them. Keys are
// "<prefix>backoff:<key>".
type Backoff struct {
	client redis.UniversalClient
	prefix string
	args   []any
}

var (
	//go:embed backoff_check.lua
	backoffCheckSource string
	backoffCheck       = redis.NewScript(backoffCheckSource)
	//go:embed backoff_fail.lua
	backoffFailSource string
	backoffFail       = redis.NewScript(backoffFailSource)
)

// NewBackoff returns a Backoff.
func NewBackoff(cfg BackoffConfig) (*Backoff, error) {
	if cfg.Redis == nil {
		return nil, errors.New("ratelimit: BackoffConfig needs Redis")
	}
	if cfg.Free == 0 {
		cfg.Free = 5
	}
	if cfg.Base == 0 {
		cfg.Base = time.Second
	}
	if cfg.Max == 0 {
		cfg.Max = 15 * time.Minute
	}
	if cfg.Forget == 0 {
		cfg.Forget = 24 * time.Hour
	}
	if cfg.Free < 0 || cfg.Base < time.Millisecond || cfg.Max < cfg.Base || cfg.Forget < 0 {
		return nil, fmt.Errorf("ratelimit: bad backoff: free %d, base %v, max %v, forget %v", cfg.Free, cfg.Base, cfg.Max, cfg.Forget)
	}
	return &Backoff{client: cfg.Redis, prefix: cfg.Prefix + "backoff:",
		args: []any{cfg.Free, cfg.Base.Milliseconds(), cfg.Max.Milliseconds(), cfg.Forget.Milliseconds()}}, nil
}

// Wait returns zero when an attempt for key may go ahead now, or how long
// it must wait. While waits apply, an attempt that goes ahead holds off the
// next ones as its own failure would, so only one at a time is checked.
func (b *Backoff) Wait(ctx context.Context, key string) (time.Duration, error) {
	ms, err := backoffCheck.Run(ctx, b.client, []string{b.prefix + key}, b.args...).Int64()
	if err != nil {
		return 0, fmt.Errorf("ratelimit: backoff: %w", err)
	}
	return time.Duration(ms) * time.Millisecond, nil
}

// Fail records a failed attempt for key and returns the failures in a row.
func (b *Backoff) Fail(ctx context.Context, key string) (int, error) {
	n, err := backoffFail.Run(ctx, b.client, []string{b.prefix + key}, b.args...).Int()
	if err != nil {
		return 0, fmt.Errorf("ratelimit: backoff: %w", err)
	}
	return n, nil
}

// Succeed forgets the failures of key.
func (b *Backoff) Succeed(ctx context.Context, key string) error {
	if err := b.client.Del(ctx, b.prefix+key).Err(); err != nil {
		return fmt.Errorf("ratelimit: backoff: %w", err)
	}
	return nil
}
