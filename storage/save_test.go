package storage_test

import (
	"fmt"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-chat/switchboard/chat"
	"github.com/switchboard-chat/switchboard/storage"
)

// TestConcurrentSavesFailAlone: many saves at once share batches; one that
// breaks a constraint (and so aborts its batch's transaction) fails alone,
// one refused by the rules is refused alone, and every other is stored,
// gapless.
func TestConcurrentSavesFailAlone(t *testing.T) {
	t.Parallel()
	b := setup(t)
	alice, mallory := b.user(t, "alice"), b.user(t, "mallory")
	r := b.room(t, alice.ID, "general", chat.Public)
	other := b.room(t, alice.ID, "other", chat.Public)

	const n = 60
	type outcome struct {
		msg     chat.Message
		created bool
		err     error
	}
	out := make([]outcome, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			nm := chat.NewMessage{RoomID: r.ID, SenderID: alice.ID, Body: fmt.Sprint(i), Source: chat.SourceWeb}
			switch i {
			case 17:
				nm.Source = "carrier-pigeon" // breaks the CHECK constraint: the statement raises
			case 33:
				nm.SenderID = mallory.ID // not a member: refused
			case 41, 42:
				nm.RoomID = other.ID
			}
			out[i].msg, out[i].created, out[i].err = b.store.SaveMessage(b.ctx, nm)
		}()
	}
	wg.Wait()

	var seqs []int64
	for i, o := range out {
		switch i {
		case 17:
			require.Error(t, o.err)
		case 33:
			require.ErrorIs(t, o.err, chat.ErrForbidden)
		case 41, 42:
			require.NoError(t, o.err)
			require.Equal(t, other.ID, o.msg.RoomID)
		default:
			require.NoError(t, o.err, "save %d", i)
			require.True(t, o.created)
			require.Equal(t, fmt.Sprint(i), o.msg.Body)
			seqs = append(seqs, o.msg.Seq)
		}
	}
	require.ElementsMatch(t, seqRange(1, n-4), seqs, "gapless, each once")
	require.Equal(t, n-4, b.messageCount(t, r.ID))
	require.EqualValues(t, n-4, b.lastSeq(t, r.ID))
	require.Equal(t, 2, b.messageCount(t, other.ID))
}

// TestArchivedRoomRefusedPerMessage: sends into an archived room share
// batches with sends elsewhere and are refused one by one (SPEC §14), the
// others stored; a repeat of a message stored before the archive answers
// with it, as any idempotent repeat does.
func TestArchivedRoomRefusedPerMessage(t *testing.T) {
	t.Parallel()
	b := setup(t)
	alice := b.user(t, "alice")
	open := b.room(t, alice.ID, "open", chat.Public)
	shut := b.room(t, alice.ID, "shut", chat.Public)
	early := b.save(t, chat.NewMessage{RoomID: shut.ID, SenderID: alice.ID, Body: "before", ClientID: "early", Source: chat.SourceWeb})
	_, err := b.store.Archive(b.ctx, alice.ID, shut.ID)
	require.NoError(t, err)
	shutSeq := b.lastSeq(t, shut.ID)

	const n = 40
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			room := open.ID
			if i%2 == 1 {
				room = shut.ID
			}
			_, _, errs[i] = b.store.SaveMessage(b.ctx, chat.NewMessage{RoomID: room, SenderID: alice.ID, Body: fmt.Sprint(i), Source: chat.SourceWeb})
		})
	}
	wg.Wait()
	for i, err := range errs {
		if i%2 == 1 {
			require.ErrorIs(t, err, storage.ErrArchived, "send %d into the archived room", i)
		} else {
			require.NoError(t, err, "send %d into the open room", i)
		}
	}
	require.Equal(t, int64(n/2), b.lastSeq(t, open.ID))
	require.Equal(t, shutSeq, b.lastSeq(t, shut.ID), "nothing stored in the archived room")

	again, created, err := b.store.SaveMessage(b.ctx, chat.NewMessage{RoomID: shut.ID, SenderID: alice.ID, Body: "before", ClientID: "early", Source: chat.SourceWeb})
	require.NoError(t, err)
	require.False(t, created)
	require.Equal(t, early.ID, again.ID)
}
