package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// This file holds the helpers of the HTTP API tests (TestAPI...) and the
// room tests; api_auth_test.go and api_messages_test.go hold the rest.

// apiServer is a test node with the helpers of the API tests.
type apiServer struct{ *testServer }

func newAPIServer(t *testing.T) *apiServer {
	t.Helper()
	return &apiServer{newTestServer(t, nil)}
}

// The shapes of SPEC §3–§5 as a client decodes them.
type (
	apiUser struct {
		ID          string `json:"id"`
		Username    string `json:"username"`
		DisplayName string `json:"display_name"`
	}
	apiProfile struct {
		ID            string  `json:"id"`
		Username      string  `json:"username"`
		DisplayName   string  `json:"display_name"`
		Phone         *string `json:"phone"`
		PhoneVerified bool    `json:"phone_verified"`
		SMSNotify     bool    `json:"sms_notify"`
		SlackUserID   *string `json:"slack_user_id"`
		CreatedAt     string  `json:"created_at"`
	}
	apiTokens struct {
		User         apiProfile `json:"user"`
		AccessToken  string     `json:"access_token"`
		RefreshToken string     `json:"refresh_token"`
		ExpiresIn    int        `json:"expires_in"`
	}
	apiRoom struct {
		ID          string `json:"id"`
		Name        string `json:"name"`
		Visibility  string `json:"visibility"`
		LastSeq     int64  `json:"last_seq"`
		LastReadSeq int64  `json:"last_read_seq"`
		Unread      int64  `json:"unread"`
	}
	apiMessage struct {
		ID         string  `json:"id"`
		RoomID     string  `json:"room_id"`
		Seq        int64   `json:"seq"`
		Sender     apiUser `json:"sender"`
		Body       string  `json:"body"`
		ParentID   *string `json:"parent_id"`
		ReplyCount int     `json:"reply_count"`
		Source     string  `json:"source"`
		ClientID   *string `json:"client_id"`
		CreatedAt  string  `json:"created_at"`
	}
	apiHistory struct {
		Messages   []apiMessage `json:"messages"`
		NextCursor *string      `json:"next_cursor"`
	}
)

// rawResult is an answer read without failing the test, for requests made
// from several goroutines at once.
type rawResult struct {
	status int
	raw    []byte
	err    error
}

// doConcurrently sends n copies of a request at once and returns the
// answers.
func (s *apiServer) doConcurrently(n int, method, path, token string, body any) []rawResult {
	raw, err := json.Marshal(body)
	if err != nil {
		panic(err)
	}
	out := make([]rawResult, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range out {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			req, err := http.NewRequest(method, s.URL+path, bytes.NewReader(raw))
			if err != nil {
				out[i].err = err
				return
			}
			if token != "" {
				req.Header.Set("Authorization", "Bearer "+token)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				out[i].err = err
				return
			}
			defer resp.Body.Close()
			out[i].status = resp.StatusCode
			out[i].raw, out[i].err = io.ReadAll(resp.Body)
		}()
	}
	close(start)
	wg.Wait()
	return out
}

// decodeBody decodes the raw body of r into a T.
func decodeBody[T any](t *testing.T, r apiResponse) T {
	t.Helper()
	var v T
	require.NoError(t, json.Unmarshal(r.Raw, &v), "body: %s", r.Raw)
	return v
}

// requireAPIError checks an error answer: its status, its code and the SPEC
// §2 shape {"error":{"code","message"}}.
func requireAPIError(t *testing.T, r apiResponse, status int, code string) {
	t.Helper()
	require.Equal(t, status, r.Status, "body: %s", r.Raw)
	require.Equal(t, code, r.errorCode(), "body: %s", r.Raw)
	e, _ := r.Body["error"].(map[string]any)
	require.NotEmpty(t, e["message"], "body: %s", r.Raw)
}

// requireUTCTime checks a SPEC §2 timestamp: RFC 3339 in UTC.
func requireUTCTime(t *testing.T, s string) time.Time {
	t.Helper()
	ts, err := time.Parse(time.RFC3339Nano, s)
	require.NoError(t, err)
	require.True(t, strings.HasSuffix(s, "Z"), "timestamp %q is not in UTC", s)
	return ts
}

