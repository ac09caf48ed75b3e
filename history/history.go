// Package history answers the reads of a room's history and threads (SPEC
// §5) for the HTTP API and the WebSocket history frame alike: it checks
// that the reader is a member, turns since and cursors into seqs, reads the
// page and says where the next one starts. It reads through Store, which is
// storage or the cache in front of it (both have these methods).
package history

import (
	"context"
	"encoding/base64"
	"fmt"
	"math"
	"time"

	"github.com/switchboard-chat/switchboard/chat"
)

// Store is what history reads.
type Store interface {
	CheckMember(ctx context.Context, userID, roomID string) error
	SeqBefore(ctx context.Context, roomID string, since time.Time) (int64, error)
	MessagesAfter(ctx context.Context, roomID string, afterSeq int64, limit int) ([]chat.EncodedMessage, error)
	MessagesBefore(ctx context.Context, roomID string, beforeSeq int64, limit int) ([]chat.EncodedMessage, error)
	EventsAfter(ctx context.Context, roomID string, afterSeq int64, limit int) ([]chat.RoomEvent, error)
	Message(ctx context.Context, id string) (chat.EncodedMessage, error)
	Replies(ctx context.Context, parentID string, afterSeq int64, limit int) ([]chat.EncodedMessage, error)
}

// Beginner is a Store that can read, once for a whole request, what the
// request's reads depend on (*cache.Cache can): Begin returns the context
// to make them with. RoomOf tells, without I/O, the room of a message it
// knows, so that a thread's reads can begin before the message is read.
type Beginner interface {
	Begin(ctx context.Context, userID, roomID string) context.Context
	RoomOf(messageID string) (roomID string, ok bool)
}

// Service answers history reads.
type Service struct {
	store Store
}

// begin is the Store's Begin when it has one.
func (s *Service) begin(ctx context.Context, userID, roomID string) context.Context {
	if b, ok := s.store.(Beginner); ok {
		return b.Begin(ctx, userID, roomID)
	}
	return ctx
}

// New returns a Service reading through store.
func New(store Store) *Service { return &Service{store: store} }

// page is a query reduced to seqs: the limit newest before seq, or the
// limit oldest after it. Its cursor form is what Page.NextCursor carries.
type page struct {
	after bool
	seq   int64 // exclusive bound
	limit int
}

// Page returns the page q of roomID's history if userID may read it. A
// query that breaks the rules of SPEC §5 is bad_request.
func (s *Service) Page(ctx context.Context, userID, roomID string, q chat.HistoryQuery) (chat.Page, error) {
	ctx = s.begin(ctx, userID, roomID)
	p, err := s.resolve(ctx, roomID, q, func() error { return s.store.CheckMember(ctx, userID, roomID) })
	if err != nil {
		return chat.Page{}, err
	}
	// One more than asked, to know whether another page exists.
	var msgs []chat.EncodedMessage
	if p.after {
		msgs, err = s.store.MessagesAfter(ctx, roomID, p.seq, p.limit+1)
	} else {
		msgs, err = s.store.MessagesBefore(ctx, roomID, p.seq, p.limit+1)
	}
	if err != nil {
		return chat.Page{}, err
	}
	out := chat.Page{Messages: msgs}
	if len(msgs) > p.limit {
		var next page
		if p.after {
			out.Messages = msgs[:p.limit]
			next = page{after: true, seq: out.Messages[p.limit-1].Seq, limit: p.limit}
		} else {
			out.Messages = msgs[1:]
			next = page{seq: out.Messages[0].Seq, limit: p.limit}
		}
		out.NextCursor = next.cursor()
	}
	if out.Messages == nil {
		out.Messages = []chat.EncodedMessage{}
	}
	return out, nil
}

