-- +goose Up
-- Claims let a job take its work in one short transaction, call Twilio or
-- Slack with no transaction open, and record the outcome in another. A
-- claim lapses at claimed_until, so the work of a run that died is taken
-- over by the next.

-- The SMS of a (user, room) pair: the run that holds claim sends what is
-- pending; others wait for it.
ALTER TABLE sms_throttle
    ADD COLUMN claim         uuid,
    ADD COLUMN claimed_until timestamptz,
    ADD CONSTRAINT sms_throttle_claim_check CHECK ((claim IS NULL) = (claimed_until IS NULL));

-- A verification code: code_hash is set when a run claims it and
-- claimed_until is cleared once the code went out (or was not to be sent);
-- a code_hash with a claimed_until is a code on its way.
ALTER TABLE phone_codes
    ADD COLUMN claimed_until timestamptz,
    ADD CONSTRAINT phone_codes_claim_check CHECK (claimed_until IS NULL OR code_hash IS NOT NULL);

-- A side effect done once (a Slack post): its row is a claim until done_at
-- is set. done_at keeps its default, so that a binary from before claims
-- still records its runs as done while both run.
ALTER TABLE job_runs
    ALTER COLUMN done_at DROP NOT NULL,
    ADD COLUMN claim         uuid,
    ADD COLUMN claimed_until timestamptz,
    ADD CONSTRAINT job_runs_claim_check CHECK ((claim IS NULL) = (claimed_until IS NULL)
                                               AND (done_at IS NULL) = (claim IS NOT NULL));

-- +goose Down
-- Runs still under way were not done.
DELETE FROM job_runs WHERE done_at IS NULL;
ALTER TABLE job_runs
    DROP CONSTRAINT job_runs_claim_check,
    DROP COLUMN claimed_until,
    DROP COLUMN claim,
    ALTER COLUMN done_at SET NOT NULL;
-- A code still on its way counts as made.
ALTER TABLE phone_codes
    DROP CONSTRAINT phone_codes_claim_check,
    DROP COLUMN claimed_until;
ALTER TABLE sms_throttle
    DROP CONSTRAINT sms_throttle_claim_check,
    DROP COLUMN claimed_until,
    DROP COLUMN claim;
