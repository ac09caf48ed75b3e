package web_test

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-chat/switchboard/internal/apitest"
)

// This file tests SPEC §14 over HTTP: direct rooms, roles, moderation,
// room settings, search and people look-up.

// member is a row of GET /api/v1/rooms/{id}/members.
type member struct {
	User apitest.Sender `json:"user"`
	Role string         `json:"role"`
}

// teamRoom is a room with the fields of SPEC §14.
type teamRoom struct {
	ID         string          `json:"id"`
	Name       *string         `json:"name"`
	Visibility string          `json:"visibility"`
	Topic      string          `json:"topic"`
	Archived   bool            `json:"archived"`
	Peer       *apitest.Sender `json:"peer"`
}

func (s *apiServer) members(t *testing.T, u apitest.User, room string) map[string]string {
	t.Helper()
	r := s.Do(t, "GET", "/api/v1/rooms/"+room+"/members", u.Token, nil)
	require.Equal(t, http.StatusOK, r.Status, "members: %s", r.Raw)
	out := map[string]string{}
	for _, m := range apitest.Decode[struct {
		Members []member `json:"members"`
	}](t, r).Members {
		out[m.User.ID] = m.Role
	}
	return out
}

func (s *apiServer) teamRooms(t *testing.T, u apitest.User) map[string]teamRoom {
	t.Helper()
	r := s.Do(t, "GET", "/api/v1/rooms", u.Token, nil)
	require.Equal(t, http.StatusOK, r.Status, "rooms: %s", r.Raw)
	out := map[string]teamRoom{}
	for _, room := range apitest.Decode[struct {
		Rooms []teamRoom `json:"rooms"`
	}](t, r).Rooms {
		out[room.ID] = room
	}
	return out
}

func (s *apiServer) setRole(t *testing.T, actor apitest.User, room string, target apitest.User, role string) apitest.Response {
	t.Helper()
	return s.Do(t, "PATCH", "/api/v1/rooms/"+room+"/members/"+target.ID, actor.Token, map[string]any{"role": role})
}

