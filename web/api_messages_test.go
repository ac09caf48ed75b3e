package web_test

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-chat/switchboard/internal/apitest"
)

func TestAPIMessages(t *testing.T) {
	t.Parallel()
	s := newAPIServer(t)

	type testBundle struct {
		alice, bob apitest.User
		room       string // public, alice and bob are members
	}
	setup := func(t *testing.T) *testBundle {
		t.Helper()
		b := &testBundle{alice: s.Register(t, "alice"), bob: s.Register(t, "bob")}
		b.room = s.CreateRoom(t, b.alice, "public")
		s.AddMember(t, b.alice, b.room, b.bob)
		return b
	}

	t.Run("Post", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		r := s.Do(t, "POST", "/api/v1/rooms/"+b.room+"/messages", b.alice.Token, map[string]any{"body": "  hello, world \n"})
		require.Equal(t, http.StatusCreated, r.Status, "body: %s", r.Raw)
		require.ElementsMatch(t, []string{"id", "room_id", "seq", "sender", "body", "parent_id", "reply_count", "source", "client_id", "created_at",
			"edited_at", "deleted", "reactions", "mentions"}, jsonKeys(r.Body))
		require.IsType(t, "", r.Body["id"], "ids are JSON strings")
		require.IsType(t, float64(0), r.Body["seq"], "seq is a JSON number")

		m := apitest.Decode[apitest.Message](t, r)
		require.NotEmpty(t, m.ID)
		require.Equal(t, b.room, m.RoomID)
		require.Equal(t, int64(1), m.Seq)
		require.Equal(t, apitest.Sender{ID: b.alice.ID, Username: b.alice.Username, DisplayName: b.alice.Username}, m.Sender)
		require.Equal(t, "hello, world", m.Body, "the body is stored trimmed")
		require.Nil(t, m.ParentID)
		require.Zero(t, m.ReplyCount)
		require.Equal(t, "api", m.Source)
		require.Nil(t, m.ClientID)
		created := apitest.RequireUTCTime(t, m.CreatedAt)
		require.WithinDuration(t, time.Now(), created, time.Minute)

		m2 := s.Say(t, b.bob, b.room, "second")
		require.Equal(t, int64(2), m2.Seq)
		require.NotEqual(t, m.ID, m2.ID)
		require.Equal(t, []apitest.Message{m, m2}, s.History(t, b.alice, b.room, "").Messages)
	})

	t.Run("IdempotentClientID", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		first := s.Post(t, b.alice, b.room, map[string]any{"body": "once", "client_id": "c-1"})
		require.NotNil(t, first.ClientID)
		require.Equal(t, "c-1", *first.ClientID)
		require.Equal(t, int64(1), s.lastSeq(t, b.alice, b.room))

		for _, body := range []string{"once", "a different body is still the same send"} {
			r := s.Do(t, "POST", "/api/v1/rooms/"+b.room+"/messages", b.alice.Token, map[string]any{"body": body, "client_id": "c-1"})
			require.Equal(t, http.StatusOK, r.Status, "a repeat answers 200: %s", r.Raw)
			require.Equal(t, first, apitest.Decode[apitest.Message](t, r))
			require.Equal(t, int64(1), s.lastSeq(t, b.alice, b.room), "a repeat stores nothing")
		}

		// Another sender's client_id is theirs: a new message, and the next
		// seq with no gap left by the repeats.
		other := s.Post(t, b.bob, b.room, map[string]any{"body": "mine", "client_id": "c-1"})
		require.Equal(t, int64(2), other.Seq)
		require.NotEqual(t, first.ID, other.ID)
		require.Equal(t, []int64{1, 2}, msgSeqs(s.History(t, b.alice, b.room, "").Messages))
	})

	t.Run("IdempotentConcurrent", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		answers := s.doConcurrently(8, "POST", "/api/v1/rooms/"+b.room+"/messages", b.alice.Token,
			map[string]any{"body": "at once", "client_id": "same"})
		created, ids := 0, map[string]bool{}
		for _, a := range answers {
			require.NoError(t, a.err)
			require.Contains(t, []int{http.StatusCreated, http.StatusOK}, a.status, "body: %s", a.raw)
			if a.status == http.StatusCreated {
				created++
			}
			var m apitest.Message
			require.NoError(t, json.Unmarshal(a.raw, &m))
			ids[m.ID] = true
		}
		require.Equal(t, 1, created, "exactly one send stores the message")
		require.Len(t, ids, 1, "every answer is that message")
		require.Equal(t, int64(1), s.lastSeq(t, b.alice, b.room))
	})

	t.Run("ConcurrentSeqs", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		const n = 12
		answers := s.doConcurrently(n, "POST", "/api/v1/rooms/"+b.room+"/messages", b.bob.Token, map[string]any{"body": "race"})
		got := map[int64]bool{}
		for _, a := range answers {
			require.NoError(t, a.err)
			require.Equal(t, http.StatusCreated, a.status, "body: %s", a.raw)
			var m apitest.Message
			require.NoError(t, json.Unmarshal(a.raw, &m))
			got[m.Seq] = true
		}
		require.Len(t, got, n, "every send has its own seq")
		require.Equal(t, seqSpan(1, n), msgSeqs(s.History(t, b.alice, b.room, "").Messages), "seqs 1..n with no gap")
	})

	t.Run("BadInput", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		for _, tc := range []struct {
			name       string
			body       any
			wantStatus int
			wantCode   string
			wantBody   string // for 201: the stored body
		}{
			{"Body4000E", map[string]any{"body": strings.Repeat("é", 4000)}, http.StatusCreated, "", strings.Repeat("é", 4000)},
			{"Body4000Emoji", map[string]any{"body": strings.Repeat("😀", 4000)}, http.StatusCreated, "", strings.Repeat("😀", 4000)},
			{"Body4000EmojiPadded", map[string]any{"body": "\n  " + strings.Repeat("😀", 4000) + "  \t"}, http.StatusCreated, "", strings.Repeat("😀", 4000)},
			{"Body4000Escaped", `{"body":"` + strings.Repeat(`\ud83d\ude00`, 4000) + `"}`, http.StatusCreated, "", strings.Repeat("😀", 4000)},
			{"Body4001E", map[string]any{"body": strings.Repeat("é", 4001)}, http.StatusRequestEntityTooLarge, "too_large", ""},
			{"Body4001Emoji", map[string]any{"body": strings.Repeat("😀", 4001)}, http.StatusRequestEntityTooLarge, "too_large", ""},
			{"BodyEmpty", map[string]any{"body": ""}, http.StatusBadRequest, "bad_request", ""},
			{"BodyWhitespace", map[string]any{"body": " \n\t\u00a0 "}, http.StatusBadRequest, "bad_request", ""},
			{"BodyMissing", map[string]any{"client_id": "x"}, http.StatusBadRequest, "bad_request", ""},
			{"BodyNull", map[string]any{"body": nil}, http.StatusBadRequest, "bad_request", ""},
			{"BodyNumber", map[string]any{"body": 42}, http.StatusBadRequest, "bad_request", ""},
			{"BodyObject", map[string]any{"body": map[string]any{"text": "hi"}}, http.StatusBadRequest, "bad_request", ""},
			{"InvalidJSON", `{"body": "hi"`, http.StatusBadRequest, "bad_request", ""},
			{"TrailingData", `{"body": "hi"} {"body": "again"}`, http.StatusBadRequest, "bad_request", ""},
			{"EmptyRequest", ``, http.StatusBadRequest, "bad_request", ""},
			{"UnknownField", map[string]any{"body": "hi", "room": "1"}, http.StatusBadRequest, "bad_request", ""},
			{"ClientID64", map[string]any{"body": "hi", "client_id": strings.Repeat("é", 64)}, http.StatusCreated, "", "hi"},
			{"ClientID65", map[string]any{"body": "hi", "client_id": strings.Repeat("k", 65)}, http.StatusBadRequest, "bad_request", ""},
			{"ClientIDNumber", map[string]any{"body": "hi", "client_id": 7}, http.StatusBadRequest, "bad_request", ""},
			{"ParentIDNumber", map[string]any{"body": "hi", "parent_id": 1}, http.StatusBadRequest, "bad_request", ""},
			// encoding/json would turn the byte into U+FFFD and store a body
			// the client never sent; the body must be valid UTF-8 (SPEC §5).
			{"BodyInvalidUTF8", "{\"body\": \"ok \xff\xfe\"}", http.StatusBadRequest, "bad_request", ""},
			// Postgres text cannot hold NUL: refused as bad input, never a 500.
			{"BodyNUL", map[string]any{"body": "a\x00b"}, http.StatusBadRequest, "bad_request", ""},
			{"ClientIDNUL", map[string]any{"body": "hi", "client_id": "c\x00"}, http.StatusBadRequest, "bad_request", ""},
		} {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				room := s.CreateRoom(t, b.alice, "public")
				r := s.Do(t, "POST", "/api/v1/rooms/"+room+"/messages", b.alice.Token, tc.body)
				if tc.wantStatus == http.StatusCreated {
					require.Equal(t, http.StatusCreated, r.Status, "body: %.300s", r.Raw)
					m := apitest.Decode[apitest.Message](t, r)
					require.Equal(t, tc.wantBody, m.Body)
					require.Equal(t, []apitest.Message{m}, s.History(t, b.alice, room, "").Messages)
					return
				}
				apitest.RequireError(t, r, tc.wantStatus, tc.wantCode)
				require.Zero(t, s.lastSeq(t, b.alice, room), "a refused send stores nothing")
				require.Empty(t, s.History(t, b.alice, room, "").Messages)
			})
		}
	})

	t.Run("TooLargeRequest", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		r := s.Do(t, "POST", "/api/v1/rooms/"+b.room+"/messages", b.alice.Token,
			map[string]any{"body": "hi", "client_id": strings.Repeat("x", 80<<10)})
		apitest.RequireError(t, r, http.StatusRequestEntityTooLarge, "too_large")
		require.Zero(t, s.lastSeq(t, b.alice, b.room))
	})

	t.Run("Replies", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		elsewhere := s.CreateRoom(t, b.alice, "public")
		foreign := s.Say(t, b.alice, elsewhere, "in another room")

		parent := s.Say(t, b.alice, b.room, "parent")
		reply := s.Post(t, b.bob, b.room, map[string]any{"body": "reply", "parent_id": parent.ID})
		require.Equal(t, int64(2), reply.Seq, "replies take the room's next seq")
		require.NotNil(t, reply.ParentID)
		require.Equal(t, parent.ID, *reply.ParentID)
		require.Zero(t, reply.ReplyCount)

		thread := s.Do(t, "GET", "/api/v1/messages/"+parent.ID, b.alice.Token, nil)
		require.Equal(t, http.StatusOK, thread.Status, "body: %s", thread.Raw)
		require.Equal(t, 1, apitest.Decode[struct {
			Message apitest.Message `json:"message"`
		}](t, thread).Message.ReplyCount)

		for _, tc := range []struct {
			name     string
			parentID string
		}{
			{"ReplyToReply", reply.ID},
			{"ParentInAnotherRoom", foreign.ID},
			{"UnknownParent", "987654321"},
			{"MalformedParent", "abc"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				r := s.Do(t, "POST", "/api/v1/rooms/"+b.room+"/messages", b.bob.Token, map[string]any{"body": "nested", "parent_id": tc.parentID})
				apitest.RequireError(t, r, http.StatusBadRequest, "bad_request")
				require.Equal(t, int64(2), s.lastSeq(t, b.alice, b.room), "a refused reply stores nothing")
			})
		}

		// The refusals left no gap and did not count as replies.
		next := s.Say(t, b.alice, b.room, "after")
		require.Equal(t, int64(3), next.Seq)
		thread = s.Do(t, "GET", "/api/v1/messages/"+reply.ID, b.alice.Token, nil)
		require.Equal(t, http.StatusOK, thread.Status, "body: %s", thread.Raw)
		require.Zero(t, apitest.Decode[struct {
			Message apitest.Message `json:"message"`
		}](t, thread).Message.ReplyCount)
	})

	t.Run("Thread", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		parent := s.Say(t, b.alice, b.room, "parent")
		var replies []apitest.Message
		for i := range 5 {
			s.Say(t, b.bob, b.room, fmt.Sprintf("top %d", i)) // interleaved top-level messages
			replies = append(replies, s.Post(t, b.bob, b.room, map[string]any{"body": fmt.Sprintf("reply %d", i), "parent_id": parent.ID}))
		}

		r := s.Do(t, "GET", "/api/v1/messages/"+parent.ID, b.bob.Token, nil)
		require.Equal(t, http.StatusOK, r.Status, "body: %s", r.Raw)
		require.ElementsMatch(t, []string{"message", "replies"}, jsonKeys(r.Body))
		got := apitest.Decode[struct {
			Message apitest.Message   `json:"message"`
			Replies []apitest.Message `json:"replies"`
		}](t, r)
		require.Equal(t, parent.ID, got.Message.ID)
		require.Equal(t, 5, got.Message.ReplyCount)
		require.Equal(t, replies, got.Replies, "replies ascending by seq")
		require.Equal(t, []int64{3, 5, 7, 9, 11}, msgSeqs(got.Replies))

		// A message without replies has an empty list, not null.
		r = s.Do(t, "GET", "/api/v1/messages/"+replies[0].ID, b.bob.Token, nil)
		require.Equal(t, http.StatusOK, r.Status, "body: %s", r.Raw)
		require.Equal(t, []any{}, r.Body["replies"])

		type replyPage struct {
			Replies []apitest.Message `json:"replies"`
		}
		page := func(t *testing.T, query string) []int64 {
			t.Helper()
			r := s.Do(t, "GET", "/api/v1/messages/"+parent.ID+"/replies?"+query, b.alice.Token, nil)
			require.Equal(t, http.StatusOK, r.Status, "body: %s", r.Raw)
			return msgSeqs(apitest.Decode[replyPage](t, r).Replies)
		}
		for _, tc := range []struct {
			name  string
			query string
			want  []int64
		}{
			{"All", "", []int64{3, 5, 7, 9, 11}},
			{"FirstPage", "limit=2", []int64{3, 5}},
			{"SecondPage", "limit=2&after_seq=5", []int64{7, 9}},
			{"LastPage", "limit=2&after_seq=9", []int64{11}},
			{"AfterBetween", "after_seq=6", []int64{7, 9, 11}},
			{"PastTheEnd", "after_seq=11", []int64{}},
		} {
			t.Run("Page"+tc.name, func(t *testing.T) {
				t.Parallel()
				require.Equal(t, tc.want, page(t, tc.query))
			})
		}
		for _, tc := range []struct{ name, query string }{
			{"LimitZero", "limit=0"},
			{"LimitTooBig", "limit=201"},
			{"LimitNotANumber", "limit=ten"},
			{"AfterSeqNegative", "after_seq=-1"},
			{"AfterSeqNotANumber", "after_seq=x"},
		} {
			t.Run("Bad"+tc.name, func(t *testing.T) {
				t.Parallel()
				r := s.Do(t, "GET", "/api/v1/messages/"+parent.ID+"/replies?"+tc.query, b.alice.Token, nil)
				apitest.RequireError(t, r, http.StatusBadRequest, "bad_request")
			})
		}
	})

	t.Run("NonMemberRead", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		outsider := s.Register(t, "outsider")
		secret := s.CreateRoom(t, b.alice, "private")
		inPublic := s.Say(t, b.alice, b.room, "public words")
		inPrivate := s.Say(t, b.alice, secret, "private words")

		for _, tc := range []struct {
			name       string
			id         string
			wantStatus int
			wantCode   string
		}{
			{"PublicRoom", inPublic.ID, http.StatusForbidden, "forbidden"},
			{"PrivateRoom", inPrivate.ID, http.StatusNotFound, "not_found"},
			{"UnknownMessage", "987654321", http.StatusNotFound, "not_found"},
			{"MalformedID", "abc", http.StatusNotFound, "not_found"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				apitest.RequireError(t, s.Do(t, "GET", "/api/v1/messages/"+tc.id, outsider.Token, nil), tc.wantStatus, tc.wantCode)
				apitest.RequireError(t, s.Do(t, "GET", "/api/v1/messages/"+tc.id+"/replies", outsider.Token, nil), tc.wantStatus, tc.wantCode)
			})
		}
		// Nor may an outsider reply to what they cannot read.
		for _, parent := range []apitest.Message{inPublic, inPrivate} {
			r := s.Do(t, "POST", "/api/v1/rooms/"+parent.RoomID+"/messages", outsider.Token, map[string]any{"body": "x", "parent_id": parent.ID})
			require.Contains(t, []int{http.StatusForbidden, http.StatusNotFound}, r.Status, "body: %s", r.Raw)
		}
		r := s.Do(t, "POST", "/api/v1/rooms/"+secret+"/messages", outsider.Token, map[string]any{"body": "x", "parent_id": inPrivate.ID})
		apitest.RequireError(t, r, http.StatusNotFound, "not_found")
	})
}

