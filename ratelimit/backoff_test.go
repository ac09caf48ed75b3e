package ratelimit_test

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-chat/switchboard/ratelimit"
)

func TestBackoff(t *testing.T) {
	t.Parallel()

	newBackoff := func(t *testing.T, cfg ratelimit.BackoffConfig) (*ratelimit.Backoff, *testBundle) {
		bundle := setup(t)
		cfg.Redis, cfg.Prefix = bundle.client, bundle.prefix
		b, err := ratelimit.NewBackoff(cfg)
		require.NoError(t, err)
		return b, bundle
	}

	t.Run("FreeFailuresThenDoublingWaits", func(t *testing.T) {
		t.Parallel()
		b, bundle := newBackoff(t, ratelimit.BackoffConfig{Base: 200 * time.Millisecond, Max: 800 * time.Millisecond})
		for i := 1; i <= 4; i++ {
			wait, err := b.Wait(bundle.ctx, "alice")
			require.NoError(t, err)
			require.Zero(t, wait, "attempt %d", i)
			n, err := b.Fail(bundle.ctx, "alice")
			require.NoError(t, err)
			require.Equal(t, i, n)
		}
		// The fifth failure starts the waits: 200 ms, then 400, then 800
		// (the cap), then 800 again.
		_, err := b.Fail(bundle.ctx, "alice")
		require.NoError(t, err)
		for _, want := range []time.Duration{200, 400, 800, 800} {
			want *= time.Millisecond
			wait, err := b.Wait(bundle.ctx, "alice")
			require.NoError(t, err)
			require.InDelta(t, want, wait, float64(50*time.Millisecond))
			wait2, err := b.Wait(bundle.ctx, "alice")
			require.NoError(t, err)
			require.Greater(t, wait2, time.Duration(0), "refused again while waiting")
			time.Sleep(wait + 20*time.Millisecond)
			wait, err = b.Wait(bundle.ctx, "alice")
			require.NoError(t, err)
			require.Zero(t, wait, "the wait is over")
			_, err = b.Fail(bundle.ctx, "alice")
			require.NoError(t, err)
		}
		// Other names are untouched.
		wait, err := b.Wait(bundle.ctx, "bob")
		require.NoError(t, err)
		require.Zero(t, wait)
	})

	t.Run("SuccessForgets", func(t *testing.T) {
		t.Parallel()
		b, bundle := newBackoff(t, ratelimit.BackoffConfig{Base: time.Minute})
		for range 5 {
			_, err := b.Fail(bundle.ctx, "alice")
			require.NoError(t, err)
		}
		wait, err := b.Wait(bundle.ctx, "alice")
		require.NoError(t, err)
		require.Greater(t, wait, 50*time.Second)
		require.NoError(t, b.Succeed(bundle.ctx, "alice"))
		wait, err = b.Wait(bundle.ctx, "alice")
		require.NoError(t, err)
		require.Zero(t, wait)
		n, err := b.Fail(bundle.ctx, "alice")
		require.NoError(t, err)
		require.Equal(t, 1, n, "counting starts again")
	})

	t.Run("ConcurrentAttemptsAfterTheFreeOnes", func(t *testing.T) {
		t.Parallel()
		b, bundle := newBackoff(t, ratelimit.BackoffConfig{Base: 50 * time.Millisecond})
		for range 5 {
			_, err := b.Fail(bundle.ctx, "alice")
			require.NoError(t, err)
		}
		time.Sleep(70 * time.Millisecond)
		// 40 attempts at once: one goes ahead, the rest wait for its outcome.
		var allowed atomic.Int32
		var wg sync.WaitGroup
		for range 40 {
			wg.Go(func() {
				wait, err := b.Wait(bundle.ctx, "alice")
				if err == nil && wait == 0 {
					allowed.Add(1)
				}
			})
		}
		wg.Wait()
		require.EqualValues(t, 1, allowed.Load())
	})

	t.Run("RecordExpires", func(t *testing.T) {
		t.Parallel()
		b, bundle := newBackoff(t, ratelimit.BackoffConfig{Base: time.Second, Forget: time.Hour})
		_, err := b.Fail(bundle.ctx, "alice")
		require.NoError(t, err)
		ttl, err := bundle.client.PTTL(bundle.ctx, bundle.prefix+"backoff:alice").Result()
		require.NoError(t, err)
		require.Greater(t, ttl, 59*time.Minute)
		require.LessOrEqual(t, ttl, time.Hour)
	})

	t.Run("BadConfig", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t)
		_, err := ratelimit.NewBackoff(ratelimit.BackoffConfig{Redis: bundle.client, Prefix: bundle.prefix, Base: time.Minute, Max: time.Second})
		require.Error(t, err)
		_, err = ratelimit.NewBackoff(ratelimit.BackoffConfig{Redis: nil, Prefix: bundle.prefix})
		require.Error(t, err)
	})
}
