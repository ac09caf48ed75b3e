package main

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"
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
			u := s.register(t, "surr")
			room := s.createRoom(t, u, "public")
			r := s.do(t, "POST", "/api/v1/rooms/"+room+"/messages", u.Token, tc.body)
			requireAPIError(t, r, http.StatusBadRequest, "bad_request")
			require.Empty(t, s.history(t, u, room, "").Messages, "nothing stored")
		})
	}

	t.Run("PatchMeDisplayName", func(t *testing.T) {
		t.Parallel()
		u := s.register(t, "surr")
		r := s.do(t, "PATCH", "/api/v1/me", u.Token, `{"display_name":"Al\udfffice"}`)
		requireAPIError(t, r, http.StatusBadRequest, "bad_request")
		require.Equal(t, u.Username, getProfile(t, s, u).DisplayName, "unchanged")
	})

	t.Run("RegisterDisplayName", func(t *testing.T) {
		t.Parallel()
		r := s.do(t, "POST", "/api/v1/auth/register", "", `{"username":"surrogate_reg","password":"correct horse","display_name":"\ud800"}`)
		requireAPIError(t, r, http.StatusBadRequest, "bad_request")
		r = s.do(t, "POST", "/api/v1/auth/login", "", map[string]any{"username": "surrogate_reg", "password": "correct horse"})
		requireAPIError(t, r, http.StatusUnauthorized, "invalid_credentials")
	})

	t.Run("PairStoredAsOneCharacter", func(t *testing.T) {
		t.Parallel()
		u := s.register(t, "surr")
		room := s.createRoom(t, u, "public")
		r := s.do(t, "POST", "/api/v1/rooms/"+room+"/messages", u.Token, `{"body":"smile \ud83d\ude00"}`)
		require.Equal(t, http.StatusCreated, r.Status, "body: %s", r.Raw)
		require.Equal(t, "smile 😀", decodeBody[apiMessage](t, r).Body)
		msgs := s.history(t, u, room, "").Messages
		require.Len(t, msgs, 1)
		require.Equal(t, "smile 😀", msgs[0].Body)
	})

	t.Run("EscapedBackslashIsText", func(t *testing.T) {
		t.Parallel()
		u := s.register(t, "surr")
		room := s.createRoom(t, u, "public")
		r := s.do(t, "POST", "/api/v1/rooms/"+room+"/messages", u.Token, `{"body":"\\ud800"}`)
		require.Equal(t, http.StatusCreated, r.Status, "body: %s", r.Raw)
		require.Equal(t, `\ud800`, s.history(t, u, room, "").Messages[0].Body)
	})
}

// TestWSJSONSurrogates: a send with a lone surrogate escape is answered
// error bad_request with its id, stores nothing, and the connection goes on
// working (it is not a 1007 close: the bytes are valid UTF-8); a pair is
// stored as the emoji.
func TestWSJSONSurrogates(t *testing.T) {
	t.Parallel()
	b := setupInput(t, nil)
	c := b.s.dialWS(t, b.alice.Token)
	c.ready()

	for i, body := range []string{`\ud800`, `x\udbff`, `\udc00y`, `\ud83d\u0041`} {
		id := string(rune('a' + i))
		c.sendRaw([]byte(`{"type":"send","id":"` + id + `","room":"` + b.room + `","body":"` + body + `"}`))
		e := c.nextOf("error", "subscribed")
		require.Equal(t, "bad_request", e["code"], "%v", e)
		require.Equal(t, id, e["id"], "%v", e)
		require.NotEmpty(t, e["message"])
	}
	require.Empty(t, b.history(t, b.alice.Token, b.room), "nothing stored")

	c.sendRaw([]byte(`{"type":"send","id":"pair","room":"` + b.room + `","body":"smile \ud83d\ude00"}`))
	ack := c.nextOf("ack", "message", "subscribed")
	require.Equal(t, "pair", ack["id"])
	require.Equal(t, "smile 😀", ack["message"].(map[string]any)["body"])
	require.Equal(t, []string{"smile 😀"}, b.history(t, b.alice.Token, b.room))
	b.requireNodeWorks(t)
}

// getProfile is GET /api/v1/me, requiring 200.
func getProfile(t *testing.T, s *apiServer, u testUser) apiProfile {
	t.Helper()
	r := s.do(t, "GET", "/api/v1/me", u.Token, nil)
	require.Equal(t, http.StatusOK, r.Status, "me: %s", r.Raw)
	return decodeBody[apiProfile](t, r)
}
