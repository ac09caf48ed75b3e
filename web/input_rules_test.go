package web_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-chat/switchboard/internal/apitest"
)

// These tests cover the input rules of SPEC §2, §3 and §5 that are about
// text: JSON escapes that are not UTF-8, display names and bodies that show
// nothing or reorder what follows, reserved usernames.

// TestAPIJSONSurrogates: a lone surrogate escape in an HTTP request body is
// refused with 400 and stores nothing; a pair is one character, stored as
// such; an escaped backslash before "ud800" is plain text.
func TestAPIJSONSurrogates(t *testing.T) {
	t.Parallel()
	s := newAPIServer(t)

	refused := []struct{ name, body string }{
		{"LoneHigh", `{"body":"a\ud800b"}`},
		{"LoneLow", `{"body":"\udc00"}`},
		{"HighThenLetter", `{"body":"\ud83dx"}`},
		{"PairReversed", `{"body":"\ude00\ud83d"}`},
		{"InClientID", `{"body":"fine","client_id":"\ud800"}`},
	}
	for _, tc := range refused {
		t.Run("Post"+tc.name, func(t *testing.T) {
			t.Parallel()
			u := s.Register(t, "surr")
			room := s.CreateRoom(t, u, "public")
			r := s.Do(t, "POST", "/api/v1/rooms/"+room+"/messages", u.Token, tc.body)
			apitest.RequireError(t, r, http.StatusBadRequest, "bad_request")
			require.Empty(t, s.History(t, u, room, "").Messages, "nothing stored")
		})
	}

	t.Run("PatchMeDisplayName", func(t *testing.T) {
		t.Parallel()
		u := s.Register(t, "surr")
		r := s.Do(t, "PATCH", "/api/v1/me", u.Token, `{"display_name":"Al\udfffice"}`)
		apitest.RequireError(t, r, http.StatusBadRequest, "bad_request")
		require.Equal(t, u.Username, getProfile(t, s, u).DisplayName, "unchanged")
	})

	t.Run("RegisterDisplayName", func(t *testing.T) {
		t.Parallel()
		r := s.Do(t, "POST", "/api/v1/auth/register", "", `{"username":"surrogate_reg","password":"correct horse","display_name":"\ud800"}`)
		apitest.RequireError(t, r, http.StatusBadRequest, "bad_request")
		r = s.Do(t, "POST", "/api/v1/auth/login", "", map[string]any{"username": "surrogate_reg", "password": "correct horse"})
		apitest.RequireError(t, r, http.StatusUnauthorized, "invalid_credentials")
	})

	t.Run("PairStoredAsOneCharacter", func(t *testing.T) {
		t.Parallel()
		u := s.Register(t, "surr")
		room := s.CreateRoom(t, u, "public")
		r := s.Do(t, "POST", "/api/v1/rooms/"+room+"/messages", u.Token, `{"body":"smile \ud83d\ude00"}`)
		require.Equal(t, http.StatusCreated, r.Status, "body: %s", r.Raw)
		require.Equal(t, "smile 😀", apitest.Decode[apitest.Message](t, r).Body)
		msgs := s.History(t, u, room, "").Messages
		require.Len(t, msgs, 1)
		require.Equal(t, "smile 😀", msgs[0].Body)
	})

	t.Run("EscapedBackslashIsText", func(t *testing.T) {
		t.Parallel()
		u := s.Register(t, "surr")
		room := s.CreateRoom(t, u, "public")
		r := s.Do(t, "POST", "/api/v1/rooms/"+room+"/messages", u.Token, `{"body":"\\ud800"}`)
		require.Equal(t, http.StatusCreated, r.Status, "body: %s", r.Raw)
		require.Equal(t, `\ud800`, s.History(t, u, room, "").Messages[0].Body)
	})
}

// getProfile is GET /api/v1/me, requiring 200.
func getProfile(t *testing.T, s *apiServer, u apitest.User) apitest.Profile {
	t.Helper()
	r := s.Do(t, "GET", "/api/v1/me", u.Token, nil)
	require.Equal(t, http.StatusOK, r.Status, "me: %s", r.Raw)
	return apitest.Decode[apitest.Profile](t, r)
}

// badDisplayNames break one rule of SPEC §3 each.
var badDisplayNames = []struct{ name, display string }{
	{"SixtyFiveCharacters", strings.Repeat("é", 65)},
	{"OnlySpaces", "   "},
	{"Tab", "tab\there"},
	{"Newline", "two\nlines"},
	{"Escape", "\x1b[2Jhi"},
	{"RightToLeftOverride", "\u202egnp.exe"},
	{"LeftToRightEmbedding", "x\u202ay"},
	{"RightToLeftIsolate", "\u2067x\u2069"},
	{"PopDirectionalIsolate", "x\u2069"},
	{"OnlyZeroWidthSpace", "\u200b"},
	{"OnlyInvisibles", "\u200c\u200d\u2060\u00ad\ufeff"},
	{"OnlyInvisiblesAndSpaces", " \u200b \u3000 "},
}

