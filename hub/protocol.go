package hub

import (
	"context"
	"log/slog"
	"slices"
	"time"

	"golang.org/x/time/rate"

	"github.com/switchboard-chat/switchboard/chat"
)

// This file is the protocol: what each client frame of SPEC §6 does. Each
// handler returns the error the client is told, as an error frame echoing
// the request's id; serve.go is the transport that reads the frames.

// The per-connection budgets a request counts against (conn.refused).
const (
	budgetSend     = 0 // send, edit, delete, react
	budgetRequests = 1 // subscribe, unsubscribe, history, read, ping, auth
)

// handle answers one valid frame. It returns false when the connection is
// closing and the reader should stop.
func (c *conn) handle(f clientFrame) bool {
	switch f.Type {
	case "send", "edit", "delete", "react":
		if !c.withinBudget(f, c.sendLimiter(), budgetSend, "sending too fast") {
			return c.ctx.Err() == nil && !c.isClosed()
		}
	case "typing":
		// Best effort: over its own budget it is dropped.
		if !c.typingLimiter().Allow() {
			return true
		}
	default:
		if !c.withinBudget(f, c.requestLimiter(), budgetRequests, "too many requests") {
			return c.ctx.Err() == nil && !c.isClosed()
		}
	}
	if f.Room != nil && !chat.ValidID(*f.Room) {
		// Another spelling of a room's id names nothing (SPEC §2): it must
		// never reach a map keyed by room id.
		c.fail(f, chat.Errorf(chat.CodeNotFound, "no room %q", *f.Room))
		return true
	}
	ctx, cancel := context.WithTimeout(c.ctx, 10*time.Second)
	defer cancel()
	var err error
	switch f.Type {
	case "send":
		err = c.send(ctx, f)
	case "edit", "delete", "react":
		err = c.update(ctx, f)
	case "subscribe":
		err = c.subscribeFrame(ctx, f)
	case "unsubscribe":
		c.unsubscribeFrame(f)
	case "history":
		err = c.history(ctx, f)
	case "typing":
		err = c.typing(f)
	case "read":
		_, err = c.h.cfg.Store.MarkRead(ctx, c.user.ID, *f.Room, *f.Seq)
	case "ping":
		c.enqueueFrame(encode(pongFrame{Type: "pong", ID: f.ID}))
	case "auth":
		return c.reauth(ctx, f)
	}
	if err != nil {
		c.fail(f, err)
	}
	return true
}

// fail answers f with err as an error frame, logging what the client is
// not told.
func (c *conn) fail(f clientFrame, err error) {
	if chat.ErrorOf(err).Code == chat.CodeInternal {
		c.logger().ErrorContext(c.ctx, "request failed", slog.String("type", f.Type), slog.Any("error", err))
	}
	c.enqueueFrame(encode(newErrorFrame(f.ID, err)))
}

// withinBudget takes one token of l for f. Without one, f is answered
// rate_limited with the wait until the next token, and a connection that
// keeps asking (maxRateRefused refusals in a row) is closed with 1008.
func (c *conn) withinBudget(f clientFrame, l *rate.Limiter, budget int, message string) bool {
	res := l.Reserve()
	wait := res.Delay()
	if wait == 0 {
		c.refused[budget] = 0
		return true
	}
	res.Cancel()
	c.h.cfg.metrics.RateLimited.Inc()
	c.refused[budget]++
	if c.refused[budget] >= maxRateRefused {
		c.closeWith(closePolicy, "far over the rate limit")
		return false
	}
	retry := max(wait, time.Millisecond).Milliseconds()
	c.enqueueFrame(encode(errorFrame{Type: "error", ID: f.ID, Code: string(chat.CodeRateLimited),
		Message: message, RetryAfterMs: &retry}))
	return false
}

func (c *conn) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// send stores a message and acks it once durable.
func (c *conn) send(ctx context.Context, f clientFrame) error {
	nm := chat.NewMessage{RoomID: *f.Room, SenderID: c.user.ID, Body: *f.Body, Source: chat.SourceWeb}
	if f.ParentID != nil {
		nm.ParentID = *f.ParentID
	}
	if f.ClientID != nil {
		nm.ClientID = *f.ClientID
	}
	msg, _, err := c.h.cfg.Poster.Post(ctx, nm)
	if err != nil {
		return err
	}
	c.enqueueFrame(encode(ackFrame{Type: "ack", ID: f.ID, Message: &msg}))
	return nil
}

