// Package jobs is Switchboard's job queue (SPEC §10): slow work such as SMS
// and Slack posts runs as tasks in Redis through asynq.
//
// asynq gives what the spec asks of a queue: retries with a delay we choose
// (exponential backoff with jitter here), a maximum number of attempts, a
// dead-letter set (asynq's "archived" tasks, listed by Dead and re-queued by
// Retry), leases so that a task whose worker died is run again, and task ids
// that make an enqueue idempotent. Each queue gets its own worker pool, so a
// slow Slack API cannot hold the workers that send SMS.
//
// Redis holds nothing that cannot be rebuilt (SPEC §15): with a Journal,
// every job is recorded in Postgres before it goes to Redis and until it
// ran, and the workers put back the jobs Redis lost (see journal.go).
package jobs

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/switchboard-chat/switchboard/chat"
)

// Kind describes one type of task.
type Kind struct {
	Type        string        // task type, e.g. "sms:send"
	Queue       string        // queue (and worker pool) it runs in, e.g. "sms"
	MaxAttempts int           // runs before it goes to the dead set (at least 1)
	Timeout     time.Duration // per attempt; 0: 30 s
}

// Handler runs one task. Return nil when done, Permanent(err) when no retry
// can succeed, Wait(err, d) to come back after d without using an attempt,
// any other error to retry with backoff.
type Handler func(ctx context.Context, payload []byte) error

// Config configures a Queue.
type Config struct {
	Redis redis.UniversalClient
	// Prefix starts every queue name, so that clusters (and tests) sharing
	// one Redis keep their tasks apart.
	Prefix string
	Kinds  []Kind
	Logger *slog.Logger
	// Registerer registers the queue's metrics; nil leaves them
	// unregistered.
	Registerer prometheus.Registerer
	// RetryBase is the mean delay before the first retry (default 2 s); it
	// doubles with each attempt up to RetryMax (default 10 min).
	RetryBase, RetryMax time.Duration
	// PollInterval is how often scheduled and retrying tasks are made ready
	// (default 1 s).
	PollInterval time.Duration
	// BreakerTimeout is how long an open circuit breaker waits before it lets
	// a trial call through (default 30 s).
	BreakerTimeout time.Duration
	// Concurrency is the number of workers per queue (default 4).
	Concurrency int
	// Journal, if not nil, is the durable record of the jobs: every
	// enqueue records its jobs there first, and the workers settle and
	// sweep it (see Journal).
	Journal Journal
	// JournalGrace is how long after its run time a job that has not run is
	// first looked for in Redis by the sweep (default 30 s).
	JournalGrace time.Duration
	// SweepInterval is how often the workers sweep the journal (default 5 s).
	SweepInterval time.Duration
}

// Queue enqueues tasks, runs workers and answers the jobs CLI.
type Queue struct {
	cfg   Config
	kinds map[string]Kind
	// client is replaced when Redis lost its data: an asynq client
	// registers a queue name in Redis only with its first task.
	client    atomic.Pointer[asynq.Client]
	inspector *asynq.Inspector
	log       *slog.Logger
	metrics   *metrics
	sweep     sweepState // owned by the sweep goroutine of Work
}

