package jobs_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/switchboard-chat/switchboard/broker/brokertest"
	"github.com/switchboard-chat/switchboard/integrations/jobs"
)

var (
	flaky = jobs.Kind{Type: "test:flaky", Queue: "a", MaxAttempts: 3}
	other = jobs.Kind{Type: "test:other", Queue: "b", MaxAttempts: 2}
)

type fixture struct {
	q      *jobs.Queue
	reg    *prometheus.Registry
	rdb    redis.UniversalClient
	prefix string
}

// metric reads the value of one series the queue registered, 0 when it
// has not been written yet.
func (f *fixture) metric(t *testing.T, name string, labels ...string) float64 {
	t.Helper()
	families, err := f.reg.Gather()
	require.NoError(t, err)
	for _, mf := range families {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			for i, l := range m.GetLabel() {
				if 2*i+1 >= len(labels) || l.GetName() != labels[2*i] || l.GetValue() != labels[2*i+1] {
					continue series
				}
			}
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return 0
}

// newQueue returns a queue with fast retries on its own prefix; its queues
// are deleted when t ends.
func newQueue(t *testing.T, tune func(*jobs.Config)) *fixture {
	t.Helper()
	rdb := brokertest.Current().Client()
	reg := prometheus.NewRegistry()
	cfg := jobs.Config{
		Redis: rdb, Prefix: brokertest.Prefix(), Kinds: []jobs.Kind{flaky, other}, Registerer: reg,
		RetryBase: 20 * time.Millisecond, RetryMax: 100 * time.Millisecond, PollInterval: 50 * time.Millisecond,
		BreakerTimeout: 300 * time.Millisecond,
	}
	if tune != nil {
		tune(&cfg)
	}
	q, err := jobs.New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() {
		in := asynq.NewInspectorFromRedisClient(rdb)
		for _, name := range q.Queues() {
			_ = in.DeleteQueue(name, true)
		}
		// DeleteQueue leaves completed tasks and counters behind.
		_ = brokertest.DeleteKeys(context.Background(), rdb, "asynq:{"+cfg.Prefix+"*")
		rdb.Del(context.Background(), cfg.Prefix+"breakers")
		rdb.Close()
	})
	return &fixture{q: q, reg: reg, rdb: rdb, prefix: cfg.Prefix}
}

// work runs handlers until t ends.
func (f *fixture) work(t *testing.T, handlers map[string]jobs.Handler) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- f.q.Work(ctx, handlers) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
}

// runs records each payload a handler saw, and fails the first failures runs.
type runs struct {
	mu       sync.Mutex
	seen     []string
	failures int
	err      error
}

func (r *runs) handle(ctx context.Context, payload []byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seen = append(r.seen, string(payload))
	if len(r.seen) <= r.failures {
		return fmt.Errorf("attempt %d: %w", len(r.seen), r.err)
	}
	return nil
}

func (r *runs) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.seen)
}

func TestRetriesWithBackoffThenSucceeds(t *testing.T) {
	t.Parallel()
	f := newQueue(t, nil)
	r := &runs{failures: 2, err: errors.New("500 from the API")}
	f.work(t, map[string]jobs.Handler{flaky.Type: r.handle})
	require.NoError(t, f.q.Enqueue(t.Context(), flaky.Type, "k1", []byte("p")))
	require.Eventually(t, func() bool { return r.count() == 3 }, 10*time.Second, 20*time.Millisecond)
	require.Eventually(t, func() bool {
		return f.metric(t, "switchboard_jobs_runs_total", "outcome", "succeeded", "type", flaky.Type) == 1
	}, 5*time.Second, 20*time.Millisecond)
	require.Equal(t, 2.0, f.metric(t, "switchboard_jobs_runs_total", "outcome", "retried", "type", flaky.Type))
	require.Equal(t, 1.0, f.metric(t, "switchboard_jobs_enqueued_total", "type", flaky.Type))
	time.Sleep(200 * time.Millisecond)
	require.Equal(t, 3, r.count(), "no run after the success")
	dead, err := f.q.Dead(t.Context())
	require.NoError(t, err)
	require.Empty(t, dead)
}

func TestDeadAfterLastAttemptAndRetry(t *testing.T) {
	t.Parallel()
	f := newQueue(t, nil)
	r := &runs{failures: 3, err: errors.New("still failing")}
	f.work(t, map[string]jobs.Handler{flaky.Type: r.handle})
	require.NoError(t, f.q.Enqueue(t.Context(), flaky.Type, "k-dead", []byte("payload")))

	var dead []jobs.DeadJob
	require.Eventually(t, func() bool {
		var err error
		dead, err = f.q.Dead(t.Context())
		return err == nil && len(dead) == 1
	}, 10*time.Second, 20*time.Millisecond)
	require.Equal(t, 3, r.count(), "MaxAttempts runs, no more")
	require.Equal(t, "k-dead", dead[0].ID)
	require.Equal(t, flaky.Type, dead[0].Type)
	require.Equal(t, 3, dead[0].Attempts)
	require.Contains(t, dead[0].LastError, "attempt 3: still failing")
	require.Equal(t, "payload", dead[0].Payload)
	require.Equal(t, 1.0, f.metric(t, "switchboard_jobs_runs_total", "outcome", "dead", "type", flaky.Type))
	stats, err := f.q.Stats(t.Context())
	require.NoError(t, err)
	require.Equal(t, 1, stats[0].Dead)

	require.ErrorIs(t, f.q.Retry(t.Context(), "no-such-id"), jobs.ErrNoSuchJob)
	require.NoError(t, f.q.Retry(t.Context(), "k-dead"))
	require.Eventually(t, func() bool { return r.count() == 4 }, 10*time.Second, 20*time.Millisecond)
	require.Eventually(t, func() bool {
		dead, err := f.q.Dead(t.Context())
		return err == nil && len(dead) == 0
	}, 5*time.Second, 20*time.Millisecond)
}

