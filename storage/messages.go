package storage

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/switchboard-chat/switchboard/chat"
)

// messageColumns are a message as clients see it, in its current state
// (SPEC §13).
const messageColumns = savedColumns + `, m.edited_at, m.deleted_at IS NOT NULL, m.reactions, m.mentions`

// savedColumns are the columns of a message that save_messages answers.
const savedColumns = `m.id, m.room_id, m.seq, u.id, u.username, u.display_name, m.body, m.parent_id,
	m.reply_count, m.source, m.client_id, m.created_at`

const messageFrom = ` FROM messages m JOIN users u ON u.id = m.sender_id `

// messageScan holds the targets of a message's columns while they are read.
type messageScan struct {
	m                chat.Message
	id, room, sender int64
	parent           *int64
	reactions        []chat.Reaction
	mentions         []int64
}

// saved are the targets of savedColumns.
func (x *messageScan) saved() []any {
	m := &x.m
	return []any{&x.id, &x.room, &m.Seq, &x.sender, &m.Sender.Username, &m.Sender.DisplayName, &m.Body, &x.parent,
		&m.ReplyCount, &m.Source, &m.ClientID, &m.CreatedAt}
}

// all are the targets of messageColumns.
func (x *messageScan) all() []any {
	return append(x.saved(), &x.m.EditedAt, &x.m.Deleted, &x.reactions, &x.mentions)
}

// message is what was read.
func (x *messageScan) message() chat.Message {
	m := x.m
	m.ID, m.RoomID, m.Sender.ID = formatID(x.id), formatID(x.room), formatID(x.sender)
	if x.parent != nil {
		p := formatID(*x.parent)
		m.ParentID = &p
	}
	m.CreatedAt = m.CreatedAt.UTC()
	if m.EditedAt != nil {
		t := m.EditedAt.UTC()
		m.EditedAt = &t
	}
	m.Reactions = x.reactions
	if m.Reactions == nil {
		m.Reactions = []chat.Reaction{}
	}
	m.Mentions = formatIDs(x.mentions)
	return m
}

func formatIDs(ids []int64) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = formatID(id)
	}
	return out
}

// scanMessage reads the messageColumns of row, after the columns lead
// (if any) into their targets.
func scanMessage(row pgx.Row, lead ...any) (chat.Message, error) {
	var x messageScan
	err := row.Scan(append(lead, x.all()...)...)
	return x.message(), err
}

func collectMessages(rows pgx.Rows, err error) ([]chat.Message, error) {
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (chat.Message, error) { return scanMessage(row) })
}

// SaveMessage stores nm (already validated) as the next message of its room
// and reports whether it is new. The seq comes from the room row, bumped
// under its row lock in the inserting transaction, so seqs are gapless and
// commit in seq order. A repeat of a client_id (same room and sender) or of
// an external id returns the first message with created=false and stores
// nothing. The sender must be a member; a parent must be a top-level message
// of the same room. Concurrent calls share round trips and commits (see
// save.go); each still succeeds or fails on its own.
func (s *Store) SaveMessage(ctx context.Context, nm chat.NewMessage) (msg chat.Message, created bool, err error) {
	c, err := newSaveCall(nm)
	if err != nil {
		return chat.Message{}, false, err
	}
	s.save(c)
	if isUniqueViolation(c.err, "messages_external_id_key") {
		// The same external id raced in through another room's lock: the
		// winner's message is the answer.
		msg, err = findRepeat(ctx, s.db, c.rid, c.uid, c.clientID, nm.Source, c.externalID)
		return msg, false, wrap("save message", err)
	}
	if c.err != nil {
		return chat.Message{}, false, wrap("save message", c.err)
	}
	switch c.status {
	case "created":
		return c.msg, true, nil
	case "repeat":
		// The first message as it is now: it may have changed since.
		m, err := s.Message(ctx, c.msg.ID)
		return m.Message, false, err
	case "not_found":
		return chat.Message{}, false, chat.ErrNotFound
	case "forbidden":
		return chat.Message{}, false, chat.ErrForbidden
	case "archived":
		return chat.Message{}, false, ErrArchived
	case "bad_parent":
		return chat.Message{}, false, chat.Errorf(chat.CodeBadRequest, "parent_id names no message in this room")
	case "nested":
		return chat.Message{}, false, chat.Errorf(chat.CodeBadRequest, "cannot reply to a reply: threads are one level deep")
	}
	return chat.Message{}, false, fmt.Errorf("save message: unknown status %q", c.status)
}

