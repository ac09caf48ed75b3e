package storage_test

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-chat/switchboard/chat"
	"github.com/switchboard-chat/switchboard/storage"
)

// update runs u and requires it to succeed.
func (b *testBundle) update(t *testing.T, u chat.Update) (chat.RoomEvent, bool) {
	t.Helper()
	require.NoError(t, u.Validate())
	ev, changed, err := b.store.UpdateMessage(b.ctx, u)
	require.NoError(t, err)
	return ev, changed
}

func TestUpdatesAreRoomEventsWithTheNextSeq(t *testing.T) {
	b := setup(t)
	alice, bob := b.user(t, "alice"), b.user(t, "bob")
	room := b.room(t, alice.ID, "general", chat.Public)
	_, _, err := b.store.Join(b.ctx, bob.ID, room.ID)
	require.NoError(t, err)

	m1 := b.send(t, room.ID, alice.ID, "helo @bob")
	require.Equal(t, []string{bob.ID}, m1.Mentions)
	ev, changed := b.update(t, chat.Update{Action: chat.ActionEdit, MessageID: m1.ID, UserID: alice.ID, Body: "  hello  "})
	require.True(t, changed)
	require.Equal(t, int64(2), ev.Seq)
	require.Equal(t, chat.KindEdit, ev.Kind)
	require.Equal(t, "hello", ev.Message.Body)
	require.NotNil(t, ev.Message.EditedAt)
	require.Empty(t, ev.Message.Mentions, "mentions are recomputed on edit")
	require.Equal(t, int64(1), ev.Message.Seq, "the message keeps its seq")

	m3 := b.send(t, room.ID, bob.ID, "second")
	require.Equal(t, int64(3), m3.Seq, "the next message takes the seq after the edit")

	ev, changed = b.update(t, chat.Update{Action: chat.ActionReact, MessageID: m1.ID, UserID: bob.ID, Emoji: "👍"})
	require.True(t, changed)
	require.Equal(t, int64(4), ev.Seq)
	ev, _ = b.update(t, chat.Update{Action: chat.ActionReact, MessageID: m1.ID, UserID: alice.ID, Emoji: ":shipit:"})
	ev, _ = b.update(t, chat.Update{Action: chat.ActionReact, MessageID: m1.ID, UserID: alice.ID, Emoji: "👍"})
	require.Equal(t, int64(6), ev.Seq)
	require.Equal(t, []chat.Reaction{
		{Emoji: "👍", Count: 2, UserIDs: []string{bob.ID, alice.ID}},
		{Emoji: ":shipit:", Count: 1, UserIDs: []string{alice.ID}},
	}, ev.Message.Reactions, "ordered by first use, members in the order they reacted")

	// Requests that change nothing store nothing.
	for _, u := range []chat.Update{
		{Action: chat.ActionReact, MessageID: m1.ID, UserID: bob.ID, Emoji: "👍"},
		{Action: chat.ActionUnreact, MessageID: m1.ID, UserID: bob.ID, Emoji: ":shipit:"},
		{Action: chat.ActionEdit, MessageID: m1.ID, UserID: alice.ID, Body: "hello"},
	} {
		ev, changed := b.update(t, u)
		require.False(t, changed, "%+v", u)
		require.Zero(t, ev.Seq)
		require.Equal(t, "hello", ev.Message.Body)
	}
	require.Equal(t, int64(6), b.lastSeq(t, room.ID))

	ev, changed = b.update(t, chat.Update{Action: chat.ActionUnreact, MessageID: m1.ID, UserID: bob.ID, Emoji: "👍"})
	require.True(t, changed)
	require.Equal(t, []chat.Reaction{
		{Emoji: "👍", Count: 1, UserIDs: []string{alice.ID}},
		{Emoji: ":shipit:", Count: 1, UserIDs: []string{alice.ID}},
	}, ev.Message.Reactions)

	reply := b.reply(t, room.ID, bob.ID, m1.ID, "a reply")
	ev, changed = b.update(t, chat.Update{Action: chat.ActionDelete, MessageID: m1.ID, UserID: alice.ID})
	require.True(t, changed)
	require.Equal(t, int64(9), ev.Seq)
	got := ev.Message
	require.True(t, got.Deleted)
	require.Equal(t, "", got.Body)
	require.Empty(t, got.Reactions)
	require.Equal(t, 1, got.ReplyCount, "a tombstone keeps its thread")
	stored, err := b.message(reply.ID)
	require.NoError(t, err)
	require.Equal(t, m1.ID, *stored.ParentID)
	var reactions int
	require.NoError(t, b.pool.QueryRow(b.ctx, `SELECT count(*) FROM reactions`).Scan(&reactions))
	require.Zero(t, reactions)

	_, changed = b.update(t, chat.Update{Action: chat.ActionDelete, MessageID: m1.ID, UserID: alice.ID})
	require.False(t, changed, "deleting twice")

	// The room's events: messages and updates in seq order, each with the
	// message's current state.
	evs, err := b.store.EventsAfter(b.ctx, room.ID, 0, 100)
	require.NoError(t, err)
	var kinds []string
	for i, e := range evs {
		require.Equal(t, int64(i+1), e.Seq)
		kinds = append(kinds, e.Kind)
	}
	require.Equal(t, []string{"message", "edit", "message", "reaction", "reaction", "reaction", "reaction", "message", "delete"}, kinds)
	require.True(t, evs[0].Message.Deleted, "a replay carries the current state")
	evs, err = b.store.EventsAfter(b.ctx, room.ID, 3, 2)
	require.NoError(t, err)
	require.Len(t, evs, 2)
	require.Equal(t, int64(4), evs[0].Seq)

	// History shows the current state.
	page, err := b.store.MessagesAfter(b.ctx, room.ID, 0, 10)
	require.NoError(t, err)
	require.Equal(t, []int64{1, 3, 8}, seqsOf(page))
	require.True(t, page[0].Deleted)
}