func TestAPIDirectRooms(t *testing.T) {
	t.Parallel()
	s := newAPIServer(t)

	t.Run("CreateOncePerPair", func(t *testing.T) {
		t.Parallel()
		alice, bob := s.Register(t, "alice"), s.Register(t, "bob")
		r := s.Do(t, "POST", "/api/v1/dms", alice.Token, map[string]any{"username": strings.ToUpper(bob.Username)})
		require.Equal(t, http.StatusCreated, r.Status, "%s", r.Raw)
		require.Nil(t, r.Body["name"], "a direct room has no name")
		require.Equal(t, "direct", r.Body["visibility"])
		dm := apitest.Decode[teamRoom](t, r)
		require.Equal(t, bob.ID, dm.Peer.ID)

		// From either side, the same room.
		r = s.Do(t, "POST", "/api/v1/dms", bob.Token, map[string]any{"username": alice.Username})
		require.Equal(t, http.StatusOK, r.Status, "%s", r.Raw)
		require.Equal(t, dm.ID, r.Body["id"])
		r = s.Do(t, "POST", "/api/v1/dms", alice.Token, map[string]any{"username": bob.Username})
		require.Equal(t, http.StatusOK, r.Status, "%s", r.Raw)

		for _, u := range []apitest.User{alice, bob} {
			room, ok := s.teamRooms(t, u)[dm.ID]
			require.True(t, ok)
			require.Equal(t, "direct", room.Visibility)
			require.Nil(t, room.Name)
			other := map[string]string{alice.ID: bob.ID, bob.ID: alice.ID}[u.ID]
			require.Equal(t, other, room.Peer.ID, "the room list carries the peer")
		}
		s.Say(t, bob, dm.ID, "hi alice")
		require.Len(t, s.History(t, alice, dm.ID, "").Messages, 1)
	})

	t.Run("Concurrent", func(t *testing.T) {
		t.Parallel()
		alice, bob := s.Register(t, "alice"), s.Register(t, "bob")
		out := s.doConcurrently(8, "POST", "/api/v1/dms", alice.Token, map[string]any{"username": bob.Username})
		created := 0
		for _, o := range out {
			require.NoError(t, o.err)
			require.Contains(t, []int{http.StatusOK, http.StatusCreated}, o.status, "%s", o.raw)
			if o.status == http.StatusCreated {
				created++
			}
		}
		require.Equal(t, 1, created)
	})

	t.Run("ClosedToJoinAndAdd", func(t *testing.T) {
		t.Parallel()
		alice, bob, carol := s.Register(t, "alice"), s.Register(t, "bob"), s.Register(t, "carol")
		r := s.Do(t, "POST", "/api/v1/dms", alice.Token, map[string]any{"username": bob.Username})
		require.Equal(t, http.StatusCreated, r.Status, "%s", r.Raw)
		dm := r.Body["id"].(string)
		r = s.Do(t, "POST", "/api/v1/rooms/"+dm+"/members", alice.Token, map[string]any{"username": carol.Username})
		apitest.RequireError(t, r, http.StatusForbidden, "forbidden")
		r = s.Do(t, "POST", "/api/v1/rooms/"+dm+"/join", carol.Token, nil)
		apitest.RequireError(t, r, http.StatusNotFound, "not_found")
		r = s.Do(t, "GET", "/api/v1/rooms/"+dm+"/messages", carol.Token, nil)
		apitest.RequireError(t, r, http.StatusNotFound, "not_found")
		// Nobody owns a direct room: nobody moderates or renames it.
		require.Equal(t, map[string]string{alice.ID: "member", bob.ID: "member"}, s.members(t, alice, dm))
		for _, r := range []apitest.Response{
			s.Do(t, "DELETE", "/api/v1/rooms/"+dm+"/members/"+bob.ID, alice.Token, nil),
			s.Do(t, "POST", "/api/v1/rooms/"+dm+"/bans", alice.Token, map[string]any{"user_id": bob.ID}),
			s.Do(t, "PATCH", "/api/v1/rooms/"+dm, alice.Token, map[string]any{"topic": "x"}),
			s.Do(t, "POST", "/api/v1/rooms/"+dm+"/archive", alice.Token, nil),
			s.setRole(t, alice, dm, bob, "admin"),
		} {
			apitest.RequireError(t, r, http.StatusForbidden, "forbidden")
		}
	})

	t.Run("BadPeers", func(t *testing.T) {
		t.Parallel()
		alice := s.Register(t, "alice")
		r := s.Do(t, "POST", "/api/v1/dms", alice.Token, map[string]any{"username": alice.Username})
		apitest.RequireError(t, r, http.StatusBadRequest, "bad_request")
		r = s.Do(t, "POST", "/api/v1/dms", alice.Token, map[string]any{"username": apitest.Unique("nobody")})
		apitest.RequireError(t, r, http.StatusNotFound, "not_found")
		r = s.Do(t, "POST", "/api/v1/dms", alice.Token, map[string]any{})
		apitest.RequireError(t, r, http.StatusBadRequest, "bad_request")
	})

	t.Run("SubscribesOpenConnections", func(t *testing.T) {
		t.Parallel()
		alice, bob := s.Register(t, "alice"), s.Register(t, "bob")
		wa, wb := s.DialWS(t, alice.Token), s.DialWS(t, bob.Token)
		wa.Ready()
		wb.Ready()
		r := s.Do(t, "POST", "/api/v1/dms", alice.Token, map[string]any{"username": bob.Username})
		require.Equal(t, http.StatusCreated, r.Status, "%s", r.Raw)
		dm := r.Body["id"].(string)
		for _, w := range []*apitest.WS{wa, wb} {
			require.Equal(t, dm, w.NextOf("subscribed", "presence")["room"])
		}
		s.Say(t, alice, dm, "live")
		require.Equal(t, "live", apitest.ExpectMessages(t, wb, dm, 1, 1)[0]["body"])
	})
}

