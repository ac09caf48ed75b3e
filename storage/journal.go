package storage

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/switchboard-chat/switchboard/chat"
)

// This file is the job journal of integrations/jobs (migration 00010): the
// durable record of each job from before it is put in Redis until it ran,
// so that jobs Redis lost can be put back (SPEC §15).

// execer is what a pool and a transaction share for statements.
type execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// RecordJobs records jobs as waiting to run. A key recorded already is left
// as it is while its job waits; a key whose job died is recorded afresh (a
// dead job queued again). Within jobs, the first of a key counts.
func (s *Store) RecordJobs(ctx context.Context, jobs []chat.Job) error {
	return wrap("record jobs", recordJobs(ctx, s.db, jobs))
}

func recordJobs(ctx context.Context, db execer, jobs []chat.Job) error {
	n := len(jobs)
	keys, types, payloads := make([]string, 0, n), make([]string, 0, n), make([][]byte, 0, n)
	runAt, checkAt := make([]time.Time, 0, n), make([]time.Time, 0, n)
	seen := make(map[string]bool, n)
	for _, j := range jobs {
		if seen[j.Key] {
			continue // ON CONFLICT may not touch one row twice
		}
		seen[j.Key] = true
		payload := j.Payload
		if payload == nil {
			payload = []byte{} // not NULL
		}
		keys, types, payloads = append(keys, j.Key), append(types, j.Type), append(payloads, payload)
		runAt, checkAt = append(runAt, j.RunAt), append(checkAt, j.CheckAt)
	}
	if len(keys) == 0 {
		return nil
	}
	_, err := db.Exec(ctx, `
		INSERT INTO job_journal AS j (key, type, payload, run_at, check_at)
		SELECT * FROM unnest($1::text[], $2::text[], $3::bytea[], $4::timestamptz[], $5::timestamptz[])
		ON CONFLICT (key) DO UPDATE SET type = excluded.type, payload = excluded.payload, run_at = excluded.run_at,
			check_at = excluded.check_at, created_at = now(), dead_at = NULL, last_error = NULL
			WHERE j.dead_at IS NOT NULL`,
		keys, types, payloads, runAt, checkAt)
	return err
}

// FinishJob records that the job key ran: with reason "" it succeeded and
// its record goes; otherwise it died (its last attempt failed, or it failed
// for good) and its record stays, dead, with reason, until ForgetJobs.
func (s *Store) FinishJob(ctx context.Context, key, reason string) error {
	var err error
	if reason == "" {
		_, err = s.db.Exec(ctx, `DELETE FROM job_journal WHERE key = $1`, key)
	} else {
		_, err = s.db.Exec(ctx, `UPDATE job_journal SET dead_at = now(), last_error = $2 WHERE key = $1`, key, reason)
	}
	return wrap("finish job", err)
}

// DueJobs takes up to limit waiting jobs whose check time has come, oldest
// check first, and moves each one's next check to recheck from now, or the
// job's age if that is longer, but no more than maxRecheck: a job that
// waits long (a backlog, retries) is looked for less and less often.
// Concurrent callers get different jobs.
func (s *Store) DueJobs(ctx context.Context, limit int, recheck, maxRecheck time.Duration) ([]chat.Job, error) {
	rows, err := s.db.Query(ctx, `
		WITH due AS (
			SELECT key FROM job_journal WHERE dead_at IS NULL AND check_at <= now()
			ORDER BY check_at LIMIT $1 FOR UPDATE SKIP LOCKED)
		UPDATE job_journal j SET check_at = now() + LEAST(GREATEST($2::interval, now() - j.created_at), $3::interval)
		FROM due WHERE j.key = due.key
		RETURNING j.key, j.type, j.payload, j.run_at, j.check_at`, limit, recheck, maxRecheck)
	if err != nil {
		return nil, wrap("due jobs", err)
	}
	jobs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (chat.Job, error) {
		var j chat.Job
		err := row.Scan(&j.Key, &j.Type, &j.Payload, &j.RunAt, &j.CheckAt)
		return j, err
	})
	return jobs, wrap("due jobs", err)
}

// RecheckJobs makes every waiting job due for a check at once, or at its
// run time if that is later: the queue lost what it held.
func (s *Store) RecheckJobs(ctx context.Context) error {
	_, err := s.db.Exec(ctx, `
		UPDATE job_journal SET check_at = GREATEST(run_at, now())
		WHERE dead_at IS NULL AND check_at > GREATEST(run_at, now())`)
	return wrap("recheck jobs", err)
}

// ForgetJobs deletes the records of jobs that died before cutoff.
func (s *Store) ForgetJobs(ctx context.Context, cutoff time.Time) error {
	_, err := s.db.Exec(ctx, `DELETE FROM job_journal WHERE dead_at < $1`, cutoff)
	return wrap("forget jobs", err)
}
