package storage

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/switchboard-chat/switchboard/chat"
)

// UpdateMessage makes one change to a message (SPEC §13), already
// validated (chat.Update.Validate): an edit by its sender, a delete by its
// sender or a moderator (SQL can_moderate), a reaction added or removed
// by a member. A change is stored as an event with the room's next seq,
// under the room's row lock as messages take theirs, in one statement
// (update_message, migration 00012); the answer carries the message's
// state after it. An edit or delete of a message posted to a Slack channel
// (or on its way there) also queues its mirroring (Outbox.Slack). A
// request that changes nothing stores nothing and
// answers changed=false with the message as it is (ev.Seq 0).
func (s *Store) UpdateMessage(ctx context.Context, u chat.Update) (ev chat.RoomEvent, changed bool, err error) {
	mid, err := parseID(u.MessageID)
	if err != nil {
		return chat.RoomEvent{}, false, err
	}
	uid, err := parseID(u.UserID)
	if err != nil {
		return chat.RoomEvent{}, false, err
	}
	var status string
	var seq *int64
	var x messageScan
	err = s.db.QueryRow(ctx, `SELECT * FROM update_message($1, $2, $3, $4, $5, $6, $7)`,
		u.Action, mid, uid, u.Body, u.Emoji, chat.MaxDistinctEmoji, s.outbox.Slack).
		Scan(append([]any{&status, &seq}, x.all()...)...)
	if errors.Is(err, pgx.ErrNoRows) {
		return chat.RoomEvent{}, false, chat.ErrNotFound
	}
	if err != nil {
		return chat.RoomEvent{}, false, wrap("update message", err)
	}
	switch status {
	case "changed", "unchanged":
	case "not_found":
		return chat.RoomEvent{}, false, chat.ErrNotFound
	case "forbidden":
		return chat.RoomEvent{}, false, chat.ErrForbidden
	case "not_sender":
		return chat.RoomEvent{}, false, chat.Errorf(chat.CodeForbidden, "only the sender may edit a message")
	case "not_moderator":
		return chat.RoomEvent{}, false, chat.Errorf(chat.CodeForbidden, "only the sender or a room admin may delete a message")
	case "archived":
		return chat.RoomEvent{}, false, ErrArchived
	case "deleted":
		return chat.RoomEvent{}, false, chat.Errorf(chat.CodeConflict, "the message is deleted")
	case "too_many":
		return chat.RoomEvent{}, false, chat.Errorf(chat.CodeConflict, "a message carries at most %d different emoji", chat.MaxDistinctEmoji)
	default:
		return chat.RoomEvent{}, false, fmt.Errorf("update message: unknown status %q", status)
	}
	ev = chat.RoomEvent{Kind: kindOf(u.Action), Message: chat.Encode(x.message())}
	if status == "unchanged" {
		return ev, false, nil
	}
	ev.Seq = *seq
	return ev, true, nil
}

// kindOf is the kind of event an action makes.
func kindOf(action string) string {
	switch action {
	case chat.ActionEdit:
		return chat.KindEdit
	case chat.ActionDelete:
		return chat.KindDelete
	}
	return chat.KindReaction
}

// EventsAfter returns up to limit events of roomID with seq > afterSeq,
// ascending: its messages and the updates to them, each update with the
// message's current state.
func (s *Store) EventsAfter(ctx context.Context, roomID string, afterSeq int64, limit int) ([]chat.RoomEvent, error) {
	rid, err := parseID(roomID)
	if err != nil {
		return nil, err
	}
	// Two index range scans merged by seq: a room without updates pays
	// one probe of message_events.
	rows, err := s.db.Query(ctx, `
		SELECT e.seq, e.kind, `+messageColumns+` FROM (
			(SELECT m.seq, 'message' AS kind, m.id AS message_id FROM messages m
			  WHERE m.room_id = $1 AND m.seq > $2 ORDER BY m.seq LIMIT $3)
			UNION ALL
			(SELECT x.seq, x.kind, x.message_id FROM message_events x
			  WHERE x.room_id = $1 AND x.seq > $2 ORDER BY x.seq LIMIT $3)
			ORDER BY 1 LIMIT $3) e
		JOIN messages m ON m.id = e.message_id JOIN users u ON u.id = m.sender_id
		ORDER BY e.seq`, rid, afterSeq, limit)
	if err != nil {
		return nil, wrap("events after", err)
	}
	defer rows.Close()
	var evs []chat.RoomEvent
	for rows.Next() {
		var ev chat.RoomEvent
		m, err := scanMessage(rows, &ev.Seq, &ev.Kind)
		if err != nil {
			return nil, wrap("events after", err)
		}
		ev.Message = chat.Encode(m)
		evs = append(evs, ev)
	}
	return evs, wrap("events after", rows.Err())
}

// RecordSlackPost remembers the Slack message that posting messageID made,
// so that its edits and deletes follow it. A repeat keeps the first.
func (s *Store) RecordSlackPost(ctx context.Context, messageID, channel, ts string) error {
	mid, err := parseID(messageID)
	if err != nil {
		return err
	}
	_, err = s.db.Exec(ctx, `INSERT INTO slack_posts (message_id, channel, ts) VALUES ($1, $2, $3)
		ON CONFLICT DO NOTHING`, mid, channel, ts)
	return wrap("record slack post", err)
}

// SlackPost returns the Slack message posting messageID made; found is
// false while it has not been posted.
func (s *Store) SlackPost(ctx context.Context, messageID string) (channel, ts string, found bool, err error) {
	mid, err := parseID(messageID)
	if err != nil {
		return "", "", false, err
	}
	err = s.db.QueryRow(ctx, `SELECT channel, ts FROM slack_posts WHERE message_id = $1`, mid).Scan(&channel, &ts)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", "", false, nil
	}
	return channel, ts, err == nil, wrap("slack post", err)
}
