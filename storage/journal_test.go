package storage_test

import (
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-chat/switchboard/chat"
)

// journalRow is what the journal holds of a job.
type journalRow struct {
	payload          string
	checkAt          time.Time
	dead             bool
	lastError        *string
	runAt, createdAt time.Time
}

func (b *testBundle) journal(t *testing.T, key string) (journalRow, bool) {
	t.Helper()
	var r journalRow
	var payload []byte
	var deadAt *time.Time
	err := b.pool.QueryRow(b.ctx, `SELECT payload, check_at, dead_at, last_error, run_at, created_at FROM job_journal WHERE key = $1`, key).
		Scan(&payload, &r.checkAt, &deadAt, &r.lastError, &r.runAt, &r.createdAt)
	if err != nil {
		require.ErrorContains(t, err, "no rows")
		return r, false
	}
	r.payload, r.dead = string(payload), deadAt != nil
	return r, true
}

func dueKeys(jobs []chat.Job) []string {
	keys := make([]string, len(jobs))
	for i, j := range jobs {
		keys[i] = j.Key
	}
	sort.Strings(keys)
	return keys
}

func TestJobJournal(t *testing.T) {
	t.Parallel()
	past, later := time.Now().Add(-time.Second), time.Now().Add(time.Hour)

	t.Run("RecordedOnceWhileWaiting", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		j := chat.Job{Key: "k", Type: "t", Payload: []byte("first"), RunAt: past, CheckAt: later}
		require.NoError(t, b.store.RecordJobs(b.ctx, []chat.Job{j, {Key: "k", Type: "t", Payload: []byte("same batch")}}))
		j.Payload = []byte("again")
		require.NoError(t, b.store.RecordJobs(b.ctx, []chat.Job{j}))
		r, ok := b.journal(t, "k")
		require.True(t, ok)
		require.Equal(t, "first", r.payload, "a waiting job is left as it is")
		require.WithinDuration(t, later, r.checkAt, time.Millisecond)
		require.NoError(t, b.store.RecordJobs(b.ctx, nil))
	})

	t.Run("DueOnceItsCheckTimeCame", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		require.NoError(t, b.store.RecordJobs(b.ctx, []chat.Job{
			{Key: "due", Type: "t", Payload: []byte("p"), RunAt: past, CheckAt: past},
			{Key: "not-yet", Type: "t", Payload: []byte("p"), RunAt: past, CheckAt: later},
		}))
		due, err := b.store.DueJobs(b.ctx, 10, time.Minute, 10*time.Minute)
		require.NoError(t, err)
		require.Len(t, due, 1)
		require.Equal(t, "due", due[0].Key)
		require.Equal(t, "t", due[0].Type)
		require.Equal(t, []byte("p"), due[0].Payload)
		require.WithinDuration(t, past, due[0].RunAt, time.Millisecond)
		require.WithinDuration(t, time.Now().Add(time.Minute), due[0].CheckAt, 5*time.Second, "next check: recheck from now")
		due, err = b.store.DueJobs(b.ctx, 10, time.Minute, 10*time.Minute)
		require.NoError(t, err)
		require.Empty(t, due, "not due again before its next check")

		// An old job is looked for as often as its age, at most maxRecheck.
		_, err = b.pool.Exec(b.ctx, `UPDATE job_journal SET created_at = now() - interval '3 minutes', check_at = now() - interval '1 second'`)
		require.NoError(t, err)
		due, err = b.store.DueJobs(b.ctx, 10, time.Minute, 10*time.Minute)
		require.NoError(t, err)
		require.Len(t, due, 2)
		for _, j := range due {
			require.WithinDuration(t, time.Now().Add(3*time.Minute), j.CheckAt, 5*time.Second)
		}
		_, err = b.pool.Exec(b.ctx, `UPDATE job_journal SET created_at = now() - interval '1 day', check_at = now() - interval '1 second'`)
		require.NoError(t, err)
		due, err = b.store.DueJobs(b.ctx, 10, time.Minute, 10*time.Minute)
		require.NoError(t, err)
		require.Len(t, due, 2)
		require.WithinDuration(t, time.Now().Add(10*time.Minute), due[0].CheckAt, 5*time.Second)
	})

	t.Run("ConcurrentSweepersShareTheWork", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		var jobs []chat.Job
		for i := range 50 {
			jobs = append(jobs, chat.Job{Key: itoa(int64(i)), Type: "t", Payload: []byte{}, RunAt: past, CheckAt: past})
		}
		require.NoError(t, b.store.RecordJobs(b.ctx, jobs))
		var mu sync.Mutex
		var got []string
		var wg sync.WaitGroup
		for range 5 {
			wg.Go(func() {
				for {
					due, err := b.store.DueJobs(b.ctx, 3, time.Minute, time.Hour)
					require.NoError(t, err)
					if len(due) == 0 {
						return
					}
					mu.Lock()
					got = append(got, dueKeys(due)...)
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		require.Len(t, got, 50, "each job to one sweeper")
		require.ElementsMatch(t, dueKeys(jobs), got)
	})

	t.Run("FinishedDoneOrDead", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		require.NoError(t, b.store.RecordJobs(b.ctx, []chat.Job{
			{Key: "ok", Type: "t", Payload: []byte("p"), RunAt: past, CheckAt: past},
			{Key: "dead", Type: "t", Payload: []byte("p"), RunAt: past, CheckAt: past},
		}))
		require.NoError(t, b.store.FinishJob(b.ctx, "ok", ""))
		require.NoError(t, b.store.FinishJob(b.ctx, "dead", "invalid number"))
		require.NoError(t, b.store.FinishJob(b.ctx, "never-recorded", ""))
		_, ok := b.journal(t, "ok")
		require.False(t, ok, "a job that ran leaves nothing")
		r, ok := b.journal(t, "dead")
		require.True(t, ok)
		require.True(t, r.dead)
		require.Equal(t, "invalid number", *r.lastError)
		due, err := b.store.DueJobs(b.ctx, 10, time.Minute, time.Hour)
		require.NoError(t, err)
		require.Empty(t, due, "a dead job is not put back")
		require.NoError(t, b.store.RecheckJobs(b.ctx))
		due, err = b.store.DueJobs(b.ctx, 10, time.Minute, time.Hour)
		require.NoError(t, err)
		require.Empty(t, due, "not even after Redis lost its data")

		// Queued again (jobs retry ID): waiting, with what it was given.
		require.NoError(t, b.store.RecordJobs(b.ctx, []chat.Job{{Key: "dead", Type: "t", Payload: []byte("again"), RunAt: past, CheckAt: later}}))
		r, ok = b.journal(t, "dead")
		require.True(t, ok)
		require.False(t, r.dead)
		require.Nil(t, r.lastError)
		require.Equal(t, "again", r.payload)
		require.WithinDuration(t, time.Now(), r.createdAt, 5*time.Second)

		// Dead records go after ForgetJobs' cutoff.
		require.NoError(t, b.store.FinishJob(b.ctx, "dead", "still failing"))
		require.NoError(t, b.store.ForgetJobs(b.ctx, time.Now().Add(-time.Hour)))
		_, ok = b.journal(t, "dead")
		require.True(t, ok)
		require.NoError(t, b.store.ForgetJobs(b.ctx, time.Now().Add(time.Second)))
		_, ok = b.journal(t, "dead")
		require.False(t, ok)
	})

	t.Run("RecheckMakesWaitingJobsDue", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		soon := time.Now().Add(2 * time.Second)
		require.NoError(t, b.store.RecordJobs(b.ctx, []chat.Job{
			{Key: "now", Type: "t", Payload: []byte("p"), RunAt: past, CheckAt: later},
			{Key: "scheduled", Type: "t", Payload: []byte("p"), RunAt: soon, CheckAt: later},
		}))
		require.NoError(t, b.store.RecheckJobs(b.ctx))
		due, err := b.store.DueJobs(b.ctx, 10, time.Minute, time.Hour)
		require.NoError(t, err)
		require.Equal(t, []string{"now"}, dueKeys(due), "a scheduled job is not due before its time")
		r, _ := b.journal(t, "scheduled")
		require.WithinDuration(t, soon, r.checkAt, time.Millisecond, "but at its time")
	})
}
