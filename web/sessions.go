package web

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"time"

	"github.com/switchboard-chat/switchboard/auth"
	"github.com/switchboard-chat/switchboard/chat"
)

// This file ends sessions (SPEC §3): logout, logout-all and a password
// change. Ending a session refuses its access tokens on every node (the
// denylist, checked by every Authenticate), revokes its refresh tokens
// (storage), and closes its open WebSockets with 4401 on every node (the
// hub). The denylist is written first, so that a request that fails half
// way can be repeated and still finds every session it must end.

// endSessions refuses the access tokens of sessions and closes their
// sockets on every node.
func (a *API) endSessions(ctx context.Context, userID string, sessions []string) error {
	if len(sessions) == 0 {
		return nil
	}
	// Every access token of a session expires at most one lifetime from now.
	if err := a.cfg.Denylist.EndSessions(ctx, time.Now().Add(a.cfg.Tokens.AccessTTL()), sessions...); err != nil {
		return chat.Errorf(chat.CodeUnavailable, "cannot end the session now; try again")
	}
	a.cfg.Hub.EndSessions(ctx, userID, sessions)
	return nil
}

// logout ends the session of the access token it is called with. A body
// naming a refresh token of another session of the same user ends that one
// too; the body is optional.
func (a *API) logout(w http.ResponseWriter, r *http.Request, s chat.Session) {
	var req struct {
		RefreshToken string `json:"refresh_token"`
	}
	if r.ContentLength != 0 {
		if err := decode(w, r, &req); err != nil {
			a.fail(w, r, err)
			return
		}
	}
	sessions := []string{s.ID}
	if req.RefreshToken != "" {
		other, err := a.cfg.Store.SessionOf(r.Context(), s.User.ID, auth.HashRefreshToken(req.RefreshToken))
		if err != nil && !errors.Is(err, chat.ErrNotFound) {
			a.fail(w, r, err)
			return
		}
		if other != "" && other != s.ID {
			sessions = append(sessions, other)
		}
	}
	if err := a.endSessions(r.Context(), s.User.ID, sessions); err != nil {
		a.fail(w, r, err)
		return
	}
	for _, id := range sessions {
		if err := a.cfg.Store.EndSession(r.Context(), id); err != nil {
			a.fail(w, r, err)
			return
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

// logoutAll ends every session of the user.
func (a *API) logoutAll(w http.ResponseWriter, r *http.Request, s chat.Session) {
	if err := a.endOtherSessions(r.Context(), s.User.ID, ""); err != nil {
		a.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// endOtherSessions ends every session of userID but keep ("": all of them).
// The live sessions are denylisted before they are revoked in Postgres, so
// that a failure of either leaves them live for a retry to find; a session
// that began in between is ended after.
func (a *API) endOtherSessions(ctx context.Context, userID, keep string) error {
	live, err := a.cfg.Store.LiveSessions(ctx, userID)
	if err != nil {
		return err
	}
	live = slices.DeleteFunc(live, func(id string) bool { return id == keep })
	if err := a.endSessions(ctx, userID, live); err != nil {
		return err
	}
	ended, err := a.cfg.Store.EndSessions(ctx, userID, keep)
	if err != nil {
		return err
	}
	late := slices.DeleteFunc(ended, func(id string) bool { return slices.Contains(live, id) })
	return a.endSessions(ctx, userID, late)
}

// changePassword checks the current password, ends every other session of
// the user and sets the new password. The caller's session stays.
func (a *API) changePassword(w http.ResponseWriter, r *http.Request, s chat.Session) {
	var req struct {
		CurrentPassword string `json:"current_password"`
		NewPassword     string `json:"new_password"`
	}
	if err := decode(w, r, &req); err != nil {
		a.fail(w, r, err)
		return
	}
	if err := checkNewPassword(req.NewPassword); err != nil {
		a.fail(w, r, err)
		return
	}
	// A wrong current password counts as a failed login of the account, so
	// that a stolen access token cannot be used to guess it quickly.
	if !a.allowLogin(w, r, s.User.Username) {
		return
	}
	hash, err := a.cfg.Store.PasswordHash(r.Context(), s.User.ID)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if !a.checkPassword(hash, req.CurrentPassword) {
		a.loginFailed(r, s.User.Username)
		a.fail(w, r, chat.Errorf(chat.CodeInvalidCredentials, "the current password is wrong"))
		return
	}
	a.loginSucceeded(r, s.User.Username)
	newHash, err := a.hashPassword(req.NewPassword)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if err := a.endOtherSessions(r.Context(), s.User.ID, s.ID); err != nil {
		a.fail(w, r, err)
		return
	}
	if err := a.cfg.Store.SetPasswordHash(r.Context(), s.User.ID, newHash); err != nil {
		a.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
