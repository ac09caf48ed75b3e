-- +goose Up
-- A session (SPEC §3) is a refresh-token family; logout-all and a password
-- change end every live session of a user.
CREATE INDEX refresh_tokens_user_live_idx ON refresh_tokens (user_id) WHERE revoked_at IS NULL;

-- +goose Down
DROP INDEX refresh_tokens_user_live_idx;