// update changes a message (SPEC §13) and acks with its new state once
// the change is durable (or at once when it changes nothing).
func (c *conn) update(ctx context.Context, f clientFrame) error {
	u := chat.Update{MessageID: *f.MessageID, UserID: c.user.ID}
	switch f.Type {
	case "edit":
		u.Action, u.Body = chat.ActionEdit, *f.Body
	case "delete":
		u.Action = chat.ActionDelete
	case "react":
		u.Action, u.Emoji = chat.ActionReact, *f.Emoji
		if *f.Op == "remove" {
			u.Action = chat.ActionUnreact
		}
	}
	msg, _, err := c.h.cfg.Poster.Update(ctx, u)
	if err != nil {
		return err
	}
	c.enqueueFrame(encode(ackFrame{Type: "ack", ID: f.ID, Message: &msg}))
	return nil
}

// subscribeFrame subscribes to a room the user belongs to: from after_seq,
// else (re)confirming a subscription that stands, else from the stored
// delivery cursor.
func (c *conn) subscribeFrame(ctx context.Context, f clientFrame) error {
	h, room := c.h, *f.Room
	c.memberMu.Lock()
	defer c.memberMu.Unlock()
	if err := h.cfg.Store.CheckMember(ctx, c.user.ID, room); err != nil {
		return err
	}
	c.optedOut = slices.DeleteFunc(c.optedOut, func(r string) bool { return r == room })
	from := int64(-1)
	switch {
	case f.AfterSeq != nil:
		from = max(*f.AfterSeq, 0)
	case c.subscribedTo(room):
		c.enqueueFrame(encode(subscribedFrame{Type: "subscribed", ID: f.ID, Room: room, LastSeq: c.lastSeq(room)}))
		return nil
	default:
		cursors, err := h.cfg.Store.Cursors(ctx, c.user.ID)
		if err != nil {
			return err
		}
		for _, cur := range cursors {
			if cur.RoomID == room {
				from = cur.DeliveredSeq
			}
		}
	}
	return h.subscribe(ctx, c, room, max(from, 0), f.ID)
}

// unsubscribeFrame ends a subscription until the client subscribes again.
func (c *conn) unsubscribeFrame(f clientFrame) {
	room := *f.Room
	c.memberMu.Lock()
	if c.h.unsubscribe(c, room) && !slices.Contains(c.optedOut, room) {
		c.optedOut = append(c.optedOut, room)
	}
	c.memberMu.Unlock()
	c.enqueueFrame(encode(unsubscribedFrame{Type: "unsubscribed", ID: f.ID, Room: room}))
}

// history answers a page of the room's history, with the query options of
// the HTTP API (SPEC §5): before_seq, after_seq, since, cursor, limit.
func (c *conn) history(ctx context.Context, f clientFrame) error {
	q := chat.HistoryQuery{BeforeSeq: f.BeforeSeq, AfterSeq: f.AfterSeq, Since: f.Since, Limit: f.Limit}
	if f.Cursor != nil {
		if *f.Cursor == "" {
			return chat.Errorf(chat.CodeBadRequest, "unknown cursor")
		}
		q.Cursor = *f.Cursor
	}
	page, err := c.h.cfg.History.Page(ctx, c.user.ID, *f.Room, q)
	if err != nil {
		return err
	}
	frame := historyFrame{Type: "history", ID: f.ID, Room: *f.Room, Messages: page.Messages}
	if page.NextCursor != "" {
		frame.NextCursor = &page.NextCursor
	}
	data := encode(frame)
	if c.waitRoom(len(data)) {
		c.enqueueFrame(data)
	}
	return nil
}

// typing tells the room's other subscribers, on every node.
func (c *conn) typing(f clientFrame) error {
	if !c.subscribedTo(*f.Room) {
		return chat.Errorf(chat.CodeForbidden, "not subscribed to this room")
	}
	c.h.publish(c.ctx, Event{Room: *f.Room, From: c.user.ID, Frame: encode(typingFrame{Type: "typing", Room: *f.Room, User: c.user})})
	return nil
}

// reauth extends the connection with a fresh token of the same user (SPEC
// §3). A refused token, or one of another user, closes it with 4401; a
// store or Redis failure is only answered, the connection keeps its token.
func (c *conn) reauth(ctx context.Context, f clientFrame) bool {
	s, err := c.h.cfg.Auth.Authenticate(ctx, f.Token)
	if err == nil && s.User.ID != c.user.ID {
		err = chat.Errorf(chat.CodeUnauthorized, "the token is another user's")
	}
	if err != nil {
		if chat.ErrorOf(err).Code != chat.CodeUnauthorized {
			c.fail(f, err)
			return true
		}
		c.closeWithNotice(encode(newErrorFrame(f.ID, err)), closeUnauthorized, "authentication failed")
		return false
	}
	c.reauthenticate(s)
	c.enqueueFrame(encode(authedFrame{Type: "authed", ID: f.ID, ExpiresAt: s.ExpiresAt.UTC()}))
	return true
}

// lastSeq is the position of the connection's room roomID, 0 if it has none.
func (c *conn) lastSeq(roomID string) int64 {
	r := c.room(roomID)
	if r == nil {
		return 0
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lastSeq
}