// findRepeat returns the message an idempotent send repeats: the same
// client_id from the same sender in the room, or the same external id.
func findRepeat(ctx context.Context, q queryRower, rid, uid int64, clientID *string, source string, externalID *string) (chat.Message, error) {
	return scanMessage(q.QueryRow(ctx, `SELECT `+messageColumns+messageFrom+`
		WHERE (m.room_id = $1 AND m.sender_id = $2 AND m.client_id = $3)
		   OR (m.source = $4 AND m.external_id = $5)
		LIMIT 1`, rid, uid, clientID, source, externalID))
}

func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// The reads of messages return them encoded (chat.Encode): their readers
// (history answers, catch-up frames) send them as JSON, and a cache keeps
// one encoding for every reader.

// Message returns one message by id.
func (s *Store) Message(ctx context.Context, id string) (chat.EncodedMessage, error) {
	mid, err := parseID(id)
	if err != nil {
		return chat.EncodedMessage{}, err
	}
	m, err := scanMessage(s.db.QueryRow(ctx, `SELECT `+messageColumns+messageFrom+`WHERE m.id = $1`, mid))
	if errors.Is(err, pgx.ErrNoRows) {
		return chat.EncodedMessage{}, chat.ErrNotFound
	}
	if err != nil {
		return chat.EncodedMessage{}, wrap("message", err)
	}
	return chat.Encode(m), nil
}

// MessagesAfter returns up to limit messages of roomID with seq > afterSeq,
// ascending.
func (s *Store) MessagesAfter(ctx context.Context, roomID string, afterSeq int64, limit int) ([]chat.EncodedMessage, error) {
	rid, err := parseID(roomID)
	if err != nil {
		return nil, err
	}
	ms, err := collectMessages(s.db.Query(ctx, `SELECT `+messageColumns+messageFrom+`
		WHERE m.room_id = $1 AND m.seq > $2 ORDER BY m.seq LIMIT $3`, rid, afterSeq, limit))
	return encodedMessages("messages after", ms, err)
}

// MessagesBefore returns the limit newest messages of roomID with
// seq < beforeSeq, ascending.
func (s *Store) MessagesBefore(ctx context.Context, roomID string, beforeSeq int64, limit int) ([]chat.EncodedMessage, error) {
	rid, err := parseID(roomID)
	if err != nil {
		return nil, err
	}
	ms, err := collectMessages(s.db.Query(ctx, `SELECT * FROM (SELECT `+messageColumns+messageFrom+`
		WHERE m.room_id = $1 AND m.seq < $2 ORDER BY m.seq DESC LIMIT $3) page ORDER BY 3`, rid, beforeSeq, limit))
	return encodedMessages("messages before", ms, err)
}

// encodedMessages encodes the messages a query collected.
func encodedMessages(op string, ms []chat.Message, err error) ([]chat.EncodedMessage, error) {
	if err != nil {
		return nil, wrap(op, err)
	}
	return chat.EncodeAll(ms), nil
}

// SeqBefore returns the seq just before the first message of roomID created
// strictly after since, so that MessagesAfter from it lists what came after
// that instant. It returns the room's last seq when nothing came after.
func (s *Store) SeqBefore(ctx context.Context, roomID string, since time.Time) (int64, error) {
	rid, err := parseID(roomID)
	if err != nil {
		return 0, err
	}
	var seq *int64
	err = s.db.QueryRow(ctx, `
		SELECT COALESCE(
			(SELECT seq - 1 FROM messages WHERE room_id = $1 AND created_at > $2 ORDER BY created_at LIMIT 1),
			(SELECT last_seq FROM rooms WHERE id = $1))`, rid, since).Scan(&seq)
	if err != nil {
		return 0, wrap("seq before", err)
	}
	if seq == nil {
		return 0, chat.ErrNotFound
	}
	return *seq, nil
}

// Replies returns up to limit replies to parentID with seq > afterSeq,
// ascending.
func (s *Store) Replies(ctx context.Context, parentID string, afterSeq int64, limit int) ([]chat.EncodedMessage, error) {
	pid, err := parseID(parentID)
	if err != nil {
		return nil, err
	}
	ms, err := collectMessages(s.db.Query(ctx, `SELECT `+messageColumns+messageFrom+`
		WHERE m.parent_id = $1 AND m.seq > $2 ORDER BY m.seq LIMIT $3`, pid, afterSeq, limit))
	return encodedMessages("replies", ms, err)
}
