-- +goose Up
-- The job journal (integrations/jobs): a row per job of the Redis queue,
-- written before the job is put in Redis (or, for a phone code, in the
-- transaction that asks for it) and deleted once the job ran. A job that
-- used its last attempt keeps its row, marked dead. The workers' sweeper
-- puts back, under the same task id, the jobs still here after check_at
-- that Redis no longer holds, so a Redis that lost its data loses no job
-- (SPEC §15). Messages never write here: the relay moves their outbox rows.
CREATE TABLE job_journal (
    key        text PRIMARY KEY,            -- the task id
    type       text NOT NULL,
    payload    bytea NOT NULL,
    run_at     timestamptz NOT NULL,        -- not before
    check_at   timestamptz NOT NULL,        -- when the sweeper next looks for it in Redis
    created_at timestamptz NOT NULL DEFAULT now(),
    dead_at    timestamptz,                 -- its last attempt failed
    last_error text,
    CONSTRAINT job_journal_dead_check CHECK ((dead_at IS NULL) = (last_error IS NULL))
);

CREATE INDEX job_journal_check_at ON job_journal (check_at) WHERE dead_at IS NULL;
CREATE INDEX job_journal_dead_at ON job_journal (dead_at) WHERE dead_at IS NOT NULL;

-- +goose Down
DROP TABLE job_journal;
