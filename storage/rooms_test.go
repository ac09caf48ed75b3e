package storage_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-chat/switchboard/chat"
)

func TestRooms(t *testing.T) {
	t.Parallel()

	t.Run("CreateRoom", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t)
		alice := bundle.user(t, "alice")

		r, err := bundle.store.CreateRoom(bundle.ctx, alice.ID, "General", chat.Public)
		require.NoError(t, err)
		require.NotEmpty(t, r.ID)
		require.Equal(t, "General", r.Name)
		require.Equal(t, chat.Public, r.Visibility)
		require.Zero(t, r.LastSeq)

		// The creator is the first member.
		require.NoError(t, bundle.store.CheckMember(bundle.ctx, alice.ID, r.ID))
		rooms, err := bundle.store.RoomsOf(bundle.ctx, alice.ID)
		require.NoError(t, err)
		require.Equal(t, []chat.Room{{ID: r.ID, Name: "General", Visibility: chat.Public}}, rooms)

		_, err = bundle.store.CreateRoom(bundle.ctx, "abc", "x", chat.Public)
		require.ErrorIs(t, err, chat.ErrNotFound)
	})

	t.Run("NameClash", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t)
		alice := bundle.user(t, "alice")
		bundle.room(t, alice.ID, "General", chat.Public)

		tests := []struct {
			name       string
			room       string
			visibility string
			conflict   bool
		}{
			{name: "SameCase", room: "General", visibility: chat.Public, conflict: true},
			{name: "Lower", room: "general", visibility: chat.Public, conflict: true},
			{name: "UpperPrivate", room: "GENERAL", visibility: chat.Private, conflict: true},
			{name: "Different", room: "general-2", visibility: chat.Private},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				r, err := bundle.store.CreateRoom(bundle.ctx, alice.ID, tt.room, tt.visibility)
				if !tt.conflict {
					require.NoError(t, err)
					require.Equal(t, tt.room, r.Name)
					return
				}
				requireCode(t, err, chat.CodeConflict)
				require.Empty(t, r.ID)
			})
		}

		// The refused rooms left no rows behind, not even a membership.
		var rooms, members int
		require.NoError(t, bundle.pool.QueryRow(bundle.ctx,
			`SELECT (SELECT count(*) FROM rooms), (SELECT count(*) FROM room_members)`).Scan(&rooms, &members))
		require.Equal(t, 2, rooms)
		require.Equal(t, 2, members)
	})

	t.Run("CheckMember", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t)
		alice := bundle.user(t, "alice")
		bob := bundle.user(t, "bob")
		pub := bundle.room(t, alice.ID, "pub", chat.Public)
		priv := bundle.room(t, alice.ID, "priv", chat.Private)

		tests := []struct {
			name    string
			userID  string
			roomID  string
			wantErr error
		}{
			{name: "MemberPublic", userID: alice.ID, roomID: pub.ID},
			{name: "MemberPrivate", userID: alice.ID, roomID: priv.ID},
			{name: "PublicNonMember", userID: bob.ID, roomID: pub.ID, wantErr: chat.ErrForbidden},
			{name: "PrivateNonMember", userID: bob.ID, roomID: priv.ID, wantErr: chat.ErrNotFound},
			{name: "MissingRoom", userID: alice.ID, roomID: "999999", wantErr: chat.ErrNotFound},
			{name: "MalformedRoom", userID: alice.ID, roomID: "abc", wantErr: chat.ErrNotFound},
			{name: "MalformedUser", userID: "abc", roomID: pub.ID, wantErr: chat.ErrNotFound},
			{name: "UnknownUserPublic", userID: "999999", roomID: pub.ID, wantErr: chat.ErrForbidden},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				err := bundle.store.CheckMember(bundle.ctx, tt.userID, tt.roomID)
				if tt.wantErr == nil {
					require.NoError(t, err)
					return
				}
				require.ErrorIs(t, err, tt.wantErr)
			})
		}
	})

	t.Run("Join", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t)
		alice := bundle.user(t, "alice")
		bob := bundle.user(t, "bob")
		pub := bundle.room(t, alice.ID, "pub", chat.Public)
		priv := bundle.room(t, alice.ID, "priv", chat.Private)
		bundle.send(t, pub.ID, alice.ID, "before bob")

		r, m, err := bundle.store.Join(bundle.ctx, bob.ID, pub.ID)
		require.NoError(t, err)
		require.Equal(t, chat.Room{ID: pub.ID, Name: "pub", Visibility: chat.Public, LastSeq: 1, LastReadSeq: 1}, r)
		require.Equal(t, chat.Membership{UserID: bob.ID, RoomID: pub.ID, FromSeq: 1, New: true}, m)
		require.NoError(t, bundle.store.CheckMember(bundle.ctx, bob.ID, pub.ID))

		// Joining again is fine and changes nothing.
		again, m, err := bundle.store.Join(bundle.ctx, bob.ID, pub.ID)
		require.NoError(t, err)
		require.Equal(t, r, again)
		require.False(t, m.New)

		// Another spelling of the room's id names nothing (SPEC §2).
		for _, alias := range []string{"0" + pub.ID, "+" + pub.ID, " " + pub.ID, pub.ID + " "} {
			_, _, err = bundle.store.Join(bundle.ctx, bob.ID, alias)
			require.ErrorIs(t, err, chat.ErrNotFound, "%q", alias)
			require.ErrorIs(t, bundle.store.Leave(bundle.ctx, bob.ID, alias), chat.ErrNotFound, "%q", alias)
		}
		require.NoError(t, bundle.store.CheckMember(bundle.ctx, bob.ID, pub.ID), "bob is still in the room")

		// A private room cannot be joined and does not reveal itself.
		_, _, err = bundle.store.Join(bundle.ctx, bob.ID, priv.ID)
		require.ErrorIs(t, err, chat.ErrNotFound)
		require.ErrorIs(t, bundle.store.CheckMember(bundle.ctx, bob.ID, priv.ID), chat.ErrNotFound)

		// Its members may "join" it, which is a no-op.
		_, _, err = bundle.store.Join(bundle.ctx, alice.ID, priv.ID)
		require.NoError(t, err)

		_, _, err = bundle.store.Join(bundle.ctx, bob.ID, "999999")
		require.ErrorIs(t, err, chat.ErrNotFound)
	})

	t.Run("AddMember", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t)
		alice := bundle.user(t, "alice")
		bob := bundle.user(t, "bob")
		carol := bundle.user(t, "carol")
		dave := bundle.user(t, "dave")
		pub := bundle.room(t, alice.ID, "pub", chat.Public)
		priv := bundle.room(t, alice.ID, "priv", chat.Private)

		// Steps run in order: bob, once added, may add others.
		steps := []struct {
			name     string
			actorID  string
			roomID   string
			username string
			want     chat.User
			wantCode chat.Code
		}{
			{name: "MemberAddsToPrivate", actorID: alice.ID, roomID: priv.ID, username: "bob", want: bob.User},
			{name: "AddedMemberAddsOthers", actorID: bob.ID, roomID: priv.ID, username: "CAROL", want: carol.User},
			{name: "AlreadyMember", actorID: alice.ID, roomID: priv.ID, username: "bob", want: bob.User},
			{name: "NonMemberOfPrivate", actorID: dave.ID, roomID: priv.ID, username: "dave", wantCode: chat.CodeNotFound},
			{name: "NonMemberOfPublic", actorID: dave.ID, roomID: pub.ID, username: "dave", wantCode: chat.CodeForbidden},
			{name: "UnknownUsername", actorID: alice.ID, roomID: priv.ID, username: "nobody", wantCode: chat.CodeNotFound},
			{name: "MissingRoom", actorID: alice.ID, roomID: "999999", username: "dave", wantCode: chat.CodeNotFound},
		}
		for _, step := range steps {
			t.Run(step.name, func(t *testing.T) {
				u, _, err := bundle.store.AddMember(bundle.ctx, step.actorID, step.roomID, step.username)
				if step.wantCode != "" {
					requireCode(t, err, step.wantCode)
					return
				}
				require.NoError(t, err)
				require.Equal(t, step.want, u)
				require.NoError(t, bundle.store.CheckMember(bundle.ctx, u.ID, step.roomID))
			})
		}

		require.ErrorIs(t, bundle.store.CheckMember(bundle.ctx, dave.ID, priv.ID), chat.ErrNotFound)
		require.ErrorIs(t, bundle.store.CheckMember(bundle.ctx, dave.ID, pub.ID), chat.ErrForbidden)
	})

	t.Run("Leave", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t)
		alice := bundle.user(t, "alice")
		bob := bundle.user(t, "bob")
		pub := bundle.room(t, alice.ID, "pub", chat.Public)
		priv := bundle.room(t, alice.ID, "priv", chat.Private)
		_, _, err := bundle.store.Join(bundle.ctx, bob.ID, pub.ID)
		require.NoError(t, err)
		_, _, err = bundle.store.AddMember(bundle.ctx, alice.ID, priv.ID, "bob")
		require.NoError(t, err)

		require.NoError(t, bundle.store.Leave(bundle.ctx, bob.ID, pub.ID))
		require.ErrorIs(t, bundle.store.CheckMember(bundle.ctx, bob.ID, pub.ID), chat.ErrForbidden)
		require.ErrorIs(t, bundle.store.Leave(bundle.ctx, bob.ID, pub.ID), chat.ErrForbidden, "leaving twice")

		require.NoError(t, bundle.store.Leave(bundle.ctx, bob.ID, priv.ID))
		require.ErrorIs(t, bundle.store.CheckMember(bundle.ctx, bob.ID, priv.ID), chat.ErrNotFound)
		require.ErrorIs(t, bundle.store.Leave(bundle.ctx, bob.ID, priv.ID), chat.ErrNotFound)

		require.ErrorIs(t, bundle.store.Leave(bundle.ctx, bob.ID, "999999"), chat.ErrNotFound)

		rooms, err := bundle.store.RoomsOf(bundle.ctx, bob.ID)
		require.NoError(t, err)
		require.Empty(t, rooms)
		// Alice is still in both.
		rooms, err = bundle.store.RoomsOf(bundle.ctx, alice.ID)
		require.NoError(t, err)
		require.Len(t, rooms, 2)

		// A former member of a public room can come back.
		_, _, err = bundle.store.Join(bundle.ctx, bob.ID, pub.ID)
		require.NoError(t, err)
	})

	t.Run("RoomsOfWithUnread", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t)
		alice := bundle.user(t, "alice")
		bob := bundle.user(t, "bob")
		beta := bundle.room(t, alice.ID, "beta", chat.Public)
		alpha := bundle.room(t, alice.ID, "Alpha", chat.Private)
		gamma := bundle.room(t, bob.ID, "gamma", chat.Public)
		_, _, err := bundle.store.Join(bundle.ctx, bob.ID, beta.ID)
		require.NoError(t, err)
		_, _, err = bundle.store.Join(bundle.ctx, alice.ID, gamma.ID)
		require.NoError(t, err)
		for range 3 {
			bundle.send(t, beta.ID, bob.ID, "in beta")
		}
		bundle.send(t, gamma.ID, bob.ID, "in gamma")
		bundle.send(t, alpha.ID, alice.ID, "alone")

		rooms, err := bundle.store.RoomsOf(bundle.ctx, alice.ID)
		require.NoError(t, err)
		// By name, in any letter case.
		require.Equal(t, []chat.Room{
			{ID: alpha.ID, Name: "Alpha", Visibility: chat.Private, LastSeq: 1, LastReadSeq: 1, Unread: 0},
			{ID: beta.ID, Name: "beta", Visibility: chat.Public, LastSeq: 3, LastReadSeq: 0, Unread: 3},
			{ID: gamma.ID, Name: "gamma", Visibility: chat.Public, LastSeq: 1, LastReadSeq: 0, Unread: 1},
		}, rooms)

		// Posting marks the room read up to one's own message.
		bundle.send(t, beta.ID, alice.ID, "caught up")
		rooms, err = bundle.store.RoomsOf(bundle.ctx, alice.ID)
		require.NoError(t, err)
		require.Equal(t, chat.Room{ID: beta.ID, Name: "beta", Visibility: chat.Public, LastSeq: 4, LastReadSeq: 4}, rooms[1])

		rooms, err = bundle.store.RoomsOf(bundle.ctx, bob.ID)
		require.NoError(t, err)
		require.Equal(t, []chat.Room{
			{ID: beta.ID, Name: "beta", Visibility: chat.Public, LastSeq: 4, LastReadSeq: 3, Unread: 1},
			{ID: gamma.ID, Name: "gamma", Visibility: chat.Public, LastSeq: 1, LastReadSeq: 1, Unread: 0},
		}, rooms)

		carol := bundle.user(t, "carol")
		rooms, err = bundle.store.RoomsOf(bundle.ctx, carol.ID)
		require.NoError(t, err)
		require.Empty(t, rooms)
		_, err = bundle.store.RoomsOf(bundle.ctx, "abc")
		require.ErrorIs(t, err, chat.ErrNotFound)
	})

	t.Run("MarkRead", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t)
		alice := bundle.user(t, "alice")
		bob := bundle.user(t, "bob")
		carol := bundle.user(t, "carol")
		room := bundle.room(t, bob.ID, "room", chat.Public)
		_, _, err := bundle.store.Join(bundle.ctx, alice.ID, room.ID)
		require.NoError(t, err)
		for range 5 {
			bundle.send(t, room.ID, bob.ID, "hello")
		}

		// Steps run in order on alice's cursor.
		steps := []struct {
			name       string
			seq        int64
			wantRead   int64
			wantUnread int64
		}{
			{name: "Forward", seq: 3, wantRead: 3, wantUnread: 2},
			{name: "NeverBack", seq: 2, wantRead: 3, wantUnread: 2},
			{name: "Same", seq: 3, wantRead: 3, wantUnread: 2},
			{name: "CappedAtLastSeq", seq: 100, wantRead: 5, wantUnread: 0},
			{name: "NegativeIgnored", seq: -1, wantRead: 5, wantUnread: 0},
		}
		for _, step := range steps {
			t.Run(step.name, func(t *testing.T) {
				r, err := bundle.store.MarkRead(bundle.ctx, alice.ID, room.ID, step.seq)
				require.NoError(t, err)
				require.Equal(t, int64(5), r.LastSeq)
				require.Equal(t, step.wantRead, r.LastReadSeq)
				require.Equal(t, step.wantUnread, r.Unread)
			})
		}

		// The cap was the last seq then: a new message is unread.
		bundle.send(t, room.ID, bob.ID, "new")
		r, err := bundle.store.MemberRoom(bundle.ctx, alice.ID, room.ID)
		require.NoError(t, err)
		require.Equal(t, int64(5), r.LastReadSeq)
		require.Equal(t, int64(1), r.Unread)

		_, err = bundle.store.MarkRead(bundle.ctx, carol.ID, room.ID, 1)
		require.ErrorIs(t, err, chat.ErrForbidden)
		_, err = bundle.store.MarkRead(bundle.ctx, alice.ID, "999999", 1)
		require.ErrorIs(t, err, chat.ErrNotFound)
	})

	t.Run("MarkDeliveredAndCursors", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t)
		alice := bundle.user(t, "alice")
		bob := bundle.user(t, "bob")
		a := bundle.room(t, alice.ID, "a", chat.Public)
		b := bundle.room(t, alice.ID, "b", chat.Private)
		notMine := bundle.room(t, bob.ID, "not-mine", chat.Public)
		for range 8 {
			bundle.send(t, a.ID, alice.ID, "a")
		}
		for range 4 {
			bundle.send(t, b.ID, alice.ID, "b")
		}
		for range 2 {
			bundle.send(t, notMine.ID, bob.ID, "c")
		}

		type cursor struct{ last, delivered, read int64 }
		cursors := func(t *testing.T, userID string) map[string]cursor {
			t.Helper()
			cs, err := bundle.store.Cursors(bundle.ctx, userID)
			require.NoError(t, err)
			got := make(map[string]cursor, len(cs))
			for _, c := range cs {
				got[c.RoomID] = cursor{last: c.LastSeq, delivered: c.DeliveredSeq, read: c.ReadSeq}
			}
			return got
		}

		// Steps run in order on alice's delivery cursors.
		steps := []struct {
			name string
			seqs map[string]int64
			want map[string]cursor
		}{
			{
				name: "Initial",
				seqs: map[string]int64{},
				want: map[string]cursor{a.ID: {8, 0, 8}, b.ID: {4, 0, 4}},
			},
			{
				name: "Forward",
				seqs: map[string]int64{a.ID: 5, b.ID: 2},
				want: map[string]cursor{a.ID: {8, 5, 8}, b.ID: {4, 2, 4}},
			},
			{
				name: "NeverBack",
				seqs: map[string]int64{a.ID: 3, b.ID: 4},
				want: map[string]cursor{a.ID: {8, 5, 8}, b.ID: {4, 4, 4}},
			},
			{
				name: "IgnoresOtherRoomsAndBadIDs",
				seqs: map[string]int64{notMine.ID: 2, "abc": 9, "999999": 9, a.ID: 8},
				want: map[string]cursor{a.ID: {8, 8, 8}, b.ID: {4, 4, 4}},
			},
		}
		for _, step := range steps {
			t.Run(step.name, func(t *testing.T) {
				busy, err := bundle.store.MarkDelivered(bundle.ctx, map[string]map[string]int64{alice.ID: step.seqs})
				require.NoError(t, err)
				require.Empty(t, busy)
				require.Equal(t, step.want, cursors(t, alice.ID))
			})
		}

		require.Equal(t, map[string]cursor{notMine.ID: {2, 0, 2}}, cursors(t, bob.ID))

		// Several users in one statement; bad user ids are skipped.
		busy, err := bundle.store.MarkDelivered(bundle.ctx, map[string]map[string]int64{
			bob.ID: {notMine.ID: 2}, "abc": {a.ID: 1}, "0" + alice.ID: {a.ID: 1}, alice.ID: {b.ID: 4},
		})
		require.NoError(t, err)
		require.Empty(t, busy)
		require.Equal(t, map[string]cursor{notMine.ID: {2, 2, 2}}, cursors(t, bob.ID))
		require.Equal(t, map[string]cursor{a.ID: {8, 8, 8}, b.ID: {4, 4, 4}}, cursors(t, alice.ID))

		// A row another transaction holds (a message of alice's being
		// stored in b) is not waited for: it comes back busy, the others
		// are written, and it is written once free.
		tx, err := bundle.pool.Begin(bundle.ctx)
		require.NoError(t, err)
		defer tx.Rollback(bundle.ctx)
		_, err = tx.Exec(bundle.ctx, `UPDATE room_members SET last_active_at = now() WHERE room_id = $1 AND user_id = $2`, b.ID, alice.ID)
		require.NoError(t, err)
		both := map[string]map[string]int64{alice.ID: {a.ID: 8, b.ID: 6}, bob.ID: {notMine.ID: 2}}
		busy, err = bundle.store.MarkDelivered(bundle.ctx, both)
		require.NoError(t, err)
		require.Equal(t, map[string]map[string]int64{alice.ID: {b.ID: 6}}, busy, "only the held row, and not rows already there")
		require.Equal(t, map[string]cursor{a.ID: {8, 8, 8}, b.ID: {4, 4, 4}}, cursors(t, alice.ID))
		require.NoError(t, tx.Rollback(bundle.ctx))
		busy, err = bundle.store.MarkDelivered(bundle.ctx, busy)
		require.NoError(t, err)
		require.Empty(t, busy)
		require.Equal(t, map[string]cursor{a.ID: {8, 8, 8}, b.ID: {4, 6, 4}}, cursors(t, alice.ID))
	})

	t.Run("Lookups", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t)
		alice := bundle.user(t, "alice")
		bob := bundle.user(t, "bob")
		pub := bundle.room(t, alice.ID, "Zeta", chat.Public)
		priv := bundle.room(t, alice.ID, "secret", chat.Private)
		pub2 := bundle.room(t, bob.ID, "alpha", chat.Public)
		bundle.send(t, pub.ID, alice.ID, "one")
		bundle.send(t, pub.ID, alice.ID, "two")

		public, err := bundle.store.PublicRooms(bundle.ctx)
		require.NoError(t, err)
		require.Equal(t, []chat.Room{
			{ID: pub2.ID, Name: "alpha", Visibility: chat.Public},
			{ID: pub.ID, Name: "Zeta", Visibility: chat.Public, LastSeq: 2},
		}, public)

		r, err := bundle.store.RoomByName(bundle.ctx, "zETA")
		require.NoError(t, err)
		require.Equal(t, chat.Room{ID: pub.ID, Name: "Zeta", Visibility: chat.Public, LastSeq: 2}, r)
		_, err = bundle.store.RoomByName(bundle.ctx, "nope")
		require.ErrorIs(t, err, chat.ErrNotFound)

		seq, err := bundle.store.LastSeq(bundle.ctx, pub.ID)
		require.NoError(t, err)
		require.Equal(t, int64(2), seq)
		_, err = bundle.store.LastSeq(bundle.ctx, "999999")
		require.ErrorIs(t, err, chat.ErrNotFound)

		_, err = bundle.store.MemberRoom(bundle.ctx, bob.ID, priv.ID)
		require.ErrorIs(t, err, chat.ErrNotFound)
		_, err = bundle.store.MemberRoom(bundle.ctx, bob.ID, pub.ID)
		require.ErrorIs(t, err, chat.ErrForbidden)
		mr, err := bundle.store.MemberRoom(bundle.ctx, alice.ID, pub.ID)
		require.NoError(t, err)
		require.Equal(t, chat.Room{ID: pub.ID, Name: "Zeta", Visibility: chat.Public, LastSeq: 2, LastReadSeq: 2}, mr)
	})
}

