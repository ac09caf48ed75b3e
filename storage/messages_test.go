package storage_test

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-chat/switchboard/chat"
)

func TestSaveMessage(t *testing.T) {
	t.Parallel()

	t.Run("SeqStartsAtOneAndIncrements", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t)
		alice := bundle.user(t, "alice")
		room := bundle.room(t, alice.ID, "room", chat.Public)
		other := bundle.room(t, alice.ID, "other", chat.Public)

		before := time.Now().Add(-time.Minute)
		first := bundle.send(t, room.ID, alice.ID, "first")
		require.Equal(t, int64(1), first.Seq)
		require.Equal(t, room.ID, first.RoomID)
		require.Equal(t, alice.User, first.Sender)
		require.Equal(t, "first", first.Body)
		require.Nil(t, first.ParentID)
		require.Nil(t, first.ClientID)
		require.Zero(t, first.ReplyCount)
		require.Equal(t, chat.SourceWeb, first.Source)
		require.Equal(t, time.UTC, first.CreatedAt.Location())
		require.True(t, first.CreatedAt.After(before))

		for want := int64(2); want <= 5; want++ {
			m := bundle.send(t, room.ID, alice.ID, fmt.Sprintf("message %d", want))
			require.Equal(t, want, m.Seq)
			require.False(t, m.CreatedAt.Before(first.CreatedAt))
		}
		require.Equal(t, int64(5), bundle.lastSeq(t, room.ID))

		// Every room counts on its own.
		require.Equal(t, int64(1), bundle.send(t, other.ID, alice.ID, "elsewhere").Seq)

		got, err := bundle.message(first.ID)
		require.NoError(t, err)
		require.Equal(t, first, got)
	})

	t.Run("Sources", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t)
		alice := bundle.user(t, "alice")
		room := bundle.room(t, alice.ID, "room", chat.Public)

		for i, source := range []string{chat.SourceWeb, chat.SourceAPI, chat.SourceSMS, chat.SourceSlack} {
			m := bundle.save(t, chat.NewMessage{RoomID: room.ID, SenderID: alice.ID, Body: "via " + source, Source: source})
			require.Equal(t, source, m.Source)
			require.Equal(t, int64(i+1), m.Seq)
		}
	})

	t.Run("Replies", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t)
		alice := bundle.user(t, "alice")
		bob := bundle.user(t, "bob")
		room := bundle.room(t, alice.ID, "room", chat.Public)
		_, _, err := bundle.store.Join(bundle.ctx, bob.ID, room.ID)
		require.NoError(t, err)

		parent := bundle.send(t, room.ID, alice.ID, "question")
		r1 := bundle.reply(t, room.ID, bob.ID, parent.ID, "answer 1")
		top := bundle.send(t, room.ID, alice.ID, "unrelated")
		r2 := bundle.reply(t, room.ID, alice.ID, parent.ID, "answer 2")

		// Replies share the room's one seq order.
		require.Equal(t, []int64{1, 2, 3, 4}, []int64{parent.Seq, r1.Seq, top.Seq, r2.Seq})
		require.Equal(t, &parent.ID, r1.ParentID)
		require.Equal(t, &parent.ID, r2.ParentID)

		got, err := bundle.message(parent.ID)
		require.NoError(t, err)
		require.Equal(t, 2, got.ReplyCount)
		got, err = bundle.message(top.ID)
		require.NoError(t, err)
		require.Zero(t, got.ReplyCount)
		got, err = bundle.message(r1.ID)
		require.NoError(t, err)
		require.Zero(t, got.ReplyCount)
	})

	t.Run("BadParent", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t)
		alice := bundle.user(t, "alice")
		room := bundle.room(t, alice.ID, "room", chat.Public)
		other := bundle.room(t, alice.ID, "other", chat.Public)
		parent := bundle.send(t, room.ID, alice.ID, "parent")
		reply := bundle.reply(t, room.ID, alice.ID, parent.ID, "reply")
		elsewhere := bundle.send(t, other.ID, alice.ID, "in another room")

		tests := []struct {
			name     string
			parentID string
		}{
			{name: "ReplyToReply", parentID: reply.ID},
			{name: "ParentInAnotherRoom", parentID: elsewhere.ID},
			{name: "MissingParent", parentID: "999999"},
			{name: "MalformedParent", parentID: "abc"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				m, created, err := bundle.store.SaveMessage(bundle.ctx, chat.NewMessage{
					RoomID: room.ID, SenderID: alice.ID, ParentID: tt.parentID, Body: "x", Source: chat.SourceWeb,
				})
				requireCode(t, err, chat.CodeBadRequest)
				require.False(t, created)
				require.Empty(t, m.ID)

				// A refused send changes nothing.
				require.Equal(t, int64(2), bundle.lastSeq(t, room.ID))
				require.Equal(t, 2, bundle.messageCount(t, room.ID))
				got, err := bundle.message(parent.ID)
				require.NoError(t, err)
				require.Equal(t, 1, got.ReplyCount)
			})
		}
	})

	t.Run("NotAMember", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t)
		alice := bundle.user(t, "alice")
		bob := bundle.user(t, "bob")
		pub := bundle.room(t, alice.ID, "pub", chat.Public)
		priv := bundle.room(t, alice.ID, "priv", chat.Private)

		tests := []struct {
			name     string
			roomID   string
			senderID string
			wantErr  error
		}{
			{name: "PublicRoom", roomID: pub.ID, senderID: bob.ID, wantErr: chat.ErrForbidden},
			{name: "PrivateRoom", roomID: priv.ID, senderID: bob.ID, wantErr: chat.ErrNotFound},
			{name: "MissingRoom", roomID: "999999", senderID: alice.ID, wantErr: chat.ErrNotFound},
			{name: "MalformedRoom", roomID: "abc", senderID: alice.ID, wantErr: chat.ErrNotFound},
			{name: "MalformedSender", roomID: pub.ID, senderID: "abc", wantErr: chat.ErrNotFound},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				_, created, err := bundle.store.SaveMessage(bundle.ctx, chat.NewMessage{
					RoomID: tt.roomID, SenderID: tt.senderID, Body: "let me in", Source: chat.SourceWeb,
				})
				require.ErrorIs(t, err, tt.wantErr)
				require.False(t, created)
			})
		}
		require.Zero(t, bundle.lastSeq(t, pub.ID))
		require.Zero(t, bundle.lastSeq(t, priv.ID))
	})

	t.Run("ClientIDRepeat", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t)
		alice := bundle.user(t, "alice")
		bob := bundle.user(t, "bob")
		room := bundle.room(t, alice.ID, "room", chat.Public)
		other := bundle.room(t, alice.ID, "other", chat.Public)
		_, _, err := bundle.store.Join(bundle.ctx, bob.ID, room.ID)
		require.NoError(t, err)

		first := bundle.save(t, chat.NewMessage{RoomID: room.ID, SenderID: alice.ID, Body: "once", ClientID: "c-1", Source: chat.SourceWeb})
		require.Equal(t, ptr("c-1"), first.ClientID)

		// The repeat (even with another body) gets the first message back
		// and stores nothing: no row, no seq.
		again, created, err := bundle.store.SaveMessage(bundle.ctx,
			chat.NewMessage{RoomID: room.ID, SenderID: alice.ID, Body: "twice?", ClientID: "c-1", Source: chat.SourceWeb})
		require.NoError(t, err)
		require.False(t, created)
		require.Equal(t, first, again)
		require.Equal(t, int64(1), bundle.lastSeq(t, room.ID))
		require.Equal(t, 1, bundle.messageCount(t, room.ID))

		// The same client_id from another sender is another message.
		fromBob := bundle.save(t, chat.NewMessage{RoomID: room.ID, SenderID: bob.ID, Body: "mine", ClientID: "c-1", Source: chat.SourceWeb})
		require.NotEqual(t, first.ID, fromBob.ID)
		require.Equal(t, int64(2), fromBob.Seq)

		// So is the same client_id from the same sender in another room.
		inOther := bundle.save(t, chat.NewMessage{RoomID: other.ID, SenderID: alice.ID, Body: "there", ClientID: "c-1", Source: chat.SourceWeb})
		require.Equal(t, int64(1), inOther.Seq)

		// A repeated reply does not bump the parent twice.
		r := bundle.save(t, chat.NewMessage{RoomID: room.ID, SenderID: bob.ID, ParentID: first.ID, Body: "re", ClientID: "c-2", Source: chat.SourceWeb})
		again, created, err = bundle.store.SaveMessage(bundle.ctx,
			chat.NewMessage{RoomID: room.ID, SenderID: bob.ID, ParentID: first.ID, Body: "re", ClientID: "c-2", Source: chat.SourceWeb})
		require.NoError(t, err)
		require.False(t, created)
		require.Equal(t, r.ID, again.ID)
		parent, err := bundle.message(first.ID)
		require.NoError(t, err)
		require.Equal(t, 1, parent.ReplyCount)
		require.Equal(t, int64(3), bundle.lastSeq(t, room.ID))
		require.Equal(t, 3, bundle.messageCount(t, room.ID))
	})

	t.Run("ExternalIDRepeat", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t)
		alice := bundle.user(t, "alice")
		room := bundle.room(t, alice.ID, "room", chat.Public)
		sms := chat.NewMessage{RoomID: room.ID, SenderID: alice.ID, Body: "from my phone", Source: chat.SourceSMS, ExternalID: "SM123"}

		first := bundle.save(t, sms)
		require.Equal(t, chat.SourceSMS, first.Source)
		require.Nil(t, first.ClientID)

		// Twilio retries the webhook.
		again, created, err := bundle.store.SaveMessage(bundle.ctx, sms)
		require.NoError(t, err)
		require.False(t, created)
		require.Equal(t, first, again)
		require.Equal(t, int64(1), bundle.lastSeq(t, room.ID))

		var n int
		require.NoError(t, bundle.pool.QueryRow(bundle.ctx,
			`SELECT count(*) FROM messages WHERE source = 'sms' AND external_id = 'SM123'`).Scan(&n))
		require.Equal(t, 1, n)

		// The same id from another source is another message.
		slack := bundle.save(t, chat.NewMessage{RoomID: room.ID, SenderID: alice.ID, Body: "from slack", Source: chat.SourceSlack, ExternalID: "SM123"})
		require.Equal(t, int64(2), slack.Seq)
	})

	t.Run("MultiByteBody", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t)
		alice := bundle.user(t, "alice")
		room := bundle.room(t, alice.ID, "room", chat.Public)

		tests := []struct {
			name string
			body string
		}{
			{name: "Accents", body: "café déjà vu — naïve"},
			{name: "CJK", body: "你好，世界。こんにちは 안녕하세요"},
			{name: "EmojiZWJAndSkinTone", body: "👩🏽‍💻 ships 🚢 at 3am 👍🏿 🏳️‍🌈"},
			{name: "CombiningMarks", body: "e\u0301 a\u0308 Z\u0351\u0352\u0353"},
			{name: "RightToLeft", body: "שלום مرحبا \u202eabc"},
			{name: "ControlAndNewlines", body: "line 1\nline\t2\r\n\u00a0end"},
			{name: "MaxLengthFourByteRunes", body: strings.Repeat("😀", chat.MaxBodyChars)},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				m := bundle.send(t, room.ID, alice.ID, tt.body)
				require.Equal(t, tt.body, m.Body)

				got, err := bundle.message(m.ID)
				require.NoError(t, err)
				require.Equal(t, tt.body, got.Body)

				page, err := bundle.store.MessagesAfter(bundle.ctx, room.ID, m.Seq-1, 1)
				require.NoError(t, err)
				require.Len(t, page, 1)
				require.Equal(t, tt.body, page[0].Body)

				var chars, bytes int
				require.NoError(t, bundle.pool.QueryRow(bundle.ctx,
					`SELECT char_length(body), octet_length(body) FROM messages WHERE id = $1::bigint`, m.ID).Scan(&chars, &bytes))
				require.Equal(t, utf8.RuneCountInString(tt.body), chars)
				require.Equal(t, len(tt.body), bytes)
			})
		}
	})
}