// New returns a Queue on cfg.Redis. It does not close the Redis client.
func New(cfg Config) (*Queue, error) {
	if cfg.Redis == nil {
		return nil, errors.New("jobs: Redis client is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	cfg.RetryBase = cmpOr(cfg.RetryBase, 2*time.Second)
	cfg.RetryMax = cmpOr(cfg.RetryMax, 10*time.Minute)
	cfg.PollInterval = cmpOr(cfg.PollInterval, time.Second)
	cfg.BreakerTimeout = cmpOr(cfg.BreakerTimeout, 30*time.Second)
	cfg.JournalGrace = cmpOr(cfg.JournalGrace, 30*time.Second)
	cfg.SweepInterval = cmpOr(cfg.SweepInterval, 5*time.Second)
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 4
	}
	q := &Queue{
		cfg:       cfg,
		kinds:     make(map[string]Kind, len(cfg.Kinds)),
		inspector: asynq.NewInspectorFromRedisClient(cfg.Redis),
		log:       cfg.Logger,
	}
	q.client.Store(asynq.NewClientFromRedisClient(cfg.Redis))
	var err error
	if q.metrics, err = newMetrics(q, cfg.Registerer); err != nil {
		return nil, fmt.Errorf("jobs: %w", err)
	}
	for _, k := range cfg.Kinds {
		if k.Type == "" || k.Queue == "" || k.MaxAttempts < 1 {
			return nil, fmt.Errorf("jobs: kind %q needs a type, a queue and at least one attempt", k.Type)
		}
		if k.Timeout == 0 {
			k.Timeout = 30 * time.Second
		}
		q.kinds[k.Type] = k
	}
	return q, nil
}

func cmpOr(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

func (q *Queue) queueName(short string) string { return q.cfg.Prefix + short }

// Queues lists the full names of the queues of the configured kinds.
func (q *Queue) Queues() []string {
	seen := map[string]bool{}
	var names []string
	for _, k := range q.kinds {
		if n := q.queueName(k.Queue); !seen[n] {
			seen[n] = true
			names = append(names, n)
		}
	}
	sort.Strings(names)
	return names
}

// retention keeps a finished task's id for a while, so that enqueueing the
// same key again (an outbox row relayed twice) is refused as a duplicate.
const retention = time.Hour

// Enqueue adds a task of type typ to run now. key identifies the work: a
// second Enqueue with the same key while the first is queued, running or
// recently done adds nothing and returns nil.
func (q *Queue) Enqueue(ctx context.Context, typ, key string, payload []byte) error {
	return q.EnqueueAt(ctx, typ, key, payload, time.Time{})
}

// EnqueueAt is Enqueue for a task that must not run before at (zero: now).
func (q *Queue) EnqueueAt(ctx context.Context, typ, key string, payload []byte, at time.Time) error {
	j, err := q.Job(typ, key, payload, at)
	if err != nil {
		return err
	}
	return q.EnqueueJobs(ctx, j)
}

// Job returns the record of a task of type typ under key (empty: a key of
// its own), to run at at (zero: now), for EnqueueJobs, or for Push once
// its caller recorded it in the journal itself.
func (q *Queue) Job(typ, key string, payload []byte, at time.Time) (chat.Job, error) {
	if _, ok := q.kinds[typ]; !ok {
		return chat.Job{}, fmt.Errorf("jobs: unknown task type %q", typ)
	}
	if key == "" {
		key = typ + ":" + randomID()
	}
	now := time.Now()
	if at.IsZero() {
		at = now
	}
	return chat.Job{Key: key, Type: typ, Payload: payload, RunAt: at, CheckAt: later(at, now).Add(q.cfg.JournalGrace)}, nil
}

// EnqueueJobs records jobs in the journal, then adds each to the queue
// under its key, as Enqueue does. On an error some may have been added and
// all may be recorded: the caller tries again under the same keys, or the
// sweep adds them.
func (q *Queue) EnqueueJobs(ctx context.Context, jobs ...chat.Job) error {
	if q.cfg.Journal != nil {
		if err := q.cfg.Journal.RecordJobs(ctx, jobs); err != nil {
			return fmt.Errorf("enqueue: %w", err)
		}
	}
	for _, j := range jobs {
		if _, err := q.push(ctx, j); err != nil {
			return err
		}
	}
	return nil
}

// Push adds j to the queue without recording it: for a job its caller
// recorded in the journal in a transaction of its own.
func (q *Queue) Push(ctx context.Context, j chat.Job) error {
	_, err := q.push(ctx, j)
	return err
}

// push adds j to Redis unless a task with its key is there already (added
// false): queued, running, retrying, dead, or done within retention.
func (q *Queue) push(ctx context.Context, j chat.Job) (added bool, err error) {
	k, ok := q.kinds[j.Type]
	if !ok {
		return false, fmt.Errorf("jobs: unknown task type %q", j.Type)
	}
	opts := []asynq.Option{
		asynq.Queue(q.queueName(k.Queue)),
		asynq.MaxRetry(k.MaxAttempts - 1),
		asynq.Timeout(k.Timeout),
		asynq.Retention(retention),
		asynq.TaskID(j.Key),
	}
	if j.RunAt.After(time.Now()) {
		opts = append(opts, asynq.ProcessAt(j.RunAt))
	}
	_, err = q.client.Load().EnqueueContext(ctx, asynq.NewTask(j.Type, j.Payload), opts...)
	if errors.Is(err, asynq.ErrTaskIDConflict) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("enqueue %s: %w", j.Type, err)
	}
	q.metrics.enqueued(j.Type)
	return true, nil
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func randomID() string {
	b := make([]byte, 12)
	_, _ = crand.Read(b)
	return hex.EncodeToString(b)
}

// Permanent marks err as one no retry can fix (a phone number Twilio
// refuses): the task goes to the dead set at once, with err as its reason.
func Permanent(err error) error { return fmt.Errorf("%w (%w)", err, asynq.SkipRetry) }

// IsPermanent reports whether err was marked by Permanent.
func IsPermanent(err error) bool { return errors.Is(err, asynq.SkipRetry) }

// waitError asks for a retry after a fixed delay without counting an attempt.
type waitError struct {
	err   error
	after time.Duration
}

func (e *waitError) Error() string { return fmt.Sprintf("%v (retry in %v)", e.err, e.after) }
func (e *waitError) Unwrap() error { return e.err }

// Wait asks for the task to run again after d without using up an attempt:
// the failure is not the task's (an external API is known to be down).
func Wait(err error, d time.Duration) error { return &waitError{err: err, after: d} }

func isWait(err error) (time.Duration, bool) {
	var w *waitError
	if errors.As(err, &w) {
		return w.after, true
	}
	return 0, false
}

// backoff is the delay after a task's failed attempts beyond its first
// (retried ≥ 0): base·2^retried, capped, with "equal jitter" (half fixed,
// half random) so that tasks that failed together do not come back together.
func (q *Queue) backoff(retried int) time.Duration {
	d := q.cfg.RetryMax
	if retried >= 0 && retried < 32 {
		d = min(q.cfg.RetryBase<<retried, q.cfg.RetryMax)
	}
	return d/2 + rand.N(d/2+1)
}

// Work runs workers for handlers (task type → handler) until ctx ends, one
// pool of Config.Concurrency workers per queue, then waits for running tasks
// to finish (a task still running after asynq's shutdown timeout is handed
// back to the queue and runs again elsewhere).
func (q *Queue) Work(ctx context.Context, handlers map[string]Handler) error {
	byQueue := map[string]*asynq.ServeMux{}
	for typ, h := range handlers {
		k, ok := q.kinds[typ]
		if !ok {
			return fmt.Errorf("jobs: no kind for handler %q", typ)
		}
		name := q.queueName(k.Queue)
		if byQueue[name] == nil {
			byQueue[name] = asynq.NewServeMux()
		}
		byQueue[name].HandleFunc(typ, q.instrument(typ, h))
	}
	var servers []*asynq.Server
	var sweeping sync.WaitGroup
	defer func() {
		for _, s := range servers {
			s.Shutdown()
		}
		sweeping.Wait()
	}()
	for name, mux := range byQueue {
		srv := asynq.NewServerFromRedisClient(q.cfg.Redis, asynq.Config{
			Concurrency:              q.cfg.Concurrency,
			Queues:                   map[string]int{name: 1},
			RetryDelayFunc:           q.retryDelay,
			IsFailure:                func(err error) bool { _, wait := isWait(err); return !wait },
			DelayedTaskCheckInterval: q.cfg.PollInterval,
			ShutdownTimeout:          10 * time.Second,
			Logger:                   asynqLogger{q.log.With(slog.String("queue", name))},
			LogLevel:                 asynq.WarnLevel,
		})
		if err := srv.Start(mux); err != nil {
			return fmt.Errorf("jobs: start workers for %s: %w", name, err)
		}
		servers = append(servers, srv)
	}
	if q.cfg.Journal != nil {
		sweeping.Go(func() { q.sweepLoop(ctx) })
	}
	<-ctx.Done()
	return nil
}

func (q *Queue) retryDelay(n int, err error, _ *asynq.Task) time.Duration {
	if d, ok := isWait(err); ok {
		return d
	}
	return q.backoff(n)
}

// instrument logs and counts each run of a task, and settles its journal
// record once it succeeded or died.
func (q *Queue) instrument(typ string, h Handler) asynq.HandlerFunc {
	return func(ctx context.Context, t *asynq.Task) error {
		id, _ := asynq.GetTaskID(ctx)
		err := h(ctx, t.Payload())
		if err == nil {
			q.metrics.outcome(typ, "succeeded")
			q.settle(ctx, id, "")
			return nil
		}
		attempt, _ := asynq.GetRetryCount(ctx)
		maxRetry, _ := asynq.GetMaxRetry(ctx)
		log := q.log.With(slog.String("type", typ), slog.String("id", id), slog.Int("attempt", attempt+1), slog.Any("error", err))
		switch _, wait := isWait(err); {
		case wait:
			q.metrics.outcome(typ, "deferred")
			log.InfoContext(ctx, "job deferred")
		case IsPermanent(err) || attempt >= maxRetry:
			q.metrics.outcome(typ, "dead")
			log.ErrorContext(ctx, "job dead")
			q.settle(ctx, id, err.Error())
		default:
			q.metrics.outcome(typ, "retried")
			log.WarnContext(ctx, "job failed, will retry")
		}
		return err
	}
}

// asynqLogger sends asynq's own log lines to slog.
type asynqLogger struct{ log *slog.Logger }

func (l asynqLogger) Debug(args ...any) { l.log.Debug(fmt.Sprint(args...)) }
func (l asynqLogger) Info(args ...any)  { l.log.Info(fmt.Sprint(args...)) }
func (l asynqLogger) Warn(args ...any)  { l.log.Warn(fmt.Sprint(args...)) }
func (l asynqLogger) Error(args ...any) { l.log.Error(fmt.Sprint(args...)) }
func (l asynqLogger) Fatal(args ...any) { l.log.Error(fmt.Sprint(args...)) }
