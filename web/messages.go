package web

import (
	"encoding/base64"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/switchboard-chat/switchboard/chat"
)

const (
	defaultLimit = 50
	maxLimit     = 200
)

func (a *API) postMessage(w http.ResponseWriter, r *http.Request, s chat.Session) {
	var req struct {
		Body     *string `json:"body"`
		ParentID *string `json:"parent_id"`
		ClientID *string `json:"client_id"`
	}
	if err := decode(w, r, &req); err != nil {
		a.fail(w, r, err)
		return
	}
	if req.Body == nil {
		a.fail(w, r, chat.Errorf(chat.CodeBadRequest, "body is required"))
		return
	}
	nm := chat.NewMessage{RoomID: r.PathValue("id"), SenderID: s.User.ID, Body: *req.Body, Source: chat.SourceAPI}
	if req.ParentID != nil {
		nm.ParentID = *req.ParentID
	}
	if req.ClientID != nil {
		nm.ClientID = *req.ClientID
	}
	msg, created, err := a.cfg.Hub.Post(r.Context(), nm)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	status := http.StatusCreated
	if !created {
		status = http.StatusOK
	}
	writeJSON(w, status, msg)
}

// page is one history query: the limit newest before a seq, or the limit
// oldest after one. Its cursor form is what next_cursor carries.
type page struct {
	after bool  // true: ascending from seq; false: newest before seq
	seq   int64 // exclusive bound
	limit int
}

func (p page) cursor() string {
	dir := "b"
	if p.after {
		dir = "a"
	}
	return base64.RawURLEncoding.EncodeToString(fmt.Appendf(nil, "%s:%d:%d", dir, p.seq, p.limit))
}

func parseCursor(s string) (page, error) {
	bad := chat.Errorf(chat.CodeBadRequest, "unknown cursor")
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return page{}, bad
	}
	var p page
	var dir string
	n, err := fmt.Sscanf(string(raw), "%1s:%d:%d", &dir, &p.seq, &p.limit)
	if err != nil || n != 3 || (dir != "a" && dir != "b") || p.seq < 0 || p.limit < 1 || p.limit > maxLimit {
		return page{}, bad
	}
	p.after = dir == "a"
	if p.cursor() != s { // trailing bytes or another spelling: not one of ours
		return page{}, bad
	}
	return p, nil
}

// parseHistoryQuery turns the query string of GET .../messages into a page.
// At most one of before_seq, after_seq, since and cursor may be given.
func (a *API) parseHistoryQuery(r *http.Request, roomID string) (page, error) {
	q := r.URL.Query()
	p := page{seq: math.MaxInt64, limit: defaultLimit}
	if q.Has("limit") {
		n, err := strconv.Atoi(q.Get("limit"))
		if err != nil || n < 1 || n > maxLimit {
			return page{}, chat.Errorf(chat.CodeBadRequest, "limit must be a number from 1 to %d", maxLimit)
		}
		p.limit = n
	}
	given := 0
	for _, k := range []string{"before_seq", "after_seq", "since", "cursor"} {
		if q.Has(k) {
			given++
		}
	}
	if given > 1 {
		return page{}, chat.Errorf(chat.CodeBadRequest, "use only one of before_seq, after_seq, since and cursor")
	}
	switch {
	case q.Has("before_seq"):
		seq, err := parseSeq(q, "before_seq")
		p.seq = seq
		return p, err
	case q.Has("after_seq"):
		seq, err := parseSeq(q, "after_seq")
		p.after, p.seq = true, seq
		return p, err
	case q.Has("since"):
		t, err := time.Parse(time.RFC3339Nano, q.Get("since"))
		if err != nil {
			return page{}, chat.Errorf(chat.CodeBadRequest, "since must be an RFC 3339 time such as 2026-01-02T15:04:05Z")
		}
		seq, err := a.cfg.Store.SeqBefore(r.Context(), roomID, t)
		p.after, p.seq = true, seq
		return p, err
	case q.Has("cursor"):
		c, err := parseCursor(q.Get("cursor"))
		if err != nil {
			return page{}, err
		}
		if q.Has("limit") {
			c.limit = p.limit
		}
		return c, nil
	}
	return p, nil
}