func TestSaveMessageConcurrent(t *testing.T) {
	t.Parallel()

	const workers, perWorker = 8, 50

	t.Run("GaplessSeqs", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t)
		owner := bundle.user(t, "owner")
		room := bundle.room(t, owner.ID, "busy", chat.Public)
		senders := make([]string, workers)
		for i := range senders {
			u := bundle.user(t, fmt.Sprintf("sender%d", i))
			_, _, err := bundle.store.Join(bundle.ctx, u.ID, room.ID)
			require.NoError(t, err)
			senders[i] = u.ID
		}

		seqs := make([][]int64, workers)
		errs := make(chan error, workers*perWorker)
		var wg sync.WaitGroup
		for w := range workers {
			wg.Go(func() {
				for i := range perWorker {
					m, created, err := bundle.store.SaveMessage(bundle.ctx, chat.NewMessage{
						RoomID: room.ID, SenderID: senders[w], Body: fmt.Sprintf("w%d m%d", w, i),
						ClientID: fmt.Sprintf("w%d-%d", w, i), Source: chat.SourceWeb,
					})
					if err == nil && !created {
						err = fmt.Errorf("worker %d message %d: not created", w, i)
					}
					if err != nil {
						errs <- err
						return
					}
					seqs[w] = append(seqs[w], m.Seq)
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			require.NoError(t, err)
		}

		// Each worker saw its own messages in increasing order.
		for w, got := range seqs {
			require.Len(t, got, perWorker)
			for i := 1; i < len(got); i++ {
				require.Greater(t, got[i], got[i-1], "worker %d", w)
			}
		}

		// The table holds exactly 1..400: no gap, no duplicate.
		var stored []int64
		rows, err := bundle.pool.Query(bundle.ctx, `SELECT seq FROM messages WHERE room_id = $1::bigint ORDER BY seq`, room.ID)
		require.NoError(t, err)
		for rows.Next() {
			var s int64
			require.NoError(t, rows.Scan(&s))
			stored = append(stored, s)
		}
		require.NoError(t, rows.Err())
		require.Equal(t, seqRange(1, workers*perWorker), stored)

		var n, distinct int
		require.NoError(t, bundle.pool.QueryRow(bundle.ctx,
			`SELECT count(*), count(DISTINCT seq) FROM messages WHERE room_id = $1::bigint`, room.ID).Scan(&n, &distinct))
		require.Equal(t, workers*perWorker, n)
		require.Equal(t, workers*perWorker, distinct)
		require.Equal(t, int64(workers*perWorker), bundle.lastSeq(t, room.ID))

		// created_at follows seq: a later seq was never stored earlier.
		var outOfOrder int
		require.NoError(t, bundle.pool.QueryRow(bundle.ctx, `
			SELECT count(*) FROM (
				SELECT created_at < lag(created_at) OVER (ORDER BY seq) AS back
				FROM messages WHERE room_id = $1::bigint) s
			WHERE back`, room.ID).Scan(&outOfOrder))
		require.Zero(t, outOfOrder)
	})

	// MixedBatches: messages saved at once are stored in batches (one
	// statement each); whatever else shares a batch, each gets the answer
	// it would get alone.
	t.Run("MixedBatches", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t)
		alice, mallory := bundle.user(t, "alice"), bundle.user(t, "mallory")
		room := bundle.room(t, alice.ID, "room", chat.Public)
		other := bundle.room(t, alice.ID, "other", chat.Public)
		secret := bundle.room(t, alice.ID, "secret", chat.Private)
		parent := bundle.send(t, room.ID, alice.ID, "parent")
		reply := bundle.reply(t, room.ID, alice.ID, parent.ID, "first reply")

		type outcome struct {
			kind    string
			msg     chat.Message
			created bool
			err     error
		}
		kinds := []string{"reply", "reply", "reply", "external", "external", "forbidden", "not_found", "nested", "other-room"}
		var wg sync.WaitGroup
		out := make(chan outcome, 20*len(kinds))
		for round := range 20 {
			for _, kind := range kinds {
				wg.Go(func() {
					nm := chat.NewMessage{RoomID: room.ID, SenderID: alice.ID, Body: kind, Source: chat.SourceWeb}
					switch kind {
					case "reply":
						nm.ParentID = parent.ID
					case "external":
						// The same Slack event into two rooms at once: stored once.
						nm.Source, nm.ExternalID = chat.SourceSlack, fmt.Sprint("event-", round)
						if round%2 == 1 {
							nm.RoomID = other.ID
						}
					case "forbidden":
						nm.SenderID = mallory.ID
					case "not_found":
						nm.RoomID = secret.ID
						nm.SenderID = mallory.ID
					case "nested":
						nm.ParentID = reply.ID
					case "other-room":
						nm.RoomID = other.ID
					}
					m, created, err := bundle.store.SaveMessage(bundle.ctx, nm)
					out <- outcome{kind, m, created, err}
				})
			}
		}
		wg.Wait()
		close(out)
		createdExternal := 0
		for o := range out {
			switch o.kind {
			case "reply", "other-room":
				require.NoError(t, o.err, o.kind)
				require.True(t, o.created, o.kind)
			case "external":
				require.NoError(t, o.err)
				if o.created {
					createdExternal++
				}
			case "forbidden":
				require.ErrorIs(t, o.err, chat.ErrForbidden)
			case "not_found":
				require.ErrorIs(t, o.err, chat.ErrNotFound)
			case "nested":
				require.Equal(t, chat.CodeBadRequest, chat.ErrorOf(o.err).Code)
			}
		}
		require.Equal(t, 20, createdExternal, "each event stored once")
		var events int
		require.NoError(t, bundle.pool.QueryRow(bundle.ctx, `SELECT count(*) FROM messages WHERE external_id IS NOT NULL`).Scan(&events))
		require.Equal(t, 20, events)
		got, err := bundle.message(parent.ID)
		require.NoError(t, err)
		require.Equal(t, 1+3*20, got.ReplyCount, "every reply counted, whatever batch it was in")
		// Both rooms hold gapless seqs.
		for _, r := range []chat.Room{room, other} {
			var n, last int64
			require.NoError(t, bundle.pool.QueryRow(bundle.ctx,
				`SELECT count(*), max(seq) FROM messages WHERE room_id = $1::bigint`, r.ID).Scan(&n, &last))
			require.Equal(t, n, last, r.Name)
			require.Equal(t, last, bundle.lastSeq(t, r.ID))
		}
	})

	t.Run("SameClientIDRace", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t)
		alice := bundle.user(t, "alice")
		room := bundle.room(t, alice.ID, "room", chat.Public)

		type result struct {
			id      string
			created bool
			err     error
		}
		results := make(chan result, workers)
		var wg sync.WaitGroup
		for range workers {
			wg.Go(func() {
				m, created, err := bundle.store.SaveMessage(bundle.ctx, chat.NewMessage{
					RoomID: room.ID, SenderID: alice.ID, Body: "double click", ClientID: "dup", Source: chat.SourceWeb,
				})
				results <- result{id: m.ID, created: created, err: err}
			})
		}
		wg.Wait()
		close(results)

		ids := map[string]bool{}
		createdCount := 0
		for r := range results {
			require.NoError(t, r.err)
			ids[r.id] = true
			if r.created {
				createdCount++
			}
		}
		require.Len(t, ids, 1, "every caller gets the same message")
		require.Equal(t, 1, createdCount)
		require.Equal(t, int64(1), bundle.lastSeq(t, room.ID))
		require.Equal(t, 1, bundle.messageCount(t, room.ID))
	})
}

