package web_test

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"

	"github.com/switchboard-chat/switchboard/internal/apitest"
)

func TestAPIRegister(t *testing.T) {
	t.Parallel()
	s := newAPIServer(t)

	t.Run("Created", func(t *testing.T) {
		t.Parallel()
		// 32 characters, every allowed kind: the longest valid name.
		name := fmt.Sprintf("reg_%d.x-", apitest.Seq())
		name += strings.Repeat("z", 32-len(name))
		r := s.Do(t, "POST", "/api/v1/auth/register", "", map[string]any{
			"username": name, "password": "correct horse", "display_name": "Reggie"})
		require.Equal(t, http.StatusCreated, r.Status, "body: %s", r.Raw)
		require.ElementsMatch(t, []string{"user", "access_token", "refresh_token", "expires_in"}, jsonKeys(r.Body))

		tp := apitest.Decode[apitest.Tokens](t, r)
		require.NotEmpty(t, tp.User.ID)
		require.IsType(t, "", r.Body["user"].(map[string]any)["id"], "ids are JSON strings")
		require.Equal(t, name, tp.User.Username)
		require.Equal(t, "Reggie", tp.User.DisplayName)
		require.Nil(t, tp.User.Phone)
		require.False(t, tp.User.SMSNotify)
		require.Nil(t, tp.User.SlackUserID)
		apitest.RequireUTCTime(t, tp.User.CreatedAt)
		require.NotEmpty(t, tp.AccessToken)
		require.NotEmpty(t, tp.RefreshToken)
		require.Positive(t, tp.ExpiresIn)

		me := s.Do(t, "GET", "/api/v1/me", tp.AccessToken, nil)
		require.Equal(t, http.StatusOK, me.Status, "body: %s", me.Raw)
		require.Equal(t, tp.User.ID, apitest.Decode[apitest.Profile](t, me).ID)

		r = s.Do(t, "POST", "/api/v1/auth/refresh", "", map[string]any{"refresh_token": tp.RefreshToken})
		require.Equal(t, http.StatusOK, r.Status, "body: %s", r.Raw)
	})

	t.Run("Invalid", func(t *testing.T) {
		t.Parallel()
		for _, tc := range []struct {
			name string
			body any
		}{
			{"UsernameTooShort", map[string]any{"username": "ab", "password": "correct horse"}},
			{"UsernameTooLong", map[string]any{"username": strings.Repeat("a", 33), "password": "correct horse"}},
			{"UsernameSpace", map[string]any{"username": "two words", "password": "correct horse"}},
			{"UsernameBang", map[string]any{"username": "bang!", "password": "correct horse"}},
			{"UsernameAt", map[string]any{"username": "me@example.com", "password": "correct horse"}},
			{"UsernameNonASCII", map[string]any{"username": "émile", "password": "correct horse"}},
			{"UsernameTrailingNewline", map[string]any{"username": "newline\n", "password": "correct horse"}},
			{"UsernameEmpty", map[string]any{"username": "", "password": "correct horse"}},
			{"UsernameMissing", map[string]any{"password": "correct horse"}},
			{"UsernameWrongType", map[string]any{"username": 12345, "password": "correct horse"}},
			{"PasswordSeven", map[string]any{"username": "shortpass", "password": "1234567"}},
			{"PasswordSevenMultibyte", map[string]any{"username": "shortpass", "password": "ééééééé"}},
			{"PasswordMissing", map[string]any{"username": "nopass"}},
			{"PasswordWrongType", map[string]any{"username": "numpass", "password": 12345678}},
			{"DisplayNameTooLong", map[string]any{"username": "longname", "password": "correct horse", "display_name": strings.Repeat("d", 65)}},
			{"UnknownField", map[string]any{"username": "extra", "password": "correct horse", "admin": true}},
			{"InvalidJSON", `{"username": "x", `},
			{"NotAnObject", `["alice", "correct horse"]`},
		} {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				r := s.Do(t, "POST", "/api/v1/auth/register", "", tc.body)
				apitest.RequireError(t, r, http.StatusBadRequest, "bad_request")
			})
		}
	})

	t.Run("CaseInsensitiveClash", func(t *testing.T) {
		t.Parallel()
		taken := s.Register(t, "clash")
		r := s.Do(t, "POST", "/api/v1/auth/register", "", map[string]any{
			"username": strings.ToUpper(taken.Username), "password": "another password"})
		apitest.RequireError(t, r, http.StatusConflict, "conflict")
		// The first account is untouched.
		s.Login(t, taken.Username, apitest.Password)
	})
}

