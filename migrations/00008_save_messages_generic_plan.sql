-- +goose Up
-- save_messages's statements are planned once per connection and reused
-- (a generic plan): their plans do not depend on the batch, and planning
-- the big statement again at every call cost more than running it.
ALTER FUNCTION save_messages(bigint[], bigint[], text[], bigint[], text[], text[], text[], boolean, boolean)
    SET plan_cache_mode = force_generic_plan;

-- +goose Down
ALTER FUNCTION save_messages(bigint[], bigint[], text[], bigint[], text[], text[], text[], boolean, boolean)
    RESET plan_cache_mode;
