package hub

import (
	"context"
	"log/slog"
	"slices"
	"time"

	"github.com/switchboard-chat/switchboard/chat"
)

// Control is a change that the open connections of every node apply (SPEC
// §3, §4): a membership that began or ended, or sessions that ended. The
// node where it happens applies it at once and publishes it to the others
// through the broker's control channel.
//
// Guarantee: while Redis answers, every node applies a control within
// milliseconds (the spec asks for 1 s). A node that cannot publish keeps
// its controls and publishes them once Redis answers again (the broker's
// job). A node whose own subscription to Redis broke may have missed some:
// after it resubscribes (Resync) it re-checks every open connection, its
// session against the denylist and its rooms against Postgres.
type Control struct {
	Op   ControlOp `json:"op"`
	User string    `json:"user"` // whose connections it concerns
	// Room and FromSeq (join): connections catch up from FromSeq.
	Room    string `json:"room,omitempty"`
	FromSeq int64  `json:"from_seq,omitempty"`
	// Reason (leave) is what the unsubscribed frame says: "left",
	// "removed", "banned".
	Reason string `json:"reason,omitempty"`
	// Sessions (end_sessions) whose connections close with 4401.
	Sessions []string `json:"sessions,omitempty"`
}

// ControlOp is what a Control does.
type ControlOp string

// The controls. OpReconcile makes every connection re-check its session
// and re-read its memberships: a broker sends it when it had to drop
// controls it could not publish.
const (
	OpJoin        ControlOp = "join"
	OpLeave       ControlOp = "leave"
	OpEndSessions ControlOp = "end_sessions"
	OpReconcile   ControlOp = "reconcile"
)

// Joined subscribes the open connections of m's user, on every node, to
// m's room from m.FromSeq (the HTTP API calls it after a join or an added
// member).
func (h *Hub) Joined(ctx context.Context, m chat.Membership) {
	h.control(ctx, Control{Op: OpJoin, User: m.UserID, Room: m.RoomID, FromSeq: m.FromSeq})
}

// Left unsubscribes the open connections of userID, on every node, from
// roomID, and tells them why.
func (h *Hub) Left(ctx context.Context, userID, roomID, reason string) {
	h.control(ctx, Control{Op: OpLeave, User: userID, Room: roomID, Reason: reason})
}

// EndSessions closes with 4401, on every node, the connections of userID
// opened with (or re-authenticated into) one of sessions.
func (h *Hub) EndSessions(ctx context.Context, userID string, sessions []string) {
	h.control(ctx, Control{Op: OpEndSessions, User: userID, Sessions: sessions})
}

func (h *Hub) control(ctx context.Context, ctl Control) {
	h.ReceiveControl(ctl)
	if err := h.cfg.Broker.PublishControl(ctx, ctl); err != nil {
		h.log.WarnContext(ctx, "publish control failed; the broker sends it once redis answers",
			slog.String("op", string(ctl.Op)), slog.Any("error", err))
	}
}

// ReceiveControl applies a control to this node's connections. It never
// blocks: membership changes are queued on each connection, in order.
func (h *Hub) ReceiveControl(ctl Control) {
	switch ctl.Op {
	case OpJoin, OpLeave:
		if !chat.ValidID(ctl.Room) {
			return
		}
		for _, c := range h.connsOf(ctl.User) {
			c.queueControl(ctl)
		}
	case OpEndSessions:
		for _, c := range h.connsOf(ctl.User) {
			if slices.Contains(ctl.Sessions, c.currentSession()) {
				go c.closeWithNotice(encode(errorFrame{Type: "error", Code: string(chat.CodeUnauthorized),
					Message: "this session has ended"}), closeUnauthorized, "session ended")
			}
		}
	case OpReconcile:
		go h.reconcile()
	}
}

