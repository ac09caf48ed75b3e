-- +goose Up
-- Plain-text SMS go to the room the user most recently posted in (SPEC
-- §8): last_active_at is set by posting only, and NULL in a room where the
-- member never posted (joining or being added does not count). Existing
-- rows get the time of the member's last message in the room, or NULL.
ALTER TABLE room_members
    ALTER COLUMN last_active_at DROP NOT NULL,
    ALTER COLUMN last_active_at DROP DEFAULT;
UPDATE room_members rm SET last_active_at = NULL
 WHERE NOT EXISTS (SELECT 1 FROM messages m WHERE m.room_id = rm.room_id AND m.sender_id = rm.user_id);
UPDATE room_members rm SET last_active_at = p.last_post
  FROM (SELECT room_id, sender_id, max(created_at) AS last_post FROM messages GROUP BY room_id, sender_id) p
 WHERE rm.room_id = p.room_id AND rm.user_id = p.sender_id;

-- +goose Down
UPDATE room_members SET last_active_at = joined_at WHERE last_active_at IS NULL;
ALTER TABLE room_members
    ALTER COLUMN last_active_at SET DEFAULT now(),
    ALTER COLUMN last_active_at SET NOT NULL;