// TestAPIDisplayNameRules: each display-name rule of SPEC §3 is a 400 at
// register (no account made) and at PATCH /me (the name unchanged).
func TestAPIDisplayNameRules(t *testing.T) {
	t.Parallel()
	s := newAPIServer(t)

	for i, tc := range badDisplayNames {
		t.Run("Register"+tc.name, func(t *testing.T) {
			t.Parallel()
			username := fmt.Sprintf("dn_reg_%d", i)
			r := s.Do(t, "POST", "/api/v1/auth/register", "", map[string]any{
				"username": username, "password": "correct horse", "display_name": tc.display})
			apitest.RequireError(t, r, http.StatusBadRequest, "bad_request")
			r = s.Do(t, "POST", "/api/v1/auth/login", "", map[string]any{"username": username, "password": "correct horse"})
			apitest.RequireError(t, r, http.StatusUnauthorized, "invalid_credentials")
		})
		t.Run("Patch"+tc.name, func(t *testing.T) {
			t.Parallel()
			u := s.Register(t, "dn")
			r := s.Do(t, "PATCH", "/api/v1/me", u.Token, map[string]any{"display_name": "Before"})
			require.Equal(t, http.StatusOK, r.Status, "patch me: %s", r.Raw)
			r = s.Do(t, "PATCH", "/api/v1/me", u.Token, map[string]any{"display_name": tc.display})
			apitest.RequireError(t, r, http.StatusBadRequest, "bad_request")
			require.Equal(t, "Before", getProfile(t, s, u).DisplayName)
		})
	}

	for _, tc := range []struct{ name, display, want string }{
		{"Trimmed", "  Ana María \u00a0", "Ana María"},
		{"EmojiWithZeroWidthJoiner", "👩\u200d💻", "👩\u200d💻"},
		{"RightToLeftMarkIsNoOverride", "\u05e9\u05e8\u05d4\u200f", "\u05e9\u05e8\u05d4\u200f"},
		{"SixtyFourCharacters", strings.Repeat("é", 64), strings.Repeat("é", 64)},
	} {
		t.Run("PatchAccepted"+tc.name, func(t *testing.T) {
			t.Parallel()
			u := s.Register(t, "dn")
			r := s.Do(t, "PATCH", "/api/v1/me", u.Token, map[string]any{"display_name": tc.display})
			require.Equal(t, http.StatusOK, r.Status, "body: %s", r.Raw)
			require.Equal(t, tc.want, getProfile(t, s, u).DisplayName)
		})
	}
}

// TestAPIRegisterSlackPrefixReserved: usernames beginning "slack-", in any
// letter case, belong to Slack guests (SPEC §3): register answers 400 and
// makes no account.
func TestAPIRegisterSlackPrefixReserved(t *testing.T) {
	t.Parallel()
	s := newAPIServer(t)
	for _, name := range []string{"slack-x", "Slack-U0123ABC"} {
		r := s.Do(t, "POST", "/api/v1/auth/register", "", map[string]any{"username": name, "password": "correct horse"})
		apitest.RequireError(t, r, http.StatusBadRequest, "bad_request")
		require.Contains(t, r.Body["error"].(map[string]any)["message"], "reserved for Slack guests")
		r = s.Do(t, "POST", "/api/v1/auth/login", "", map[string]any{"username": name, "password": "correct horse"})
		apitest.RequireError(t, r, http.StatusUnauthorized, "invalid_credentials")
	}
}

// TestAPIInvisibleBody: a body made only of characters that show nothing is
// a 400 and stores nothing (SPEC §5); one with a visible character among
// them is stored.
func TestAPIInvisibleBody(t *testing.T) {
	t.Parallel()
	s := newAPIServer(t)
	u := s.Register(t, "inv")
	room := s.CreateRoom(t, u, "public")
	for _, body := range []string{"\u200b", "\u200b\u200c\u200d", " \u2060\u00ad\ufeff\n", "\u3000\u200b"} {
		r := s.Do(t, "POST", "/api/v1/rooms/"+room+"/messages", u.Token, map[string]any{"body": body})
		apitest.RequireError(t, r, http.StatusBadRequest, "bad_request")
	}
	require.Empty(t, s.History(t, u, room, "").Messages, "nothing stored")
	require.Equal(t, "\u200bok", s.Say(t, u, room, "\u200bok").Body)
}