func TestUpdatePermissionsAndConflicts(t *testing.T) {
	b := setup(t)
	alice, bob, carol := b.user(t, "alice"), b.user(t, "bob"), b.user(t, "carol")
	room := b.room(t, alice.ID, "general", chat.Public)
	secret := b.room(t, alice.ID, "secret", chat.Private)
	_, _, err := b.store.Join(b.ctx, bob.ID, room.ID)
	require.NoError(t, err)
	byBob := b.send(t, room.ID, bob.ID, "bob's")
	byAlice := b.send(t, room.ID, alice.ID, "alice's")
	hidden := b.send(t, secret.ID, alice.ID, "hidden")

	refuse := func(u chat.Update, code chat.Code) {
		t.Helper()
		require.NoError(t, u.Validate())
		_, _, err := b.store.UpdateMessage(b.ctx, u)
		requireCode(t, err, code)
	}
	refuse(chat.Update{Action: chat.ActionEdit, MessageID: byBob.ID, UserID: alice.ID, Body: "x"}, chat.CodeForbidden)
	refuse(chat.Update{Action: chat.ActionDelete, MessageID: byAlice.ID, UserID: bob.ID}, chat.CodeForbidden)
	refuse(chat.Update{Action: chat.ActionReact, MessageID: byBob.ID, UserID: carol.ID, Emoji: "👍"}, chat.CodeForbidden)
	refuse(chat.Update{Action: chat.ActionReact, MessageID: hidden.ID, UserID: bob.ID, Emoji: "👍"}, chat.CodeNotFound)
	refuse(chat.Update{Action: chat.ActionDelete, MessageID: "999999", UserID: bob.ID}, chat.CodeNotFound)
	refuse(chat.Update{Action: chat.ActionDelete, MessageID: "0x1", UserID: bob.ID}, chat.CodeNotFound)

	// The room's creator may delete anyone's message (can_moderate).
	_, changed := b.update(t, chat.Update{Action: chat.ActionDelete, MessageID: byBob.ID, UserID: alice.ID})
	require.True(t, changed)
	refuse(chat.Update{Action: chat.ActionEdit, MessageID: byBob.ID, UserID: bob.ID, Body: "again"}, chat.CodeConflict)
	refuse(chat.Update{Action: chat.ActionReact, MessageID: byBob.ID, UserID: bob.ID, Emoji: "👍"}, chat.CodeConflict)
	refuse(chat.Update{Action: chat.ActionUnreact, MessageID: byBob.ID, UserID: bob.ID, Emoji: "👍"}, chat.CodeConflict)

	// At most 20 distinct emoji; more members on one of them are fine.
	for i := range chat.MaxDistinctEmoji {
		b.update(t, chat.Update{Action: chat.ActionReact, MessageID: byAlice.ID, UserID: alice.ID, Emoji: fmt.Sprintf(":e%d:", i)})
	}
	refuse(chat.Update{Action: chat.ActionReact, MessageID: byAlice.ID, UserID: bob.ID, Emoji: ":one-more:"}, chat.CodeConflict)
	_, changed = b.update(t, chat.Update{Action: chat.ActionReact, MessageID: byAlice.ID, UserID: bob.ID, Emoji: ":e0:"})
	require.True(t, changed)
	before := b.lastSeq(t, room.ID)
	refuse(chat.Update{Action: chat.ActionReact, MessageID: byAlice.ID, UserID: bob.ID, Emoji: ":one-more:"}, chat.CodeConflict)
	require.Equal(t, before, b.lastSeq(t, room.ID), "a refusal stores no event")

	// An archived room is read-only (SPEC §14): no edit, reaction, or
	// delete by a member, even of their own message; its owner may still
	// delete.
	bobsLast := b.send(t, room.ID, bob.ID, "bob's last")
	before = b.lastSeq(t, room.ID)
	_, err = b.store.Archive(b.ctx, alice.ID, room.ID)
	require.NoError(t, err)
	for _, u := range []chat.Update{
		{Action: chat.ActionEdit, MessageID: byAlice.ID, UserID: alice.ID, Body: "late"},
		{Action: chat.ActionUnreact, MessageID: byAlice.ID, UserID: bob.ID, Emoji: ":e0:"},
		{Action: chat.ActionDelete, MessageID: bobsLast.ID, UserID: bob.ID},
	} {
		require.NoError(t, u.Validate())
		_, _, err := b.store.UpdateMessage(b.ctx, u)
		require.ErrorIs(t, err, storage.ErrArchived)
	}
	require.Equal(t, before, b.lastSeq(t, room.ID))
	ev, changed := b.update(t, chat.Update{Action: chat.ActionDelete, MessageID: bobsLast.ID, UserID: alice.ID})
	require.True(t, changed, "the owner deletes in an archived room")
	require.True(t, ev.Message.Deleted)
	require.Equal(t, before+1, b.lastSeq(t, room.ID))
}