// post sends a message and requires 201.
func (s *apiServer) post(t *testing.T, u testUser, room string, req map[string]any) apiMessage {
	t.Helper()
	r := s.do(t, "POST", "/api/v1/rooms/"+room+"/messages", u.Token, req)
	require.Equal(t, http.StatusCreated, r.Status, "post: %s", r.Raw)
	return decodeBody[apiMessage](t, r)
}

// say posts a top-level message with body.
func (s *apiServer) say(t *testing.T, u testUser, room, body string) apiMessage {
	t.Helper()
	return s.post(t, u, room, map[string]any{"body": body})
}

// rooms is GET /api/v1/rooms (or /rooms/public with path).
func (s *apiServer) rooms(t *testing.T, u testUser, path string) []apiRoom {
	t.Helper()
	r := s.do(t, "GET", path, u.Token, nil)
	require.Equal(t, http.StatusOK, r.Status, "rooms: %s", r.Raw)
	return decodeBody[struct {
		Rooms []apiRoom `json:"rooms"`
	}](t, r).Rooms
}

// myRoom returns room as u's GET /api/v1/rooms lists it, and whether it is
// listed.
func (s *apiServer) myRoom(t *testing.T, u testUser, room string) (apiRoom, bool) {
	t.Helper()
	for _, r := range s.rooms(t, u, "/api/v1/rooms") {
		if r.ID == room {
			return r, true
		}
	}
	return apiRoom{}, false
}

// lastSeq is the room's last_seq as its member u sees it.
func (s *apiServer) lastSeq(t *testing.T, u testUser, room string) int64 {
	t.Helper()
	r, ok := s.myRoom(t, u, room)
	require.True(t, ok, "room %s is not among %s's rooms", room, u.Username)
	return r.LastSeq
}

// history is GET /api/v1/rooms/{room}/messages?query, requiring 200.
func (s *apiServer) history(t *testing.T, u testUser, room, query string) apiHistory {
	t.Helper()
	r := s.do(t, "GET", "/api/v1/rooms/"+room+"/messages?"+query, u.Token, nil)
	require.Equal(t, http.StatusOK, r.Status, "history ?%s: %s", query, r.Raw)
	require.NotNil(t, r.Body["messages"], "messages must be a list, not null: %s", r.Raw)
	require.Contains(t, r.Body, "next_cursor")
	return decodeBody[apiHistory](t, r)
}

// msgSeqs lists the seqs of msgs in order.
func msgSeqs(msgs []apiMessage) []int64 {
	out := make([]int64, len(msgs))
	for i, m := range msgs {
		out[i] = m.Seq
	}
	return out
}

// seqSpan is lo..hi inclusive.
func seqSpan(lo, hi int64) []int64 {
	out := []int64{}
	for s := lo; s <= hi; s++ {
		out = append(out, s)
	}
	return out
}

// uniqueRoomName is a room name no other test uses.
func uniqueRoomName(prefix string) string {
	return fmt.Sprintf("%s-%d", prefix, roomSeq.Add(1))
}

