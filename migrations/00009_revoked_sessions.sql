-- +goose Up
-- The sessions that ended lately (storage.EndedSince), read every 30 s by
-- every node to write the Redis denylist again if Redis lost it.
CREATE INDEX refresh_tokens_revoked_idx ON refresh_tokens (revoked_at) WHERE revoked_at IS NOT NULL;

-- +goose Down
DROP INDEX refresh_tokens_revoked_idx;