func TestAPILogin(t *testing.T) {
	t.Parallel()
	s := newAPIServer(t)

	t.Run("OK", func(t *testing.T) {
		t.Parallel()
		u := s.Register(t, "login")
		for _, name := range []string{u.Username, strings.ToUpper(u.Username)} {
			r := s.Do(t, "POST", "/api/v1/auth/login", "", map[string]any{"username": name, "password": apitest.Password})
			require.Equal(t, http.StatusOK, r.Status, "body: %s", r.Raw)
			require.ElementsMatch(t, []string{"user", "access_token", "refresh_token", "expires_in"}, jsonKeys(r.Body))
			tp := apitest.Decode[apitest.Tokens](t, r)
			require.Equal(t, u.ID, tp.User.ID)
			require.Equal(t, u.Username, tp.User.Username)
			require.NotEqual(t, u.Token, tp.AccessToken)
			require.NotEqual(t, u.Refresh, tp.RefreshToken)
			require.Equal(t, http.StatusOK, s.Do(t, "GET", "/api/v1/me", tp.AccessToken, nil).Status)
		}
	})

	t.Run("Refused", func(t *testing.T) {
		t.Parallel()
		u := s.Register(t, "victim")
		var messages []string
		for _, tc := range []struct {
			name     string
			username string
			password string
		}{
			{"WrongPassword", u.Username, "wrong password"},
			{"PasswordWrongCase", u.Username, strings.ToUpper(apitest.Password)},
			{"EmptyPassword", u.Username, ""},
			{"UnknownUser", "nobody" + u.Username, apitest.Password},
		} {
			t.Run(tc.name, func(t *testing.T) {
				r := s.Do(t, "POST", "/api/v1/auth/login", "", map[string]any{"username": tc.username, "password": tc.password})
				apitest.RequireError(t, r, http.StatusUnauthorized, "invalid_credentials")
				messages = append(messages, r.Body["error"].(map[string]any)["message"].(string))
			})
		}
		// A wrong name and a wrong password cannot be told apart.
		require.Len(t, messages, 4)
		for _, m := range messages {
			require.Equal(t, messages[0], m)
		}
	})

	t.Run("BadInput", func(t *testing.T) {
		t.Parallel()
		for _, tc := range []struct {
			name       string
			body       any
			wantStatus int
			wantCode   string
		}{
			{"InvalidJSON", `{"username":`, http.StatusBadRequest, "bad_request"},
			{"PasswordWrongType", map[string]any{"username": "someone", "password": 5}, http.StatusBadRequest, "bad_request"},
			// A name with a NUL byte names no account: the same refusal as
			// any unknown name, never a 500.
			{"NULInUsername", map[string]any{"username": "nul\x00name", "password": apitest.Password}, http.StatusUnauthorized, "invalid_credentials"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				apitest.RequireError(t, s.Do(t, "POST", "/api/v1/auth/login", "", tc.body), tc.wantStatus, tc.wantCode)
			})
		}
	})
}