func TestNewMembersStartAtTheRoomsEnd(t *testing.T) {
	t.Parallel()
	b := setup(t)
	alice, bob, carol := b.user(t, "alice"), b.user(t, "bob"), b.user(t, "carol")
	r := b.room(t, alice.ID, "general", chat.Public)
	for range 3 {
		b.send(t, r.ID, alice.ID, "before")
	}
	joined, _, err := b.store.Join(b.ctx, bob.ID, r.ID)
	require.NoError(t, err)
	require.Zero(t, joined.Unread, "history is not unread")
	_, _, err = b.store.AddMember(b.ctx, alice.ID, r.ID, "carol")
	require.NoError(t, err)
	b.send(t, r.ID, alice.ID, "after")
	for _, u := range []string{bob.ID, carol.ID} {
		cs, err := b.store.Cursors(b.ctx, u)
		require.NoError(t, err)
		require.Equal(t, []chat.Cursor{{RoomID: r.ID, LastSeq: 4, DeliveredSeq: 3, ReadSeq: 3}}, cs,
			"the next connection delivers only what came after joining")
	}
	// Joining again changes nothing.
	_, err = b.store.MarkDelivered(b.ctx, map[string]map[string]int64{bob.ID: {r.ID: 4}})
	require.NoError(t, err)
	_, _, err = b.store.Join(b.ctx, bob.ID, r.ID)
	require.NoError(t, err)
	cs, err := b.store.Cursors(b.ctx, bob.ID)
	require.NoError(t, err)
	require.EqualValues(t, 4, cs[0].DeliveredSeq)
}
