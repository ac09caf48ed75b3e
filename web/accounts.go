package web

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
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
	codePattern    = regexp.MustCompile(fmt.Sprintf(`^[0-9]{%d}$`, chat.PhoneCodeDigits))
)

const maxPasswordBytes = 72 // bcrypt ignores what comes after

type tokenResponse struct {
	User         chat.Profile `json:"user"`
	AccessToken  string       `json:"access_token"`
	RefreshToken string       `json:"refresh_token"`
	ExpiresIn    int          `json:"expires_in"`
}

// issue starts a new session for p (a login or register) and returns its
// first token pair.
func (a *API) issue(r *http.Request, p chat.Profile) (tokenResponse, error) {
	refresh, hash, expires := a.cfg.Tokens.NewRefreshToken()
	session, err := a.cfg.Store.NewSession(r.Context(), p.ID, hash, expires)
	if err != nil {
		return tokenResponse{}, err
	}
	return a.tokenPair(p, session, refresh)
}

// tokenPair signs an access token for p in session and answers it with the
// refresh token.
func (a *API) tokenPair(p chat.Profile, session, refresh string) (tokenResponse, error) {
	access, ttl, err := a.cfg.Tokens.Issue(p.ID, session)
	if err != nil {
		return tokenResponse{}, err
	}
	return tokenResponse{User: p, AccessToken: access, RefreshToken: refresh, ExpiresIn: int(ttl.Seconds())}, nil
}

func (a *API) register(w http.ResponseWriter, r *http.Request) {
	if !a.allowAuth(w, r) {
		return
	}
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
	if err := checkNewPassword(req.Password); err != nil {
		a.fail(w, r, err)
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
	hash, err := a.hashPassword(req.Password)
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

// checkNewPassword applies the rules of SPEC §3 to a password being set.
func checkNewPassword(password string) error {
	switch {
	case utf8.RuneCountInString(password) < chat.MinPasswordChars:
		return chat.Errorf(chat.CodeBadRequest, "password must have at least %d characters", chat.MinPasswordChars)
	case len(password) > maxPasswordBytes:
		return chat.Errorf(chat.CodeBadRequest, "password must be at most %d bytes", maxPasswordBytes)
	}
	return nil
}

var errInvalidCredentials = chat.Errorf(chat.CodeInvalidCredentials, "wrong username or password")

func (a *API) login(w http.ResponseWriter, r *http.Request) {
	if !a.allowAuth(w, r) {
		return
	}
	var req struct {
		Username string `json:"username"`
		Password string `json:"password"`
	}
	if err := decode(w, r, &req); err != nil {
		a.fail(w, r, err)
		return
	}
	username := strings.ToLower(req.Username)
	if !chat.ValidUsername(username) {
		a.checkNoPassword(req.Password) // no such account can exist
		a.fail(w, r, errInvalidCredentials)
		return
	}
	if !a.allowLogin(w, r, username) {
		return
	}
	p, hash, err := a.cfg.Store.Credentials(r.Context(), username)
	switch {
	case err == nil:
		if !a.checkPassword(hash, req.Password) {
			a.loginFailed(r, username)
			a.fail(w, r, errInvalidCredentials)
			return
		}
	case chat.ErrorOf(err).Code == chat.CodeNotFound:
		a.checkNoPassword(req.Password) // same time as a wrong password
		a.loginFailed(r, username)
		a.fail(w, r, errInvalidCredentials)
		return
	default:
		a.fail(w, r, err)
		return
	}
	a.loginSucceeded(r, username)
	resp, err := a.issue(r, p)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

func (a *API) refresh(w http.ResponseWriter, r *http.Request) {
	if !a.allowAuth(w, r) {
		return
	}
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
	userID, session, err := a.cfg.Store.RotateRefreshToken(r.Context(), auth.HashRefreshToken(req.RefreshToken), hash, expires)
	if errors.Is(err, chat.ErrRefreshReused) {
		// A spent token came back: whoever holds the live one may be a
		// thief. End the session everywhere, as logout does.
		if err := a.endSessions(r.Context(), userID, []string{session}); err != nil {
			a.log.ErrorContext(r.Context(), "end a session whose refresh token was reused", slog.Any("error", err))
		}
	}
	if err != nil {
		a.fail(w, r, err)
		return
	}
	p, err := a.cfg.Store.Profile(r.Context(), userID)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	resp, err := a.tokenPair(p, session, refresh)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, resp)
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
// slack_user_id. A new phone number is stored unverified and a code is sent
// to it, at most 3 an hour (see storage.Store.UpdateProfile).
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
	a.cfg.Changes.UserChanged(r.Context(), s.User.ID, u.DisplayName != nil)
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

// verifyPhone is POST /api/v1/me/phone/verify {"code"}: the code sent to the
// account's unverified number verifies it (SPEC §8). Every refusal is 400;
// one for a number that another account verified reads exactly as a wrong
// code's.
func (a *API) verifyPhone(w http.ResponseWriter, r *http.Request, s chat.Session) {
	var req struct {
		Code string `json:"code"`
	}
	if err := decode(w, r, &req); err != nil {
		a.fail(w, r, err)
		return
	}
	if !codePattern.MatchString(req.Code) {
		a.fail(w, r, chat.Errorf(chat.CodeBadRequest, "code must be the %d digits sent by SMS", chat.PhoneCodeDigits))
		return
	}
	p, err := a.cfg.Store.VerifyPhone(r.Context(), s.User.ID, a.cfg.Tokens.HashPhoneCode(s.User.ID, req.Code))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.cfg.Changes.UserChanged(r.Context(), s.User.ID, false)
	writeJSON(w, http.StatusOK, p)
}