func TestAPIHistory(t *testing.T) {
	t.Parallel()
	s := newAPIServer(t)
	alice, bob := s.Register(t, "alice"), s.Register(t, "bob")
	room := s.CreateRoom(t, alice, "public")
	s.AddMember(t, alice, room, bob)

	// Twelve messages, seqs 1..12, shared read-only by the subtests. Seq 9
	// is a reply to seq 2: replies are part of the room's history.
	var msgs []apitest.Message
	for i := 1; i <= 12; i++ {
		req := map[string]any{"body": fmt.Sprintf("message %d", i)}
		if i == 9 {
			req["parent_id"] = msgs[1].ID
		}
		sender := alice
		if i%2 == 0 {
			sender = bob
		}
		msgs = append(msgs, s.Post(t, sender, room, req))
		require.Equal(t, int64(i), msgs[i-1].Seq)
	}

	// walk follows next_cursor from query and returns the seqs of every
	// page.
	walk := func(t *testing.T, query string) [][]int64 {
		t.Helper()
		var pages [][]int64
		for range 20 {
			h := s.History(t, bob, room, query)
			pages = append(pages, msgSeqs(h.Messages))
			if h.NextCursor == nil {
				return pages
			}
			require.NotEmpty(t, *h.NextCursor)
			query = "cursor=" + url.QueryEscape(*h.NextCursor)
		}
		t.Fatalf("next_cursor never ended: %v", pages)
		return nil
	}
	msgs[1].ReplyCount = 1 // seq 9 replied to it
	since := func(m apitest.Message) string { return "since=" + url.QueryEscape(m.CreatedAt) }

	t.Run("Default", func(t *testing.T) {
		t.Parallel()
		h := s.History(t, bob, room, "")
		require.Equal(t, msgs, h.Messages, "all twelve, ascending, as they were posted")
		require.Nil(t, h.NextCursor)
		require.NotNil(t, h.Messages[8].ParentID, "the reply is in the history")
		require.Equal(t, msgs[1].ID, *h.Messages[8].ParentID)
		require.Equal(t, 1, h.Messages[1].ReplyCount)
	})

	for _, tc := range []struct {
		name  string
		query string
		want  [][]int64 // every page, following next_cursor
	}{
		{"Limit", "limit=5", [][]int64{seqSpan(8, 12), seqSpan(3, 7), {1, 2}}},
		{"LimitAll", "limit=12", [][]int64{seqSpan(1, 12)}},
		{"LimitMax", "limit=200", [][]int64{seqSpan(1, 12)}},
		{"LimitOne", "limit=1", [][]int64{{12}, {11}, {10}, {9}, {8}, {7}, {6}, {5}, {4}, {3}, {2}, {1}}},
		{"BeforeSeq", "before_seq=6&limit=3", [][]int64{{3, 4, 5}, {1, 2}}},
		{"BeforeSeqFirst", "before_seq=1", [][]int64{{}}},
		{"BeforeSeqZero", "before_seq=0", [][]int64{{}}},
		{"BeforeSeqPastEnd", "before_seq=100", [][]int64{seqSpan(1, 12)}},
		{"AfterSeq", "after_seq=4&limit=3", [][]int64{{5, 6, 7}, {8, 9, 10}, {11, 12}}},
		{"AfterSeqZero", "after_seq=0", [][]int64{seqSpan(1, 12)}},
		{"AfterSeqLast", "after_seq=12", [][]int64{{}}},
		{"AfterSeqExactPages", "after_seq=6&limit=3", [][]int64{{7, 8, 9}, {10, 11, 12}}},
		{"Since", since(msgs[5]), [][]int64{seqSpan(7, 12)}},
		{"SinceLimit", since(msgs[5]) + "&limit=2", [][]int64{{7, 8}, {9, 10}, {11, 12}}},
		{"SinceLast", since(msgs[11]), [][]int64{{}}},
		{"SinceLongAgo", "since=2000-01-01T00:00:00Z&limit=5", [][]int64{seqSpan(1, 5), seqSpan(6, 10), {11, 12}}},
		{"SinceFarFuture", "since=2999-01-01T00:00:00Z", [][]int64{{}}},
		{"SinceOffset", "since=" + url.QueryEscape("2999-01-01T02:00:00+02:00"), [][]int64{{}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tc.want, walk(t, tc.query))
		})
	}

	t.Run("CursorKeepsTheQuery", func(t *testing.T) {
		t.Parallel()
		h := s.History(t, bob, room, "after_seq=4&limit=3")
		require.Equal(t, []int64{5, 6, 7}, msgSeqs(h.Messages))
		require.NotNil(t, h.NextCursor)
		// The cursor works for any member and alone names the next page.
		next := s.History(t, alice, room, "cursor="+url.QueryEscape(*h.NextCursor))
		require.Equal(t, []int64{8, 9, 10}, msgSeqs(next.Messages))
		require.Equal(t, msgs[7:10], next.Messages)
	})

	t.Run("BadValues", func(t *testing.T) {
		t.Parallel()
		for _, tc := range []struct{ name, query string }{
			{"LimitZero", "limit=0"},
			{"LimitNegative", "limit=-5"},
			{"Limit201", "limit=201"},
			{"LimitNotANumber", "limit=abc"},
			{"LimitEmpty", "limit="},
			{"LimitFraction", "limit=2.5"},
			{"BeforeSeqNegative", "before_seq=-1"},
			{"BeforeSeqNotANumber", "before_seq=ten"},
			{"AfterSeqNotANumber", "after_seq=x"},
			{"AfterSeqNegative", "after_seq=-3"},
			{"AfterSeqOverflow", "after_seq=99999999999999999999"},
			{"SinceWord", "since=yesterday"},
			{"SinceDateOnly", "since=2026-01-02"},
			{"SinceNoZone", "since=2026-01-02T15:04:05"},
			{"SinceEmpty", "since="},
			{"CursorGarbage", "cursor=garbage"},
			{"CursorNotBase64", "cursor=%21%21%21"},
			{"CursorBase64Nonsense", "cursor=" + base64.RawURLEncoding.EncodeToString([]byte("nonsense"))},
			{"CursorBase64Std", "cursor=" + url.QueryEscape(base64.StdEncoding.EncodeToString([]byte("hello world, who am i?")))},
			{"CursorEmpty", "cursor="},
			{"BeforeAndAfter", "before_seq=8&after_seq=2"},
			{"AfterAndSince", "after_seq=2&" + since(msgs[0])},
			{"BeforeAndCursor", "before_seq=8&cursor=" + base64.RawURLEncoding.EncodeToString([]byte("b:5:5"))},
		} {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				r := s.Do(t, "GET", "/api/v1/rooms/"+room+"/messages?"+tc.query, bob.Token, nil)
				apitest.RequireError(t, r, http.StatusBadRequest, "bad_request")
			})
		}
	})
}