func TestPermanentErrorIsDeadAtOnce(t *testing.T) {
	t.Parallel()
	f := newQueue(t, nil)
	r := &runs{failures: 10}
	r.err = jobs.Permanent(errors.New("invalid phone number"))
	f.work(t, map[string]jobs.Handler{flaky.Type: r.handle})
	require.NoError(t, f.q.Enqueue(t.Context(), flaky.Type, "", []byte("p")))
	require.Eventually(t, func() bool {
		dead, err := f.q.Dead(t.Context())
		return err == nil && len(dead) == 1 && dead[0].Attempts == 1
	}, 10*time.Second, 20*time.Millisecond)
	dead, _ := f.q.Dead(t.Context())
	require.Contains(t, dead[0].LastError, "invalid phone number")
	require.Equal(t, 1, r.count())
}

func TestSameKeyRunsOnce(t *testing.T) {
	t.Parallel()
	f := newQueue(t, nil)
	r := &runs{}
	f.work(t, map[string]jobs.Handler{flaky.Type: r.handle})
	for range 3 {
		require.NoError(t, f.q.Enqueue(t.Context(), flaky.Type, "same", []byte("p")))
	}
	require.Eventually(t, func() bool { return r.count() == 1 }, 10*time.Second, 20*time.Millisecond)
	// After it ran, the key is still known (an outbox row relayed twice).
	require.NoError(t, f.q.Enqueue(t.Context(), flaky.Type, "same", []byte("p")))
	require.NoError(t, f.q.Enqueue(t.Context(), flaky.Type, "different", []byte("q")))
	require.Eventually(t, func() bool { return r.count() == 2 }, 10*time.Second, 20*time.Millisecond)
	time.Sleep(200 * time.Millisecond)
	require.Equal(t, []string{"p", "q"}, r.seen)
	require.Error(t, f.q.Enqueue(t.Context(), "test:unknown", "", nil))
}

func TestSlowQueueDoesNotStarveAnother(t *testing.T) {
	t.Parallel()
	f := newQueue(t, func(c *jobs.Config) { c.Concurrency = 2 })
	release := make(chan struct{})
	defer close(release)
	slow := func(ctx context.Context, _ []byte) error {
		select {
		case <-release:
		case <-ctx.Done():
		}
		return nil
	}
	fast := &runs{}
	f.work(t, map[string]jobs.Handler{flaky.Type: slow, other.Type: fast.handle})
	for i := range 10 {
		require.NoError(t, f.q.Enqueue(t.Context(), flaky.Type, fmt.Sprint("slow", i), nil))
	}
	for i := range 5 {
		require.NoError(t, f.q.Enqueue(t.Context(), other.Type, fmt.Sprint("fast", i), nil))
	}
	require.Eventually(t, func() bool { return fast.count() == 5 }, 10*time.Second, 20*time.Millisecond,
		"queue b runs while every worker of queue a is stuck")
}

func TestBreakerOpensAndTasksWaitWithoutUsingAttempts(t *testing.T) {
	t.Parallel()
	f := newQueue(t, nil)
	b := f.q.NewBreaker("fakeapi")
	var mu sync.Mutex
	apiDown, calls := true, 0
	api := func() error {
		mu.Lock()
		defer mu.Unlock()
		calls++
		if apiDown {
			return errors.New("503")
		}
		return nil
	}
	handler := func(ctx context.Context, _ []byte) error { return b.Do(api) }
	f.work(t, map[string]jobs.Handler{flaky.Type: handler})
	// Five tasks fail once each (5 consecutive failures): the breaker opens.
	for i := range 5 {
		require.NoError(t, f.q.Enqueue(t.Context(), flaky.Type, fmt.Sprint("t", i), nil))
	}
	require.Eventually(t, func() bool {
		return f.metric(t, "switchboard_circuit_breaker_state", "api", "fakeapi") == 2
	}, 10*time.Second, 10*time.Millisecond)
	states, err := f.q.Breakers(t.Context())
	require.NoError(t, err)
	require.Len(t, states, 1)
	require.Equal(t, "open", states[0].State)

	// While it is open, tasks are deferred, not failed: none goes dead
	// although each has only 3 attempts and the API stays down a while.
	require.Eventually(t, func() bool {
		return f.metric(t, "switchboard_jobs_runs_total", "outcome", "deferred", "type", flaky.Type) >= 5
	}, 10*time.Second, 10*time.Millisecond)
	time.Sleep(time.Second)
	mu.Lock()
	apiDown = false
	mu.Unlock()
	require.Eventually(t, func() bool {
		return f.metric(t, "switchboard_jobs_runs_total", "outcome", "succeeded", "type", flaky.Type) == 5
	}, 15*time.Second, 20*time.Millisecond)
	dead, err := f.q.Dead(t.Context())
	require.NoError(t, err)
	require.Empty(t, dead)
	require.Equal(t, 0.0, f.metric(t, "switchboard_circuit_breaker_state", "api", "fakeapi"), "closed again")
	mu.Lock()
	defer mu.Unlock()
	require.Less(t, calls, 5*3+5, "the open breaker kept tasks from calling the API")
}
