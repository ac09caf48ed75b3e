package jobs_test

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"

	"github.com/switchboard-chat/switchboard/broker/brokertest"
	"github.com/switchboard-chat/switchboard/chat"
	"github.com/switchboard-chat/switchboard/integrations/jobs"
)

// memJournal is a jobs.Journal in memory; storage's is tested in storage.
type memJournal struct {
	mu         sync.Mutex
	jobs       map[string]*memJob
	finishErrs int // the next FinishJob calls that fail
}

type memJob struct {
	chat.Job
	created time.Time
	dead    string // last error, once dead
}

var _ jobs.Journal = (*memJournal)(nil)

func newMemJournal() *memJournal { return &memJournal{jobs: map[string]*memJob{}} }

func (m *memJournal) RecordJobs(_ context.Context, js []chat.Job) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, j := range js {
		if old := m.jobs[j.Key]; old == nil || old.dead != "" {
			m.jobs[j.Key] = &memJob{Job: j, created: time.Now()}
		}
	}
	return nil
}

func (m *memJournal) FinishJob(_ context.Context, key, reason string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.finishErrs > 0 {
		m.finishErrs--
		return errors.New("postgres unreachable")
	}
	if reason == "" {
		delete(m.jobs, key)
	} else if j := m.jobs[key]; j != nil {
		j.dead = reason
	}
	return nil
}

func (m *memJournal) DueJobs(_ context.Context, limit int, recheck, maxRecheck time.Duration) ([]chat.Job, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := time.Now()
	var due []chat.Job
	for _, j := range m.jobs {
		if j.dead == "" && !j.CheckAt.After(now) && len(due) < limit {
			j.CheckAt = now.Add(min(max(recheck, now.Sub(j.created)), maxRecheck))
			due = append(due, j.Job)
		}
	}
	return due, nil
}

func (m *memJournal) RecheckJobs(context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, j := range m.jobs {
		at := time.Now()
		if j.RunAt.After(at) {
			at = j.RunAt
		}
		if j.dead == "" && j.CheckAt.After(at) {
			j.CheckAt = at
		}
	}
	return nil
}

func (m *memJournal) ForgetJobs(context.Context, time.Time) error { return nil }

// waiting lists the keys of the jobs recorded and not finished.
func (m *memJournal) waiting() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var keys []string
	for k, j := range m.jobs {
		if j.dead == "" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	return keys
}

func (m *memJournal) has(key string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.jobs[key] != nil
}

func (m *memJournal) deadReason(key string) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if j := m.jobs[key]; j != nil {
		return j.dead
	}
	return ""
}

// journaled is a queue on a memJournal that sweeps it often.
func journaled(t *testing.T, tune func(*jobs.Config)) (*fixture, *memJournal) {
	t.Helper()
	j := newMemJournal()
	f := newQueue(t, func(c *jobs.Config) {
		c.Journal, c.JournalGrace, c.SweepInterval = j, 100*time.Millisecond, 50*time.Millisecond
		if tune != nil {
			tune(c)
		}
	})
	t.Cleanup(func() { f.rdb.Del(context.Background(), f.prefix+"jobs-epoch") })
	return f, j
}

// loseRedis deletes what Redis holds of the queue, as a restart without
// persistence would.
func (f *fixture) loseRedis(t *testing.T) {
	t.Helper()
	require.NoError(t, brokertest.DeleteKeys(t.Context(), f.rdb, "asynq:{"+f.prefix+"*"))
	require.NoError(t, f.rdb.Del(t.Context(), f.prefix+"jobs-epoch").Err())
}

// counter counts runs per payload.
type counter struct {
	mu   sync.Mutex
	runs map[string]int
}

func (c *counter) handle(_ context.Context, payload []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.runs == nil {
		c.runs = map[string]int{}
	}
	c.runs[string(payload)]++
	return nil
}

func (c *counter) get() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]int, len(c.runs))
	for k, v := range c.runs {
		out[k] = v
	}
	return out
}

// TestJournalKeepsJobsUntilTheyRan: a job is recorded before it reaches
// Redis, and its record goes once it ran, or stays, dead, once it died; a
// retried dead job waits again.
func TestJournalKeepsJobsUntilTheyRan(t *testing.T) {
	t.Parallel()
	f, j := journaled(t, nil)
	require.NoError(t, f.q.Enqueue(t.Context(), flaky.Type, "ok", []byte("p")))
	require.NoError(t, f.q.Enqueue(t.Context(), flaky.Type, "bad", []byte("p")))
	require.Equal(t, []string{"bad", "ok"}, j.waiting(), "recorded before anything ran")

	var mu sync.Mutex
	fail := true
	f.work(t, map[string]jobs.Handler{flaky.Type: func(ctx context.Context, _ []byte) error {
		mu.Lock()
		defer mu.Unlock()
		if id, _ := asynq.GetTaskID(ctx); id == "bad" && fail {
			return jobs.Permanent(errors.New("invalid number"))
		}
		return nil
	}})
	require.Eventually(t, func() bool { return len(j.waiting()) == 0 }, 10*time.Second, 20*time.Millisecond)
	require.Contains(t, j.deadReason("bad"), "invalid number")

	mu.Lock()
	fail = false
	mu.Unlock()
	require.NoError(t, f.q.Retry(t.Context(), "bad"))
	require.Eventually(t, func() bool { return !j.has("bad") }, 10*time.Second, 20*time.Millisecond,
		"the retried job ran and its record went")
}