func TestAPIRoles(t *testing.T) {
	t.Parallel()
	s := newAPIServer(t)

	type testBundle struct {
		owner, admin, bob, carol apitest.User
		room                     string
	}
	setup := func(t *testing.T) *testBundle {
		t.Helper()
		b := &testBundle{owner: s.Register(t, "owner"), admin: s.Register(t, "admin"), bob: s.Register(t, "bob"),
			carol: s.Register(t, "carol")}
		b.room = s.CreateRoom(t, b.owner, "private")
		for _, u := range []apitest.User{b.admin, b.bob, b.carol} {
			s.AddMember(t, b.owner, b.room, u)
		}
		r := s.setRole(t, b.owner, b.room, b.admin, "admin")
		require.Equal(t, http.StatusOK, r.Status, "%s", r.Raw)
		require.Equal(t, "admin", r.Body["role"])
		return b
	}

	t.Run("CreatorOwnsAndMembersListRoles", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		require.Equal(t, map[string]string{b.owner.ID: "owner", b.admin.ID: "admin", b.bob.ID: "member",
			b.carol.ID: "member"}, s.members(t, b.bob, b.room))
		outsider := s.Register(t, "outsider")
		r := s.Do(t, "GET", "/api/v1/rooms/"+b.room+"/members", outsider.Token, nil)
		apitest.RequireError(t, r, http.StatusNotFound, "not_found")
	})

	t.Run("OnlyTheOwnerSetsRoles", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		apitest.RequireError(t, s.setRole(t, b.admin, b.room, b.bob, "admin"), http.StatusForbidden, "forbidden")
		apitest.RequireError(t, s.setRole(t, b.bob, b.room, b.carol, "admin"), http.StatusForbidden, "forbidden")
		apitest.RequireError(t, s.setRole(t, b.owner, b.room, b.bob, "king"), http.StatusBadRequest, "bad_request")
		outsider := s.Register(t, "outsider")
		apitest.RequireError(t, s.setRole(t, b.owner, b.room, outsider, "admin"), http.StatusNotFound, "not_found")
		// Demote.
		r := s.setRole(t, b.owner, b.room, b.admin, "member")
		require.Equal(t, http.StatusOK, r.Status, "%s", r.Raw)
		require.Equal(t, "member", s.members(t, b.owner, b.room)[b.admin.ID])
	})

	t.Run("HandOverOwnership", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		r := s.setRole(t, b.owner, b.room, b.bob, "owner")
		require.Equal(t, http.StatusOK, r.Status, "%s", r.Raw)
		roles := s.members(t, b.owner, b.room)
		require.Equal(t, "owner", roles[b.bob.ID])
		require.Equal(t, "admin", roles[b.owner.ID], "the old owner becomes an admin")
		// The old owner is now an admin: the new owner's rules apply.
		apitest.RequireError(t, s.setRole(t, b.owner, b.room, b.carol, "admin"), http.StatusForbidden, "forbidden")
		r = s.Do(t, "DELETE", "/api/v1/rooms/"+b.room+"/members/"+b.bob.ID, b.owner.Token, nil)
		apitest.RequireError(t, r, http.StatusForbidden, "forbidden")
	})

	t.Run("OwnerLeavingHandsOver", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		r := s.Do(t, "DELETE", "/api/v1/rooms/"+b.room+"/members/me", b.owner.Token, nil)
		require.Equal(t, http.StatusNoContent, r.Status, "%s", r.Raw)
		require.Equal(t, "owner", s.members(t, b.bob, b.room)[b.admin.ID], "the admin inherits the room")
	})
}

