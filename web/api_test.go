package web_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-chat/switchboard/internal/apitest"
)

// This file holds the helpers of the HTTP API tests (TestAPI...) and the
// room tests; api_auth_test.go and api_messages_test.go hold the rest.

// apiServer is a test node with the helpers of the API tests.
type apiServer struct{ *apitest.Node }

func newAPIServer(t *testing.T) *apiServer {
	t.Helper()
	return &apiServer{apitest.NewNode(t, apitest.Options{})}
}

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

// rooms is GET /api/v1/rooms (or /rooms/public with path).
func (s *apiServer) rooms(t *testing.T, u apitest.User, path string) []apitest.Room {
	t.Helper()
	r := s.Do(t, "GET", path, u.Token, nil)
	require.Equal(t, http.StatusOK, r.Status, "rooms: %s", r.Raw)
	return apitest.Decode[struct {
		Rooms []apitest.Room `json:"rooms"`
	}](t, r).Rooms
}

// myRoom returns room as u's GET /api/v1/rooms lists it, and whether it is
// listed.
func (s *apiServer) myRoom(t *testing.T, u apitest.User, room string) (apitest.Room, bool) {
	t.Helper()
	for _, r := range s.rooms(t, u, "/api/v1/rooms") {
		if r.ID == room {
			return r, true
		}
	}
	return apitest.Room{}, false
}

// lastSeq is the room's last_seq as its member u sees it.
func (s *apiServer) lastSeq(t *testing.T, u apitest.User, room string) int64 {
	t.Helper()
	r, ok := s.myRoom(t, u, room)
	require.True(t, ok, "room %s is not among %s's rooms", room, u.Username)
	return r.LastSeq
}

