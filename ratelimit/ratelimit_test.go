package ratelimit_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/switchboard-chat/switchboard/broker/brokertest"
	"github.com/switchboard-chat/switchboard/ratelimit"
)

type testBundle struct {
	ctx    context.Context
	client redis.UniversalClient
	prefix string
}

// setup connects to the test Redis with a prefix no other test uses.
func setup(t *testing.T) *testBundle {
	t.Helper()
	client, prefix := brokertest.NewClient(t)
	return &testBundle{ctx: t.Context(), client: client, prefix: prefix}
}

func (b *testBundle) limiter(t *testing.T, limit ratelimit.Limit) *ratelimit.Redis {
	t.Helper()
	rl, err := ratelimit.New(ratelimit.Config{Redis: b.client, Prefix: b.prefix, Limit: limit})
	require.NoError(t, err)
	return rl
}

func TestNewRedisRefusesBadLimits(t *testing.T) {
	t.Parallel()
	bundle := setup(t)
	for _, l := range []ratelimit.Limit{{Rate: 0, Burst: 1}, {Rate: -1, Burst: 1}, {Rate: 1, Burst: 0}} {
		_, err := ratelimit.New(ratelimit.Config{Redis: bundle.client, Prefix: bundle.prefix, Limit: l})
		require.Error(t, err, "%+v", l)
	}
	_, err := ratelimit.New(ratelimit.Config{Redis: nil, Prefix: bundle.prefix, Limit: ratelimit.Limit{Rate: 1, Burst: 1}})
	require.Error(t, err)
}

func TestAllow(t *testing.T) {
	t.Parallel()

	t.Run("BurstThenRefused", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t)
		rl := bundle.limiter(t, ratelimit.Limit{Rate: 1, Burst: 5})
		for i := range 5 {
			res, err := rl.Allow(bundle.ctx, "user:1")
			require.NoError(t, err)
			require.True(t, res.Allowed, "request %d", i)
			require.Equal(t, 5, res.Limit)
			require.Equal(t, 4-i, res.Remaining, "request %d", i)
			require.Zero(t, res.RetryAfter)
			require.Greater(t, res.ResetAfter, time.Duration(0))
		}
		res, err := rl.Allow(bundle.ctx, "user:1")
		require.NoError(t, err)
		require.False(t, res.Allowed)
		require.Zero(t, res.Remaining)
		require.Greater(t, res.RetryAfter, 500*time.Millisecond)
		require.LessOrEqual(t, res.RetryAfter, time.Second)
		require.InDelta(t, 5*time.Second, res.ResetAfter, float64(time.Second))

		// Another key has its own budget.
		res, err = rl.Allow(bundle.ctx, "user:2")
		require.NoError(t, err)
		require.True(t, res.Allowed)
		require.Equal(t, 4, res.Remaining)
	})

	t.Run("RefillsAfterWaiting", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t)
		rl := bundle.limiter(t, ratelimit.Limit{Rate: 10, Burst: 2})
		for range 2 {
			res, err := rl.Allow(bundle.ctx, "k")
			require.NoError(t, err)
			require.True(t, res.Allowed)
		}
		res, err := rl.Allow(bundle.ctx, "k")
		require.NoError(t, err)
		require.False(t, res.Allowed)
		require.Greater(t, res.RetryAfter, time.Duration(0))

		time.Sleep(res.RetryAfter + 20*time.Millisecond)
		res, err = rl.Allow(bundle.ctx, "k")
		require.NoError(t, err)
		require.True(t, res.Allowed, "one request after RetryAfter")
		require.Zero(t, res.Remaining)

		// The key goes once the budget is full again.
		time.Sleep(res.ResetAfter + 50*time.Millisecond)
		n, err := bundle.client.Exists(bundle.ctx, bundle.prefix+"rl:k").Result()
		require.NoError(t, err)
		require.Zero(t, n)
		res, err = rl.Allow(bundle.ctx, "k")
		require.NoError(t, err)
		require.Equal(t, 1, res.Remaining, "full budget again")
	})

	t.Run("KeyHasTTL", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t)
		rl := bundle.limiter(t, ratelimit.Limit{Rate: 1, Burst: 3})
		_, err := rl.Allow(bundle.ctx, "user:9")
		require.NoError(t, err)
		ttl, err := bundle.client.PTTL(bundle.ctx, bundle.prefix+"rl:user:9").Result()
		require.NoError(t, err)
		require.Greater(t, ttl, time.Duration(0))
		require.LessOrEqual(t, ttl, time.Second)
	})

	// Two limiters on one prefix, as two nodes of a cluster, share one
	// budget, also when they ask at once.
	t.Run("InstancesShareBudget", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t)
		limit := ratelimit.Limit{Rate: 0.5, Burst: 10}
		nodes := []*ratelimit.Redis{bundle.limiter(t, limit), bundle.limiter(t, limit)}
		var (
			wg      sync.WaitGroup
			mu      sync.Mutex
			allowed int
		)
		for i := range 30 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				res, err := nodes[i%2].Allow(bundle.ctx, "user:shared")
				require.NoError(t, err)
				if res.Allowed {
					mu.Lock()
					allowed++
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		require.Equal(t, 10, allowed)

		// A third limiter with another prefix is another cluster.
		other, err := ratelimit.New(ratelimit.Config{Redis: bundle.client, Prefix: brokertest.Prefix(), Limit: limit})
		require.NoError(t, err)
		res, err := other.Allow(bundle.ctx, "user:shared")
		require.NoError(t, err)
		require.True(t, res.Allowed)
	})

	t.Run("RedisDown", func(t *testing.T) {
		t.Parallel()
		client := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1})
		t.Cleanup(func() { _ = client.Close() })
		rl, err := ratelimit.New(ratelimit.Config{Redis: client, Prefix: brokertest.Prefix(), Limit: ratelimit.Limit{Rate: 1, Burst: 1}})
		require.NoError(t, err)
		_, err = rl.Allow(t.Context(), "k")
		require.Error(t, err)
	})
}