func TestMentionsAndUnreadCounts(t *testing.T) {
	b := setup(t)
	alice, bob, carol := b.user(t, "alice"), b.user(t, "bob"), b.user(t, "carol")
	room := b.room(t, alice.ID, "general", chat.Public)
	_, _, err := b.store.Join(b.ctx, bob.ID, room.ID)
	require.NoError(t, err)

	// carol is no member; alice's own name and an e-mail address count not.
	m := b.send(t, room.ID, alice.ID, "@Bob, @carol and @alice: mail bob@bob.example, @bob.")
	require.Equal(t, []string{bob.ID}, m.Mentions)
	_ = carol
	b.send(t, room.ID, alice.ID, "no mention")
	edited := b.send(t, room.ID, alice.ID, "soon mentions")
	b.update(t, chat.Update{Action: chat.ActionEdit, MessageID: edited.ID, UserID: alice.ID, Body: "now @bob."})
	b.update(t, chat.Update{Action: chat.ActionReact, MessageID: edited.ID, UserID: alice.ID, Emoji: "👀"})

	rooms, err := b.store.RoomsOf(b.ctx, bob.ID)
	require.NoError(t, err)
	require.Len(t, rooms, 1)
	require.Equal(t, int64(5), rooms[0].LastSeq)
	require.Equal(t, int64(3), rooms[0].Unread, "updates are no unread messages")
	require.Equal(t, int64(2), rooms[0].Mentions)

	b.update(t, chat.Update{Action: chat.ActionDelete, MessageID: m.ID, UserID: alice.ID})
	r, err := b.store.MarkRead(b.ctx, bob.ID, room.ID, 2)
	require.NoError(t, err)
	require.Equal(t, int64(1), r.Mentions, "a deleted message mentions no one; read ones count not")
	require.Equal(t, int64(1), r.Unread)
}

// TestSlackMirrorOutbox: an edit or delete of a message of a bridged room
// (not from Slack) is queued for mirroring with its seq; reactions and
// messages of unbridged rooms are not.
func TestSlackMirrorOutbox(t *testing.T) {
	b := withOutbox(t)
	alice := b.user(t, "alice")
	bridged := b.room(t, alice.ID, "bridged", chat.Public)
	plain := b.room(t, alice.ID, "plain", chat.Public)
	_, err := b.store.BridgeSlack(b.ctx, bridged.ID, "C0123")
	require.NoError(t, err)
	m := b.send(t, bridged.ID, alice.ID, "to slack")
	other := b.send(t, plain.ID, alice.ID, "stays here")
	_, err = b.pool.Exec(b.ctx, `DELETE FROM outbox`)
	require.NoError(t, err)

	b.update(t, chat.Update{Action: chat.ActionEdit, MessageID: m.ID, UserID: alice.ID, Body: "edited"})
	b.update(t, chat.Update{Action: chat.ActionReact, MessageID: m.ID, UserID: alice.ID, Emoji: "👍"})
	b.update(t, chat.Update{Action: chat.ActionEdit, MessageID: other.ID, UserID: alice.ID, Body: "edited"})
	b.update(t, chat.Update{Action: chat.ActionDelete, MessageID: m.ID, UserID: alice.ID})
	var got []chat.OutboxItem
	_, err = b.store.RelayOutbox(b.ctx, 10, func(items []chat.OutboxItem) error {
		got = items
		return nil
	})
	require.NoError(t, err)
	require.Equal(t, []chat.OutboxItem{{MessageID: m.ID, EventSeq: 2}, {MessageID: m.ID, EventSeq: 4}}, got)

	require.NoError(t, b.store.RecordSlackPost(b.ctx, m.ID, "C0123", "1700000000.000001"))
	require.NoError(t, b.store.RecordSlackPost(b.ctx, m.ID, "C0123", "1700000000.000002"), "a repeat keeps the first")
	channel, ts, found, err := b.store.SlackPost(b.ctx, m.ID)
	require.NoError(t, err)
	require.True(t, found)
	require.Equal(t, []string{"C0123", "1700000000.000001"}, []string{channel, ts})
	_, _, found, err = b.store.SlackPost(b.ctx, other.ID)
	require.NoError(t, err)
	require.False(t, found)
}
