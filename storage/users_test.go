package storage_test

import (
	"crypto/sha256"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-chat/switchboard/chat"
)

func TestUsers(t *testing.T) {
	t.Parallel()

	t.Run("CreateUser", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t)

		before := time.Now().Add(-time.Minute)
		p, err := bundle.store.CreateUser(bundle.ctx, "alice", "hash-a", "Alice A.")
		require.NoError(t, err)
		require.NotEmpty(t, p.ID)
		require.Equal(t, "alice", p.Username)
		require.Equal(t, "Alice A.", p.DisplayName)
		require.Nil(t, p.Phone)
		require.Nil(t, p.SlackUserID)
		require.False(t, p.SMSNotify)
		require.True(t, p.CreatedAt.After(before), "created_at %v", p.CreatedAt)

		got, err := bundle.store.Profile(bundle.ctx, p.ID)
		require.NoError(t, err)
		require.Equal(t, p.User, got.User)
	})

	t.Run("UsernameClash", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t)
		bundle.user(t, "alice")

		tests := []struct {
			name     string
			username string
			conflict bool
		}{
			{name: "SameCase", username: "alice", conflict: true},
			{name: "Upper", username: "ALICE", conflict: true},
			{name: "Mixed", username: "aLiCe", conflict: true},
			{name: "Different", username: "alice2", conflict: false},
			{name: "Prefix", username: "alic", conflict: false},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				p, err := bundle.store.CreateUser(bundle.ctx, tt.username, "h", "x")
				if !tt.conflict {
					require.NoError(t, err)
					require.Equal(t, tt.username, p.Username)
					return
				}
				requireCode(t, err, chat.CodeConflict)
				require.Contains(t, err.Error(), tt.username)
				require.Empty(t, p.ID)
			})
		}

		var n int
		require.NoError(t, bundle.pool.QueryRow(bundle.ctx, `SELECT count(*) FROM users WHERE lower(username) = 'alice'`).Scan(&n))
		require.Equal(t, 1, n)
	})

	t.Run("Credentials", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t)
		alice := bundle.user(t, "alice")
		bundle.guest(t, "slackguest")

		tests := []struct {
			name     string
			username string
			wantID   string
			wantErr  error
		}{
			{name: "Exact", username: "alice", wantID: alice.ID},
			{name: "OtherCase", username: "ALICE", wantID: alice.ID},
			{name: "Unknown", username: "bob", wantErr: chat.ErrNotFound},
			{name: "Empty", username: "", wantErr: chat.ErrNotFound},
			{name: "GuestWithoutPassword", username: "slackguest", wantErr: chat.ErrNotFound},
			{name: "GuestOtherCase", username: "SlackGuest", wantErr: chat.ErrNotFound},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				p, hash, err := bundle.store.Credentials(bundle.ctx, tt.username)
				if tt.wantErr != nil {
					require.ErrorIs(t, err, tt.wantErr)
					require.Empty(t, hash)
					require.Empty(t, p.ID)
					return
				}
				require.NoError(t, err)
				require.Equal(t, tt.wantID, p.ID)
				require.Equal(t, "alice", p.Username)
				require.Equal(t, "$2a$10$hash-of-alice", hash)
			})
		}
	})

	t.Run("UpdateProfile", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t)
		alice := bundle.user(t, "alice")

		// Steps run in order on the same account; each states the whole
		// profile it expects afterwards.
		steps := []struct {
			name      string
			update    chat.ProfileUpdate
			wantName  string
			wantPhone *string
			wantSMS   bool
			wantSlack *string
		}{
			{
				name:     "NothingChangesNothing",
				update:   chat.ProfileUpdate{},
				wantName: "Display alice",
			},
			{
				name:      "SetAll",
				update:    chat.ProfileUpdate{DisplayName: ptr("Alice"), Phone: ptr("+15551230001"), SMSNotify: ptr(true), SlackUserID: ptr("U0001")},
				wantName:  "Alice",
				wantPhone: ptr("+15551230001"),
				wantSMS:   true,
				wantSlack: ptr("U0001"),
			},
			{
				name:      "NilLeavesFields",
				update:    chat.ProfileUpdate{DisplayName: ptr("Alice 2")},
				wantName:  "Alice 2",
				wantPhone: ptr("+15551230001"),
				wantSMS:   true,
				wantSlack: ptr("U0001"),
			},
			{
				name:      "EmptyClearsPhone",
				update:    chat.ProfileUpdate{Phone: ptr("")},
				wantName:  "Alice 2",
				wantSMS:   true,
				wantSlack: ptr("U0001"),
			},
			{
				name:     "EmptyClearsSlack",
				update:   chat.ProfileUpdate{SlackUserID: ptr(""), SMSNotify: ptr(false)},
				wantName: "Alice 2",
			},
			{
				name:      "SetPhoneAgain",
				update:    chat.ProfileUpdate{Phone: ptr("+15551230002")},
				wantName:  "Alice 2",
				wantPhone: ptr("+15551230002"),
			},
		}
		for _, step := range steps {
			t.Run(step.name, func(t *testing.T) {
				p, err := bundle.store.UpdateProfile(bundle.ctx, alice.ID, step.update)
				require.NoError(t, err)
				got, err := bundle.store.Profile(bundle.ctx, alice.ID)
				require.NoError(t, err)
				require.Equal(t, p, got, "UpdateProfile returns what Profile reads")
				require.Equal(t, step.wantName, got.DisplayName)
				require.Equal(t, step.wantPhone, got.Phone)
				require.False(t, got.PhoneVerified, "no code was entered")
				require.Equal(t, step.wantSMS, got.SMSNotify)
				require.Equal(t, step.wantSlack, got.SlackUserID)
			})
		}
	})

	t.Run("UpdateProfileConflicts", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t)
		alice := bundle.user(t, "alice")
		bob := bundle.user(t, "bob")
		_, err := bundle.store.UpdateProfile(bundle.ctx, bob.ID,
			chat.ProfileUpdate{Phone: ptr("+15559990000"), SlackUserID: ptr("UBOB")})
		require.NoError(t, err)

		tests := []struct {
			name    string
			userID  string
			update  chat.ProfileUpdate
			wantErr chat.Code
		}{
			// Unverified numbers are nobody's: several accounts may hold one.
			{name: "UnverifiedPhoneOfAnother", userID: alice.ID, update: chat.ProfileUpdate{Phone: ptr("+15559990000")}},
			{name: "SlackOfAnother", userID: alice.ID, update: chat.ProfileUpdate{SlackUserID: ptr("UBOB")}, wantErr: chat.CodeConflict},
			{name: "OwnPhoneAgain", userID: bob.ID, update: chat.ProfileUpdate{Phone: ptr("+15559990000")}},
			{name: "UnknownUser", userID: "999999", update: chat.ProfileUpdate{DisplayName: ptr("x")}, wantErr: chat.CodeNotFound},
			{name: "MalformedUser", userID: "abc", update: chat.ProfileUpdate{DisplayName: ptr("x")}, wantErr: chat.CodeNotFound},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				_, err := bundle.store.UpdateProfile(bundle.ctx, tt.userID, tt.update)
				if tt.wantErr == "" {
					require.NoError(t, err)
					return
				}
				requireCode(t, err, tt.wantErr)
			})
		}

		// A failed update changes nothing, not even the fields that were fine.
		_, err = bundle.store.UpdateProfile(bundle.ctx, alice.ID,
			chat.ProfileUpdate{DisplayName: ptr("Changed"), Phone: ptr("+15558880000"), SlackUserID: ptr("UBOB")})
		requireCode(t, err, chat.CodeConflict)
		got, err := bundle.store.Profile(bundle.ctx, alice.ID)
		require.NoError(t, err)
		require.Equal(t, "Display alice", got.DisplayName)
		require.Equal(t, ptr("+15559990000"), got.Phone)
		require.Nil(t, got.SlackUserID)
	})

	t.Run("ProfileNotFound", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t)
		bundle.user(t, "alice")

		tests := []struct {
			name string
			id   string
		}{
			{name: "Unknown", id: "999999"},
			{name: "Malformed", id: "abc"},
			{name: "Empty", id: ""},
			{name: "Zero", id: "0"},
			{name: "Negative", id: "-1"},
			{name: "Overflow", id: "99999999999999999999"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				_, err := bundle.store.Profile(bundle.ctx, tt.id)
				require.ErrorIs(t, err, chat.ErrNotFound)
			})
		}
	})

	t.Run("UserByUsername", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t)
		alice := bundle.user(t, "alice")

		u, err := bundle.store.UserByUsername(bundle.ctx, "ALICE")
		require.NoError(t, err)
		require.Equal(t, alice.User, u)

		_, err = bundle.store.UserByUsername(bundle.ctx, "nobody")
		require.ErrorIs(t, err, chat.ErrNotFound)
	})
}

