package hub

import (
	"context"
	"log/slog"
	"time"

	"github.com/switchboard-chat/switchboard/chat"
)

// A connection's presence entry is made by its Connect (connectPresence),
// re-asserted by its node every PresenceRefresh, and removed by its
// Disconnect when it closes (leavePresence). Redis may lose entries (a
// restart without persistence, a failover to a replica that lagged) or be
// unreachable for a while, and presence still comes right by itself (SPEC
// §7, §15):
//   - the refresh adds back the entries Redis lost, and announces online
//     the users it found with none;
//   - a Disconnect that failed is retried at every refresh until it
//     succeeds, and then announces its user offline if they have no live
//     connection left (nobody else would: Redis may have lost the entry,
//     and with it the sweep's index entry);
//   - a refresh never makes an entry again after its connection's
//     Disconnect: a connection that closes while a refresh that re-asserts
//     it is on its way hands its Disconnect to that refresh, which runs it
//     once Redis answered.

type presenceFrame struct {
	Type   string    `json:"type"`
	Room   string    `json:"room"`
	User   chat.User `json:"user"`
	Status string    `json:"status"`
}

// errTooManyConns refuses a connection over MaxConnsPerUser.
var errTooManyConns = chat.Errorf(chat.CodeRateLimited, "too many open connections for this user")

// maxPendingCleanups bounds the failed Disconnects kept for a retry. Past
// it, the entries of newer ones expire by themselves (TTL) and are swept,
// unless Redis lost them.
const maxPendingCleanups = 100_000

// presenceTimeout bounds each presence call to Redis.
const presenceTimeout = 5 * time.Second

// goneConn is a closed connection whose presence entry is to be removed.
type goneConn struct {
	user  chat.User
	id    string
	rooms []string // to announce the user offline to; nil: the user's rooms in the store
}

// connectPresence records c in Presence, unless its user has
// MaxConnsPerUser connections on all nodes already (errTooManyConns). It
// reports whether the user just came online. Presence failing (Redis down)
// lets the connection in uncounted: an outage of the limit's store must not
// become an outage of the service. Either way the refresh re-asserts the
// connection from then on.
func (h *Hub) connectPresence(c *conn) (cameOnline bool, err error) {
	if h.cfg.Presence == nil {
		return false, nil
	}
	ctx, cancel := context.WithTimeout(h.ctx, presenceTimeout)
	defer cancel()
	online, allowed, err := h.cfg.Presence.Connect(ctx, c.user.ID, c.id, h.cfg.MaxConnsPerUser)
	if err != nil {
		c.logger().WarnContext(c.ctx, "presence connect failed; the connection is not counted", slog.Any("error", err))
		c.present.Store(true)
		return false, nil
	}
	if !allowed {
		return false, errTooManyConns
	}
	c.present.Store(true)
	return online, nil
}

// leavePresence removes c, closed and no longer among h.users, from
// Presence, and tells rooms if its user went offline. If a refresh that
// re-asserts c is on its way, the removal waits for it.
func (h *Hub) leavePresence(c *conn, rooms []string) {
	if h.cfg.Presence == nil || !c.present.Load() {
		return
	}
	g := goneConn{user: c.user, id: c.id, rooms: rooms}
	h.presenceMu.Lock()
	if h.refreshing[c] {
		h.handedOff = append(h.handedOff, g)
		h.presenceMu.Unlock()
		return
	}
	h.presenceMu.Unlock()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(h.ctx), presenceTimeout)
	defer cancel()
	h.disconnectPresence(ctx, g)
}

// disconnectPresence removes g's entry and, when its user has no live
// connection left on any node, tells their rooms. A failure keeps g for a
// retry at the next refresh, and is reported (false).
func (h *Hub) disconnectPresence(ctx context.Context, g goneConn) bool {
	offline, err := h.cfg.Presence.Disconnect(ctx, g.user.ID, g.id)
	if err != nil {
		h.log.WarnContext(h.ctx, "presence update failed; retried at the next refresh", slog.String("user_id", g.user.ID), slog.Any("error", err))
		h.presenceMu.Lock()
		if len(h.pendingCleanups) < maxPendingCleanups {
			g.rooms = nil // read when needed: the list may be long and wait long
			h.pendingCleanups[g.id] = g
		}
		h.cfg.metrics.PresenceCleanups.Set(float64(len(h.pendingCleanups)))
		h.presenceMu.Unlock()
		return false
	}
	if !offline || len(h.liveConnsOf(g.user.ID)) > 0 {
		return true // a connection here that Redis lacks is re-asserted by the next refresh
	}
	rooms := g.rooms
	if rooms == nil {
		if rooms, err = h.storedRooms(ctx, g.user.ID); err != nil {
			h.log.WarnContext(h.ctx, "presence: cannot read the rooms to announce a user offline in", slog.String("user_id", g.user.ID), slog.Any("error", err))
			return true
		}
	}
	h.broadcastPresence(ctx, g.user, rooms, "offline")
	return true
}

