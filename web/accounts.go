package web

import (
	"encoding/json"
	"net/http"
	"regexp"
	"strings"
	"unicode/utf8"

	"github.com/switchboard-chat/switchboard/auth"
	"github.com/switchboard-chat/switchboard/chat"
)

var (
	phonePattern   = regexp.MustCompile(`^\+[1-9][0-9]{1,14}$`) // E.164
	slackIDPattern = regexp.MustCompile(`^[A-Z0-9]{2,32}$`)
)

const maxPasswordBytes = 72 // bcrypt ignores what comes after

type tokenResponse struct {
	User         chat.Profile `json:"user"`
	AccessToken  string       `json:"access_token"`
	RefreshToken string       `json:"refresh_token"`
	ExpiresIn    int          `json:"expires_in"`
}

// issue makes a new token pair for p, in refresh family (empty: a new one).
func (a *API) issue(r *http.Request, p chat.Profile) (tokenResponse, error) {
	access, ttl, err := a.cfg.Tokens.Issue(p.ID)
	if err != nil {
		return tokenResponse{}, err
	}
	refresh, hash, expires := a.cfg.Tokens.NewRefreshToken()
	if err := a.cfg.Store.SaveRefreshToken(r.Context(), p.ID, hash, "", expires); err != nil {
		return tokenResponse{}, err
	}
	return tokenResponse{User: p, AccessToken: access, RefreshToken: refresh, ExpiresIn: int(ttl.Seconds())}, nil
}

func (a *API) register(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Username    string `json:"username"`
		Password    string `json:"password"`
		DisplayName string `json:"display_name"`
	}
	if err := decode(w, r, &req); err != nil {
		a.fail(w, r, err)
		return
	}
	username, err := chat.NewUsername(req.Username)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	switch {
	case utf8.RuneCountInString(req.Password) < chat.MinPasswordChars:
		a.fail(w, r, chat.Errorf(chat.CodeBadRequest, "password must have at least %d characters", chat.MinPasswordChars))
		return
	case len(req.Password) > maxPasswordBytes:
		a.fail(w, r, chat.Errorf(chat.CodeBadRequest, "password must be at most %d bytes", maxPasswordBytes))
		return
	}
	// No display name (or ""): the username.
	display := username
	if req.DisplayName != "" {
		if display, err = chat.NormalizeDisplayName(req.DisplayName); err != nil {
			a.fail(w, r, err)
			return
		}
	}
	hash, err := auth.HashPassword(req.Password)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	p, err := a.cfg.Store.CreateUser(r.Context(), username, hash, display)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	resp, err := a.issue(r, p)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, resp)
}

var errInvalidCredentials = chat.Errorf(chat.CodeInvalidCredentials, "wrong username or password")

func (a *API) login(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Username string `json:"username"`
		Password string `json:"password"`
	}
	if err := decode(w, r, &req); err != nil {
		a.fail(w, r, err)
		return
	}
	if !chat.ValidUsername(strings.ToLower(req.Username)) {
		auth.CheckNoPassword(req.Password) // no such account can exist
		a.fail(w, r, errInvalidCredentials)
		return
	}
	p, hash, err := a.cfg.Store.Credentials(r.Context(), req.Username)
	switch {
	case err == nil:
		if !auth.CheckPassword(hash, req.Password) {
			a.fail(w, r, errInvalidCredentials)
			return
		}
	case chat.ErrorOf(err).Code == chat.CodeNotFound:
		auth.CheckNoPassword(req.Password) // same time as a wrong password
		a.fail(w, r, errInvalidCredentials)
		return
	default:
		a.fail(w, r, err)
		return
	}
	resp, err := a.issue(r, p)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

func (a *API) refresh(w http.ResponseWriter, r *http.Request) {
	var req struct {
		RefreshToken string `json:"refresh_token"`
	}
	if err := decode(w, r, &req); err != nil {
		a.fail(w, r, err)
		return
	}
	if req.RefreshToken == "" {
		a.fail(w, r, chat.Errorf(chat.CodeBadRequest, "refresh_token is required"))
		return
	}
	refresh, hash, expires := a.cfg.Tokens.NewRefreshToken()
	userID, err := a.cfg.Store.RotateRefreshToken(r.Context(), auth.HashRefreshToken(req.RefreshToken), hash, expires)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	p, err := a.cfg.Store.Profile(r.Context(), userID)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	access, ttl, err := a.cfg.Tokens.Issue(p.ID)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, tokenResponse{User: p, AccessToken: access, RefreshToken: refresh, ExpiresIn: int(ttl.Seconds())})
}

// logout revokes the access token it was called with and, when the body
// names one, the refresh token's whole family.
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
	if err := a.cfg.Denylist.Revoke(r.Context(), s.TokenID, s.ExpiresAt); err != nil {
		a.fail(w, r, err)
		return
	}
	if req.RefreshToken != "" {
		if err := a.cfg.Store.RevokeRefreshToken(r.Context(), s.User.ID, auth.HashRefreshToken(req.RefreshToken)); err != nil {
			a.fail(w, r, err)
			return
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *API) me(w http.ResponseWriter, r *http.Request, s chat.Session) {
	p, err := a.cfg.Store.Profile(r.Context(), s.User.ID)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, p)
}

// patchMe sets the fields present in the body; null or "" clears phone and
// slack_user_id.
func (a *API) patchMe(w http.ResponseWriter, r *http.Request, s chat.Session) {
	var req map[string]json.RawMessage
	if err := decode(w, r, &req); err != nil {
		a.fail(w, r, err)
		return
	}
	var u chat.ProfileUpdate
	for field, raw := range req {
		var err error
		switch field {
		case "display_name":
			var name string
			if err = unmarshalField(field, raw, &name); err == nil {
				name, err = chat.NormalizeDisplayName(name)
				u.DisplayName = &name
			}
		case "phone":
			u.Phone, err = optionalString(field, raw, phonePattern, "an E.164 number such as +14155550123")
		case "slack_user_id":
			u.SlackUserID, err = optionalString(field, raw, slackIDPattern, "a Slack user id such as U012AB3CD")
		case "sms_notify":
			var b bool
			err = unmarshalField(field, raw, &b)
			u.SMSNotify = &b
		default:
			err = chat.Errorf(chat.CodeBadRequest, "unknown field %q", field)
		}
		if err != nil {
			a.fail(w, r, err)
			return
		}
	}
	p, err := a.cfg.Store.UpdateProfile(r.Context(), s.User.ID, u)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, p)
}

func unmarshalField(field string, raw json.RawMessage, v any) error {
	if string(raw) == "null" || json.Unmarshal(raw, v) != nil {
		return chat.Errorf(chat.CodeBadRequest, "field %q has the wrong type", field)
	}
	return nil
}

// optionalString reads a string field that null or "" clears (returned as a
// pointer to "") and that must otherwise match pattern.
func optionalString(field string, raw json.RawMessage, pattern *regexp.Regexp, want string) (*string, error) {
	empty := ""
	if string(raw) == "null" {
		return &empty, nil
	}
	var v string
	if err := unmarshalField(field, raw, &v); err != nil {
		return nil, err
	}
	if v != "" && !pattern.MatchString(v) {
		return nil, chat.Errorf(chat.CodeBadRequest, "%s must be %s", field, want)
	}
	return &v, nil
}