func TestAPIModeration(t *testing.T) {
	t.Parallel()
	s := newAPIServer(t)

	type testBundle struct {
		owner, admin, admin2, bob, carol apitest.User
		room                             string
	}
	setup := func(t *testing.T) *testBundle {
		t.Helper()
		b := &testBundle{owner: s.Register(t, "owner"), admin: s.Register(t, "admin"), admin2: s.Register(t, "admin"),
			bob: s.Register(t, "bob"), carol: s.Register(t, "carol")}
		b.room = s.CreateRoom(t, b.owner, "public")
		for _, u := range []apitest.User{b.admin, b.admin2, b.bob, b.carol} {
			s.AddMember(t, b.owner, b.room, u)
		}
		for _, u := range []apitest.User{b.admin, b.admin2} {
			r := s.setRole(t, b.owner, b.room, u, "admin")
			require.Equal(t, http.StatusOK, r.Status, "%s", r.Raw)
		}
		return b
	}
	remove := func(t *testing.T, actor apitest.User, room string, target apitest.User) apitest.Response {
		t.Helper()
		return s.Do(t, "DELETE", "/api/v1/rooms/"+room+"/members/"+target.ID, actor.Token, nil)
	}
	ban := func(t *testing.T, actor apitest.User, room string, target apitest.User) apitest.Response {
		t.Helper()
		return s.Do(t, "POST", "/api/v1/rooms/"+room+"/bans", actor.Token, map[string]any{"user_id": target.ID})
	}

	t.Run("Remove", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		wb := s.SubscribedClient(t, b.bob, 1)
		r := remove(t, b.admin, b.room, b.bob)
		require.Equal(t, http.StatusNoContent, r.Status, "%s", r.Raw)
		u := wb.NextOf("unsubscribed", "presence")
		require.Equal(t, b.room, u["room"])
		require.Equal(t, "removed", u["reason"])
		require.NotContains(t, s.members(t, b.owner, b.room), b.bob.ID)
		r = s.Do(t, "POST", "/api/v1/rooms/"+b.room+"/messages", b.bob.Token, map[string]any{"body": "still here?"})
		apitest.RequireError(t, r, http.StatusForbidden, "forbidden")
		// Removed, not banned: bob may come back.
		r = s.Do(t, "POST", "/api/v1/rooms/"+b.room+"/join", b.bob.Token, nil)
		require.Equal(t, http.StatusOK, r.Status, "%s", r.Raw)
		apitest.RequireError(t, remove(t, b.admin, b.room, s.Register(t, "x")), http.StatusNotFound, "not_found")
	})

	t.Run("AdminCannotActOnOwnerOrAdmins", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		apitest.RequireError(t, remove(t, b.admin, b.room, b.owner), http.StatusForbidden, "forbidden")
		apitest.RequireError(t, remove(t, b.admin, b.room, b.admin2), http.StatusForbidden, "forbidden")
		apitest.RequireError(t, ban(t, b.admin, b.room, b.owner), http.StatusForbidden, "forbidden")
		apitest.RequireError(t, ban(t, b.admin, b.room, b.admin2), http.StatusForbidden, "forbidden")
		apitest.RequireError(t, remove(t, b.bob, b.room, b.carol), http.StatusForbidden, "forbidden")
		apitest.RequireError(t, ban(t, b.bob, b.room, b.carol), http.StatusForbidden, "forbidden")
		require.Len(t, s.members(t, b.owner, b.room), 5, "nothing changed")
		// The owner acts on admins.
		r := remove(t, b.owner, b.room, b.admin2)
		require.Equal(t, http.StatusNoContent, r.Status, "%s", r.Raw)
	})

	t.Run("BanHoldsAgainstJoinAndAdd", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		wb := s.SubscribedClient(t, b.bob, 1)
		r := ban(t, b.admin, b.room, b.bob)
		require.Equal(t, http.StatusNoContent, r.Status, "%s", r.Raw)
		u := wb.NextOf("unsubscribed", "presence")
		require.Equal(t, "banned", u["reason"])
		r = s.Do(t, "POST", "/api/v1/rooms/"+b.room+"/join", b.bob.Token, nil)
		apitest.RequireError(t, r, http.StatusForbidden, "forbidden")
		r = s.Do(t, "POST", "/api/v1/rooms/"+b.room+"/members", b.carol.Token, map[string]any{"username": b.bob.Username})
		apitest.RequireError(t, r, http.StatusForbidden, "forbidden")
		require.NotContains(t, s.members(t, b.owner, b.room), b.bob.ID)

		r = s.Do(t, "GET", "/api/v1/rooms/"+b.room+"/bans", b.admin.Token, nil)
		require.Equal(t, http.StatusOK, r.Status, "%s", r.Raw)
		bans := apitest.Decode[struct {
			Bans []struct {
				User      apitest.Sender `json:"user"`
				By        apitest.Sender `json:"by"`
				CreatedAt string         `json:"created_at"`
			} `json:"bans"`
		}](t, r).Bans
		require.Len(t, bans, 1)
		require.Equal(t, b.bob.ID, bans[0].User.ID)
		require.Equal(t, b.admin.ID, bans[0].By.ID)
		apitest.RequireUTCTime(t, bans[0].CreatedAt)
		r = s.Do(t, "GET", "/api/v1/rooms/"+b.room+"/bans", b.carol.Token, nil)
		apitest.RequireError(t, r, http.StatusForbidden, "forbidden")

		// Unban: bob may join again.
		r = s.Do(t, "DELETE", "/api/v1/rooms/"+b.room+"/bans/"+b.bob.ID, b.carol.Token, nil)
		apitest.RequireError(t, r, http.StatusForbidden, "forbidden")
		r = s.Do(t, "DELETE", "/api/v1/rooms/"+b.room+"/bans/"+b.bob.ID, b.owner.Token, nil)
		require.Equal(t, http.StatusNoContent, r.Status, "%s", r.Raw)
		r = s.Do(t, "DELETE", "/api/v1/rooms/"+b.room+"/bans/"+b.bob.ID, b.owner.Token, nil)
		apitest.RequireError(t, r, http.StatusNotFound, "not_found")
		r = s.Do(t, "POST", "/api/v1/rooms/"+b.room+"/join", b.bob.Token, nil)
		require.Equal(t, http.StatusOK, r.Status, "%s", r.Raw)
	})

	t.Run("BanANonMember", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		stranger := s.Register(t, "stranger")
		r := ban(t, b.owner, b.room, stranger)
		require.Equal(t, http.StatusNoContent, r.Status, "%s", r.Raw)
		r = s.Do(t, "POST", "/api/v1/rooms/"+b.room+"/join", stranger.Token, nil)
		apitest.RequireError(t, r, http.StatusForbidden, "forbidden")
		r = s.Do(t, "POST", "/api/v1/rooms/"+b.room+"/bans", b.owner.Token, map[string]any{"user_id": "999999999"})
		apitest.RequireError(t, r, http.StatusNotFound, "not_found")
		r = s.Do(t, "POST", "/api/v1/rooms/"+b.room+"/bans", b.owner.Token, map[string]any{"user_id": "0" + stranger.ID})
		apitest.RequireError(t, r, http.StatusNotFound, "not_found")
	})
}

