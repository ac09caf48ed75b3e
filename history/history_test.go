package history_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-chat/switchboard/broker/brokertest"
	"github.com/switchboard-chat/switchboard/cache"
	"github.com/switchboard-chat/switchboard/chat"
	"github.com/switchboard-chat/switchboard/history"
	"github.com/switchboard-chat/switchboard/storage"
	"github.com/switchboard-chat/switchboard/storage/storagetest"
)

// testBundle is a room of 120 messages (every 10th a reply to the one
// before) read by the history service straight from storage and through
// a cache: both must answer alike.
type testBundle struct {
	ctx                context.Context
	store              *storage.Store
	alice, bob, mallet string
	room, private      chat.Room
	msgs               []chat.Message
	services           map[string]*history.Service
}

func setup(t *testing.T) *testBundle {
	t.Helper()
	ctx := t.Context()
	store := storage.New(storagetest.NewPool(t))
	b := &testBundle{ctx: ctx, store: store}
	for name, id := range map[string]*string{"alice": &b.alice, "bob": &b.bob, "mallet": &b.mallet} {
		p, err := store.CreateUser(ctx, name, "$2a$10$x", name)
		require.NoError(t, err)
		*id = p.ID
	}
	var err error
	b.room, err = store.CreateRoom(ctx, b.alice, "public", chat.Public)
	require.NoError(t, err)
	b.private, err = store.CreateRoom(ctx, b.alice, "private", chat.Private)
	require.NoError(t, err)
	_, _, err = store.Join(ctx, b.bob, b.room.ID)
	require.NoError(t, err)

	rdb, prefix := brokertest.NewClient(t)
	cached, err := cache.New(ctx, cache.Config{Store: store, Redis: rdb, Key: prefix + "versions"})
	require.NoError(t, err)
	for i := range 120 {
		nm := chat.NewMessage{RoomID: b.room.ID, SenderID: b.alice, Body: fmt.Sprint("message ", i+1), Source: chat.SourceWeb}
		if i%10 == 9 {
			nm.ParentID = b.msgs[i-1].ID
		}
		m, _, err := store.SaveMessage(ctx, nm)
		require.NoError(t, err)
		require.NoError(t, cached.MessageStored(ctx, b.room.ID, m.Seq))
		b.msgs = append(b.msgs, m)
	}
	b.services = map[string]*history.Service{"Storage": history.New(store), "Cache": history.New(cached)}
	return b
}

var _ history.Beginner = (*cache.Cache)(nil) // a request through the cache reads its versions once

func seqs(ms []chat.EncodedMessage) []int64 {
	out := []int64{}
	for _, m := range ms {
		out = append(out, m.Seq)
	}
	return out
}

func span(from, to int64) []int64 {
	out := []int64{}
	for s := from; s <= to; s++ {
		out = append(out, s)
	}
	return out
}

func ptr[T any](v T) *T { return &v }

func TestPage(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for name, s := range b.services {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			for _, tt := range []struct {
				name     string
				q        chat.HistoryQuery
				want     []int64
				wantNext bool
			}{
				{"NewestByDefault", chat.HistoryQuery{}, span(71, 120), true},
				{"Limit", chat.HistoryQuery{Limit: ptr(3)}, span(118, 120), true},
				{"BeforeSeq", chat.HistoryQuery{BeforeSeq: ptr[int64](11), Limit: ptr(5)}, span(6, 10), true},
				{"BeforeTheFirst", chat.HistoryQuery{BeforeSeq: ptr[int64](1)}, span(1, 0), false},
				{"AfterSeq", chat.HistoryQuery{AfterSeq: ptr[int64](100), Limit: ptr(200)}, span(101, 120), false},
				{"AfterTheLast", chat.HistoryQuery{AfterSeq: ptr[int64](120)}, span(1, 0), false},
				{"Since", chat.HistoryQuery{Since: ptr(b.msgs[109].CreatedAt), Limit: ptr(5)}, span(111, 115), true},
				{"SinceLongAgo", chat.HistoryQuery{Since: ptr(b.msgs[0].CreatedAt.Add(-time.Hour)), Limit: ptr(2)}, span(1, 2), true},
			} {
				page, err := s.Page(b.ctx, b.bob, b.room.ID, tt.q)
				require.NoError(t, err, tt.name)
				require.Equal(t, tt.want, seqs(page.Messages), tt.name)
				require.Equal(t, tt.wantNext, page.NextCursor != "", tt.name)
			}
		})
	}
}