func TestHistory(t *testing.T) {
	t.Parallel()

	// history is a room of ten messages, with replies to m2 (seq 4 and 7) and
	// to m5 (seq 8), next to another room with messages of its own.
	type history struct {
		*testBundle
		room  chat.Room
		bySeq map[int64]chat.Message
	}
	setupHistory := func(t *testing.T) *history {
		t.Helper()
		bundle := setup(t)
		alice := bundle.user(t, "alice")
		room := bundle.room(t, alice.ID, "room", chat.Public)
		noise := bundle.room(t, alice.ID, "noise", chat.Public)
		h := &history{testBundle: bundle, room: room, bySeq: map[int64]chat.Message{}}
		for seq := int64(1); seq <= 10; seq++ {
			var m chat.Message
			switch seq {
			case 4, 7:
				m = bundle.reply(t, room.ID, alice.ID, h.bySeq[2].ID, fmt.Sprintf("m%d", seq))
			case 8:
				m = bundle.reply(t, room.ID, alice.ID, h.bySeq[5].ID, fmt.Sprintf("m%d", seq))
			default:
				m = bundle.send(t, room.ID, alice.ID, fmt.Sprintf("m%d", seq))
			}
			require.Equal(t, seq, m.Seq)
			h.bySeq[seq] = m
			bundle.send(t, noise.ID, alice.ID, "noise")
		}
		return h
	}

	t.Run("MessagesAfter", func(t *testing.T) {
		t.Parallel()
		h := setupHistory(t)

		tests := []struct {
			name     string
			afterSeq int64
			limit    int
			want     []int64
		}{
			{name: "All", afterSeq: 0, limit: 50, want: seqRange(1, 10)},
			{name: "FirstPage", afterSeq: 0, limit: 3, want: []int64{1, 2, 3}},
			{name: "MiddlePage", afterSeq: 3, limit: 2, want: []int64{4, 5}},
			{name: "ShortLastPage", afterSeq: 8, limit: 5, want: []int64{9, 10}},
			{name: "CaughtUp", afterSeq: 10, limit: 5, want: []int64{}},
			{name: "BeyondEnd", afterSeq: 99, limit: 5, want: []int64{}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				page, err := h.store.MessagesAfter(h.ctx, h.room.ID, tt.afterSeq, tt.limit)
				require.NoError(t, err)
				require.Equal(t, tt.want, seqsOf(page))
				for _, m := range page {
					require.Equal(t, h.room.ID, m.RoomID)
					require.Equal(t, h.bySeq[m.Seq].ID, m.ID)
				}
			})
		}
	})

	t.Run("MessagesBefore", func(t *testing.T) {
		t.Parallel()
		h := setupHistory(t)

		tests := []struct {
			name      string
			beforeSeq int64
			limit     int
			want      []int64
		}{
			{name: "LatestN", beforeSeq: math.MaxInt64, limit: 3, want: []int64{8, 9, 10}},
			{name: "LatestFromLastSeq", beforeSeq: 11, limit: 3, want: []int64{8, 9, 10}},
			{name: "All", beforeSeq: 11, limit: 50, want: seqRange(1, 10)},
			{name: "PageBack", beforeSeq: 8, limit: 3, want: []int64{5, 6, 7}},
			{name: "ShortFirstPage", beforeSeq: 3, limit: 5, want: []int64{1, 2}},
			{name: "NothingBefore", beforeSeq: 1, limit: 5, want: []int64{}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				page, err := h.store.MessagesBefore(h.ctx, h.room.ID, tt.beforeSeq, tt.limit)
				require.NoError(t, err)
				require.Equal(t, tt.want, seqsOf(page), "ascending")
				for _, m := range page {
					require.Equal(t, h.bySeq[m.Seq].ID, m.ID)
				}
			})
		}
	})

	t.Run("PagesCarryWholeMessages", func(t *testing.T) {
		t.Parallel()
		h := setupHistory(t)

		after, err := h.store.MessagesAfter(h.ctx, h.room.ID, 0, 50)
		require.NoError(t, err)
		before, err := h.store.MessagesBefore(h.ctx, h.room.ID, math.MaxInt64, 50)
		require.NoError(t, err)
		require.Equal(t, after, before)
		for _, m := range after {
			got, err := h.store.Message(h.ctx, m.ID)
			require.NoError(t, err)
			require.Equal(t, got, m)
			// The encoding is the message's, as clients get it.
			require.JSONEq(t, string(chat.Encode(m.Message).JSON), string(got.JSON))
			var decoded chat.Message
			require.NoError(t, json.Unmarshal(got.JSON, &decoded))
			require.Equal(t, m.Message, decoded)
		}
		require.Equal(t, 2, after[1].ReplyCount, "m2 has two replies")
		require.Equal(t, 1, after[4].ReplyCount, "m5 has one reply")
		require.Equal(t, &after[1].ID, after[3].ParentID)
	})

	t.Run("Replies", func(t *testing.T) {
		t.Parallel()
		h := setupHistory(t)

		tests := []struct {
			name      string
			parentSeq int64
			afterSeq  int64
			limit     int
			want      []int64
		}{
			{name: "AllOfM2", parentSeq: 2, limit: 10, want: []int64{4, 7}},
			{name: "Limited", parentSeq: 2, limit: 1, want: []int64{4}},
			{name: "AfterSeq", parentSeq: 2, afterSeq: 4, limit: 10, want: []int64{7}},
			{name: "AfterLast", parentSeq: 2, afterSeq: 7, limit: 10, want: []int64{}},
			{name: "OtherThread", parentSeq: 5, limit: 10, want: []int64{8}},
			{name: "NoReplies", parentSeq: 1, limit: 10, want: []int64{}},
			{name: "ReplyHasNoReplies", parentSeq: 4, limit: 10, want: []int64{}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				parent := h.bySeq[tt.parentSeq]
				page, err := h.store.Replies(h.ctx, parent.ID, tt.afterSeq, tt.limit)
				require.NoError(t, err)
				require.Equal(t, tt.want, seqsOf(page))
				for _, m := range page {
					require.Equal(t, &parent.ID, m.ParentID)
				}
			})
		}

		_, err := h.store.Replies(h.ctx, "abc", 0, 10)
		require.ErrorIs(t, err, chat.ErrNotFound)
	})

	t.Run("SeqBefore", func(t *testing.T) {
		t.Parallel()
		h := setupHistory(t)
		// Message seq s was created at base + s minutes.
		base := time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)
		h.setCreatedAt(t, h.room.ID, base)
		at := func(minutes float64) time.Time { return base.Add(time.Duration(minutes * float64(time.Minute))) }

		tests := []struct {
			name  string
			since time.Time
			want  int64
		}{
			{name: "LongBefore", since: base.AddDate(-1, 0, 0), want: 0},
			{name: "JustBeforeFirst", since: at(0.5), want: 0},
			{name: "ExactlyAtFirstIsNotAfter", since: at(1), want: 1},
			{name: "Between", since: at(2.5), want: 2},
			{name: "OneMicrosecondBefore", since: at(6).Add(-time.Microsecond), want: 5},
			{name: "AtLast", since: at(10), want: 10},
			{name: "AfterLast", since: at(100), want: 10},
			{name: "OtherZone", since: at(2.5).In(time.FixedZone("UTC+5", 5*3600)), want: 2},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				seq, err := h.store.SeqBefore(h.ctx, h.room.ID, tt.since)
				require.NoError(t, err)
				require.Equal(t, tt.want, seq)

				// since= is SeqBefore then MessagesAfter: the messages
				// created strictly after the instant.
				page, err := h.store.MessagesAfter(h.ctx, h.room.ID, seq, 50)
				require.NoError(t, err)
				for _, m := range page {
					require.True(t, m.CreatedAt.After(tt.since), "seq %d at %v", m.Seq, m.CreatedAt)
				}
				require.Equal(t, seqRange(tt.want+1, 10), seqsOf(page))
			})
		}
	})

	t.Run("SeqBeforeEmptyRoom", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t)
		alice := bundle.user(t, "alice")
		room := bundle.room(t, alice.ID, "empty", chat.Public)

		seq, err := bundle.store.SeqBefore(bundle.ctx, room.ID, time.Now().Add(-time.Hour))
		require.NoError(t, err)
		require.Zero(t, seq)

		// A room that does not exist is not found, not seq 0.
		_, err = bundle.store.SeqBefore(bundle.ctx, "999999", time.Now())
		require.ErrorIs(t, err, chat.ErrNotFound)
		_, err = bundle.store.SeqBefore(bundle.ctx, "abc", time.Now())
		require.ErrorIs(t, err, chat.ErrNotFound)
	})

	t.Run("MessageNotFound", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t)

		tests := []struct {
			name string
			id   string
		}{
			{name: "Unknown", id: "999999"},
			{name: "Malformed", id: "abc"},
			{name: "Empty", id: ""},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				_, err := bundle.message(tt.id)
				require.ErrorIs(t, err, chat.ErrNotFound)
			})
		}
	})
}