func TestAPIRoomSettings(t *testing.T) {
	t.Parallel()
	s := newAPIServer(t)

	type testBundle struct {
		owner, admin, bob apitest.User
		room              string
	}
	setup := func(t *testing.T) *testBundle {
		t.Helper()
		b := &testBundle{owner: s.Register(t, "owner"), admin: s.Register(t, "admin"), bob: s.Register(t, "bob")}
		b.room = s.CreateRoom(t, b.owner, "private")
		s.AddMember(t, b.owner, b.room, b.admin)
		s.AddMember(t, b.owner, b.room, b.bob)
		r := s.setRole(t, b.owner, b.room, b.admin, "admin")
		require.Equal(t, http.StatusOK, r.Status, "%s", r.Raw)
		return b
	}
	patch := func(t *testing.T, u apitest.User, room string, body map[string]any) apitest.Response {
		t.Helper()
		return s.Do(t, "PATCH", "/api/v1/rooms/"+room, u.Token, body)
	}

	t.Run("RenameAndTopicReachMembersLive", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		wb := s.SubscribedClient(t, b.bob, 1)
		name := apitest.Unique("renamed-")
		r := patch(t, b.admin, b.room, map[string]any{"name": name, "topic": "  plans for Q3  "})
		require.Equal(t, http.StatusOK, r.Status, "%s", r.Raw)
		require.Equal(t, name, r.Body["name"])
		require.Equal(t, "plans for Q3", r.Body["topic"])
		u := wb.NextOf("room_update", "presence")
		require.Equal(t, map[string]any{"id": b.room, "name": name, "visibility": "private", "topic": "plans for Q3",
			"archived": false}, u["room"])
		room := s.teamRooms(t, b.bob)[b.room]
		require.Equal(t, name, *room.Name)
		require.Equal(t, "plans for Q3", room.Topic)
	})

	t.Run("Rules", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		apitest.RequireError(t, patch(t, b.bob, b.room, map[string]any{"topic": "x"}), http.StatusForbidden, "forbidden")
		apitest.RequireError(t, patch(t, b.owner, b.room, map[string]any{"name": "no spaces"}), http.StatusBadRequest, "bad_request")
		apitest.RequireError(t, patch(t, b.owner, b.room, map[string]any{"name": ""}), http.StatusBadRequest, "bad_request")
		apitest.RequireError(t, patch(t, b.owner, b.room, map[string]any{}), http.StatusBadRequest, "bad_request")
		apitest.RequireError(t, patch(t, b.owner, b.room, map[string]any{"topic": strings.Repeat("é", 251)}),
			http.StatusRequestEntityTooLarge, "too_large")
		r := patch(t, b.owner, b.room, map[string]any{"topic": strings.Repeat("é", 250)})
		require.Equal(t, http.StatusOK, r.Status, "%s", r.Raw)
		other := s.CreateRoom(t, b.owner, "public")
		taken := s.teamRooms(t, b.owner)[other].Name
		apitest.RequireError(t, patch(t, b.owner, b.room, map[string]any{"name": strings.ToUpper(*taken)}),
			http.StatusConflict, "conflict")
	})

	t.Run("Archive", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		s.Say(t, b.bob, b.room, "before")
		r := s.Do(t, "POST", "/api/v1/rooms/"+b.room+"/archive", b.admin.Token, nil)
		apitest.RequireError(t, r, http.StatusForbidden, "forbidden")
		wb := s.SubscribedClient(t, b.bob, 1)
		r = s.Do(t, "POST", "/api/v1/rooms/"+b.room+"/archive", b.owner.Token, nil)
		require.Equal(t, http.StatusOK, r.Status, "%s", r.Raw)
		require.Equal(t, true, r.Body["archived"])
		require.Equal(t, true, wb.NextOf("room_update", "presence", "message")["room"].(map[string]any)["archived"])

		r = s.Do(t, "POST", "/api/v1/rooms/"+b.room+"/messages", b.bob.Token, map[string]any{"body": "after"})
		apitest.RequireError(t, r, http.StatusForbidden, "forbidden")
		wb.Send(map[string]any{"type": "send", "id": "s1", "room": b.room, "body": "after"})
		e := wb.NextOf("error", "presence", "message", "room_update") // LocalBroker hands the hub its own events again
		require.Equal(t, "forbidden", e["code"])
		// It stays listed, with its history.
		require.True(t, s.teamRooms(t, b.bob)[b.room].Archived)
		require.Len(t, s.History(t, b.bob, b.room, "").Messages, 1)
	})
}

