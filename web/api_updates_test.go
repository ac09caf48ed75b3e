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

// events reads GET /rooms/{id}/events as u.
func (s *apiServer) events(t *testing.T, u apitest.User, room, query string) []map[string]any {
	t.Helper()
	r := s.Do(t, "GET", "/api/v1/rooms/"+room+"/events?"+query, u.Token, nil)
	require.Equal(t, http.StatusOK, r.Status, "events: %s", r.Raw)
	var out []map[string]any
	for _, e := range r.Body["events"].([]any) {
		out = append(out, e.(map[string]any))
	}
	return out
}

// change makes one change as u and requires the status.
func (s *apiServer) change(t *testing.T, u apitest.User, method, path string, body any, status int) apitest.Message {
	t.Helper()
	r := s.Do(t, method, path, u.Token, body)
	require.Equal(t, status, r.Status, "%s %s: %s", method, path, r.Raw)
	if status != http.StatusOK {
		return apitest.Message{}
	}
	return apitest.Decode[apitest.Message](t, r)
}

func reactionPath(msg, emoji string) string {
	return "/api/v1/messages/" + msg + "/reactions/" + url.PathEscape(emoji)
}

func TestAPIMessageUpdates(t *testing.T) {
	t.Parallel()
	s := newAPIServer(t)

	type testBundle struct {
		alice, bob, carol apitest.User
		room              string // public, created by alice, bob a member
		secret            string // private, alice alone
	}
	setup := func(t *testing.T) *testBundle {
		t.Helper()
		b := &testBundle{alice: s.Register(t, "alice"), bob: s.Register(t, "bob"), carol: s.Register(t, "carol")}
		b.room = s.CreateRoom(t, b.alice, "public")
		b.secret = s.CreateRoom(t, b.alice, "private")
		s.AddMember(t, b.alice, b.room, b.bob)
		return b
	}

	t.Run("EditReactDeleteAreEvents", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		m := s.Say(t, b.alice, b.room, "helo")
		path := "/api/v1/messages/" + m.ID
		edited := s.change(t, b.alice, "PATCH", path, map[string]any{"body": " hello @" + b.bob.Username + " "}, http.StatusOK)
		require.Equal(t, "hello @"+b.bob.Username, edited.Body)
		require.NotNil(t, edited.EditedAt)
		apitest.RequireUTCTime(t, *edited.EditedAt)
		require.Equal(t, []string{b.bob.ID}, edited.Mentions)
		require.Equal(t, m.Seq, edited.Seq, "a message keeps its seq")

		reacted := s.change(t, b.bob, "PUT", reactionPath(m.ID, "👍"), nil, http.StatusOK)
		require.Equal(t, []apitest.Reaction{{Emoji: "👍", Count: 1, UserIDs: []string{b.bob.ID}}}, reacted.Reactions)
		s.change(t, b.alice, "PUT", reactionPath(m.ID, ":shipit:"), nil, http.StatusOK)
		reply := s.Post(t, b.bob, b.room, map[string]any{"body": "a reply", "parent_id": m.ID})
		require.Equal(t, int64(5), reply.Seq, "updates took seqs 2, 3 and 4")
		require.Equal(t, int64(5), s.lastSeq(t, b.alice, b.room))

		// Repeats answer 200 with the state and store nothing.
		s.change(t, b.bob, "PUT", reactionPath(m.ID, "👍"), nil, http.StatusOK)
		s.change(t, b.bob, "DELETE", reactionPath(m.ID, ":shipit:"), nil, http.StatusOK)
		same := s.change(t, b.alice, "PATCH", path, map[string]any{"body": "hello @" + b.bob.Username}, http.StatusOK)
		require.Equal(t, edited.EditedAt, same.EditedAt)
		require.Equal(t, int64(5), s.lastSeq(t, b.alice, b.room), "repeats advance nothing")

		unreacted := s.change(t, b.bob, "DELETE", reactionPath(m.ID, "👍"), nil, http.StatusOK)
		require.Equal(t, []apitest.Reaction{{Emoji: ":shipit:", Count: 1, UserIDs: []string{b.alice.ID}}}, unreacted.Reactions)
		deleted := s.change(t, b.alice, "DELETE", path, nil, http.StatusOK)
		require.True(t, deleted.Deleted)
		require.Empty(t, deleted.Body)
		require.Empty(t, deleted.Reactions)
		require.Equal(t, 1, deleted.ReplyCount, "a tombstone keeps its thread")
		s.change(t, b.alice, "DELETE", path, nil, http.StatusOK)
		require.Equal(t, int64(7), s.lastSeq(t, b.alice, b.room))

		// The events: messages and updates in seq order.
		evs := s.events(t, b.bob, b.room, "")
		var got []string
		for i, e := range evs {
			require.EqualValues(t, i+1, e["seq"])
			got = append(got, e["kind"].(string))
			if e["kind"] != "message" {
				require.Equal(t, "update", e["type"])
				require.Equal(t, b.room, e["room"])
			}
		}
		require.Equal(t, []string{"message", "edit", "reaction", "reaction", "message", "reaction", "delete"}, got)
		require.Len(t, s.events(t, b.bob, b.room, "after_seq=5&limit=1"), 1)
		require.Empty(t, s.events(t, b.bob, b.room, "after_seq=7"))

		// History and threads show the current state.
		h := s.History(t, b.bob, b.room, "")
		require.Equal(t, []int64{1, 5}, msgSeqs(h.Messages))
		require.True(t, h.Messages[0].Deleted)
		r := s.Do(t, "GET", path, b.bob.Token, nil)
		require.Equal(t, http.StatusOK, r.Status)
		require.Equal(t, true, r.Body["message"].(map[string]any)["deleted"])
		require.Len(t, r.Body["replies"], 1)
	})

	t.Run("Permissions", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		byAlice := s.Say(t, b.alice, b.room, "alice's")
		byBob := s.Say(t, b.bob, b.room, "bob's")
		hidden := s.Say(t, b.alice, b.secret, "hidden")
		refuse := func(u apitest.User, method, path string, body any, status int, code string) {
			t.Helper()
			apitest.RequireError(t, s.Do(t, method, path, u.Token, body), status, code)
		}
		edit := map[string]any{"body": "changed"}
		refuse(b.bob, "PATCH", "/api/v1/messages/"+byAlice.ID, edit, http.StatusForbidden, "forbidden")
		refuse(b.alice, "PATCH", "/api/v1/messages/"+byBob.ID, edit, http.StatusForbidden, "forbidden")
		refuse(b.bob, "DELETE", "/api/v1/messages/"+byAlice.ID, nil, http.StatusForbidden, "forbidden")
		refuse(b.carol, "PUT", reactionPath(byAlice.ID, "👍"), nil, http.StatusForbidden, "forbidden")
		refuse(b.carol, "DELETE", "/api/v1/messages/"+byAlice.ID, nil, http.StatusForbidden, "forbidden")
		refuse(b.bob, "PUT", reactionPath(hidden.ID, "👍"), nil, http.StatusNotFound, "not_found")
		refuse(b.bob, "PATCH", "/api/v1/messages/999999999", edit, http.StatusNotFound, "not_found")
		refuse(b.bob, "PATCH", "/api/v1/messages/01", edit, http.StatusNotFound, "not_found")
		refuse(b.carol, "GET", "/api/v1/rooms/"+b.secret+"/events", nil, http.StatusNotFound, "not_found")
		refuse(b.carol, "GET", "/api/v1/rooms/"+b.room+"/events", nil, http.StatusForbidden, "forbidden")
		// Only the member who reacted removes their reaction: another's
		// removal is one of a reaction they do not have.
		s.change(t, b.alice, "PUT", reactionPath(byBob.ID, "🎉"), nil, http.StatusOK)
		still := s.change(t, b.bob, "DELETE", reactionPath(byBob.ID, "🎉"), nil, http.StatusOK)
		require.Equal(t, []apitest.Reaction{{Emoji: "🎉", Count: 1, UserIDs: []string{b.alice.ID}}}, still.Reactions)

		// The room's creator deletes anyone's message; then it is a
		// tombstone: no edit, no reaction (409).
		gone := s.change(t, b.alice, "DELETE", "/api/v1/messages/"+byBob.ID, nil, http.StatusOK)
		require.True(t, gone.Deleted)
		refuse(b.bob, "PATCH", "/api/v1/messages/"+byBob.ID, edit, http.StatusConflict, "conflict")
		refuse(b.alice, "PUT", reactionPath(byBob.ID, "👍"), nil, http.StatusConflict, "conflict")
		refuse(b.alice, "DELETE", reactionPath(byBob.ID, "🎉"), nil, http.StatusConflict, "conflict")

		// At most 20 distinct emoji (409), any number of members on them.
		for i := range 20 {
			s.change(t, b.alice, "PUT", reactionPath(byAlice.ID, fmt.Sprintf(":e%d:", i)), nil, http.StatusOK)
		}
		seq := s.lastSeq(t, b.alice, b.room)
		refuse(b.bob, "PUT", reactionPath(byAlice.ID, ":e20:"), nil, http.StatusConflict, "conflict")
		require.Equal(t, seq, s.lastSeq(t, b.alice, b.room), "a refusal stores nothing")
		m := s.change(t, b.bob, "PUT", reactionPath(byAlice.ID, ":e19:"), nil, http.StatusOK)
		require.Len(t, m.Reactions, 20)
		require.Equal(t, 2, m.Reactions[19].Count)
	})

	t.Run("BodyAndEmojiRules", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		m := s.Say(t, b.alice, b.room, "short")
		path := "/api/v1/messages/" + m.ID
		long := strings.Repeat("é", 4000)
		require.Equal(t, long, s.change(t, b.alice, "PATCH", path, map[string]any{"body": long}, http.StatusOK).Body)
		apitest.RequireError(t, s.Do(t, "PATCH", path, b.alice.Token, map[string]any{"body": long + "é"}), http.StatusRequestEntityTooLarge, "too_large")
		for _, body := range []any{map[string]any{"body": "   "}, map[string]any{"body": "\u200b"}, map[string]any{}, map[string]any{"body": 5}} {
			apitest.RequireError(t, s.Do(t, "PATCH", path, b.alice.Token, body), http.StatusBadRequest, "bad_request")
		}
		for _, emoji := range []string{"👍", ":shipit:", strings.Repeat("x", 32), "👨‍👩‍👧"} {
			s.change(t, b.bob, "PUT", reactionPath(m.ID, emoji), nil, http.StatusOK)
		}
		for _, emoji := range []string{strings.Repeat("x", 33), "thumbs up", "tab\there", "new\nline"} {
			apitest.RequireError(t, s.Do(t, "PUT", reactionPath(m.ID, emoji), b.bob.Token, nil), http.StatusBadRequest, "bad_request")
		}
		for _, q := range []string{"limit=0", "limit=501", "limit=x", "after_seq=-1", "after_seq=x"} {
			apitest.RequireError(t, s.Do(t, "GET", "/api/v1/rooms/"+b.room+"/events?"+q, b.bob.Token, nil), http.StatusBadRequest, "bad_request")
		}
		require.Len(t, s.events(t, b.bob, b.room, "limit=500"), 6)
	})

	t.Run("MentionsInRoomRows", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		s.Say(t, b.alice, b.room, "hi @"+b.bob.Username+" and @"+b.carol.Username)
		s.Say(t, b.alice, b.room, "no one")
		later := s.Say(t, b.alice, b.room, "later")
		s.change(t, b.alice, "PATCH", "/api/v1/messages/"+later.ID, map[string]any{"body": "later, @" + strings.ToUpper(b.bob.Username)}, http.StatusOK)
		row, ok := s.myRoom(t, b.bob, b.room)
		require.True(t, ok)
		require.Equal(t, int64(3), row.Unread, "an edit is no unread message")
		require.Equal(t, int64(2), row.Mentions)
		mine, _ := s.myRoom(t, b.alice, b.room)
		require.Zero(t, mine.Mentions)

		// The members, for @ completion: to members only.
		r := s.Do(t, "GET", "/api/v1/rooms/"+b.room+"/members", b.bob.Token, nil)
		require.Equal(t, http.StatusOK, r.Status, "%s", r.Raw)
		var names []string
		for _, m := range r.Body["members"].([]any) {
			names = append(names, m.(map[string]any)["user"].(map[string]any)["username"].(string))
		}
		require.ElementsMatch(t, []string{b.alice.Username, b.bob.Username}, names)
		apitest.RequireError(t, s.Do(t, "GET", "/api/v1/rooms/"+b.room+"/members", b.carol.Token, nil), http.StatusForbidden, "forbidden")
		apitest.RequireError(t, s.Do(t, "GET", "/api/v1/rooms/"+b.secret+"/members", b.carol.Token, nil), http.StatusNotFound, "not_found")
	})
}