func TestAPIRooms(t *testing.T) {
	t.Parallel()
	s := newAPIServer(t)

	type testBundle struct {
		owner, other   testUser
		public, secret string // a public and a private room of owner's
	}
	setup := func(t *testing.T) *testBundle {
		t.Helper()
		b := &testBundle{owner: s.register(t, "owner"), other: s.register(t, "other")}
		b.public = s.createRoom(t, b.owner, "public")
		b.secret = s.createRoom(t, b.owner, "private")
		return b
	}

	t.Run("Create", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		name64 := uniqueRoomName("n")
		name64 += strings.Repeat("a", 64-len(name64))
		for _, tc := range []struct {
			name       string
			body       any
			wantStatus int
			wantCode   string
		}{
			{"Public", map[string]any{"name": uniqueRoomName("Lobby"), "visibility": "public"}, http.StatusCreated, ""},
			{"Private", map[string]any{"name": uniqueRoomName("back_room"), "visibility": "private"}, http.StatusCreated, ""},
			{"Name64", map[string]any{"name": name64, "visibility": "public"}, http.StatusCreated, ""},
			{"Name65", map[string]any{"name": strings.Repeat("a", 65), "visibility": "public"}, http.StatusBadRequest, "bad_request"},
			{"NameWithSpace", map[string]any{"name": "two words", "visibility": "public"}, http.StatusBadRequest, "bad_request"},
			{"NameWithHash", map[string]any{"name": "#general", "visibility": "public"}, http.StatusBadRequest, "bad_request"},
			{"NameEmpty", map[string]any{"name": "", "visibility": "public"}, http.StatusBadRequest, "bad_request"},
			{"NameMissing", map[string]any{"visibility": "public"}, http.StatusBadRequest, "bad_request"},
			{"NameWrongType", map[string]any{"name": 7, "visibility": "public"}, http.StatusBadRequest, "bad_request"},
			{"VisibilityUnknown", map[string]any{"name": uniqueRoomName("vis"), "visibility": "secret"}, http.StatusBadRequest, "bad_request"},
			{"VisibilityWrongCase", map[string]any{"name": uniqueRoomName("vis"), "visibility": "Public"}, http.StatusBadRequest, "bad_request"},
			{"UnknownField", map[string]any{"name": uniqueRoomName("f"), "visibility": "public", "topic": "x"}, http.StatusBadRequest, "bad_request"},
			{"InvalidJSON", `{"name":`, http.StatusBadRequest, "bad_request"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				r := s.do(t, "POST", "/api/v1/rooms", b.owner.Token, tc.body)
				if tc.wantStatus != http.StatusCreated {
					requireAPIError(t, r, tc.wantStatus, tc.wantCode)
					return
				}
				require.Equal(t, http.StatusCreated, r.Status, "body: %s", r.Raw)
				room := decodeBody[apiRoom](t, r)
				want := tc.body.(map[string]any)
				require.NotEmpty(t, room.ID)
				require.Equal(t, want["name"], room.Name)
				require.Equal(t, want["visibility"], room.Visibility)
				require.Equal(t, int64(0), room.LastSeq)
				// The creator is its first member.
				listed, ok := s.myRoom(t, b.owner, room.ID)
				require.True(t, ok)
				require.Equal(t, room.Name, listed.Name)
			})
		}
	})

	t.Run("NameClash", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		name := uniqueRoomName("Clash")
		r := s.do(t, "POST", "/api/v1/rooms", b.owner.Token, map[string]any{"name": name, "visibility": "public"})
		require.Equal(t, http.StatusCreated, r.Status, "body: %s", r.Raw)
		for _, tc := range []struct{ name, roomName, visibility string }{
			{"Same", name, "public"},
			{"Lower", strings.ToLower(name), "public"},
			{"Upper", strings.ToUpper(name), "private"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				r := s.do(t, "POST", "/api/v1/rooms", b.other.Token, map[string]any{"name": tc.roomName, "visibility": tc.visibility})
				requireAPIError(t, r, http.StatusConflict, "conflict")
			})
		}
	})

	t.Run("ListWithUnread", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		s.addMember(t, b.owner, b.public, b.other)

		room, ok := s.myRoom(t, b.owner, b.public)
		require.True(t, ok)
		require.Equal(t, apiRoom{ID: b.public, Name: room.Name, Visibility: "public"}, room)

		s.say(t, b.other, b.public, "one")
		s.say(t, b.other, b.public, "two")
		room, _ = s.myRoom(t, b.owner, b.public)
		require.Equal(t, int64(2), room.LastSeq)
		require.Equal(t, int64(0), room.LastReadSeq)
		require.Equal(t, int64(2), room.Unread)

		// The sender has read what they sent.
		room, _ = s.myRoom(t, b.other, b.public)
		require.Equal(t, int64(2), room.LastReadSeq)
		require.Equal(t, int64(0), room.Unread)

		s.say(t, b.other, b.public, "three")
		room, _ = s.myRoom(t, b.owner, b.public)
		require.Equal(t, int64(3), room.Unread)

		// Posting reads the room up to one's own message.
		s.say(t, b.owner, b.public, "four")
		room, _ = s.myRoom(t, b.owner, b.public)
		require.Equal(t, int64(4), room.LastSeq)
		require.Equal(t, int64(4), room.LastReadSeq)
		require.Equal(t, int64(0), room.Unread)

		// other is in the public room only.
		_, ok = s.myRoom(t, b.other, b.secret)
		require.False(t, ok)
	})

	t.Run("ListEmpty", func(t *testing.T) {
		t.Parallel()
		u := s.register(t, "loner")
		r := s.do(t, "GET", "/api/v1/rooms", u.Token, nil)
		require.Equal(t, http.StatusOK, r.Status, "body: %s", r.Raw)
		require.Equal(t, map[string]any{"rooms": []any{}}, r.Body, "no rooms is an empty list, not null")
	})

	t.Run("PublicList", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		ids := map[string]string{}
		for _, r := range s.rooms(t, b.other, "/api/v1/rooms/public") {
			ids[r.ID] = r.Visibility
		}
		require.Equal(t, "public", ids[b.public])
		require.NotContains(t, ids, b.secret)
		for id, vis := range ids {
			require.Equal(t, "public", vis, "room %s", id)
		}
	})

	t.Run("JoinPublic", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		s.say(t, b.owner, b.public, "before join")
		r := s.do(t, "POST", "/api/v1/rooms/"+b.public+"/join", b.other.Token, nil)
		require.Equal(t, http.StatusOK, r.Status, "body: %s", r.Raw)
		require.Equal(t, b.public, decodeBody[apiRoom](t, r).ID)

		_, ok := s.myRoom(t, b.other, b.public)
		require.True(t, ok)
		require.Equal(t, []int64{1}, msgSeqs(s.history(t, b.other, b.public, "").Messages))
		s.say(t, b.other, b.public, "after join")

		// Joining again is harmless.
		r = s.do(t, "POST", "/api/v1/rooms/"+b.public+"/join", b.other.Token, nil)
		require.Equal(t, http.StatusOK, r.Status, "body: %s", r.Raw)
	})

	t.Run("JoinPrivate", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		r := s.do(t, "POST", "/api/v1/rooms/"+b.secret+"/join", b.other.Token, nil)
		requireAPIError(t, r, http.StatusNotFound, "not_found")
		_, ok := s.myRoom(t, b.other, b.secret)
		require.False(t, ok)
	})

	t.Run("AddMember", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		third := s.register(t, "third")
		for _, room := range []string{b.public, b.secret} {
			// Any member may add: owner adds other, then other adds third.
			s.addMember(t, b.owner, room, b.other)
			r := s.do(t, "POST", "/api/v1/rooms/"+room+"/members", b.other.Token, map[string]any{"username": third.Username})
			require.Equal(t, http.StatusOK, r.Status, "body: %s", r.Raw)
			_, ok := s.myRoom(t, third, room)
			require.True(t, ok)
			s.history(t, third, room, "")
		}
	})

	t.Run("AddMemberRefused", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		third := s.register(t, "third")
		for _, tc := range []struct {
			name       string
			actor      func() testUser
			room       func() string
			body       any
			wantStatus int
			wantCode   string
		}{
			{"NonMemberPublic", func() testUser { return b.other }, func() string { return b.public },
				map[string]any{"username": third.Username}, http.StatusForbidden, "forbidden"},
			{"NonMemberPrivate", func() testUser { return b.other }, func() string { return b.secret },
				map[string]any{"username": third.Username}, http.StatusNotFound, "not_found"},
			{"UnknownUser", func() testUser { return b.owner }, func() string { return b.public },
				map[string]any{"username": "nobody-here"}, http.StatusNotFound, "not_found"},
			// A name with a NUL byte names nobody: not found, never a 500.
			{"UsernameNUL", func() testUser { return b.owner }, func() string { return b.public },
				map[string]any{"username": "nul\x00name"}, http.StatusNotFound, "not_found"},
			{"MissingUsername", func() testUser { return b.owner }, func() string { return b.public },
				map[string]any{}, http.StatusBadRequest, "bad_request"},
			{"UnknownRoom", func() testUser { return b.owner }, func() string { return "999999" },
				map[string]any{"username": third.Username}, http.StatusNotFound, "not_found"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				r := s.do(t, "POST", "/api/v1/rooms/"+tc.room()+"/members", tc.actor().Token, tc.body)
				requireAPIError(t, r, tc.wantStatus, tc.wantCode)
				for _, room := range []string{b.public, b.secret} {
					_, ok := s.myRoom(t, third, room)
					require.False(t, ok, "a refused add must change nothing")
				}
			})
		}
	})

	t.Run("Leave", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		for _, tc := range []struct {
			name       string
			room       func() string
			wantStatus int
			wantCode   string
		}{
			{"Public", func() string { return b.public }, http.StatusForbidden, "forbidden"},
			{"Private", func() string { return b.secret }, http.StatusNotFound, "not_found"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				room := tc.room()
				s.addMember(t, b.owner, room, b.other)
				s.say(t, b.other, room, "bye")
				r := s.do(t, "DELETE", "/api/v1/rooms/"+room+"/members/me", b.other.Token, nil)
				require.Equal(t, http.StatusNoContent, r.Status, "body: %s", r.Raw)
				require.Empty(t, r.Raw)

				_, ok := s.myRoom(t, b.other, room)
				require.False(t, ok)
				r = s.do(t, "GET", "/api/v1/rooms/"+room+"/messages", b.other.Token, nil)
				requireAPIError(t, r, tc.wantStatus, tc.wantCode)
				r = s.do(t, "POST", "/api/v1/rooms/"+room+"/messages", b.other.Token, map[string]any{"body": "still here?"})
				requireAPIError(t, r, tc.wantStatus, tc.wantCode)
				require.Equal(t, int64(1), s.lastSeq(t, b.owner, room))
			})
		}
	})

	t.Run("NonMemberAccess", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		for _, tc := range []struct {
			name       string
			room       func() string
			wantStatus int
			wantCode   string
		}{
			{"PublicRoom", func() string { return b.public }, http.StatusForbidden, "forbidden"},
			{"PrivateRoom", func() string { return b.secret }, http.StatusNotFound, "not_found"},
			{"UnknownRoom", func() string { return "999999" }, http.StatusNotFound, "not_found"},
			{"MalformedID", func() string { return "abc" }, http.StatusNotFound, "not_found"},
			{"ZeroID", func() string { return "0" }, http.StatusNotFound, "not_found"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				room := tc.room()
				r := s.do(t, "GET", "/api/v1/rooms/"+room+"/messages", b.other.Token, nil)
				requireAPIError(t, r, tc.wantStatus, tc.wantCode)
				r = s.do(t, "POST", "/api/v1/rooms/"+room+"/messages", b.other.Token, map[string]any{"body": "hello?"})
				requireAPIError(t, r, tc.wantStatus, tc.wantCode)
				r = s.do(t, "DELETE", "/api/v1/rooms/"+room+"/members/me", b.other.Token, nil)
				requireAPIError(t, r, tc.wantStatus, tc.wantCode)
			})
		}
		// Nothing was stored by the refused posts.
		require.Equal(t, int64(0), s.lastSeq(t, b.owner, b.public))
		// Unknown and malformed ids are not found for joins either.
		for _, room := range []string{"999999", "abc"} {
			r := s.do(t, "POST", "/api/v1/rooms/"+room+"/join", b.owner.Token, nil)
			requireAPIError(t, r, http.StatusNotFound, "not_found")
		}
	})

	t.Run("UnknownEndpoint", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		for _, tc := range []struct{ name, method, path string }{
			{"Path", "GET", "/api/v1/nothing-here"},
			{"Method", "PUT", "/api/v1/rooms/" + b.public},
		} {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				requireAPIError(t, s.do(t, tc.method, tc.path, b.owner.Token, nil), http.StatusNotFound, "not_found")
			})
		}
	})

	t.Run("Unauthenticated", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		for _, tc := range []struct{ name, method, path string }{
			{"List", "GET", "/api/v1/rooms"},
			{"Public", "GET", "/api/v1/rooms/public"},
			{"Create", "POST", "/api/v1/rooms"},
			{"Join", "POST", "/api/v1/rooms/" + b.public + "/join"},
			{"History", "GET", "/api/v1/rooms/" + b.public + "/messages"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				requireAPIError(t, s.do(t, tc.method, tc.path, "", nil), http.StatusUnauthorized, "unauthorized")
			})
		}
	})
}