// searchResult is a row of GET /api/v1/search.
type searchResult struct {
	Message apitest.Message `json:"message"`
	Room    struct {
		ID   string  `json:"id"`
		Name *string `json:"name"`
	} `json:"room"`
}

type searchPage struct {
	Results    []searchResult `json:"results"`
	NextCursor *string        `json:"next_cursor"`
}

func (s *apiServer) search(t *testing.T, u apitest.User, query string) searchPage {
	t.Helper()
	r := s.Do(t, "GET", "/api/v1/search?"+query, u.Token, nil)
	require.Equal(t, http.StatusOK, r.Status, "search ?%s: %s", query, r.Raw)
	require.NotNil(t, r.Body["results"], "results must be a list: %s", r.Raw)
	return apitest.Decode[searchPage](t, r)
}

func bodies(p searchPage) []string {
	out := []string{}
	for _, r := range p.Results {
		out = append(out, r.Message.Body)
	}
	return out
}

func TestAPISearch(t *testing.T) {
	t.Parallel()
	s := newAPIServer(t)

	type testBundle struct {
		alice, bob    apitest.User
		room, other   string // alice and bob; alice only
		word, another string // words unique to this test
	}
	setup := func(t *testing.T) *testBundle {
		t.Helper()
		b := &testBundle{alice: s.Register(t, "alice"), bob: s.Register(t, "bob"),
			word: apitest.Unique("zebra"), another: apitest.Unique("quokka")}
		b.room = s.CreateRoom(t, b.alice, "private")
		b.other = s.CreateRoom(t, b.alice, "private")
		s.AddMember(t, b.alice, b.room, b.bob)
		return b
	}
	q := func(v string, extra ...string) string {
		return "q=" + url.QueryEscape(v) + strings.Join(extra, "")
	}

	t.Run("AllWordsPhraseExclusion", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		w, x := b.word, b.another
		s.Say(t, b.alice, b.room, w+" and "+x+" together")
		s.Say(t, b.alice, b.room, x+" then "+w)
		s.Say(t, b.alice, b.room, "only "+w)
		s.Say(t, b.alice, b.room, "Café "+w+" crème")
		require.ElementsMatch(t, []string{w + " and " + x + " together", x + " then " + w},
			bodies(s.search(t, b.bob, q(w+" "+x))), "every word must match")
		require.Equal(t, []string{w + " and " + x + " together"}, bodies(s.search(t, b.bob, q(`"`+w+" and "+x+`"`))),
			"a phrase matches in order")
		require.ElementsMatch(t, []string{"only " + w, "Café " + w + " crème"}, bodies(s.search(t, b.bob, q(w+" -"+x))))
		require.Equal(t, []string{"Café " + w + " crème"}, bodies(s.search(t, b.bob, q("CAFE "+w))),
			"case and accents do not matter")
		require.Empty(t, bodies(s.search(t, b.bob, q("-"+w))))
		require.ElementsMatch(t, []string{x + " then " + w, "only " + w, "Café " + w + " crème"},
			bodies(s.search(t, b.bob, q(w+` -"`+w+" and "+x+`"`))), "an excluded phrase leaves its words apart")
		require.ElementsMatch(t, []string{w + " and " + x + " together", x + " then " + w},
			bodies(s.search(t, b.bob, q(x+" or "+apitest.Unique("absent")))), "or")
		hit := s.search(t, b.bob, q(w+" "+x)).Results[0]
		require.Equal(t, b.room, hit.Room.ID)
		require.NotNil(t, hit.Room.Name)
		require.Equal(t, b.room, hit.Message.RoomID)
	})

	t.Run("BestFirst", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		w := b.word
		s.Say(t, b.alice, b.room, w+" "+w+" "+w)
		s.Say(t, b.alice, b.room, "a long message that mentions "+w+" once among very many other words of no interest")
		got := bodies(s.search(t, b.alice, q(w)))
		require.Equal(t, w+" "+w+" "+w, got[0])
	})

	t.Run("MembershipAndRoomFilter", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		s.Say(t, b.alice, b.room, "shared "+b.word)
		s.Say(t, b.alice, b.other, "private "+b.word)
		require.ElementsMatch(t, []string{"shared " + b.word}, bodies(s.search(t, b.bob, q(b.word))))
		require.ElementsMatch(t, []string{"shared " + b.word, "private " + b.word}, bodies(s.search(t, b.alice, q(b.word))))
		require.Equal(t, []string{"private " + b.word}, bodies(s.search(t, b.alice, q(b.word, "&room="+b.other))))
		r := s.Do(t, "GET", "/api/v1/search?"+q(b.word, "&room="+b.other), b.bob.Token, nil)
		apitest.RequireError(t, r, http.StatusNotFound, "not_found")
		// A member who leaves finds nothing there any more.
		r = s.Do(t, "DELETE", "/api/v1/rooms/"+b.room+"/members/me", b.bob.Token, nil)
		require.Equal(t, http.StatusNoContent, r.Status)
		require.Empty(t, bodies(s.search(t, b.bob, q(b.word))))
	})

	t.Run("DeletedNeverShown", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		m := s.Say(t, b.alice, b.room, "regrettable "+b.word)
		s.Say(t, b.alice, b.room, "fine "+b.word)
		// As a delete (SPEC §13) leaves the row.
		_, err := s.Pool.Exec(t.Context(), `UPDATE messages SET body = '', deleted_at = now() WHERE id = $1`, m.ID)
		require.NoError(t, err)
		require.Equal(t, []string{"fine " + b.word}, bodies(s.search(t, b.alice, q(b.word))))
		require.Empty(t, bodies(s.search(t, b.alice, q("regrettable"+" "+b.word))))
		// An edit is found by its new words only.
		m2 := s.Say(t, b.alice, b.room, "typo "+b.another)
		_, err = s.Pool.Exec(t.Context(), `UPDATE messages SET body = $2, edited_at = now() WHERE id = $1`, m2.ID,
			"fixed "+b.another)
		require.NoError(t, err)
		require.Empty(t, bodies(s.search(t, b.alice, q("typo "+b.another))))
		require.Equal(t, []string{"fixed " + b.another}, bodies(s.search(t, b.alice, q("fixed "+b.another))))
	})

	t.Run("PagingWhileMessagesArrive", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		want := map[string]bool{}
		for i := range 25 {
			body := fmt.Sprintf("%s number %d%s", b.word, i, strings.Repeat(" "+b.word, i%4))
			s.Say(t, b.alice, b.room, body)
			want[body] = true
		}
		seen := map[string]bool{}
		query := q(b.word, "&limit=7")
		pages := 0
		for {
			p := s.search(t, b.bob, query)
			pages++
			for _, body := range bodies(p) {
				require.False(t, seen[body], "repeated: %s", body)
				seen[body] = true
			}
			// New matches, some ranked above everything, arrive between pages.
			s.Say(t, b.alice, b.room, strings.Repeat(b.word+" ", 6)+"late")
			if p.NextCursor == nil {
				break
			}
			query = q(b.word, "&limit=7&cursor="+url.QueryEscape(*p.NextCursor))
		}
		require.Equal(t, 4, pages)
		require.Equal(t, want, seen, "every message that existed at the first page, once")
	})

	t.Run("BadInput", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		s.Say(t, b.alice, b.room, "some words "+b.word)
		for _, query := range []string{"", "q=", "q=x&limit=0", "q=x&limit=101", "q=x&limit=a", "q=x&cursor=nope"} {
			r := s.Do(t, "GET", "/api/v1/search?"+query, b.alice.Token, nil)
			apitest.RequireError(t, r, http.StatusBadRequest, "bad_request")
		}
		r := s.Do(t, "GET", "/api/v1/search?q=x&room=0"+b.room, b.alice.Token, nil)
		apitest.RequireError(t, r, http.StatusNotFound, "not_found")
		require.Empty(t, bodies(s.search(t, b.alice, q(`" - "`))), "a query of no words finds nothing")
		require.Empty(t, bodies(s.search(t, b.alice, q("-nothing"))), "nor one of exclusions only")
	})
}