// TestCursorsWalkEverything: following next_cursor back from the newest
// page, or forward from the first, visits every message once, in order.
func TestCursorsWalkEverything(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for name, s := range b.services {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			for _, start := range []chat.HistoryQuery{{Limit: ptr(7)}, {AfterSeq: ptr[int64](0), Limit: ptr(7)}} {
				var got []int64
				q := start
				for pages := 0; ; pages++ {
					require.Less(t, pages, 100)
					page, err := s.Page(b.ctx, b.bob, b.room.ID, q)
					require.NoError(t, err)
					if start.AfterSeq != nil {
						got = append(got, seqs(page.Messages)...)
					} else {
						got = append(seqs(page.Messages), got...)
					}
					if page.NextCursor == "" {
						break
					}
					q = chat.HistoryQuery{Cursor: page.NextCursor}
				}
				require.Equal(t, span(1, 120), got)
			}
		})
	}
}

func TestPageRefusals(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for name, s := range b.services {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			for _, tt := range []struct {
				name   string
				user   string
				room   string
				q      chat.HistoryQuery
				wantIs error
				code   chat.Code
			}{
				{name: "LimitZero", user: b.bob, room: b.room.ID, q: chat.HistoryQuery{Limit: ptr(0)}, code: chat.CodeBadRequest},
				{name: "LimitTooBig", user: b.bob, room: b.room.ID, q: chat.HistoryQuery{Limit: ptr(201)}, code: chat.CodeBadRequest},
				{name: "TwoBounds", user: b.bob, room: b.room.ID, q: chat.HistoryQuery{BeforeSeq: ptr[int64](5), AfterSeq: ptr[int64](1)}, code: chat.CodeBadRequest},
				{name: "NegativeSeq", user: b.bob, room: b.room.ID, q: chat.HistoryQuery{AfterSeq: ptr[int64](-1)}, code: chat.CodeBadRequest},
				{name: "ForgedCursor", user: b.bob, room: b.room.ID, q: chat.HistoryQuery{Cursor: "YTo1OjUw="}, code: chat.CodeBadRequest},
				{name: "CursorAndSince", user: b.bob, room: b.room.ID, q: chat.HistoryQuery{Cursor: "x", Since: ptr(time.Now())}, code: chat.CodeBadRequest},
				{name: "PublicRoomNotAMember", user: b.mallet, room: b.room.ID, wantIs: chat.ErrForbidden},
				{name: "PrivateRoomNotAMember", user: b.bob, room: b.private.ID, wantIs: chat.ErrNotFound},
				{name: "NoSuchRoom", user: b.bob, room: "99999999", wantIs: chat.ErrNotFound},
				{name: "AliasOfARoom", user: b.bob, room: "0" + b.room.ID, wantIs: chat.ErrNotFound},
			} {
				_, err := s.Page(b.ctx, tt.user, tt.room, tt.q)
				require.Error(t, err, tt.name)
				if tt.wantIs != nil {
					require.ErrorIs(t, err, tt.wantIs, tt.name)
				} else {
					require.Equal(t, tt.code, chat.ErrorOf(err).Code, "%s: %v", tt.name, err)
				}
			}
		})
	}
}

func TestThread(t *testing.T) {
	t.Parallel()
	b := setup(t)
	parent := b.msgs[8] // seq 9, replied to by seq 10
	for name, s := range b.services {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			m, replies, err := s.Thread(b.ctx, b.bob, parent.ID, 0, 50)
			require.NoError(t, err)
			require.Equal(t, parent.ID, m.ID)
			require.Equal(t, 1, m.ReplyCount)
			require.Equal(t, []int64{10}, seqs(replies))
			_, replies, err = s.Thread(b.ctx, b.bob, parent.ID, 10, 50)
			require.NoError(t, err)
			require.Empty(t, replies)

			_, _, err = s.Thread(b.ctx, b.mallet, parent.ID, 0, 50)
			require.ErrorIs(t, err, chat.ErrForbidden)
			_, _, err = s.Thread(b.ctx, b.bob, "99999999", 0, 50)
			require.ErrorIs(t, err, chat.ErrNotFound)
		})
	}
}
