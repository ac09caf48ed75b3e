package storage_test

import (
	"crypto/sha256"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-chat/switchboard/chat"
	"github.com/switchboard-chat/switchboard/storage"
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

func TestRefreshTokens(t *testing.T) {
	t.Parallel()

	later := func() time.Time { return time.Now().Add(time.Hour) }

	t.Run("RotateChain", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t)
		alice := bundle.user(t, "alice")

		require.NoError(t, bundle.store.SaveRefreshToken(bundle.ctx, alice.ID, hashOf("r1"), "", later()))
		uid, err := bundle.store.RotateRefreshToken(bundle.ctx, hashOf("r1"), hashOf("r2"), later())
		require.NoError(t, err)
		require.Equal(t, alice.ID, uid)
		uid, err = bundle.store.RotateRefreshToken(bundle.ctx, hashOf("r2"), hashOf("r3"), later())
		require.NoError(t, err)
		require.Equal(t, alice.ID, uid)

		// All three share one family; r1 and r2 are spent, r3 is live.
		var families, spent int
		require.NoError(t, bundle.pool.QueryRow(bundle.ctx, `
			SELECT count(DISTINCT family_id), count(used_at) FROM refresh_tokens WHERE token_hash = ANY($1)`,
			[][]byte{hashOf("r1"), hashOf("r2"), hashOf("r3")}).Scan(&families, &spent))
		require.Equal(t, 1, families)
		require.Equal(t, 2, spent)
	})

	t.Run("ReuseRevokesFamily", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t)
		alice := bundle.user(t, "alice")

		require.NoError(t, bundle.store.SaveRefreshToken(bundle.ctx, alice.ID, hashOf("old"), "", later()))
		// Another login of the same user: a family of its own.
		require.NoError(t, bundle.store.SaveRefreshToken(bundle.ctx, alice.ID, hashOf("other"), "", later()))

		_, err := bundle.store.RotateRefreshToken(bundle.ctx, hashOf("old"), hashOf("new"), later())
		require.NoError(t, err)

		// The spent token comes back (stolen): reuse.
		uid, err := bundle.store.RotateRefreshToken(bundle.ctx, hashOf("old"), hashOf("attacker"), later())
		require.ErrorIs(t, err, storage.ErrRefreshReused)
		requireCode(t, err, chat.CodeUnauthorized)
		require.Empty(t, uid)

		// The legitimate new token of that family is refused as well.
		_, err = bundle.store.RotateRefreshToken(bundle.ctx, hashOf("new"), hashOf("newer"), later())
		require.ErrorIs(t, err, storage.ErrRefreshInvalid)

		// Nothing was stored for the refused rotations.
		var n int
		require.NoError(t, bundle.pool.QueryRow(bundle.ctx,
			`SELECT count(*) FROM refresh_tokens WHERE token_hash = ANY($1)`,
			[][]byte{hashOf("attacker"), hashOf("newer")}).Scan(&n))
		require.Zero(t, n)

		// The other login is untouched.
		uid, err = bundle.store.RotateRefreshToken(bundle.ctx, hashOf("other"), hashOf("other2"), later())
		require.NoError(t, err)
		require.Equal(t, alice.ID, uid)
	})

	t.Run("Invalid", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t)
		alice := bundle.user(t, "alice")
		require.NoError(t, bundle.store.SaveRefreshToken(bundle.ctx, alice.ID, hashOf("expired"), "", time.Now().Add(-time.Second)))
		require.NoError(t, bundle.store.SaveRefreshToken(bundle.ctx, alice.ID, hashOf("revoked"), "", later()))
		require.NoError(t, bundle.store.RevokeRefreshToken(bundle.ctx, alice.ID, hashOf("revoked")))

		tests := []struct {
			name string
			old  []byte
		}{
			{name: "Expired", old: hashOf("expired")},
			{name: "Unknown", old: hashOf("never-issued")},
			{name: "Revoked", old: hashOf("revoked")},
			{name: "EmptyHash", old: []byte{}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				next := hashOf("next-" + tt.name)
				uid, err := bundle.store.RotateRefreshToken(bundle.ctx, tt.old, next, later())
				require.ErrorIs(t, err, storage.ErrRefreshInvalid)
				require.Empty(t, uid)
				var n int
				require.NoError(t, bundle.pool.QueryRow(bundle.ctx,
					`SELECT count(*) FROM refresh_tokens WHERE token_hash = $1`, next).Scan(&n))
				require.Zero(t, n, "a refused rotation stores no new token")
			})
		}
	})

	t.Run("SaveInExistingFamily", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t)
		alice := bundle.user(t, "alice")
		require.NoError(t, bundle.store.SaveRefreshToken(bundle.ctx, alice.ID, hashOf("a"), "", later()))
		var family string
		require.NoError(t, bundle.pool.QueryRow(bundle.ctx,
			`SELECT family_id::text FROM refresh_tokens WHERE token_hash = $1`, hashOf("a")).Scan(&family))
		require.NoError(t, bundle.store.SaveRefreshToken(bundle.ctx, alice.ID, hashOf("b"), family, later()))

		require.NoError(t, bundle.store.RevokeRefreshFamily(bundle.ctx, family))
		for _, tok := range []string{"a", "b"} {
			_, err := bundle.store.RotateRefreshToken(bundle.ctx, hashOf(tok), hashOf(tok+"2"), later())
			require.ErrorIs(t, err, storage.ErrRefreshInvalid, tok)
		}
		require.ErrorIs(t, bundle.store.SaveRefreshToken(bundle.ctx, "abc", hashOf("c"), "", later()), chat.ErrNotFound)
	})

	t.Run("Logout", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t)
		alice := bundle.user(t, "alice")
		bob := bundle.user(t, "bob")
		require.NoError(t, bundle.store.SaveRefreshToken(bundle.ctx, alice.ID, hashOf("t1"), "", later()))
		_, err := bundle.store.RotateRefreshToken(bundle.ctx, hashOf("t1"), hashOf("t2"), later())
		require.NoError(t, err)

		// Someone else cannot log alice out with her token.
		require.NoError(t, bundle.store.RevokeRefreshToken(bundle.ctx, bob.ID, hashOf("t2")))
		// An unknown token is not an error.
		require.NoError(t, bundle.store.RevokeRefreshToken(bundle.ctx, alice.ID, hashOf("nope")))
		_, err = bundle.store.RotateRefreshToken(bundle.ctx, hashOf("t2"), hashOf("t3"), later())
		require.NoError(t, err)

		// Logging out with the current token (t3) kills it.
		require.NoError(t, bundle.store.RevokeRefreshToken(bundle.ctx, alice.ID, hashOf("t3")))
		_, err = bundle.store.RotateRefreshToken(bundle.ctx, hashOf("t3"), hashOf("t4"), later())
		require.ErrorIs(t, err, storage.ErrRefreshInvalid)

		// Logging out with a spent token of the family also revokes the family.
		require.NoError(t, bundle.store.SaveRefreshToken(bundle.ctx, alice.ID, hashOf("u1"), "", later()))
		_, err = bundle.store.RotateRefreshToken(bundle.ctx, hashOf("u1"), hashOf("u2"), later())
		require.NoError(t, err)
		require.NoError(t, bundle.store.RevokeRefreshToken(bundle.ctx, alice.ID, hashOf("u1")))
		_, err = bundle.store.RotateRefreshToken(bundle.ctx, hashOf("u2"), hashOf("u3"), later())
		require.ErrorIs(t, err, storage.ErrRefreshInvalid)
	})
}
