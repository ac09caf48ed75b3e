package web

import (
	"bytes"
	"net/http"
	"strconv"

	"github.com/switchboard-chat/switchboard/chat"
)

// The changes to a message (SPEC §13): each answers 200 with the message's
// new state, also when it changed nothing.

func (a *API) editMessage(w http.ResponseWriter, r *http.Request, s chat.Session) {
	var req struct {
		Body *string `json:"body"`
	}
	if err := decode(w, r, &req); err != nil {
		a.fail(w, r, err)
		return
	}
	if req.Body == nil {
		a.fail(w, r, chat.Errorf(chat.CodeBadRequest, "body is required"))
		return
	}
	a.update(w, r, s, chat.Update{Action: chat.ActionEdit, Body: *req.Body})
}

func (a *API) deleteMessage(w http.ResponseWriter, r *http.Request, s chat.Session) {
	a.update(w, r, s, chat.Update{Action: chat.ActionDelete})
}

func (a *API) react(w http.ResponseWriter, r *http.Request, s chat.Session) {
	a.update(w, r, s, chat.Update{Action: chat.ActionReact, Emoji: r.PathValue("emoji")})
}

func (a *API) unreact(w http.ResponseWriter, r *http.Request, s chat.Session) {
	a.update(w, r, s, chat.Update{Action: chat.ActionUnreact, Emoji: r.PathValue("emoji")})
}

// update makes u on the message of the path, as the session's user.
func (a *API) update(w http.ResponseWriter, r *http.Request, s chat.Session, u chat.Update) {
	id, err := pathID(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	u.MessageID, u.UserID = id, s.User.ID
	msg, _, err := a.cfg.Poster.Update(r.Context(), u)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, msg)
}

// events answers GET /api/v1/rooms/{id}/events?after_seq=&limit=.
func (a *API) events(w http.ResponseWriter, r *http.Request, s chat.Session) {
	roomID, err := pathID(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	q := r.URL.Query()
	var after int64
	if q.Has("after_seq") {
		if after, err = parseSeq(q, "after_seq"); err != nil {
			a.fail(w, r, err)
			return
		}
	}
	var limit *int
	if q.Has("limit") {
		n, err := strconv.Atoi(q.Get("limit"))
		if err != nil {
			a.fail(w, r, chat.Errorf(chat.CodeBadRequest, "limit must be a number from 1 to %d", chat.MaxEventsPage))
			return
		}
		limit = &n
	}
	evs, err := a.cfg.History.Events(r.Context(), s.User.ID, roomID, after, limit)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	var buf bytes.Buffer
	buf.WriteString(`{"events":[`)
	for i, ev := range evs {
		if i > 0 {
			buf.WriteByte(',')
		}
		b, _ := ev.MarshalJSON() // never fails
		buf.Write(b)
	}
	buf.WriteString("]}\n")
	writeJSONHeader(w, http.StatusOK)
	_, _ = w.Write(buf.Bytes())
}
