package jobs

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hibiken/asynq"
)

// QueueStats counts one queue's tasks by state.
type QueueStats struct {
	Queue     string `json:"queue"`
	Pending   int    `json:"pending"`
	Active    int    `json:"active"`
	Scheduled int    `json:"scheduled"`
	Retry     int    `json:"retry"`
	Dead      int    `json:"dead"`
	// Processed and Failed count today's runs (UTC), as asynq keeps them.
	Processed int `json:"processed_today"`
	Failed    int `json:"failed_today"`
}

// Stats returns the counts of every queue of the configured kinds. A queue
// that never had a task shows zeros.
func (q *Queue) Stats(ctx context.Context) ([]QueueStats, error) {
	existing, err := q.existingQueues()
	if err != nil {
		return nil, err
	}
	var out []QueueStats
	for _, name := range q.Queues() {
		s := QueueStats{Queue: name}
		if existing[name] {
			info, err := q.inspector.GetQueueInfo(name)
			if err != nil {
				return nil, fmt.Errorf("queue %s: %w", name, err)
			}
			s.Pending, s.Active, s.Scheduled, s.Retry, s.Dead = info.Pending, info.Active, info.Scheduled, info.Retry, info.Archived
			s.Processed, s.Failed = info.Processed, info.Failed
		}
		out = append(out, s)
	}
	return out, nil
}

// existingQueues is the set of queues asynq has seen a task in; asynq
// answers questions about any other with an error.
func (q *Queue) existingQueues() (map[string]bool, error) {
	names, err := q.inspector.Queues()
	if err != nil {
		return nil, fmt.Errorf("list queues: %w", err)
	}
	set := make(map[string]bool, len(names))
	for _, n := range names {
		set[n] = true
	}
	return set, nil
}

// DeadJob is a task that used its last attempt or failed permanently.
type DeadJob struct {
	ID        string    `json:"id"`
	Queue     string    `json:"queue"`
	Type      string    `json:"type"`
	Payload   string    `json:"payload"`
	Attempts  int       `json:"attempts"`
	LastError string    `json:"last_error"`
	FailedAt  time.Time `json:"failed_at"`
}

// Dead lists the dead-letter set of every queue, up to 1000 tasks each.
func (q *Queue) Dead(ctx context.Context) ([]DeadJob, error) {
	existing, err := q.existingQueues()
	if err != nil {
		return nil, err
	}
	var out []DeadJob
	for _, name := range q.Queues() {
		if !existing[name] {
			continue
		}
		tasks, err := q.inspector.ListArchivedTasks(name, asynq.PageSize(1000))
		if err != nil {
			return nil, fmt.Errorf("queue %s: %w", name, err)
		}
		for _, t := range tasks {
			out = append(out, DeadJob{
				ID: t.ID, Queue: name, Type: t.Type, Payload: string(t.Payload),
				Attempts: t.Retried + 1, LastError: t.LastErr, FailedAt: t.LastFailedAt.UTC(),
			})
		}
	}
	return out, nil
}

// ErrNoSuchJob is returned by Retry for an id that is in no dead-letter set.
var ErrNoSuchJob = errors.New("no dead job with that id")

// Retry moves the dead task id back to its queue to run now, with its
// attempts counted from zero again.
func (q *Queue) Retry(ctx context.Context, id string) error {
	existing, err := q.existingQueues()
	if err != nil {
		return err
	}
	for _, name := range q.Queues() {
		if !existing[name] {
			continue
		}
		info, err := q.inspector.GetTaskInfo(name, id)
		if errors.Is(err, asynq.ErrTaskNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("queue %s: %w", name, err)
		}
		if info.State != asynq.TaskStateArchived {
			return fmt.Errorf("job %s is %s, not dead", id, info.State)
		}
		// Re-enqueue a fresh copy rather than RunTask: RunTask keeps the
		// spent retry count, which would send it straight back on one failure.
		if err := q.inspector.DeleteTask(name, id); err != nil {
			return fmt.Errorf("queue %s: %w", name, err)
		}
		return q.Enqueue(ctx, info.Type, id, info.Payload)
	}
	return ErrNoSuchJob
}
