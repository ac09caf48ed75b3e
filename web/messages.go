package web

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/switchboard-chat/switchboard/chat"
)

const (
	defaultLimit = 50
	maxLimit     = 200
)

func (a *API) postMessage(w http.ResponseWriter, r *http.Request, s chat.Session) {
	roomID, err := pathID(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
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
	nm := chat.NewMessage{RoomID: roomID, SenderID: s.User.ID, Body: *req.Body, Source: chat.SourceAPI}
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

// parseHistoryQuery turns the query string of GET .../messages into a
// query. At most one of before_seq, after_seq, since and cursor may be
// given.
func parseHistoryQuery(r *http.Request) (chat.HistoryQuery, error) {
	q := r.URL.Query()
	p := chat.HistoryQuery{Seq: math.MaxInt64, Limit: defaultLimit}
	if q.Has("limit") {
		n, err := strconv.Atoi(q.Get("limit"))
		if err != nil || n < 1 || n > maxLimit {
			return p, chat.Errorf(chat.CodeBadRequest, "limit must be a number from 1 to %d", maxLimit)
		}
		p.Limit = n
	}
	given := 0
	for _, k := range []string{"before_seq", "after_seq", "since", "cursor"} {
		if q.Has(k) {
			given++
		}
	}
	if given > 1 {
		return p, chat.Errorf(chat.CodeBadRequest, "use only one of before_seq, after_seq, since and cursor")
	}
	var err error
	switch {
	case q.Has("before_seq"):
		p.Seq, err = parseSeq(q, "before_seq")
	case q.Has("after_seq"):
		p.After = true
		p.Seq, err = parseSeq(q, "after_seq")
	case q.Has("since"):
		p.Since, err = time.Parse(time.RFC3339Nano, q.Get("since"))
		if err != nil {
			err = chat.Errorf(chat.CodeBadRequest, "since must be an RFC 3339 time such as 2026-01-02T15:04:05Z")
		}
	case q.Has("cursor"):
		var c page
		if c, err = parseCursor(q.Get("cursor")); err == nil {
			p.After, p.Seq = c.after, c.seq
			if !q.Has("limit") {
				p.Limit = c.limit
			}
		}
	}
	return p, err
}

func parseSeq(q url.Values, key string) (int64, error) {
	n, err := strconv.ParseInt(q.Get(key), 10, 64)
	if err != nil || n < 0 {
		return 0, chat.Errorf(chat.CodeBadRequest, "%s must be a non-negative number", key)
	}
	return n, nil
}

// responseBuffers hold the answers of writeMessages while they are written.
var responseBuffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// writeMessages answers 200 with a JSON object made of head, msgs as an
// array, and tail: the messages' encodings are copied, not made again.
func writeMessages(w http.ResponseWriter, head []byte, msgs []chat.EncodedMessage, tail string) {
	buf := responseBuffers.Get().(*bytes.Buffer)
	buf.Reset()
	buf.Write(head)
	buf.WriteByte('[')
	for i, m := range msgs {
		if i > 0 {
			buf.WriteByte(',')
		}
		buf.Write(m.JSON)
	}
	buf.WriteByte(']')
	buf.WriteString(tail)
	writeJSONHeader(w, http.StatusOK)
	_, _ = w.Write(buf.Bytes())
	if buf.Cap() <= 1<<20 { // do not keep what a very long page grew
		responseBuffers.Put(buf)
	}
}

func (a *API) history(w http.ResponseWriter, r *http.Request, s chat.Session) {
	roomID, err := pathID(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	q, err := parseHistoryQuery(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	// Read one more than asked to know whether another page exists.
	limit := q.Limit
	q.Limit++
	msgs, err := a.cfg.Store.History(r.Context(), s.User.ID, roomID, q)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	next := "null"
	if len(msgs) > limit {
		var c page
		if q.After || !q.Since.IsZero() {
			msgs = msgs[:limit]
			c = page{after: true, seq: msgs[len(msgs)-1].Seq, limit: limit}
		} else {
			msgs = msgs[1:]
			c = page{seq: msgs[0].Seq, limit: limit}
		}
		next = strconv.Quote(c.cursor())
	}
	writeMessages(w, []byte(`{"messages":`), msgs, `,"next_cursor":`+next+"}\n")
}

// thread answers GET /api/v1/messages/{id}: the message and its first
// maxLimit replies (the replies endpoint pages through longer threads).
func (a *API) thread(w http.ResponseWriter, r *http.Request, s chat.Session) {
	messageID, err := pathID(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	msg, replies, err := a.cfg.Store.Thread(r.Context(), s.User.ID, messageID, 0, maxLimit)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	head := append(append([]byte(`{"message":`), msg.JSON...), `,"replies":`...)
	writeMessages(w, head, replies, "}\n")
}

// replies answers GET /api/v1/messages/{id}/replies?limit=&after_seq=.
func (a *API) replies(w http.ResponseWriter, r *http.Request, s chat.Session) {
	messageID, err := pathID(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
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
	_, replies, err := a.cfg.Store.Thread(r.Context(), s.User.ID, messageID, after, limit+1)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	next := "null"
	if len(replies) > limit {
		replies = replies[:limit]
		next = strconv.FormatInt(replies[limit-1].Seq, 10)
	}
	writeMessages(w, []byte(`{"replies":`), replies, `,"next_after_seq":`+next+"}\n")
}
