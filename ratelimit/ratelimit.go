// Package ratelimit limits request rates across every node of a cluster
// with the GCRA algorithm run atomically in Redis. It is its own package so
// that the Redis client stays out of web, which only sees an interface.
//
// Keys: "<prefix>rl:<key>", holding the theoretical arrival time of the next
// request; each expires once its budget is full again, so idle keys cost
// nothing.
//
// Each Allow is one EVALSHA of an embedded Lua script that reads Redis's own
// clock (TIME), so nodes whose clocks disagree still share one budget.
package ratelimit

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard-chat/switchboard/chat"
)

// Limit is a sustained rate with a burst.
type Limit struct {
	// Rate is the sustained number of requests per second; it must be
	// positive.
	Rate float64
	// Burst is how many requests a full budget allows at once; at least 1.
	Burst int
}

//go:embed gcra.lua
var gcraSource string

var gcraScript = redis.NewScript(gcraSource)

// Redis is a rate limiter whose state lives in Redis, shared by every
// limiter with the same client server and prefix. It is safe for
// concurrent use.
type Redis struct {
	client redis.UniversalClient
	prefix string
	limit  Limit
}

// Config configures a rate limiter.
type Config struct {
	// Redis holds the budgets; required.
	Redis redis.UniversalClient
	// Prefix starts every key.
	Prefix string
	// Limit is what each key is allowed.
	Limit Limit
}

// New returns a limiter allowing cfg.Limit per key. It fails if the
// limit's Rate is not positive or its Burst is below 1.
func New(cfg Config) (*Redis, error) {
	limit := cfg.Limit
	if cfg.Redis == nil {
		return nil, errors.New("ratelimit: Config needs Redis")
	}
	if !(limit.Rate > 0) || math.IsInf(limit.Rate, 0) || limit.Burst < 1 {
		return nil, fmt.Errorf("ratelimit: limit needs a positive rate and a burst of at least 1, got %v/s burst %d", limit.Rate, limit.Burst)
	}
	return &Redis{client: cfg.Redis, prefix: cfg.Prefix, limit: limit}, nil
}

// Limit returns the limit r applies.
func (r *Redis) Limit() Limit { return r.limit }

// Allow counts one request for key if its budget allows it. An error means
// Redis could not answer; the result is then zero and the caller chooses
// whether to fail open.
func (r *Redis) Allow(ctx context.Context, key string) (chat.LimitResult, error) {
	interval := strconv.FormatFloat(1/r.limit.Rate, 'g', -1, 64)
	v, err := gcraScript.Run(ctx, r.client, []string{r.prefix + "rl:" + key}, interval, r.limit.Burst).Slice()
	if err != nil {
		return chat.LimitResult{}, fmt.Errorf("ratelimit: %w", err)
	}
	if len(v) != 4 {
		return chat.LimitResult{}, fmt.Errorf("ratelimit: script returned %d values", len(v))
	}
	allowed, _ := v[0].(int64)
	remaining, _ := v[1].(int64)
	retry, err1 := seconds(v[2])
	reset, err2 := seconds(v[3])
	if err := errors.Join(err1, err2); err != nil {
		return chat.LimitResult{}, fmt.Errorf("ratelimit: %w", err)
	}
	return chat.LimitResult{
		Allowed:    allowed == 1,
		Limit:      r.limit.Burst,
		Remaining:  int(remaining),
		RetryAfter: retry,
		ResetAfter: reset,
	}, nil
}

// seconds parses a script's string number of seconds.
func seconds(v any) (time.Duration, error) {
	s, ok := v.(string)
	if !ok {
		return 0, fmt.Errorf("script returned %T, not a string", v)
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, err
	}
	return time.Duration(f * float64(time.Second)), nil
}