// resolve checks q and turns it into seqs; check (the membership check) runs
// after the query is known to be well formed and before anything is read.
func (s *Service) resolve(ctx context.Context, roomID string, q chat.HistoryQuery, check func() error) (page, error) {
	p := page{seq: math.MaxInt64, limit: chat.DefaultPageSize}
	if q.Limit != nil {
		if *q.Limit < 1 || *q.Limit > chat.MaxPageSize {
			return page{}, chat.Errorf(chat.CodeBadRequest, "limit must be a number from 1 to %d", chat.MaxPageSize)
		}
		p.limit = *q.Limit
	}
	given := 0
	for _, set := range []bool{q.BeforeSeq != nil, q.AfterSeq != nil, q.Since != nil, q.Cursor != ""} {
		if set {
			given++
		}
	}
	if given > 1 {
		return page{}, chat.Errorf(chat.CodeBadRequest, "use only one of before_seq, after_seq, since and cursor")
	}
	switch {
	case q.BeforeSeq != nil:
		if *q.BeforeSeq < 0 {
			return page{}, chat.Errorf(chat.CodeBadRequest, "before_seq must not be negative")
		}
		p.seq = *q.BeforeSeq
	case q.AfterSeq != nil:
		if *q.AfterSeq < 0 {
			return page{}, chat.Errorf(chat.CodeBadRequest, "after_seq must not be negative")
		}
		p.after, p.seq = true, *q.AfterSeq
	case q.Cursor != "":
		c, err := parseCursor(q.Cursor)
		if err != nil {
			return page{}, err
		}
		p.after, p.seq = c.after, c.seq
		if q.Limit == nil { // the cursor's own, unless asked otherwise
			p.limit = c.limit
		}
	}
	if err := check(); err != nil {
		return page{}, err
	}
	if q.Since != nil {
		seq, err := s.store.SeqBefore(ctx, roomID, *q.Since)
		if err != nil {
			return page{}, err
		}
		p.after, p.seq = true, seq
	}
	return p, nil
}

// Thread returns the message messageID and up to limit of its replies with
// a seq greater than afterSeq, if userID may read its room. A message one
// may not read is chat.ErrNotFound, or what the room's rule says.
func (s *Service) Thread(ctx context.Context, userID, messageID string, afterSeq int64, limit int) (chat.EncodedMessage, []chat.EncodedMessage, error) {
	begun := false
	if b, ok := s.store.(Beginner); ok {
		if roomID, ok := b.RoomOf(messageID); ok {
			ctx, begun = b.Begin(ctx, userID, roomID), true
		}
	}
	m, err := s.store.Message(ctx, messageID)
	if err != nil {
		return chat.EncodedMessage{}, nil, err
	}
	if !begun {
		ctx = s.begin(ctx, userID, m.RoomID)
	}
	if err := s.store.CheckMember(ctx, userID, m.RoomID); err != nil {
		return chat.EncodedMessage{}, nil, err
	}
	replies, err := s.store.Replies(ctx, messageID, afterSeq, limit)
	if err != nil {
		return chat.EncodedMessage{}, nil, err
	}
	if replies == nil {
		replies = []chat.EncodedMessage{}
	}
	return m, replies, nil
}

// Events returns the limit (default chat.DefaultEventsPage, at most
// chat.MaxEventsPage) oldest events of roomID after afterSeq, messages and
// updates (SPEC §13), if userID may read the room.
func (s *Service) Events(ctx context.Context, userID, roomID string, afterSeq int64, limit *int) ([]chat.RoomEvent, error) {
	n := chat.DefaultEventsPage
	if limit != nil {
		if *limit < 1 || *limit > chat.MaxEventsPage {
			return nil, chat.Errorf(chat.CodeBadRequest, "limit must be a number from 1 to %d", chat.MaxEventsPage)
		}
		n = *limit
	}
	if afterSeq < 0 {
		return nil, chat.Errorf(chat.CodeBadRequest, "after_seq must not be negative")
	}
	if err := s.store.CheckMember(ctx, userID, roomID); err != nil {
		return nil, err
	}
	evs, err := s.store.EventsAfter(ctx, roomID, afterSeq, n)
	if evs == nil && err == nil {
		evs = []chat.RoomEvent{}
	}
	return evs, err
}

func (p page) cursor() string {
	dir := "b"
	if p.after {
		dir = "a"
	}
	return base64.RawURLEncoding.EncodeToString(fmt.Appendf(nil, "%s:%d:%d", dir, p.seq, p.limit))
}

var errBadCursor = chat.Errorf(chat.CodeBadRequest, "unknown cursor")

func parseCursor(s string) (page, error) {
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return page{}, errBadCursor
	}
	var p page
	var dir string
	n, err := fmt.Sscanf(string(raw), "%1s:%d:%d", &dir, &p.seq, &p.limit)
	if err != nil || n != 3 || (dir != "a" && dir != "b") || p.seq < 0 || p.limit < 1 || p.limit > chat.MaxPageSize {
		return page{}, errBadCursor
	}
	p.after = dir == "a"
	if p.cursor() != s { // trailing bytes or another spelling: not one of ours
		return page{}, errBadCursor
	}
	return p, nil
}