// msgSeqs lists the seqs of msgs in order.
func msgSeqs(msgs []apitest.Message) []int64 {
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

func TestAPIRooms(t *testing.T) {
	t.Parallel()
	s := newAPIServer(t)

	type testBundle struct {
		owner, other   apitest.User
		public, secret string // a public and a private room of owner's
	}
	setup := func(t *testing.T) *testBundle {
		t.Helper()
		b := &testBundle{owner: s.Register(t, "owner"), other: s.Register(t, "other")}
		b.public = s.CreateRoom(t, b.owner, "public")
		b.secret = s.CreateRoom(t, b.owner, "private")
		return b
	}

	t.Run("Create", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		name64 := apitest.Unique("n-")
		name64 += strings.Repeat("a", 64-len(name64))
		for _, tc := range []struct {
			name       string
			body       any
			wantStatus int
			wantCode   string
		}{
			{"Public", map[string]any{"name": apitest.Unique("Lobby-"), "visibility": "public"}, http.StatusCreated, ""},
			{"Private", map[string]any{"name": apitest.Unique("back_room-"), "visibility": "private"}, http.StatusCreated, ""},
			{"Name64", map[string]any{"name": name64, "visibility": "public"}, http.StatusCreated, ""},
			{"Name65", map[string]any{"name": strings.Repeat("a", 65), "visibility": "public"}, http.StatusBadRequest, "bad_request"},
			{"NameWithSpace", map[string]any{"name": "two words", "visibility": "public"}, http.StatusBadRequest, "bad_request"},
			{"NameWithHash", map[string]any{"name": "#general", "visibility": "public"}, http.StatusBadRequest, "bad_request"},
			{"NameEmpty", map[string]any{"name": "", "visibility": "public"}, http.StatusBadRequest, "bad_request"},
			{"NameMissing", map[string]any{"visibility": "public"}, http.StatusBadRequest, "bad_request"},
			{"NameWrongType", map[string]any{"name": 7, "visibility": "public"}, http.StatusBadRequest, "bad_request"},
			{"VisibilityUnknown", map[string]any{"name": apitest.Unique("vis-"), "visibility": "secret"}, http.StatusBadRequest, "bad_request"},
			{"VisibilityWrongCase", map[string]any{"name": apitest.Unique("vis-"), "visibility": "Public"}, http.StatusBadRequest, "bad_request"},
			{"UnknownField", map[string]any{"name": apitest.Unique("f-"), "visibility": "public", "topic": "x"}, http.StatusBadRequest, "bad_request"},
			{"InvalidJSON", `{"name":`, http.StatusBadRequest, "bad_request"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				r := s.Do(t, "POST", "/api/v1/rooms", b.owner.Token, tc.body)
				if tc.wantStatus != http.StatusCreated {
					apitest.RequireError(t, r, tc.wantStatus, tc.wantCode)
					return
				}
				require.Equal(t, http.StatusCreated, r.Status, "body: %s", r.Raw)
				room := apitest.Decode[apitest.Room](t, r)
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
		name := apitest.Unique("Clash-")
		r := s.Do(t, "POST", "/api/v1/rooms", b.owner.Token, map[string]any{"name": name, "visibility": "public"})
		require.Equal(t, http.StatusCreated, r.Status, "body: %s", r.Raw)
		for _, tc := range []struct{ name, roomName, visibility string }{
			{"Same", name, "public"},
			{"Lower", strings.ToLower(name), "public"},
			{"Upper", strings.ToUpper(name), "private"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				r := s.Do(t, "POST", "/api/v1/rooms", b.other.Token, map[string]any{"name": tc.roomName, "visibility": tc.visibility})
				apitest.RequireError(t, r, http.StatusConflict, "conflict")
			})
		}
	})

	t.Run("ListWithUnread", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		s.AddMember(t, b.owner, b.public, b.other)

		room, ok := s.myRoom(t, b.owner, b.public)
		require.True(t, ok)
		require.Equal(t, apitest.Room{ID: b.public, Name: room.Name, Visibility: "public"}, room)

		s.Say(t, b.other, b.public, "one")
		s.Say(t, b.other, b.public, "two")
		room, _ = s.myRoom(t, b.owner, b.public)
		require.Equal(t, int64(2), room.LastSeq)
		require.Equal(t, int64(0), room.LastReadSeq)
		require.Equal(t, int64(2), room.Unread)

		// The sender has read what they sent.
		room, _ = s.myRoom(t, b.other, b.public)
		require.Equal(t, int64(2), room.LastReadSeq)
		require.Equal(t, int64(0), room.Unread)

		s.Say(t, b.other, b.public, "three")
		room, _ = s.myRoom(t, b.owner, b.public)
		require.Equal(t, int64(3), room.Unread)

		// Posting reads the room up to one's own message.
		s.Say(t, b.owner, b.public, "four")
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
		u := s.Register(t, "loner")
		r := s.Do(t, "GET", "/api/v1/rooms", u.Token, nil)
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
		s.Say(t, b.owner, b.public, "before join")
		r := s.Do(t, "POST", "/api/v1/rooms/"+b.public+"/join", b.other.Token, nil)
		require.Equal(t, http.StatusOK, r.Status, "body: %s", r.Raw)
		require.Equal(t, b.public, apitest.Decode[apitest.Room](t, r).ID)

		_, ok := s.myRoom(t, b.other, b.public)
		require.True(t, ok)
		require.Equal(t, []int64{1}, msgSeqs(s.History(t, b.other, b.public, "").Messages))
		s.Say(t, b.other, b.public, "after join")

		// Joining again is harmless.
		r = s.Do(t, "POST", "/api/v1/rooms/"+b.public+"/join", b.other.Token, nil)
		require.Equal(t, http.StatusOK, r.Status, "body: %s", r.Raw)
	})

	t.Run("JoinPrivate", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		r := s.Do(t, "POST", "/api/v1/rooms/"+b.secret+"/join", b.other.Token, nil)
		apitest.RequireError(t, r, http.StatusNotFound, "not_found")
		_, ok := s.myRoom(t, b.other, b.secret)
		require.False(t, ok)
	})

	t.Run("AddMember", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		third := s.Register(t, "third")
		for _, room := range []string{b.public, b.secret} {
			// Any member may add: owner adds other, then other adds third.
			s.AddMember(t, b.owner, room, b.other)
			r := s.Do(t, "POST", "/api/v1/rooms/"+room+"/members", b.other.Token, map[string]any{"username": third.Username})
			require.Equal(t, http.StatusOK, r.Status, "body: %s", r.Raw)
			_, ok := s.myRoom(t, third, room)
			require.True(t, ok)
			s.History(t, third, room, "")
		}
	})

	t.Run("AddMemberRefused", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		third := s.Register(t, "third")
		for _, tc := range []struct {
			name       string
			actor      func() apitest.User
			room       func() string
			body       any
			wantStatus int
			wantCode   string
		}{
			{"NonMemberPublic", func() apitest.User { return b.other }, func() string { return b.public },
				map[string]any{"username": third.Username}, http.StatusForbidden, "forbidden"},
			{"NonMemberPrivate", func() apitest.User { return b.other }, func() string { return b.secret },
				map[string]any{"username": third.Username}, http.StatusNotFound, "not_found"},
			{"UnknownUser", func() apitest.User { return b.owner }, func() string { return b.public },
				map[string]any{"username": "nobody-here"}, http.StatusNotFound, "not_found"},
			// A name with a NUL byte names nobody: not found, never a 500.
			{"UsernameNUL", func() apitest.User { return b.owner }, func() string { return b.public },
				map[string]any{"username": "nul\x00name"}, http.StatusNotFound, "not_found"},
			{"MissingUsername", func() apitest.User { return b.owner }, func() string { return b.public },
				map[string]any{}, http.StatusBadRequest, "bad_request"},
			{"UnknownRoom", func() apitest.User { return b.owner }, func() string { return "999999" },
				map[string]any{"username": third.Username}, http.StatusNotFound, "not_found"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				r := s.Do(t, "POST", "/api/v1/rooms/"+tc.room()+"/members", tc.actor().Token, tc.body)
				apitest.RequireError(t, r, tc.wantStatus, tc.wantCode)
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
				s.AddMember(t, b.owner, room, b.other)
				s.Say(t, b.other, room, "bye")
				r := s.Do(t, "DELETE", "/api/v1/rooms/"+room+"/members/me", b.other.Token, nil)
				require.Equal(t, http.StatusNoContent, r.Status, "body: %s", r.Raw)
				require.Empty(t, r.Raw)

				_, ok := s.myRoom(t, b.other, room)
				require.False(t, ok)
				r = s.Do(t, "GET", "/api/v1/rooms/"+room+"/messages", b.other.Token, nil)
				apitest.RequireError(t, r, tc.wantStatus, tc.wantCode)
				r = s.Do(t, "POST", "/api/v1/rooms/"+room+"/messages", b.other.Token, map[string]any{"body": "still here?"})
				apitest.RequireError(t, r, tc.wantStatus, tc.wantCode)
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
				r := s.Do(t, "GET", "/api/v1/rooms/"+room+"/messages", b.other.Token, nil)
				apitest.RequireError(t, r, tc.wantStatus, tc.wantCode)
				r = s.Do(t, "POST", "/api/v1/rooms/"+room+"/messages", b.other.Token, map[string]any{"body": "hello?"})
				apitest.RequireError(t, r, tc.wantStatus, tc.wantCode)
				r = s.Do(t, "DELETE", "/api/v1/rooms/"+room+"/members/me", b.other.Token, nil)
				apitest.RequireError(t, r, tc.wantStatus, tc.wantCode)
			})
		}
		// Nothing was stored by the refused posts.
		require.Equal(t, int64(0), s.lastSeq(t, b.owner, b.public))
		// Unknown and malformed ids are not found for joins either.
		for _, room := range []string{"999999", "abc"} {
			r := s.Do(t, "POST", "/api/v1/rooms/"+room+"/join", b.owner.Token, nil)
			apitest.RequireError(t, r, http.StatusNotFound, "not_found")
		}
	})

	t.Run("UnknownEndpoint", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		for _, tc := range []struct{ name, method, path string }{
			{"Path", "GET", "/api/v1/nothing-here"},
			{"UnderARoom", "PUT", "/api/v1/rooms/" + b.public + "/nothing-here"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				apitest.RequireError(t, s.Do(t, tc.method, tc.path, b.owner.Token, nil), http.StatusNotFound, "not_found")
			})
		}
		// A room takes PATCH (SPEC §14), nothing else.
		r := s.Do(t, "PUT", "/api/v1/rooms/"+b.public, b.owner.Token, nil)
		apitest.RequireError(t, r, http.StatusMethodNotAllowed, "bad_request")
		require.Equal(t, "PATCH", r.Header.Get("Allow"))
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
				apitest.RequireError(t, s.Do(t, tc.method, tc.path, "", nil), http.StatusUnauthorized, "unauthorized")
			})
		}
	})
}
