package jobs

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/switchboard-chat/switchboard/chat"
)

// Journal is the durable record of the queue's jobs (SPEC §15: Redis holds
// nothing that cannot be rebuilt; storage implements it in Postgres). A job
// is recorded before it goes to Redis, and its record stays until the job
// has run: a worker deletes it when the handler succeeded, and marks it
// dead when the job used its last attempt or failed for good. The workers
// sweep it every Config.SweepInterval: a job still recorded after its check
// time (Config.JournalGrace after its run time, then less and less often)
// is added to Redis again under its key. Redis refuses the key while the
// task is there (queued, scheduled, retrying, running, dead, or done
// within the hour asynq keeps it), so that costs one round trip and adds
// nothing; a task Redis lost is added again and runs. The sweep also
// settles records whose worker could not (the task is done, or dead, in
// Redis). A job may so run twice; handlers are idempotent on their key (the
// claims of integrations), so it does not send twice.
type Journal interface {
	// RecordJobs records jobs as waiting to run; a key recorded already is
	// left as it is while its job waits, and recorded afresh if it died.
	RecordJobs(ctx context.Context, jobs []chat.Job) error
	// FinishJob records that the job key ran: its record goes (reason "")
	// or is marked dead with reason.
	FinishJob(ctx context.Context, key, reason string) error
	// DueJobs takes up to limit waiting jobs whose check time has come,
	// and moves each one's next check to recheck from now, or the job's
	// age if longer, but no more than maxRecheck. Concurrent callers get
	// different jobs.
	DueJobs(ctx context.Context, limit int, recheck, maxRecheck time.Duration) ([]chat.Job, error)
	// RecheckJobs makes every waiting job due at once (or at its run
	// time): Redis lost its data.
	RecheckJobs(ctx context.Context) error
	// ForgetJobs deletes the records of jobs that died before cutoff.
	ForgetJobs(ctx context.Context, cutoff time.Time) error
}

const (
	// sweepBatch is how many due jobs one DueJobs call takes.
	sweepBatch = 100
	// maxRecheck bounds the time between two looks for a job that waits.
	maxRecheck = 10 * time.Minute
	// deadRetention is how long the record of a dead job is kept.
	deadRetention = 30 * 24 * time.Hour
	// settleTimeout bounds recording a job's end, which runs even when the
	// job's own time is up.
	settleTimeout = 5 * time.Second
)

// sweepState is what the sweep remembers between runs.
type sweepState struct {
	epoch      string    // the value of epochKey at the last sweep
	lastForget time.Time // of dead records
}

// epochKey holds a random value that the sweeps set when it is missing: a
// value other than the one a sweep saw last, or none, means Redis lost its
// data (a restart without persistence) since.
func (q *Queue) epochKey() string { return q.cfg.Prefix + "jobs-epoch" }

// settle records in the journal that the task id ran (reason "": it
// succeeded; else it died with reason). A failure is logged: the record
// stays, and a sweep settles it later from what Redis says of the task, or
// runs the task again if Redis lost it.
func (q *Queue) settle(ctx context.Context, id, reason string) {
	if q.cfg.Journal == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), settleTimeout)
	defer cancel()
	if err := q.cfg.Journal.FinishJob(ctx, id, reason); err != nil {
		q.log.WarnContext(ctx, "job ran but its journal record could not be settled; a sweep will",
			slog.String("id", id), slog.Any("error", err))
	}
}

// sweepLoop sweeps the journal until ctx ends.
func (q *Queue) sweepLoop(ctx context.Context) {
	t := time.NewTicker(q.cfg.SweepInterval)
	defer t.Stop()
	for {
		q.sweepOnce(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// sweepOnce puts back in Redis the due jobs of the journal it lost, and
// settles the records of jobs Redis says ran.
func (q *Queue) sweepOnce(ctx context.Context) {
	running := q.sweep.epoch != ""
	lost, err := q.redisLost(ctx)
	if err != nil {
		q.log.WarnContext(ctx, "job journal sweep: Redis unreachable", slog.Any("error", err))
		return
	}
	if lost {
		level := slog.LevelInfo // at start: a new Redis, or one that lost its data
		if running {
			level = slog.LevelWarn
		}
		q.log.Log(ctx, level, "Redis lost the job queue: looking for every job of the journal")
		// A fresh client registers the queue names again with its tasks.
		q.client.Store(asynq.NewClientFromRedisClient(q.cfg.Redis))
		if err := q.cfg.Journal.RecheckJobs(ctx); err != nil {
			q.log.WarnContext(ctx, "job journal sweep", slog.Any("error", err))
			q.sweep.epoch = "" // try again next time
			return
		}
	}
	for {
		due, err := q.cfg.Journal.DueJobs(ctx, sweepBatch, q.cfg.JournalGrace, maxRecheck)
		if err != nil {
			q.log.WarnContext(ctx, "job journal sweep", slog.Any("error", err))
			return
		}
		for _, j := range due {
			if err := q.restore(ctx, j); err != nil {
				q.log.WarnContext(ctx, "job journal sweep", slog.Any("error", err))
				return // Redis went away; the rest come back at their next check
			}
		}
		if len(due) < sweepBatch {
			break
		}
	}
	if time.Since(q.sweep.lastForget) > time.Hour {
		if err := q.cfg.Journal.ForgetJobs(ctx, time.Now().Add(-deadRetention)); err == nil {
			q.sweep.lastForget = time.Now()
		}
	}
}

// redisLost reports whether Redis lost its data since the last call (or, on
// the first, whether it holds no epoch: a new Redis, or one that lost it).
func (q *Queue) redisLost(ctx context.Context) (bool, error) {
	created, err := q.cfg.Redis.SetNX(ctx, q.epochKey(), randomID(), 0).Result()
	if err != nil {
		return false, err
	}
	epoch, err := q.cfg.Redis.Get(ctx, q.epochKey()).Result()
	if errors.Is(err, redis.Nil) {
		q.sweep.epoch = ""
		return true, nil // lost again since the SETNX
	}
	if err != nil {
		return false, err
	}
	lost := created || (q.sweep.epoch != "" && epoch != q.sweep.epoch)
	q.sweep.epoch = epoch
	return lost, nil
}

// restore adds the recorded job j to Redis unless Redis holds its task,
// and settles the record if that task ran. It returns only Redis failures.
func (q *Queue) restore(ctx context.Context, j chat.Job) error {
	k, ok := q.kinds[j.Type]
	if !ok {
		q.log.WarnContext(ctx, "job journal: a job of an unknown type", slog.String("type", j.Type), slog.String("id", j.Key))
		return nil
	}
	added, err := q.push(ctx, j)
	if err != nil {
		return err
	}
	if added {
		q.metrics.restored(j.Type)
		q.log.InfoContext(ctx, "job put back in the queue from the journal", slog.String("type", j.Type), slog.String("id", j.Key))
		return nil
	}
	info, err := q.inspector.GetTaskInfo(q.queueName(k.Queue), j.Key)
	if errors.Is(err, asynq.ErrQueueNotFound) || errors.Is(err, asynq.ErrTaskNotFound) {
		return nil // gone since the push: the next check adds it
	}
	if err != nil {
		return err
	}
	switch info.State {
	case asynq.TaskStateCompleted:
		q.settle(ctx, j.Key, "")
	case asynq.TaskStateArchived:
		q.settle(ctx, j.Key, info.LastErr)
	}
	return nil
}