func TestAPIRefresh(t *testing.T) {
	t.Parallel()
	s := newAPIServer(t)

	refresh := func(t *testing.T, token string) apitest.Response {
		t.Helper()
		return s.Do(t, "POST", "/api/v1/auth/refresh", "", map[string]any{"refresh_token": token})
	}

	t.Run("RotatesAndReuseRevokesFamily", func(t *testing.T) {
		t.Parallel()
		u := s.Register(t, "rotate")

		r := refresh(t, u.Refresh)
		require.Equal(t, http.StatusOK, r.Status, "body: %s", r.Raw)
		require.ElementsMatch(t, []string{"user", "access_token", "refresh_token", "expires_in"}, jsonKeys(r.Body))
		next := apitest.Decode[apitest.Tokens](t, r)
		require.Equal(t, u.ID, next.User.ID)
		require.NotEqual(t, u.Refresh, next.RefreshToken)
		require.NotEqual(t, u.Token, next.AccessToken)
		require.Positive(t, next.ExpiresIn)
		me := s.Do(t, "GET", "/api/v1/me", next.AccessToken, nil)
		require.Equal(t, http.StatusOK, me.Status, "body: %s", me.Raw)

		// The new pair rotates again...
		r = refresh(t, next.RefreshToken)
		require.Equal(t, http.StatusOK, r.Status, "body: %s", r.Raw)
		third := apitest.Decode[apitest.Tokens](t, r)

		// ...but a spent token presented again is refused and revokes its
		// whole family, including the newest token.
		apitest.RequireError(t, refresh(t, u.Refresh), http.StatusUnauthorized, "unauthorized")
		apitest.RequireError(t, refresh(t, third.RefreshToken), http.StatusUnauthorized, "unauthorized")
		apitest.RequireError(t, refresh(t, next.RefreshToken), http.StatusUnauthorized, "unauthorized")
	})

	t.Run("FamiliesAreIndependent", func(t *testing.T) {
		t.Parallel()
		u := s.Register(t, "family")
		other := s.Login(t, u.Username, apitest.Password) // a second login: a second family

		require.Equal(t, http.StatusOK, refresh(t, u.Refresh).Status)
		apitest.RequireError(t, refresh(t, u.Refresh), http.StatusUnauthorized, "unauthorized")

		r := refresh(t, other.Refresh)
		require.Equal(t, http.StatusOK, r.Status, "body: %s", r.Raw)
	})

	t.Run("ConcurrentReuse", func(t *testing.T) {
		t.Parallel()
		u := s.Register(t, "twice")
		answers := s.doConcurrently(2, "POST", "/api/v1/auth/refresh", "", map[string]any{"refresh_token": u.Refresh})
		var winner *apitest.Tokens
		for _, a := range answers {
			require.NoError(t, a.err)
			switch a.status {
			case http.StatusOK:
				require.Nil(t, winner, "the token worked twice")
				winner = &apitest.Tokens{}
				require.NoError(t, json.Unmarshal(a.raw, winner))
			default:
				require.Equal(t, http.StatusUnauthorized, a.status, "body: %s", a.raw)
			}
		}
		require.NotNil(t, winner, "one of the two must win")
		// The loser was a reuse: the winner's new token is revoked with
		// its family.
		apitest.RequireError(t, refresh(t, winner.RefreshToken), http.StatusUnauthorized, "unauthorized")
	})

	t.Run("Refused", func(t *testing.T) {
		t.Parallel()
		u := s.Register(t, "refuse")
		for _, tc := range []struct {
			name       string
			body       any
			wantStatus int
			wantCode   string
		}{
			{"UnknownToken", map[string]any{"refresh_token": "not-a-refresh-token"}, http.StatusUnauthorized, "unauthorized"},
			{"AccessTokenInstead", map[string]any{"refresh_token": u.Token}, http.StatusUnauthorized, "unauthorized"},
			{"Empty", map[string]any{"refresh_token": ""}, http.StatusBadRequest, "bad_request"},
			{"Missing", map[string]any{}, http.StatusBadRequest, "bad_request"},
			{"WrongType", map[string]any{"refresh_token": 42}, http.StatusBadRequest, "bad_request"},
			{"InvalidJSON", `{"refresh_token"`, http.StatusBadRequest, "bad_request"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				apitest.RequireError(t, s.Do(t, "POST", "/api/v1/auth/refresh", "", tc.body), tc.wantStatus, tc.wantCode)
			})
		}
	})
}