// liveConnsOf returns userID's connections on this node that Presence
// counts (or would, had Redis answered).
func (h *Hub) liveConnsOf(userID string) []*conn {
	h.mu.RLock()
	defer h.mu.RUnlock()
	var cs []*conn
	for c := range h.users[userID] {
		if c.present.Load() {
			cs = append(cs, c)
		}
	}
	return cs
}

// storedRooms lists the rooms userID is a member of.
func (h *Hub) storedRooms(ctx context.Context, userID string) ([]string, error) {
	cursors, err := h.cfg.Store.Cursors(ctx, userID)
	if err != nil {
		return nil, err
	}
	rooms := make([]string, len(cursors))
	for i, cur := range cursors {
		rooms[i] = cur.RoomID
	}
	return rooms, nil
}

// broadcastPresence tells each of rooms that user went online or offline.
func (h *Hub) broadcastPresence(ctx context.Context, user chat.User, rooms []string, status string) {
	for _, room := range rooms {
		h.publish(ctx, Event{Room: room, From: user.ID,
			Frame: encode(presenceFrame{Type: "presence", Room: room, User: user, Status: status})})
	}
}

// refreshPresence keeps this node's connections right in Presence until
// the hub stops: it re-asserts them, retries the cleanups that failed, and
// announces the users of dead nodes offline.
func (h *Hub) refreshPresence() {
	t := time.NewTicker(h.cfg.PresenceRefresh)
	defer t.Stop()
	for {
		select {
		case <-h.ctx.Done():
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(h.ctx, presenceTimeout)
		h.reassertPresence(ctx)
		h.retryCleanups(ctx)
		h.announceDead(ctx)
		cancel()
	}
}

// reassertPresence refreshes every live connection of this node, adding
// back those Redis lost, and announces online the users it found with no
// live connection. Connections that closed meanwhile are removed after it.
func (h *Hub) reassertPresence(ctx context.Context) {
	conns := make(map[string][]string)
	h.presenceMu.Lock()
	h.refreshing = make(map[*conn]bool)
	h.mu.RLock()
	for user, set := range h.users {
		for c := range set {
			if c.present.Load() {
				conns[user] = append(conns[user], c.id)
				h.refreshing[c] = true
			}
		}
	}
	h.mu.RUnlock()
	h.presenceMu.Unlock()

	cameOnline, err := h.cfg.Presence.Refresh(ctx, conns)
	if err != nil {
		h.log.WarnContext(h.ctx, "presence refresh failed", slog.Any("error", err))
	}

	h.presenceMu.Lock()
	handed := h.handedOff
	h.refreshing, h.handedOff = nil, nil
	h.presenceMu.Unlock()
	for _, g := range handed {
		h.disconnectPresence(ctx, g)
	}
	for _, user := range cameOnline {
		cs := h.liveConnsOf(user)
		if len(cs) == 0 {
			continue // they all closed meanwhile, and their Disconnect ran
		}
		rooms := map[string]bool{}
		for _, c := range cs {
			for _, r := range c.rooms() {
				rooms[r] = true
			}
		}
		ids := make([]string, 0, len(rooms))
		for r := range rooms {
			ids = append(ids, r)
		}
		h.broadcastPresence(ctx, cs[0].user, ids, "online")
	}
}

// retryCleanups runs again the Disconnects that failed, until Redis takes
// them. A connection's id is its own: a stale cleanup never removes a newer
// connection of the same user.
func (h *Hub) retryCleanups(ctx context.Context) {
	h.presenceMu.Lock()
	pending := make([]goneConn, 0, len(h.pendingCleanups))
	for _, g := range h.pendingCleanups {
		pending = append(pending, g)
	}
	clear(h.pendingCleanups)
	h.presenceMu.Unlock()
	for i, g := range pending {
		if ctx.Err() == nil && h.disconnectPresence(ctx, g) {
			continue
		}
		// Redis is still away, or time is up: the next refresh goes on.
		h.presenceMu.Lock()
		for _, rest := range pending[i:] {
			h.pendingCleanups[rest.id] = rest
		}
		h.presenceMu.Unlock()
		break
	}
	h.presenceMu.Lock()
	h.cfg.metrics.PresenceCleanups.Set(float64(len(h.pendingCleanups)))
	h.presenceMu.Unlock()
}

// announceDead tells the rooms of users whose node died that they are
// offline; Sweep hands each such user to one node only.
func (h *Hub) announceDead(ctx context.Context) {
	users, err := h.cfg.Presence.Sweep(ctx)
	if err != nil {
		h.log.WarnContext(h.ctx, "presence sweep failed", slog.Any("error", err))
	}
	for _, id := range users {
		p, err := h.cfg.Store.Profile(ctx, id)
		if err != nil {
			continue
		}
		rooms, err := h.storedRooms(ctx, id)
		if err != nil {
			continue
		}
		h.broadcastPresence(ctx, p.User, rooms, "offline")
	}
}