func parseSeq(q url.Values, key string) (int64, error) {
	n, err := strconv.ParseInt(q.Get(key), 10, 64)
	if err != nil || n < 0 {
		return 0, chat.Errorf(chat.CodeBadRequest, "%s must be a non-negative number", key)
	}
	return n, nil
}

func (a *API) history(w http.ResponseWriter, r *http.Request, s chat.Session) {
	roomID := r.PathValue("id")
	if err := a.cfg.Store.CheckMember(r.Context(), s.User.ID, roomID); err != nil {
		a.fail(w, r, err)
		return
	}
	p, err := a.parseHistoryQuery(r, roomID)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	// Read one more than asked to know whether another page exists.
	var msgs []chat.Message
	if p.after {
		msgs, err = a.cfg.Store.MessagesAfter(r.Context(), roomID, p.seq, p.limit+1)
	} else {
		msgs, err = a.cfg.Store.MessagesBefore(r.Context(), roomID, p.seq, p.limit+1)
	}
	if err != nil {
		a.fail(w, r, err)
		return
	}
	var next *string
	if len(msgs) > p.limit {
		var c string
		if p.after {
			msgs = msgs[:p.limit]
			c = page{after: true, seq: msgs[len(msgs)-1].Seq, limit: p.limit}.cursor()
		} else {
			msgs = msgs[1:]
			c = page{seq: msgs[0].Seq, limit: p.limit}.cursor()
		}
		next = &c
	}
	writeJSON(w, http.StatusOK, map[string]any{"messages": nonNil(msgs), "next_cursor": next})
}

// readableMessage returns the message with the given id if s may read its
// room; otherwise it is not found (or forbidden, as the room's rule says).
func (a *API) readableMessage(r *http.Request, s chat.Session) (chat.Message, error) {
	msg, err := a.cfg.Store.Message(r.Context(), r.PathValue("id"))
	if err != nil {
		return chat.Message{}, err
	}
	if err := a.cfg.Store.CheckMember(r.Context(), s.User.ID, msg.RoomID); err != nil {
		return chat.Message{}, err
	}
	return msg, nil
}

// thread answers GET /api/v1/messages/{id}: the message and its first
// maxLimit replies (the replies endpoint pages through longer threads).
func (a *API) thread(w http.ResponseWriter, r *http.Request, s chat.Session) {
	msg, err := a.readableMessage(r, s)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	replies, err := a.cfg.Store.Replies(r.Context(), msg.ID, 0, maxLimit)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"message": msg, "replies": nonNil(replies)})
}

// replies answers GET /api/v1/messages/{id}/replies?limit=&after_seq=.
func (a *API) replies(w http.ResponseWriter, r *http.Request, s chat.Session) {
	q := r.URL.Query()
	limit := defaultLimit
	if q.Has("limit") {
		n, err := strconv.Atoi(q.Get("limit"))
		if err != nil || n < 1 || n > maxLimit {
			a.fail(w, r, chat.Errorf(chat.CodeBadRequest, "limit must be a number from 1 to %d", maxLimit))
			return
		}
		limit = n
	}
	var after int64
	if q.Has("after_seq") {
		seq, err := parseSeq(q, "after_seq")
		if err != nil {
			a.fail(w, r, err)
			return
		}
		after = seq
	}
	msg, err := a.readableMessage(r, s)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	replies, err := a.cfg.Store.Replies(r.Context(), msg.ID, after, limit+1)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	var nextAfter *int64
	if len(replies) > limit {
		replies = replies[:limit]
		nextAfter = &replies[limit-1].Seq
	}
	writeJSON(w, http.StatusOK, map[string]any{"replies": nonNil(replies), "next_after_seq": nextAfter})
}
