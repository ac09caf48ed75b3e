package web

import (
	"net/http"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/switchboard-chat/switchboard/chat"
)

// This file holds the endpoints of SPEC §14: direct rooms, roles,
// moderation, room settings, search and people look-up.

func (a *API) createDirect(w http.ResponseWriter, r *http.Request, s chat.Session) {
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
	room, created, made, err := a.cfg.Store.CreateDirect(r.Context(), s.User.ID, req.Username)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	for _, m := range made {
		a.cfg.Changes.UserChanged(r.Context(), m.UserID, false)
		a.cfg.Hub.Joined(r.Context(), m)
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	writeJSON(w, status, room)
}

func (a *API) members(w http.ResponseWriter, r *http.Request, s chat.Session) {
	roomID, err := pathID(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	members, err := a.cfg.Store.Members(r.Context(), s.User.ID, roomID)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"members": nonNil(members)})
}

// pathIDs returns the room {id} and the {user_id} of the request's path.
func pathIDs(r *http.Request) (roomID, userID string, err error) {
	roomID, err = pathID(r)
	if err != nil {
		return "", "", err
	}
	userID = r.PathValue("user_id")
	if !chat.ValidID(userID) {
		return "", "", chat.Errorf(chat.CodeNotFound, "no such id: %q", userID)
	}
	return roomID, userID, nil
}

func (a *API) setRole(w http.ResponseWriter, r *http.Request, s chat.Session) {
	roomID, userID, err := pathIDs(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	var req struct {
		Role string `json:"role"`
	}
	if err := decode(w, r, &req); err != nil {
		a.fail(w, r, err)
		return
	}
	if req.Role != chat.RoleOwner && req.Role != chat.RoleAdmin && req.Role != chat.RoleMember {
		a.fail(w, r, chat.Errorf(chat.CodeBadRequest, `role must be "owner", "admin" or "member"`))
		return
	}
	m, err := a.cfg.Store.SetRole(r.Context(), s.User.ID, roomID, userID, req.Role)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, m)
}

func (a *API) removeMember(w http.ResponseWriter, r *http.Request, s chat.Session) {
	roomID, userID, err := pathIDs(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if err := a.cfg.Store.RemoveMember(r.Context(), s.User.ID, roomID, userID); err != nil {
		a.fail(w, r, err)
		return
	}
	a.cfg.Changes.UserChanged(r.Context(), userID, false)
	a.cfg.Hub.Left(r.Context(), userID, roomID, "removed")
	w.WriteHeader(http.StatusNoContent)
}

func (a *API) ban(w http.ResponseWriter, r *http.Request, s chat.Session) {
	roomID, err := pathID(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	var req struct {
		UserID string `json:"user_id"`
	}
	if err := decode(w, r, &req); err != nil {
		a.fail(w, r, err)
		return
	}
	if req.UserID == "" {
		a.fail(w, r, chat.Errorf(chat.CodeBadRequest, "user_id is required"))
		return
	}
	if !chat.ValidID(req.UserID) {
		a.fail(w, r, chat.Errorf(chat.CodeNotFound, "no such user: %q", req.UserID))
		return
	}
	wasMember, err := a.cfg.Store.Ban(r.Context(), s.User.ID, roomID, req.UserID)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if wasMember {
		a.cfg.Changes.UserChanged(r.Context(), req.UserID, false)
		a.cfg.Hub.Left(r.Context(), req.UserID, roomID, "banned")
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *API) unban(w http.ResponseWriter, r *http.Request, s chat.Session) {
	roomID, userID, err := pathIDs(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if err := a.cfg.Store.Unban(r.Context(), s.User.ID, roomID, userID); err != nil {
		a.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *API) bans(w http.ResponseWriter, r *http.Request, s chat.Session) {
	roomID, err := pathID(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	bans, err := a.cfg.Store.Bans(r.Context(), s.User.ID, roomID)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"bans": nonNil(bans)})
}

func (a *API) patchRoom(w http.ResponseWriter, r *http.Request, s chat.Session) {
	roomID, err := pathID(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	var req struct {
		Name  *string `json:"name"`
		Topic *string `json:"topic"`
	}
	if err := decode(w, r, &req); err != nil {
		a.fail(w, r, err)
		return
	}
	if req.Name == nil && req.Topic == nil {
		a.fail(w, r, chat.Errorf(chat.CodeBadRequest, "nothing to change: give name or topic"))
		return
	}
	if req.Name != nil && !roomNamePattern.MatchString(*req.Name) {
		a.fail(w, r, chat.Errorf(chat.CodeBadRequest, "name must be 1-64 letters, digits, - or _"))
		return
	}
	if req.Topic != nil {
		t := strings.TrimSpace(*req.Topic)
		if n := utf8.RuneCountInString(t); n > chat.MaxTopicChars {
			a.fail(w, r, chat.Errorf(chat.CodeTooLarge, "topic has %d characters; the limit is %d", n, chat.MaxTopicChars))
			return
		}
		if strings.ContainsRune(t, 0) {
			a.fail(w, r, chat.Errorf(chat.CodeBadRequest, "topic contains a NUL character"))
			return
		}
		req.Topic = &t
	}
	room, err := a.cfg.Store.UpdateRoom(r.Context(), s.User.ID, roomID, chat.RoomUpdate{Name: req.Name, Topic: req.Topic})
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.cfg.Hub.RoomUpdated(r.Context(), room)
	writeJSON(w, http.StatusOK, room)
}

func (a *API) archive(w http.ResponseWriter, r *http.Request, s chat.Session) {
	roomID, err := pathID(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	room, err := a.cfg.Store.Archive(r.Context(), s.User.ID, roomID)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.cfg.Hub.RoomUpdated(r.Context(), room)
	writeJSON(w, http.StatusOK, room)
}

func (a *API) search(w http.ResponseWriter, r *http.Request, s chat.Session) {
	q := r.URL.Query()
	sq := chat.SearchQuery{UserID: s.User.ID, Query: strings.TrimSpace(q.Get("q")), Limit: chat.DefaultSearchLimit,
		Cursor: q.Get("cursor")}
	if sq.Query == "" || !utf8.ValidString(sq.Query) || utf8.RuneCountInString(sq.Query) > 256 {
		a.fail(w, r, chat.Errorf(chat.CodeBadRequest, "q must be 1-256 characters"))
		return
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > chat.MaxSearchLimit {
			a.fail(w, r, chat.Errorf(chat.CodeBadRequest, "limit must be 1-%d", chat.MaxSearchLimit))
			return
		}
		sq.Limit = n
	}
	if v := q.Get("room"); v != "" {
		if !chat.ValidID(v) {
			a.fail(w, r, chat.Errorf(chat.CodeNotFound, "no such room: %q", v))
			return
		}
		sq.RoomID = v
	}
	page, err := a.cfg.Store.Search(r.Context(), sq)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	page.Results = nonNil(page.Results)
	writeJSON(w, http.StatusOK, page)
}

func (a *API) people(w http.ResponseWriter, r *http.Request, _ chat.Session) {
	prefix := strings.TrimSpace(r.URL.Query().Get("q"))
	if prefix == "" || !utf8.ValidString(prefix) || utf8.RuneCountInString(prefix) > 64 {
		a.fail(w, r, chat.Errorf(chat.CodeBadRequest, "q must be 1-64 characters"))
		return
	}
	users, err := a.cfg.Store.FindUsers(r.Context(), prefix, chat.MaxPeopleResults)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"users": nonNil(users)})
}