// TestJournalPutsBackWhatRedisLost: jobs queued (now, and one scheduled),
// then Redis loses everything before any ran: the workers' sweep puts each
// back, each runs once, the scheduled one not before its time.
func TestJournalPutsBackWhatRedisLost(t *testing.T) {
	t.Parallel()
	f, j := journaled(t, func(c *jobs.Config) { c.JournalGrace = 10 * time.Second })
	const n = 20
	for i := range n {
		require.NoError(t, f.q.Enqueue(t.Context(), flaky.Type, fmt.Sprint("k", i), []byte(fmt.Sprint("job ", i))))
	}
	at := time.Now().Add(1500 * time.Millisecond)
	require.NoError(t, f.q.EnqueueAt(t.Context(), other.Type, "later", []byte("scheduled"), at))
	f.loseRedis(t)

	c := &counter{}
	ranAt := make(chan time.Time, 1)
	start := time.Now()
	f.work(t, map[string]jobs.Handler{flaky.Type: c.handle, other.Type: func(ctx context.Context, p []byte) error {
		ranAt <- time.Now()
		return c.handle(ctx, p)
	}})
	// Well before their grace of 10 s: the sweep saw that Redis lost its
	// data (the epoch key is gone) and looked for every job at once.
	require.Eventually(t, func() bool { return len(c.get()) == n+1 }, 5*time.Second, 20*time.Millisecond)
	t.Logf("%d lost jobs ran within %s of the workers starting", n+1, time.Since(start))
	require.False(t, (<-ranAt).Before(at), "the scheduled job ran before its time")
	time.Sleep(300 * time.Millisecond) // further sweeps add nothing
	for k, v := range c.get() {
		require.Equal(t, 1, v, "%s ran %d times", k, v)
	}
	require.Empty(t, j.waiting())
	require.Equal(t, float64(n+1), f.metric(t, "switchboard_jobs_restored_total", "type", flaky.Type)+
		f.metric(t, "switchboard_jobs_restored_total", "type", other.Type))
}

// TestJournalSettlesWhatWorkersCouldNot: a job ran but its record could not
// be settled (Postgres down at that moment): the sweep finds the task done
// in Redis and settles it without a second run; a task in asynq's retry
// set for long is not added twice however often it is looked for.
func TestJournalSettlesWhatWorkersCouldNot(t *testing.T) {
	t.Parallel()
	f, j := journaled(t, func(c *jobs.Config) {
		c.RetryBase, c.RetryMax = 1500*time.Millisecond, 1500*time.Millisecond
		c.JournalGrace = 10 * time.Millisecond
	})
	j.finishErrs = 1
	c := &counter{}
	var mu sync.Mutex
	failed := false
	f.work(t, map[string]jobs.Handler{
		flaky.Type: c.handle,
		other.Type: func(ctx context.Context, p []byte) error {
			mu.Lock()
			first := !failed
			failed = true
			mu.Unlock()
			if first {
				return errors.New("503") // a retry in 1.5 s
			}
			return c.handle(ctx, p)
		},
	})
	require.NoError(t, f.q.Enqueue(t.Context(), flaky.Type, "unsettled", []byte("a")))
	require.Eventually(t, func() bool { return len(j.waiting()) == 0 }, 10*time.Second, 20*time.Millisecond,
		"the sweep settled it")
	require.Equal(t, map[string]int{"a": 1}, c.get(), "without running it again")

	require.NoError(t, f.q.Enqueue(t.Context(), other.Type, "retrying", []byte("b")))
	require.Eventually(t, func() bool { return c.get()["b"] == 1 }, 10*time.Second, 20*time.Millisecond)
	require.Eventually(t, func() bool { return len(j.waiting()) == 0 }, 5*time.Second, 20*time.Millisecond)
	time.Sleep(300 * time.Millisecond)
	require.Equal(t, 1, c.get()["b"], "sweeps meanwhile added no second task")
	require.Zero(t, f.metric(t, "switchboard_jobs_restored_total", "type", other.Type))
}
