package storage_test

import (
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-chat/switchboard/chat"
	"github.com/switchboard-chat/switchboard/storage/storagetest"
)

func TestIntegrations(t *testing.T) {
	t.Parallel()

	t.Run("UserByPhone", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t)
		alice := bundle.user(t, "alice")
		bob := bundle.user(t, "bob")
		carol := bundle.user(t, "carol")
		storagetest.VerifyPhone(t, bundle.pool, alice.ID, "+14155550100")
		storagetest.VerifyPhone(t, bundle.pool, bob.ID, "+14155550101")
		// Unverified numbers are nobody's: not carol's own, nor alice's that
		// carol claims too.
		_, err := bundle.store.UpdateProfile(bundle.ctx, carol.ID, chat.ProfileUpdate{Phone: ptr("+14155550103")})
		require.NoError(t, err)
		_, err = bundle.store.UserByPhone(bundle.ctx, "+14155550103")
		require.ErrorIs(t, err, chat.ErrNotFound)
		_, err = bundle.store.UpdateProfile(bundle.ctx, carol.ID, chat.ProfileUpdate{Phone: ptr("+14155550100")})
		require.NoError(t, err)

		u, err := bundle.store.UserByPhone(bundle.ctx, "+14155550100")
		require.NoError(t, err)
		require.Equal(t, alice.User, u)
		u, err = bundle.store.UserByPhone(bundle.ctx, "+14155550101")
		require.NoError(t, err)
		require.Equal(t, bob.User, u)

		for _, phone := range []string{"+14155550102", "14155550100", ""} {
			_, err = bundle.store.UserByPhone(bundle.ctx, phone)
			require.ErrorIs(t, err, chat.ErrNotFound, "phone %q", phone)
		}

		// A cleared phone no longer matches, nor a changed one (unverified
		// again).
		_, err = bundle.store.UpdateProfile(bundle.ctx, alice.ID, chat.ProfileUpdate{Phone: ptr("")})
		require.NoError(t, err)
		_, err = bundle.store.UserByPhone(bundle.ctx, "+14155550100")
		require.ErrorIs(t, err, chat.ErrNotFound)
		_, err = bundle.store.UpdateProfile(bundle.ctx, bob.ID, chat.ProfileUpdate{Phone: ptr("+14155550102")})
		require.NoError(t, err)
		_, err = bundle.store.UserByPhone(bundle.ctx, "+14155550101")
		require.ErrorIs(t, err, chat.ErrNotFound)
	})

	t.Run("UserBySlackID", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t)
		alice := bundle.user(t, "alice")
		_, err := bundle.store.UpdateProfile(bundle.ctx, alice.ID, chat.ProfileUpdate{SlackUserID: ptr("U012AB3CD")})
		require.NoError(t, err)

		u, err := bundle.store.UserBySlackID(bundle.ctx, "U012AB3CD")
		require.NoError(t, err)
		require.Equal(t, alice.User, u)
		for _, id := range []string{"U999", "u012ab3cd", ""} {
			_, err = bundle.store.UserBySlackID(bundle.ctx, id)
			require.ErrorIs(t, err, chat.ErrNotFound, "id %q", id)
		}
	})

	t.Run("LastActiveRoom", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t)
		alice := bundle.user(t, "alice")
		bob := bundle.user(t, "bob")

		_, err := bundle.store.LastActiveRoom(bundle.ctx, alice.ID)
		require.ErrorIs(t, err, chat.ErrNotFound, "a user in no room")

		first := bundle.room(t, alice.ID, "first", chat.Public)
		second := bundle.room(t, alice.ID, "second", chat.Private)
		_, err = bundle.store.LastActiveRoom(bundle.ctx, alice.ID)
		require.ErrorIs(t, err, chat.ErrNotFound, "creating rooms is not posting")
		requireLastActive := func(want chat.Room) {
			t.Helper()
			r, err := bundle.store.LastActiveRoom(bundle.ctx, alice.ID)
			require.NoError(t, err)
			require.Equal(t, want.ID, r.ID)
			require.Equal(t, want.Name, r.Name)
		}

		// Posting makes a room the most recently active one.
		bundle.send(t, first.ID, alice.ID, "hello")
		requireLastActive(first)
		bundle.send(t, second.ID, alice.ID, "again")
		requireLastActive(second)

		// Someone else's post does not move alice's choice.
		_, _, err = bundle.store.Join(bundle.ctx, bob.ID, first.ID)
		require.NoError(t, err)
		bundle.send(t, first.ID, bob.ID, "bob here")
		requireLastActive(second)

		// Joining a room or being added to one does not either.
		third := bundle.room(t, bob.ID, "third", chat.Public)
		_, _, err = bundle.store.Join(bundle.ctx, alice.ID, third.ID)
		require.NoError(t, err)
		fourth := bundle.room(t, bob.ID, "fourth", chat.Private)
		_, _, err = bundle.store.AddMember(bundle.ctx, bob.ID, fourth.ID, "alice")
		require.NoError(t, err)
		requireLastActive(second)

		// The room comes with alice's cursor: her own posts are read.
		r, err := bundle.store.LastActiveRoom(bundle.ctx, alice.ID)
		require.NoError(t, err)
		require.Equal(t, int64(1), r.LastSeq)
		require.Equal(t, int64(1), r.LastReadSeq)
		require.Zero(t, r.Unread)

		// Leaving the room falls back to the other one.
		require.NoError(t, bundle.store.Leave(bundle.ctx, alice.ID, second.ID))
		requireLastActive(first)

		_, err = bundle.store.LastActiveRoom(bundle.ctx, "nope")
		require.ErrorIs(t, err, chat.ErrNotFound)
	})

	t.Run("RoomBySlackChannel", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t)
		alice := bundle.user(t, "alice")
		general := bundle.room(t, alice.ID, "general", chat.Public)
		bundle.room(t, alice.ID, "random", chat.Public)
		_, err := bundle.pool.Exec(bundle.ctx, `UPDATE rooms SET slack_channel_id = 'C123ABC456' WHERE id = $1::bigint`, general.ID)
		require.NoError(t, err)

		r, err := bundle.store.RoomBySlackChannel(bundle.ctx, "C123ABC456")
		require.NoError(t, err)
		require.Equal(t, general.ID, r.ID)
		require.Equal(t, "general", r.Name)

		for _, ch := range []string{"C999", "c123abc456", ""} {
			_, err = bundle.store.RoomBySlackChannel(bundle.ctx, ch)
			require.ErrorIs(t, err, chat.ErrNotFound, "channel %q", ch)
		}
	})

	t.Run("SlackGuest", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t)
		alice := bundle.user(t, "alice")
		general := bundle.room(t, alice.ID, "general", chat.Public)
		random := bundle.room(t, alice.ID, "random", chat.Private)

		g, err := bundle.store.SlackGuest(bundle.ctx, "U123ABC456", general.ID)
		require.NoError(t, err)
		require.Equal(t, "slack-u123abc456", g.Username)
		require.NotEmpty(t, g.ID)
		require.NoError(t, bundle.store.CheckMember(bundle.ctx, g.ID, general.ID))
		require.ErrorIs(t, bundle.store.CheckMember(bundle.ctx, g.ID, random.ID), chat.ErrNotFound)

		// The same Slack user in another room: the same account, now a
		// member of both.
		again, err := bundle.store.SlackGuest(bundle.ctx, "U123ABC456", random.ID)
		require.NoError(t, err)
		require.Equal(t, g, again)
		require.NoError(t, bundle.store.CheckMember(bundle.ctx, g.ID, random.ID))
		require.NoError(t, bundle.store.CheckMember(bundle.ctx, g.ID, general.ID))

		// A guest cannot log in, and is not found by its Slack id (it holds
		// none, so a real account may still claim it).
		_, _, err = bundle.store.Credentials(bundle.ctx, g.Username)
		require.ErrorIs(t, err, chat.ErrNotFound)
		_, err = bundle.store.UserBySlackID(bundle.ctx, "U123ABC456")
		require.ErrorIs(t, err, chat.ErrNotFound)
		_, err = bundle.store.UpdateProfile(bundle.ctx, alice.ID, chat.ProfileUpdate{SlackUserID: ptr("U123ABC456")})
		require.NoError(t, err)

		// A guest may post in its room.
		bundle.send(t, general.ID, g.ID, "from slack")

		_, err = bundle.store.SlackGuest(bundle.ctx, "U777", "999999")
		require.ErrorIs(t, err, chat.ErrNotFound, "no such room")
		for _, id := range []string{"", "U<script>", "U 1", strings.Repeat("U", 27)} {
			_, err = bundle.store.SlackGuest(bundle.ctx, id, general.ID)
			requireCode(t, err, chat.CodeBadRequest)
		}

		var users int
		require.NoError(t, bundle.pool.QueryRow(bundle.ctx, `SELECT count(*) FROM users`).Scan(&users))
		require.Equal(t, 2, users, "alice and one guest; the refused calls created nobody")
	})

	t.Run("SlackGuestConcurrent", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t)
		alice := bundle.user(t, "alice")
		general := bundle.room(t, alice.ID, "general", chat.Public)

		const n = 12
		got := make([]chat.User, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() { got[i], errs[i] = bundle.store.SlackGuest(bundle.ctx, "U0RACE", general.ID) })
		}
		wg.Wait()
		for i := range n {
			require.NoError(t, errs[i])
			require.Equal(t, got[0], got[i])
		}
		var users, members int
		require.NoError(t, bundle.pool.QueryRow(bundle.ctx, `
			SELECT (SELECT count(*) FROM users WHERE username = 'slack-u0race'),
			       (SELECT count(*) FROM room_members WHERE user_id = $1::bigint)`, got[0].ID).Scan(&users, &members))
		require.Equal(t, 1, users)
		require.Equal(t, 1, members)
	})

	t.Run("SlackGuestNeverBorrowsAnAccount", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t)
		owner := bundle.user(t, "Slack-U666")
		general := bundle.room(t, owner.ID, "general", chat.Public)

		_, err := bundle.store.SlackGuest(bundle.ctx, "U666", general.ID)
		requireCode(t, err, chat.CodeConflict)
	})
}
