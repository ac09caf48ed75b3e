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

// announcePresence records c as connected (online) or gone, and when that
// makes its user come online or go offline on the whole cluster, tells the
// user's rooms. A presence failure never affects the connection.
func (h *Hub) announcePresence(c *conn, rooms []string, online bool) {
	if h.cfg.Presence == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(h.ctx), 5*time.Second)
	defer cancel()
	var changed bool
	var err error
	status := "offline"
	if online {
		status = "online"
		changed, err = h.cfg.Presence.Connect(ctx, c.user.ID, c.sessionID)
	} else {
		changed, err = h.cfg.Presence.Disconnect(ctx, c.user.ID, c.sessionID)
	}
	if err != nil {
		h.log.Warn("presence update failed", slog.String("user_id", c.user.ID), slog.Any("error", err))
		return
	}
	if !changed {
		return
	}
	for _, room := range rooms {
		h.publishCtx(ctx, Event{Room: room, From: c.user.ID,
			Frame: encode(presenceFrame{Type: "presence", Room: room, User: c.user, Status: status})})
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
				conns[user] = append(conns[user], c.sessionID)
			}
		}
		h.mu.RUnlock()
		ctx, cancel := context.WithTimeout(h.ctx, 5*time.Second)
		if err := h.cfg.Presence.Refresh(ctx, conns); err != nil {
			h.log.Warn("presence refresh failed", slog.Any("error", err))
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
		h.log.Warn("presence sweep failed", slog.Any("error", err))
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
		for _, cur := range cursors {
			h.publishCtx(ctx, Event{Room: cur.RoomID, From: id,
				Frame: encode(presenceFrame{Type: "presence", Room: cur.RoomID, User: p.User, Status: "offline"})})
		}
	}
}