func hashOf(token string) []byte {
	h := sha256.Sum256([]byte(token))
	return h[:]
}

func TestSessions(t *testing.T) {
	t.Parallel()

	later := func() time.Time { return time.Now().Add(time.Hour) }

	t.Run("RotateChain", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t)
		alice := bundle.user(t, "alice")

		session, err := bundle.store.NewSession(bundle.ctx, alice.ID, hashOf("r1"), later())
		require.NoError(t, err)
		require.NotEmpty(t, session)
		for _, step := range [][2]string{{"r1", "r2"}, {"r2", "r3"}} {
			uid, sid, err := bundle.store.RotateRefreshToken(bundle.ctx, hashOf(step[0]), hashOf(step[1]), later())
			require.NoError(t, err)
			require.Equal(t, alice.ID, uid)
			require.Equal(t, session, sid, "a refreshed pair stays in its session")
		}

		// All three share one family; r1 and r2 are spent, r3 is live.
		var families, spent int
		require.NoError(t, bundle.pool.QueryRow(bundle.ctx, `
			SELECT count(DISTINCT family_id), count(used_at) FROM refresh_tokens WHERE token_hash = ANY($1)`,
			[][]byte{hashOf("r1"), hashOf("r2"), hashOf("r3")}).Scan(&families, &spent))
		require.Equal(t, 1, families)
		require.Equal(t, 2, spent)
	})

	t.Run("ReuseEndsSession", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t)
		alice := bundle.user(t, "alice")

		session, err := bundle.store.NewSession(bundle.ctx, alice.ID, hashOf("old"), later())
		require.NoError(t, err)
		// Another login of the same user: a session of its own.
		other, err := bundle.store.NewSession(bundle.ctx, alice.ID, hashOf("other"), later())
		require.NoError(t, err)
		require.NotEqual(t, session, other)

		_, _, err = bundle.store.RotateRefreshToken(bundle.ctx, hashOf("old"), hashOf("new"), later())
		require.NoError(t, err)

		// The spent token comes back (stolen): reuse. The caller learns
		// whose session ended, to end it everywhere else too.
		uid, sid, err := bundle.store.RotateRefreshToken(bundle.ctx, hashOf("old"), hashOf("attacker"), later())
		require.ErrorIs(t, err, chat.ErrRefreshReused)
		requireCode(t, err, chat.CodeUnauthorized)
		require.Equal(t, alice.ID, uid)
		require.Equal(t, session, sid)

		// The legitimate new token of that session is refused as well.
		_, _, err = bundle.store.RotateRefreshToken(bundle.ctx, hashOf("new"), hashOf("newer"), later())
		require.ErrorIs(t, err, chat.ErrRefreshInvalid)

		// Nothing was stored for the refused rotations.
		var n int
		require.NoError(t, bundle.pool.QueryRow(bundle.ctx,
			`SELECT count(*) FROM refresh_tokens WHERE token_hash = ANY($1)`,
			[][]byte{hashOf("attacker"), hashOf("newer")}).Scan(&n))
		require.Zero(t, n)

		// The other login is untouched.
		uid, sid, err = bundle.store.RotateRefreshToken(bundle.ctx, hashOf("other"), hashOf("other2"), later())
		require.NoError(t, err)
		require.Equal(t, alice.ID, uid)
		require.Equal(t, other, sid)
	})

	t.Run("Invalid", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t)
		alice := bundle.user(t, "alice")
		_, err := bundle.store.NewSession(bundle.ctx, alice.ID, hashOf("expired"), time.Now().Add(-time.Second))
		require.NoError(t, err)
		ended, err := bundle.store.NewSession(bundle.ctx, alice.ID, hashOf("ended"), later())
		require.NoError(t, err)
		require.NoError(t, bundle.store.EndSession(bundle.ctx, ended))

		tests := []struct {
			name string
			old  []byte
		}{
			{name: "Expired", old: hashOf("expired")},
			{name: "Unknown", old: hashOf("never-issued")},
			{name: "Ended", old: hashOf("ended")},
			{name: "EmptyHash", old: []byte{}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				next := hashOf("next-" + tt.name)
				uid, sid, err := bundle.store.RotateRefreshToken(bundle.ctx, tt.old, next, later())
				require.ErrorIs(t, err, chat.ErrRefreshInvalid)
				require.Empty(t, uid)
				require.Empty(t, sid)
				var n int
				require.NoError(t, bundle.pool.QueryRow(bundle.ctx,
					`SELECT count(*) FROM refresh_tokens WHERE token_hash = $1`, next).Scan(&n))
				require.Zero(t, n, "a refused rotation stores no new token")
			})
		}
		_, err = bundle.store.NewSession(bundle.ctx, "abc", hashOf("c"), later())
		require.ErrorIs(t, err, chat.ErrNotFound)
	})

	t.Run("EndSessions", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t)
		alice := bundle.user(t, "alice")
		bob := bundle.user(t, "bob")
		a1, err := bundle.store.NewSession(bundle.ctx, alice.ID, hashOf("a1"), later())
		require.NoError(t, err)
		a2, err := bundle.store.NewSession(bundle.ctx, alice.ID, hashOf("a2"), later())
		require.NoError(t, err)
		a3, err := bundle.store.NewSession(bundle.ctx, alice.ID, hashOf("a3"), later())
		require.NoError(t, err)
		_, _, err = bundle.store.RotateRefreshToken(bundle.ctx, hashOf("a2"), hashOf("a2b"), later())
		require.NoError(t, err)
		b1, err := bundle.store.NewSession(bundle.ctx, bob.ID, hashOf("b1"), later())
		require.NoError(t, err)

		// SessionOf names the session of a token only to its owner.
		sid, err := bundle.store.SessionOf(bundle.ctx, alice.ID, hashOf("a2"))
		require.NoError(t, err)
		require.Equal(t, a2, sid)
		_, err = bundle.store.SessionOf(bundle.ctx, bob.ID, hashOf("a2"))
		require.ErrorIs(t, err, chat.ErrNotFound)

		// Every session but the one kept, each named once.
		ended, err := bundle.store.EndSessions(bundle.ctx, alice.ID, a1)
		require.NoError(t, err)
		require.ElementsMatch(t, []string{a2, a3}, ended)
		for _, tok := range []string{"a2b", "a3"} {
			_, _, err := bundle.store.RotateRefreshToken(bundle.ctx, hashOf(tok), hashOf(tok+"x"), later())
			require.ErrorIs(t, err, chat.ErrRefreshInvalid, tok)
		}
		_, sid, err = bundle.store.RotateRefreshToken(bundle.ctx, hashOf("a1"), hashOf("a1b"), later())
		require.NoError(t, err)
		require.Equal(t, a1, sid)

		// Then all of them; bob's is untouched, and ending again ends nothing.
		ended, err = bundle.store.EndSessions(bundle.ctx, alice.ID, "")
		require.NoError(t, err)
		require.Equal(t, []string{a1}, ended)
		ended, err = bundle.store.EndSessions(bundle.ctx, alice.ID, "")
		require.NoError(t, err)
		require.Empty(t, ended)
		_, sid, err = bundle.store.RotateRefreshToken(bundle.ctx, hashOf("b1"), hashOf("b2"), later())
		require.NoError(t, err)
		require.Equal(t, b1, sid)
	})

	t.Run("Password", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t)
		alice := bundle.user(t, "alice")
		hash, err := bundle.store.PasswordHash(bundle.ctx, alice.ID)
		require.NoError(t, err)
		require.NotEmpty(t, hash)
		require.NoError(t, bundle.store.SetPasswordHash(bundle.ctx, alice.ID, "new-hash"))
		hash, err = bundle.store.PasswordHash(bundle.ctx, alice.ID)
		require.NoError(t, err)
		require.Equal(t, "new-hash", hash)
		require.ErrorIs(t, bundle.store.SetPasswordHash(bundle.ctx, "999999999", "h"), chat.ErrNotFound)
		_, err = bundle.store.PasswordHash(bundle.ctx, "013")
		require.ErrorIs(t, err, chat.ErrNotFound)
	})
}