func TestAPILogout(t *testing.T) {
	t.Parallel()
	s := newAPIServer(t)
	u := s.Register(t, "logout")
	second := s.Login(t, u.Username, apitest.Password)

	require.Equal(t, http.StatusOK, s.Do(t, "GET", "/api/v1/me", u.Token, nil).Status)
	r := s.Do(t, "POST", "/api/v1/auth/logout", u.Token, nil)
	require.Equal(t, http.StatusNoContent, r.Status, "body: %s", r.Raw)
	require.Empty(t, r.Raw)

	apitest.RequireError(t, s.Do(t, "GET", "/api/v1/me", u.Token, nil), http.StatusUnauthorized, "unauthorized")
	apitest.RequireError(t, s.Do(t, "GET", "/api/v1/rooms", u.Token, nil), http.StatusUnauthorized, "unauthorized")
	apitest.RequireError(t, s.Do(t, "POST", "/api/v1/auth/logout", u.Token, nil), http.StatusUnauthorized, "unauthorized")

	// Only that token is refused: another login of the same account works.
	require.Equal(t, http.StatusOK, s.Do(t, "GET", "/api/v1/me", second.Token, nil).Status)
	apitest.RequireError(t, s.Do(t, "POST", "/api/v1/auth/logout", "", nil), http.StatusUnauthorized, "unauthorized")
}

// validClaims are the claims of a valid access token for userID, as the
// server issues them.
func validClaims(userID string) jwt.MapClaims {
	now := time.Now()
	return jwt.MapClaims{
		"sub": userID,
		"iss": "switchboard",
		"aud": []string{"switchboard"},
		"iat": now.Unix(),
		"exp": now.Add(5 * time.Minute).Unix(),
		"jti": fmt.Sprintf("test-jti-%d", apitest.Seq()),
		"sid": fmt.Sprintf("test-session-%d", apitest.Seq()),
	}
}

// withClaims returns a copy of c with the given claims set (nil: removed).
func withClaims(c jwt.MapClaims, kv ...any) jwt.MapClaims {
	out := jwt.MapClaims{}
	for k, v := range c {
		out[k] = v
	}
	for i := 0; i < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(out, kv[i].(string))
		} else {
			out[kv[i].(string)] = kv[i+1]
		}
	}
	return out
}

func signTestToken(t *testing.T, method jwt.SigningMethod, key []byte, claims jwt.MapClaims) string {
	t.Helper()
	token, err := jwt.NewWithClaims(method, claims).SignedString(key)
	require.NoError(t, err)
	return token
}

// unsignedTestToken is a JWT with header {"alg":alg}, claims and an empty
// signature.
func unsignedTestToken(t *testing.T, alg string, claims jwt.MapClaims) string {
	t.Helper()
	enc := func(v any) string {
		raw, err := json.Marshal(v)
		require.NoError(t, err)
		return base64.RawURLEncoding.EncodeToString(raw)
	}
	return enc(map[string]string{"alg": alg, "typ": "JWT"}) + "." + enc(claims) + "."
}

