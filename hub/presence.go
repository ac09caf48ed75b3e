package hub

import (
	"context"
	"log/slog"
	"time"

	"github.com/switchboard-chat/switchboard/chat"
)

type presenceFrame struct {
	Type   string    `json:"type"`
	Room   string    `json:"room"`
	User   chat.User `json:"user"`
	Status string    `json:"status"`
}

// errTooManyConns refuses a connection over MaxConnsPerUser.
var errTooManyConns = chat.Errorf(chat.CodeRateLimited, "too many open connections for this user")

// connectPresence records c in Presence, unless its user has
// MaxConnsPerUser connections on all nodes already (errTooManyConns). It
// reports whether the user just came online. Presence failing (Redis down)
// lets the connection in uncounted: an outage of the limit's store must not
// become an outage of the service.
func (h *Hub) connectPresence(c *conn) (cameOnline bool, err error) {
	if h.cfg.Presence == nil {
		return false, nil
	}
	ctx, cancel := context.WithTimeout(h.ctx, 5*time.Second)
	defer cancel()
	online, allowed, err := h.cfg.Presence.Connect(ctx, c.user.ID, c.id, h.cfg.MaxConnsPerUser)
	if err != nil {
		c.logger().WarnContext(c.ctx, "presence connect failed; the connection is not counted", slog.Any("error", err))
		return false, nil
	}
	if !allowed {
		return false, errTooManyConns
	}
	return online, nil
}

// disconnectPresence removes c from Presence and, when that makes its user
// go offline on the whole cluster, tells the user's rooms.
func (h *Hub) disconnectPresence(c *conn, rooms []string) {
	if h.cfg.Presence == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(h.ctx), 5*time.Second)
	defer cancel()
	offline, err := h.cfg.Presence.Disconnect(ctx, c.user.ID, c.id)
	if err != nil {
		h.log.WarnContext(h.ctx, "presence update failed", slog.String("user_id", c.user.ID), slog.Any("error", err))
		return
	}
	if offline {
		h.broadcastPresence(ctx, c.user, rooms, "offline")
	}
}

// broadcastPresence tells each of rooms that user went online or offline.
func (h *Hub) broadcastPresence(ctx context.Context, user chat.User, rooms []string, status string) {
	for _, room := range rooms {
		h.publish(ctx, Event{Room: room, From: user.ID,
			Frame: encode(presenceFrame{Type: "presence", Room: room, User: user, Status: status})})
	}
}

// refreshPresence keeps this node's connections alive in Presence until the
// hub stops.
func (h *Hub) refreshPresence() {
	t := time.NewTicker(h.cfg.PresenceRefresh)
	defer t.Stop()
	for {
		select {
		case <-h.ctx.Done():
			return
		case <-t.C:
		}
		conns := make(map[string][]string)
		h.mu.RLock()
		for user, set := range h.users {
			for c := range set {
				conns[user] = append(conns[user], c.id)
			}
		}
		h.mu.RUnlock()
		ctx, cancel := context.WithTimeout(h.ctx, 5*time.Second)
		if err := h.cfg.Presence.Refresh(ctx, conns); err != nil {
			h.log.WarnContext(h.ctx, "presence refresh failed", slog.Any("error", err))
		}
		h.announceDead(ctx)
		cancel()
	}
}

// announceDead tells the rooms of users whose node died that they are
// offline; Sweep hands each such user to one node only.
func (h *Hub) announceDead(ctx context.Context) {
	users, err := h.cfg.Presence.Sweep(ctx)
	if err != nil {
		h.log.WarnContext(h.ctx, "presence sweep failed", slog.Any("error", err))
		return
	}
	for _, id := range users {
		p, err := h.cfg.Store.Profile(ctx, id)
		if err != nil {
			continue
		}
		cursors, err := h.cfg.Store.Cursors(ctx, id)
		if err != nil {
			continue
		}
		rooms := make([]string, len(cursors))
		for i, cur := range cursors {
			rooms[i] = cur.RoomID
		}
		h.broadcastPresence(ctx, p.User, rooms, "offline")
	}
}