func TestAPIPeople(t *testing.T) {
	t.Parallel()
	s := newAPIServer(t)
	prefix := apitest.Unique("pplx")
	var names []string
	for i := range 25 {
		u := s.RegisterNamed(t, fmt.Sprintf("%s_%02d", prefix, i))
		names = append(names, u.Username)
	}
	me := s.Register(t, "me")
	shown := apitest.Unique("Zoë")
	_, err := s.Pool.Exec(t.Context(), `UPDATE users SET display_name = $2 WHERE id = $1`, me.ID, shown+" Example")
	require.NoError(t, err)

	find := func(q string) []string {
		r := s.Do(t, "GET", "/api/v1/users?q="+url.QueryEscape(q), me.Token, nil)
		require.Equal(t, http.StatusOK, r.Status, "%s", r.Raw)
		out := []string{}
		for _, u := range apitest.Decode[struct {
			Users []apitest.Sender `json:"users"`
		}](t, r).Users {
			out = append(out, u.Username)
		}
		return out
	}
	require.Equal(t, names[:20], find(strings.ToUpper(prefix)), "up to 20, by username, any case")
	require.Equal(t, []string{names[3]}, find(prefix+"_03"))
	require.Equal(t, []string{me.Username}, find(strings.ToLower(shown)), "display names too")
	require.Empty(t, find(prefix+"%"), "LIKE patterns are plain characters")
	r := s.Do(t, "GET", "/api/v1/users?q=", me.Token, nil)
	apitest.RequireError(t, r, http.StatusBadRequest, "bad_request")
}
