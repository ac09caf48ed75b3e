package web

import (
	"fmt"
	"net/http"
	"regexp"
	"strings"

	"github.com/switchboard-chat/switchboard/chat"
)

// roomNamePattern: as Slack channel names, so #name works in SMS and Slack.
var roomNamePattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

func (a *API) createRoom(w http.ResponseWriter, r *http.Request, s chat.Session) {
	var req struct {
		Name       string `json:"name"`
		Visibility string `json:"visibility"`
	}
	if err := decode(w, r, &req); err != nil {
		a.fail(w, r, err)
		return
	}
	if !roomNamePattern.MatchString(req.Name) {
		a.fail(w, r, chat.Errorf(chat.CodeBadRequest, "name must be 1-64 letters, digits, - or _"))
		return
	}
	if req.Visibility == "" {
		req.Visibility = chat.Public
	}
	if req.Visibility != chat.Public && req.Visibility != chat.Private {
		a.fail(w, r, chat.Errorf(chat.CodeBadRequest, `visibility must be "public" or "private"`))
		return
	}
	room, err := a.cfg.Store.CreateRoom(r.Context(), s.User.ID, req.Name, req.Visibility)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.cfg.Hub.Joined(r.Context(), chat.Membership{UserID: s.User.ID, RoomID: room.ID, New: true})
	writeJSON(w, http.StatusCreated, room)
}

func (a *API) listRooms(w http.ResponseWriter, r *http.Request, s chat.Session) {
	rooms, err := a.cfg.Store.RoomsOf(r.Context(), s.User.ID)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"rooms": nonNil(rooms)})
}

func (a *API) publicRooms(w http.ResponseWriter, r *http.Request, _ chat.Session) {
	rooms, err := a.cfg.Store.PublicRooms(r.Context())
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"rooms": nonNil(rooms)})
}

func (a *API) joinRoom(w http.ResponseWriter, r *http.Request, s chat.Session) {
	roomID, err := pathID(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	room, m, err := a.cfg.Store.Join(r.Context(), s.User.ID, roomID)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if m.New {
		a.cfg.Hub.Joined(r.Context(), m)
	}
	writeJSON(w, http.StatusOK, room)
}

func (a *API) addMember(w http.ResponseWriter, r *http.Request, s chat.Session) {
	roomID, err := pathID(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	var req struct {
		Username string `json:"username"`
	}
	if err := decode(w, r, &req); err != nil {
		a.fail(w, r, err)
		return
	}
	if req.Username == "" {
		a.fail(w, r, chat.Errorf(chat.CodeBadRequest, "username is required"))
		return
	}
	if !chat.ValidUsername(strings.ToLower(req.Username)) {
		a.fail(w, r, chat.Errorf(chat.CodeNotFound, "no user named %q", req.Username))
		return
	}
	user, m, err := a.cfg.Store.AddMember(r.Context(), s.User.ID, roomID, req.Username)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if m.New {
		a.cfg.Hub.Joined(r.Context(), m)
	}
	writeJSON(w, http.StatusOK, map[string]any{"room_id": roomID, "user": user})
}

func (a *API) leaveRoom(w http.ResponseWriter, r *http.Request, s chat.Session) {
	roomID, err := pathID(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if err := a.cfg.Store.Leave(r.Context(), s.User.ID, roomID); err != nil {
		a.fail(w, r, err)
		return
	}
	a.cfg.Changes.UserChanged(r.Context(), s.User.ID, false)
	a.cfg.Hub.Left(r.Context(), s.User.ID, roomID, "left")
	w.WriteHeader(http.StatusNoContent)
}

// pathID returns the {id} of the request's path if it is exactly an id the
// server issued; any other spelling names nothing (SPEC §2).
func pathID(r *http.Request) (string, error) {
	id := r.PathValue("id")
	if !chat.ValidID(id) {
		return "", chat.Errorf(chat.CodeNotFound, "no such id: %q", id)
	}
	return id, nil
}

// nonNil makes an empty list encode as [] rather than null.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// errPresenceUnavailable is what a client is told when presence cannot be
// read; the cause goes to the log.
var errPresenceUnavailable = chat.Errorf(chat.CodeUnavailable, "presence is unavailable; try again")

// presence answers GET /api/v1/rooms/{id}/presence: the members online on
// any node.
func (a *API) presence(w http.ResponseWriter, r *http.Request, s chat.Session) {
	roomID, err := pathID(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if err := a.cfg.Store.CheckMember(r.Context(), s.User.ID, roomID); err != nil {
		a.fail(w, r, err)
		return
	}
	members, err := a.cfg.Store.RoomMembers(r.Context(), roomID)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	ids := make([]string, len(members))
	for i, m := range members {
		ids[i] = m.ID
	}
	online, err := a.cfg.Presence.Online(r.Context(), ids)
	if err != nil {
		a.fail(w, r, fmt.Errorf("%w: %w", errPresenceUnavailable, err))
		return
	}
	isOnline := make(map[string]bool, len(online))
	for _, id := range online {
		isOnline[id] = true
	}
	users := []chat.User{}
	for _, m := range members {
		if isOnline[m.ID] {
			users = append(users, m)
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"online": users})
}