func TestAPITokens(t *testing.T) {
	t.Parallel()
	s := newAPIServer(t)
	u := s.Register(t, "tokens")

	t.Run("CraftedValidTokenWorks", func(t *testing.T) {
		t.Parallel()
		// The control for the cases below: our crafting is right, so each
		// of them is refused for the one thing it changes.
		token := signTestToken(t, jwt.SigningMethodHS256, apitest.Secret, validClaims(u.ID))
		r := s.Do(t, "GET", "/api/v1/me", token, nil)
		require.Equal(t, http.StatusOK, r.Status, "body: %s", r.Raw)
		require.Equal(t, u.ID, apitest.Decode[apitest.Profile](t, r).ID)
	})

	now := time.Now()
	for _, tc := range []struct {
		name  string
		token func(t *testing.T) string
	}{
		{"AlgNone", func(t *testing.T) string { return unsignedTestToken(t, "none", validClaims(u.ID)) }},
		{"AlgNoneMixedCase", func(t *testing.T) string { return unsignedTestToken(t, "nOnE", validClaims(u.ID)) }},
		{"WrongKey", func(t *testing.T) string {
			return signTestToken(t, jwt.SigningMethodHS256, []byte("some-other-secret-some-other-secret"), validClaims(u.ID))
		}},
		{"Expired", func(t *testing.T) string {
			return signTestToken(t, jwt.SigningMethodHS256, apitest.Secret,
				withClaims(validClaims(u.ID), "iat", now.Add(-time.Hour).Unix(), "exp", now.Add(-time.Minute).Unix()))
		}},
		{"NoExp", func(t *testing.T) string {
			return signTestToken(t, jwt.SigningMethodHS256, apitest.Secret, withClaims(validClaims(u.ID), "exp", nil))
		}},
		{"WrongIssuer", func(t *testing.T) string {
			return signTestToken(t, jwt.SigningMethodHS256, apitest.Secret, withClaims(validClaims(u.ID), "iss", "someone-else"))
		}},
		{"NoIssuer", func(t *testing.T) string {
			return signTestToken(t, jwt.SigningMethodHS256, apitest.Secret, withClaims(validClaims(u.ID), "iss", nil))
		}},
		{"WrongAudience", func(t *testing.T) string {
			return signTestToken(t, jwt.SigningMethodHS256, apitest.Secret, withClaims(validClaims(u.ID), "aud", []string{"another-app"}))
		}},
		{"NoAudience", func(t *testing.T) string {
			return signTestToken(t, jwt.SigningMethodHS256, apitest.Secret, withClaims(validClaims(u.ID), "aud", nil))
		}},
		{"HS512RightKey", func(t *testing.T) string {
			return signTestToken(t, jwt.SigningMethodHS512, apitest.Secret, validClaims(u.ID))
		}},
		{"HS384RightKey", func(t *testing.T) string {
			return signTestToken(t, jwt.SigningMethodHS384, apitest.Secret, validClaims(u.ID))
		}},
		{"UnknownUser", func(t *testing.T) string {
			return signTestToken(t, jwt.SigningMethodHS256, apitest.Secret, withClaims(validClaims(u.ID), "sub", "987654321"))
		}},
		{"TamperedClaims", func(t *testing.T) string {
			// A valid token of u with the claims of another user pasted in.
			parts := strings.Split(signTestToken(t, jwt.SigningMethodHS256, apitest.Secret, validClaims(u.ID)), ".")
			raw, err := json.Marshal(withClaims(validClaims(u.ID), "sub", "1"))
			require.NoError(t, err)
			parts[1] = base64.RawURLEncoding.EncodeToString(raw)
			return strings.Join(parts, ".")
		}},
		{"Missing", func(t *testing.T) string { return "" }},
		{"Garbage", func(t *testing.T) string { return "garbage" }},
		{"GarbageThreeParts", func(t *testing.T) string { return "a.b.c" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := s.Do(t, "GET", "/api/v1/me", tc.token(t), nil)
			apitest.RequireError(t, r, http.StatusUnauthorized, "unauthorized")
		})
	}

	t.Run("NotBearer", func(t *testing.T) {
		t.Parallel()
		req, err := http.NewRequest("GET", s.URL+"/api/v1/me", nil)
		require.NoError(t, err)
		req.SetBasicAuth(u.Username, apitest.Password)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	})
}

