package web

import (
	"bytes"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/switchboard-chat/switchboard/chat"
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
	msg, created, err := a.cfg.Poster.Post(r.Context(), nm)
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

// parseHistoryQuery reads the query string of GET .../messages (SPEC §5):
// the numbers and times; the history service checks the rest.
func parseHistoryQuery(r *http.Request) (chat.HistoryQuery, error) {
	q := r.URL.Query()
	var p chat.HistoryQuery
	if q.Has("limit") {
		n, err := strconv.Atoi(q.Get("limit"))
		if err != nil {
			return p, chat.Errorf(chat.CodeBadRequest, "limit must be a number from 1 to %d", chat.MaxPageSize)
		}
		p.Limit = &n
	}
	for key, seq := range map[string]**int64{"before_seq": &p.BeforeSeq, "after_seq": &p.AfterSeq} {
		if q.Has(key) {
			n, err := parseSeq(q, key)
			if err != nil {
				return p, err
			}
			*seq = &n
		}
	}
	if q.Has("since") {
		since, err := time.Parse(time.RFC3339Nano, q.Get("since"))
		if err != nil {
			return p, chat.Errorf(chat.CodeBadRequest, "since must be an RFC 3339 time such as 2026-01-02T15:04:05Z")
		}
		p.Since = &since
	}
	if q.Has("cursor") {
		p.Cursor = q.Get("cursor")
		if p.Cursor == "" {
			return p, chat.Errorf(chat.CodeBadRequest, "unknown cursor")
		}
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
	page, err := a.cfg.History.Page(r.Context(), s.User.ID, roomID, q)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	next := "null"
	if page.NextCursor != "" {
		next = strconv.Quote(page.NextCursor)
	}
	writeMessages(w, []byte(`{"messages":`), page.Messages, `,"next_cursor":`+next+"}\n")
}

// thread answers GET /api/v1/messages/{id}: the message and its first
// chat.MaxPageSize replies (the replies endpoint pages through longer
// threads).
func (a *API) thread(w http.ResponseWriter, r *http.Request, s chat.Session) {
	messageID, err := pathID(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	msg, replies, err := a.cfg.History.Thread(r.Context(), s.User.ID, messageID, 0, chat.MaxPageSize)
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
	limit := chat.DefaultPageSize
	if q.Has("limit") {
		n, err := strconv.Atoi(q.Get("limit"))
		if err != nil || n < 1 || n > chat.MaxPageSize {
			a.fail(w, r, chat.Errorf(chat.CodeBadRequest, "limit must be a number from 1 to %d", chat.MaxPageSize))
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
	_, replies, err := a.cfg.History.Thread(r.Context(), s.User.ID, messageID, after, limit+1)
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