// reconcile re-checks every open connection after the broker may have
// lost controls: connections of ended sessions close, and each connection
// re-reads its memberships (in its control queue, so in order with the
// controls that arrive meanwhile).
func (h *Hub) reconcile() {
	conns := h.allConns()
	if h.cfg.Sessions != nil && len(conns) > 0 {
		ctx, cancel := context.WithTimeout(h.ctx, 10*time.Second)
		ids := make([]string, 0, len(conns))
		for _, c := range conns {
			ids = append(ids, c.currentSession())
		}
		ended, err := h.cfg.Sessions.Ended(ctx, slices.Compact(slices.Sorted(slices.Values(ids)))...)
		cancel()
		if err != nil {
			h.log.WarnContext(h.ctx, "reconcile: cannot read ended sessions", slog.Any("error", err))
		}
		for _, c := range conns {
			if slices.Contains(ended, c.currentSession()) {
				go c.closeWithNotice(encode(errorFrame{Type: "error", Code: string(chat.CodeUnauthorized),
					Message: "this session has ended"}), closeUnauthorized, "session ended")
			}
		}
	}
	for _, c := range conns {
		c.queueControl(Control{Op: OpReconcile, User: c.user.ID})
	}
}

// queueControl adds ctl to the connection's queue and starts its applier
// unless it runs. Controls apply one at a time, in order, under memberMu.
func (c *conn) queueControl(ctl Control) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.controls = append(c.controls, ctl)
	start := !c.controlling
	c.controlling = true
	c.mu.Unlock()
	if start {
		go c.applyControls()
	}
}

func (c *conn) applyControls() {
	c.memberMu.Lock()
	defer c.memberMu.Unlock()
	for {
		c.mu.Lock()
		if len(c.controls) == 0 {
			c.controls, c.controlling = nil, false
			c.mu.Unlock()
			return
		}
		ctl := c.controls[0]
		c.controls = c.controls[1:]
		c.mu.Unlock()
		if c.gone {
			continue
		}
		c.applyControl(ctl)
	}
}

// applyControl applies one membership control. Called with memberMu held.
func (c *conn) applyControl(ctl Control) {
	h := c.h
	ctx, cancel := context.WithTimeout(c.ctx, 10*time.Second)
	defer cancel()
	switch ctl.Op {
	case OpJoin:
		c.optedOut = slices.DeleteFunc(c.optedOut, func(r string) bool { return r == ctl.Room })
		if c.subscribedTo(ctl.Room) {
			return
		}
		if err := h.subscribe(ctx, c, ctl.Room, ctl.FromSeq, nil); err != nil && c.ctx.Err() == nil {
			c.logger().WarnContext(c.ctx, "join: subscribe failed", slog.String("room", ctl.Room), slog.Any("error", err))
		}
	case OpLeave:
		c.leave(ctl.Room, ctl.Reason)
	case OpReconcile:
		c.reconcile(ctx)
	}
}

// leave ends the connection's subscription to roomID, if any, and tells
// the client. Called with memberMu held.
func (c *conn) leave(roomID, reason string) {
	subscribed := c.h.unsubscribe(c, roomID)
	optedOut := slices.Contains(c.optedOut, roomID)
	c.optedOut = slices.DeleteFunc(c.optedOut, func(r string) bool { return r == roomID })
	if subscribed || optedOut {
		c.enqueueFrame(encode(unsubscribedFrame{Type: "unsubscribed", Room: roomID, Reason: reason}))
	}
}

// reconcile makes the connection's subscriptions match the user's rooms in
// the store: rooms it no longer belongs to are left ("removed"), rooms it
// belongs to and is not subscribed to (unless the client unsubscribed) are
// caught up from the stored delivery cursor. Called with memberMu held.
func (c *conn) reconcile(ctx context.Context) {
	h := c.h
	h.reconcileSem <- struct{}{}
	cursors, err := h.cfg.Store.Cursors(ctx, c.user.ID)
	<-h.reconcileSem
	if err != nil {
		if c.ctx.Err() == nil {
			c.logger().WarnContext(c.ctx, "reconcile: cannot read memberships", slog.Any("error", err))
		}
		return
	}
	member := make(map[string]int64, len(cursors))
	for _, cur := range cursors {
		member[cur.RoomID] = min(cur.DeliveredSeq, cur.LastSeq)
	}
	for _, room := range c.rooms() {
		if _, ok := member[room]; !ok {
			c.leave(room, "removed")
		}
	}
	for room, from := range member {
		if c.subscribedTo(room) || slices.Contains(c.optedOut, room) {
			continue
		}
		if err := h.subscribe(ctx, c, room, from, nil); err != nil && c.ctx.Err() == nil {
			c.logger().WarnContext(c.ctx, "reconcile: subscribe failed", slog.String("room", room), slog.Any("error", err))
		}
	}
}