func TestAPIMe(t *testing.T) {
	t.Parallel()
	s := newAPIServer(t)

	type testBundle struct {
		user   apitest.User
		before apitest.Profile // after setup's PATCH: every field set
	}
	setup := func(t *testing.T) *testBundle {
		t.Helper()
		u := s.Register(t, "me")
		n := apitest.Seq()
		r := s.Do(t, "PATCH", "/api/v1/me", u.Token, map[string]any{
			"display_name":  "Before",
			"phone":         fmt.Sprintf("+1415%07d", n),
			"sms_notify":    true,
			"slack_user_id": fmt.Sprintf("U%08d", n),
		})
		require.Equal(t, http.StatusOK, r.Status, "body: %s", r.Raw)
		return &testBundle{user: u, before: apitest.Decode[apitest.Profile](t, r)}
	}
	getMe := func(t *testing.T, u apitest.User) apitest.Profile {
		t.Helper()
		r := s.Do(t, "GET", "/api/v1/me", u.Token, nil)
		require.Equal(t, http.StatusOK, r.Status, "body: %s", r.Raw)
		return apitest.Decode[apitest.Profile](t, r)
	}
	ptr := func(s string) *string { return &s }

	t.Run("Get", func(t *testing.T) {
		t.Parallel()
		u := s.Register(t, "getme")
		r := s.Do(t, "GET", "/api/v1/me", u.Token, nil)
		require.Equal(t, http.StatusOK, r.Status, "body: %s", r.Raw)
		require.Subset(t, jsonKeys(r.Body), []string{"id", "username", "display_name", "phone", "phone_verified", "sms_notify", "slack_user_id", "created_at"})
		p := apitest.Decode[apitest.Profile](t, r)
		require.Equal(t, u.ID, p.ID)
		require.Equal(t, u.Username, p.Username)
		require.Nil(t, p.Phone)
		require.False(t, p.PhoneVerified)
		require.False(t, p.SMSNotify)
		require.Nil(t, p.SlackUserID)
		apitest.RequireUTCTime(t, p.CreatedAt)
	})

	t.Run("Taken", func(t *testing.T) {
		t.Parallel()
		a := setup(t)
		for _, tc := range []struct {
			name string
			body map[string]any
		}{
			{"SlackUserID", map[string]any{"slack_user_id": *a.before.SlackUserID}},
			{"SlackUserIDWithOtherFields", map[string]any{"display_name": "Thief", "phone": "+14155559999", "slack_user_id": *a.before.SlackUserID}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				b := setup(t)
				r := s.Do(t, "PATCH", "/api/v1/me", b.user.Token, tc.body)
				apitest.RequireError(t, r, http.StatusConflict, "conflict")
				require.Equal(t, b.before, getMe(t, b.user))
			})
		}
		// An unverified number is nobody's (SPEC §8): another account may
		// hold it too, unverified, and nothing tells it that a has it.
		t.Run("UnverifiedPhone", func(t *testing.T) {
			b := setup(t)
			r := s.Do(t, "PATCH", "/api/v1/me", b.user.Token, map[string]any{"phone": *a.before.Phone})
			require.Equal(t, http.StatusOK, r.Status, "body: %s", r.Raw)
			want := b.before
			want.Phone = a.before.Phone
			require.Equal(t, want, apitest.Decode[apitest.Profile](t, r))
			require.False(t, want.PhoneVerified)
		})
		require.Equal(t, a.before, getMe(t, a.user))
	})

	for _, tc := range []struct {
		name       string
		body       any
		wantStatus int
		wantCode   string
		want       func(p *apitest.Profile) // applied to the profile before: the expected result
	}{
		{"DisplayName", map[string]any{"display_name": "Alice Liddell"}, http.StatusOK, "",
			func(p *apitest.Profile) { p.DisplayName = "Alice Liddell" }},
		{"PhoneValid", map[string]any{"phone": "+442071838750"}, http.StatusOK, "",
			func(p *apitest.Profile) { p.Phone = ptr("+442071838750") }},
		{"PhoneFifteenDigits", map[string]any{"phone": "+123456789012345"}, http.StatusOK, "",
			func(p *apitest.Profile) { p.Phone = ptr("+123456789012345") }},
		{"PhoneClearNull", map[string]any{"phone": nil}, http.StatusOK, "",
			func(p *apitest.Profile) { p.Phone = nil }},
		{"PhoneClearEmpty", map[string]any{"phone": ""}, http.StatusOK, "",
			func(p *apitest.Profile) { p.Phone = nil }},
		{"SMSNotifyFalse", map[string]any{"sms_notify": false}, http.StatusOK, "",
			func(p *apitest.Profile) { p.SMSNotify = false }},
		{"SlackUserID", map[string]any{"slack_user_id": "W0ABC12DEF"}, http.StatusOK, "",
			func(p *apitest.Profile) { p.SlackUserID = ptr("W0ABC12DEF") }},
		{"SlackUserIDClear", map[string]any{"slack_user_id": nil}, http.StatusOK, "",
			func(p *apitest.Profile) { p.SlackUserID = nil }},
		{"Several", map[string]any{"display_name": "Z", "sms_notify": false, "phone": nil}, http.StatusOK, "",
			func(p *apitest.Profile) { p.DisplayName, p.SMSNotify, p.Phone = "Z", false, nil }},
		{"EmptyObject", map[string]any{}, http.StatusOK, "", func(p *apitest.Profile) {}},

		{"PhoneNoPlus", map[string]any{"phone": "14155550123"}, http.StatusBadRequest, "bad_request", nil},
		{"PhoneLetters", map[string]any{"phone": "+1415CALLME"}, http.StatusBadRequest, "bad_request", nil},
		{"PhoneSpaces", map[string]any{"phone": "+1 415 555 0123"}, http.StatusBadRequest, "bad_request", nil},
		{"PhoneTooLong", map[string]any{"phone": "+1234567890123456"}, http.StatusBadRequest, "bad_request", nil},
		{"PhoneLeadingZero", map[string]any{"phone": "+0441234567"}, http.StatusBadRequest, "bad_request", nil},
		{"PhoneNumberType", map[string]any{"phone": 14155550123}, http.StatusBadRequest, "bad_request", nil},
		{"SMSNotifyString", map[string]any{"sms_notify": "yes"}, http.StatusBadRequest, "bad_request", nil},
		{"SMSNotifyNumber", map[string]any{"sms_notify": 1}, http.StatusBadRequest, "bad_request", nil},
		{"SMSNotifyNull", map[string]any{"sms_notify": nil}, http.StatusBadRequest, "bad_request", nil},
		{"SlackUserIDLowercase", map[string]any{"slack_user_id": "u012ab3cd"}, http.StatusBadRequest, "bad_request", nil},
		{"DisplayNameEmpty", map[string]any{"display_name": "  "}, http.StatusBadRequest, "bad_request", nil},
		{"DisplayNameTooLong", map[string]any{"display_name": strings.Repeat("é", 65)}, http.StatusBadRequest, "bad_request", nil},
		{"DisplayNameWrongType", map[string]any{"display_name": false}, http.StatusBadRequest, "bad_request", nil},
		{"UnknownField", map[string]any{"nickname": "al"}, http.StatusBadRequest, "bad_request", nil},
		// encoding/json would store U+FFFD for the bad bytes.
		{"DisplayNameInvalidUTF8", "{\"display_name\": \"bad \xff\"}", http.StatusBadRequest, "bad_request", nil},
		// Postgres text cannot hold NUL: bad input, never a 500.
		{"DisplayNameNUL", map[string]any{"display_name": "nul\x00name"}, http.StatusBadRequest, "bad_request", nil},
		{"ReadOnlyField", map[string]any{"username": "renamed"}, http.StatusBadRequest, "bad_request", nil},
		{"ValidThenInvalid", map[string]any{"display_name": "Changed", "sms_notify": false, "phone": "not a phone"}, http.StatusBadRequest, "bad_request", nil},
		{"ValidThenUnknown", map[string]any{"display_name": "Changed", "phone": nil, "colour": "blue"}, http.StatusBadRequest, "bad_request", nil},
		{"InvalidJSON", `{"display_name": "x"`, http.StatusBadRequest, "bad_request", nil},
		{"NotAnObject", `["display_name"]`, http.StatusBadRequest, "bad_request", nil},
	} {
		t.Run("Patch"+tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			r := s.Do(t, "PATCH", "/api/v1/me", b.user.Token, tc.body)
			want := b.before
			if tc.wantStatus == http.StatusOK {
				require.Equal(t, http.StatusOK, r.Status, "body: %s", r.Raw)
				tc.want(&want)
				require.Equal(t, want, apitest.Decode[apitest.Profile](t, r))
			} else {
				apitest.RequireError(t, r, tc.wantStatus, tc.wantCode)
			}
			// GET shows the new values, or, after a failure, the old ones.
			require.Equal(t, want, getMe(t, b.user))
		})
	}
}

// jsonKeys lists the keys of m, sorted.
func jsonKeys(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
