package storage_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-chat/switchboard/chat"
	"github.com/switchboard-chat/switchboard/storage"
	"github.com/switchboard-chat/switchboard/storage/storagetest"
)

// codeRequest is one code's job that WithPhoneCodes pushed.
type codeRequest struct{ UserID, CodeID string }

// codeJob is the job of a code as the tests make it.
func codeJob(userID, codeID string) (chat.Job, error) {
	return chat.Job{Key: "sms-code:" + codeID, Type: "sms:code", Payload: []byte(userID + " " + codeID),
		RunAt: time.Now(), CheckAt: time.Now().Add(time.Minute)}, nil
}

// phoneBundle is a testBundle whose store asks for codes, recording each
// job pushed instead of queueing it.
type phoneBundle struct {
	*testBundle
	mu       sync.Mutex
	requests []codeRequest
}

func setupPhone(t *testing.T) *phoneBundle {
	t.Helper()
	b := &phoneBundle{testBundle: setup(t)}
	b.store = storage.New(b.pool, storage.WithOutbox(storage.Outbox{SMS: true}),
		storage.WithPhoneCodes(codeJob, func(_ context.Context, j chat.Job) error {
			userID, codeID, _ := strings.Cut(string(j.Payload), " ")
			b.mu.Lock()
			defer b.mu.Unlock()
			b.requests = append(b.requests, codeRequest{userID, codeID})
			return nil
		}))
	return b
}

func (b *phoneBundle) codeRequests() []codeRequest {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]codeRequest(nil), b.requests...)
}

// setPhone sets the account's number and returns the code it asked for.
func (b *phoneBundle) setPhone(t *testing.T, userID, phone string) codeRequest {
	t.Helper()
	before := len(b.codeRequests())
	p, err := b.store.UpdateProfile(b.ctx, userID, chat.ProfileUpdate{Phone: &phone})
	require.NoError(t, err)
	require.Equal(t, &phone, p.Phone)
	require.False(t, p.PhoneVerified)
	reqs := b.codeRequests()
	require.Len(t, reqs, before+1, "one code asked for")
	return reqs[before]
}

// made is what a code job was to send.
type made struct {
	UserID, Phone string
	Taken         bool
}

// makeCode does what the job of req does, minus Twilio: it claims the code
// with hash and marks it sent, and returns what was to be sent (nil: the
// code was not claimed, nothing to send).
func (b *phoneBundle) makeCode(t *testing.T, req codeRequest, hash string) *made {
	t.Helper()
	c, err := b.store.ClaimPhoneCode(b.ctx, req.UserID, req.CodeID, []byte(hash), time.Minute)
	require.NoError(t, err)
	require.Zero(t, c.HeldUntil, "no other run holds it")
	if !c.Claimed {
		return nil
	}
	require.NoError(t, b.store.MarkPhoneCodeSent(b.ctx, c))
	return &made{UserID: c.UserID, Phone: c.Phone, Taken: c.Taken}
}

func (b *phoneBundle) verify(userID, hash string) (chat.Profile, error) {
	return b.store.VerifyPhone(b.ctx, userID, []byte(hash))
}

func TestPhoneVerification(t *testing.T) {
	t.Parallel()

	t.Run("CodeMadeSentAndEntered", func(t *testing.T) {
		t.Parallel()
		b := setupPhone(t)
		alice := b.user(t, "alice")
		req := b.setPhone(t, alice.ID, "+15550100")
		require.Equal(t, alice.ID, req.UserID)
		var journaled string
		require.NoError(t, b.pool.QueryRow(b.ctx, `SELECT key FROM job_journal`).Scan(&journaled))
		require.Equal(t, "sms-code:"+req.CodeID, journaled, "the job is recorded with the change")

		sent := b.makeCode(t, req, "hash-1")
		require.Equal(t, &made{UserID: alice.ID, Phone: "+15550100"}, sent)
		require.Nil(t, b.makeCode(t, req, "hash-2"), "a second run of the job makes no second code")
		var stored []byte
		var expires time.Time
		require.NoError(t, b.pool.QueryRow(b.ctx, `SELECT code_hash, expires_at FROM phone_codes WHERE id = $1::bigint`, req.CodeID).
			Scan(&stored, &expires))
		require.Equal(t, []byte("hash-1"), stored, "only what send returned is stored")
		require.WithinDuration(t, time.Now().Add(chat.PhoneCodeLifetime), expires, 10*time.Second)

		_, err := b.verify(alice.ID, "hash-2")
		require.ErrorIs(t, err, storage.ErrWrongCode)
		p, err := b.verify(alice.ID, "hash-1")
		require.NoError(t, err)
		require.True(t, p.PhoneVerified)
		require.Equal(t, ptr("+15550100"), p.Phone)
		got, err := b.store.Profile(b.ctx, alice.ID)
		require.NoError(t, err)
		require.Equal(t, p, got)
		u, err := b.store.UserByPhone(b.ctx, "+15550100")
		require.NoError(t, err)
		require.Equal(t, alice.User, u)

		_, err = b.verify(alice.ID, "hash-1")
		require.ErrorIs(t, err, storage.ErrNoCode, "nothing left to verify")
	})

	t.Run("FiveWrongCodesVoidTheCode", func(t *testing.T) {
		t.Parallel()
		b := setupPhone(t)
		alice := b.user(t, "alice")
		b.makeCode(t, b.setPhone(t, alice.ID, "+15550100"), "right")
		for i := range chat.PhoneCodeTries {
			_, err := b.verify(alice.ID, "wrong")
			require.ErrorIs(t, err, storage.ErrWrongCode, "try %d", i+1)
		}
		_, err := b.verify(alice.ID, "right")
		require.ErrorIs(t, err, storage.ErrCodeVoid, "even the right code is refused")
		p, err := b.store.Profile(b.ctx, alice.ID)
		require.NoError(t, err)
		require.False(t, p.PhoneVerified)

		// Setting the number again sends a new code, which works.
		b.makeCode(t, b.setPhone(t, alice.ID, "+15550100"), "new")
		p, err = b.verify(alice.ID, "new")
		require.NoError(t, err)
		require.True(t, p.PhoneVerified)
	})

	t.Run("CodesExpire", func(t *testing.T) {
		t.Parallel()
		b := setupPhone(t)
		alice := b.user(t, "alice")
		req := b.setPhone(t, alice.ID, "+15550100")
		_, err := b.verify(alice.ID, "right")
		require.ErrorIs(t, err, storage.ErrWrongCode, "before the job made it, no code matches")
		b.makeCode(t, req, "right")
		_, err = b.pool.Exec(b.ctx, `UPDATE phone_codes SET expires_at = now() - interval '1 second' WHERE id = $1::bigint`, req.CodeID)
		require.NoError(t, err)
		_, err = b.verify(alice.ID, "right")
		require.ErrorIs(t, err, storage.ErrCodeExpired)
	})

	t.Run("NewerCodeReplacesOlder", func(t *testing.T) {
		t.Parallel()
		b := setupPhone(t)
		alice := b.user(t, "alice")
		first := b.setPhone(t, alice.ID, "+15550100")
		b.makeCode(t, first, "first")
		second := b.setPhone(t, alice.ID, "+15550200")
		require.Nil(t, b.makeCode(t, first, "again"), "the job of a replaced code sends nothing")
		_, err := b.verify(alice.ID, "first")
		require.ErrorIs(t, err, storage.ErrWrongCode, "the code of the old number does not verify the new one")
		require.Equal(t, "+15550200", b.makeCode(t, second, "second").Phone)
		p, err := b.verify(alice.ID, "second")
		require.NoError(t, err)
		require.Equal(t, ptr("+15550200"), p.Phone)
	})

	t.Run("AtMostThreeCodesPerHour", func(t *testing.T) {
		t.Parallel()
		b := setupPhone(t)
		alice := b.user(t, "alice")
		for _, phone := range []string{"+15550101", "+15550102", "+15550103"} {
			b.setPhone(t, alice.ID, phone)
		}
		before, err := b.store.Profile(b.ctx, alice.ID)
		require.NoError(t, err)

		_, err = b.store.UpdateProfile(b.ctx, alice.ID, chat.ProfileUpdate{DisplayName: ptr("Changed"), Phone: ptr("+15550104")})
		var ce *chat.Error
		require.ErrorAs(t, err, &ce)
		require.Equal(t, chat.CodeRateLimited, ce.Code)
		require.InDelta(t, time.Hour.Seconds(), ce.RetryAfter.Seconds(), 10, "the oldest of the three leaves the window in an hour")
		after, err := b.store.Profile(b.ctx, alice.ID)
		require.NoError(t, err)
		require.Equal(t, before, after, "the refused update changed nothing")
		require.Len(t, b.codeRequests(), 3, "and asked for no code")

		// Other fields may still change.
		_, err = b.store.UpdateProfile(b.ctx, alice.ID, chat.ProfileUpdate{DisplayName: ptr("Changed")})
		require.NoError(t, err)

		// An hour after the first code, one more may go.
		_, err = b.pool.Exec(b.ctx, `UPDATE phone_codes SET created_at = created_at - interval '1 hour'
			WHERE id = (SELECT min(id) FROM phone_codes WHERE user_id = $1::bigint)`, alice.ID)
		require.NoError(t, err)
		b.setPhone(t, alice.ID, "+15550104")
	})

	t.Run("OwnVerifiedNumberAgainChangesNothing", func(t *testing.T) {
		t.Parallel()
		b := setupPhone(t)
		alice := b.user(t, "alice")
		b.makeCode(t, b.setPhone(t, alice.ID, "+15550100"), "right")
		_, err := b.verify(alice.ID, "right")
		require.NoError(t, err)

		p, err := b.store.UpdateProfile(b.ctx, alice.ID, chat.ProfileUpdate{Phone: ptr("+15550100"), SMSNotify: ptr(true)})
		require.NoError(t, err)
		require.True(t, p.PhoneVerified)
		require.True(t, p.SMSNotify)
		require.Len(t, b.codeRequests(), 1, "no code for the number already verified")

		// Another number is unverified until its code is entered.
		b.setPhone(t, alice.ID, "+15550200")
		_, err = b.store.UserByPhone(b.ctx, "+15550100")
		require.ErrorIs(t, err, chat.ErrNotFound)

		// Clearing removes the number and any verification.
		p, err = b.store.UpdateProfile(b.ctx, alice.ID, chat.ProfileUpdate{Phone: ptr("")})
		require.NoError(t, err)
		require.Nil(t, p.Phone)
		require.False(t, p.PhoneVerified)
		_, err = b.verify(alice.ID, "right")
		require.ErrorIs(t, err, storage.ErrNoCode)
	})

	t.Run("NumberVerifiedByAnotherAccount", func(t *testing.T) {
		t.Parallel()
		b := setupPhone(t)
		alice, mallory := b.user(t, "alice"), b.user(t, "mallory")
		b.makeCode(t, b.setPhone(t, alice.ID, "+15550100"), "alices")
		_, err := b.verify(alice.ID, "alices")
		require.NoError(t, err)

		// Mallory may set alice's number: she is told nothing.
		req := b.setPhone(t, mallory.ID, "+15550100")
		// Its code is made but not to be sent.
		sent := b.makeCode(t, req, "mallorys")
		require.Equal(t, &made{UserID: mallory.ID, Phone: "+15550100", Taken: true}, sent)
		// No code verifies it, not even the one made; the answer is a
		// wrong code's, and it counts as one.
		for range chat.PhoneCodeTries {
			_, err = b.verify(mallory.ID, "mallorys")
			require.ErrorIs(t, err, storage.ErrWrongCode)
		}
		_, err = b.verify(mallory.ID, "mallorys")
		require.ErrorIs(t, err, storage.ErrCodeVoid)

		u, err := b.store.UserByPhone(b.ctx, "+15550100")
		require.NoError(t, err)
		require.Equal(t, alice.User, u, "the number stays alice's")
	})

	t.Run("JobWaitsForTheRequestToCommit", func(t *testing.T) {
		t.Parallel()
		b := setupPhone(t)
		alice := b.user(t, "alice")
		// The job starts while UpdateProfile's transaction is still open
		// (as a fast worker would): it must wait and then see the code.
		var wg sync.WaitGroup
		var claim chat.PhoneCode
		var jobErr error
		store := storage.New(b.pool, storage.WithPhoneCodes(codeJob, func(_ context.Context, j chat.Job) error {
			userID, codeID, _ := strings.Cut(string(j.Payload), " ")
			wg.Go(func() {
				claim, jobErr = b.store.ClaimPhoneCode(b.ctx, userID, codeID, []byte("right"), time.Minute)
			})
			time.Sleep(200 * time.Millisecond) // the job reaches the account's row lock meanwhile
			return nil
		}))
		_, err := store.UpdateProfile(b.ctx, alice.ID, chat.ProfileUpdate{Phone: ptr("+15550100")})
		require.NoError(t, err)
		wg.Wait()
		require.NoError(t, jobErr)
		require.True(t, claim.Claimed)
		require.Equal(t, "+15550100", claim.Phone)
		require.NoError(t, b.store.MarkPhoneCodeSent(b.ctx, claim))
		_, err = b.verify(alice.ID, "right")
		require.NoError(t, err)
	})

	t.Run("FailedEnqueueChangesNothing", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		alice := b.user(t, "alice")
		store := storage.New(b.pool, storage.WithPhoneCodes(codeJob, func(context.Context, chat.Job) error {
			return chat.ErrUnavailable // Redis is down
		}))
		_, err := store.UpdateProfile(b.ctx, alice.ID, chat.ProfileUpdate{DisplayName: ptr("Changed"), Phone: ptr("+15550100")})
		require.ErrorIs(t, err, chat.ErrUnavailable)
		p, err := b.store.Profile(b.ctx, alice.ID)
		require.NoError(t, err)
		require.Equal(t, alice, p)
		var codes int
		require.NoError(t, b.pool.QueryRow(b.ctx, `SELECT count(*) FROM phone_codes`).Scan(&codes))
		require.Zero(t, codes, "no code asked for, none counted")
		var journaled int
		require.NoError(t, b.pool.QueryRow(b.ctx, `SELECT count(*) FROM job_journal`).Scan(&journaled))
		require.Zero(t, journaled, "no job recorded")
	})

	t.Run("WithoutCodesTheNumberStaysUnverified", func(t *testing.T) {
		t.Parallel()
		b := setup(t) // SMS off: no WithPhoneCodes
		alice := b.user(t, "alice")
		p, err := b.store.UpdateProfile(b.ctx, alice.ID, chat.ProfileUpdate{Phone: ptr("+15550100")})
		require.NoError(t, err)
		require.Equal(t, ptr("+15550100"), p.Phone)
		require.False(t, p.PhoneVerified)
		_, err = b.store.VerifyPhone(b.ctx, alice.ID, []byte("anything"))
		require.ErrorIs(t, err, storage.ErrNoCode)
		var codes int
		require.NoError(t, b.pool.QueryRow(b.ctx, `SELECT count(*) FROM phone_codes`).Scan(&codes))
		require.Zero(t, codes)
	})
}

// TestUnverifiedNumberGetsNoSMS: a member whose number is not verified is
// not among those to notify, writes no outbox row, and an SMS pending from
// before the number changed is claimed without a number, and dropped.
func TestUnverifiedNumberGetsNoSMS(t *testing.T) {
	t.Parallel()
	b := setupPhone(t)
	alice, bob, carol := b.user(t, "alice"), b.user(t, "bob"), b.user(t, "carol")
	r := b.room(t, alice.ID, "general", chat.Public)
	b.join(t, bob.ID, r.ID)
	b.join(t, carol.ID, r.ID)
	_, err := b.store.UpdateProfile(b.ctx, bob.ID, chat.ProfileUpdate{Phone: ptr("+15550200"), SMSNotify: ptr(true)})
	require.NoError(t, err)

	m := b.send(t, r.ID, alice.ID, "bob's number is unverified")
	require.Empty(t, b.outboxMessages(t), "no SMS to send, so no outbox row")
	n, err := b.store.Notice(b.ctx, m.ID)
	require.NoError(t, err)
	require.Empty(t, n.SMSMembers)

	storagetest.VerifyPhone(t, b.pool, carol.ID, "+15550300")
	_, err = b.store.UpdateProfile(b.ctx, carol.ID, chat.ProfileUpdate{SMSNotify: ptr(true)})
	require.NoError(t, err)
	m = b.send(t, r.ID, alice.ID, "carol's is verified")
	require.Equal(t, []string{m.ID}, b.outboxMessages(t))
	n, err = b.store.Notice(b.ctx, m.ID)
	require.NoError(t, err)
	require.Equal(t, []chat.User{carol.User}, n.SMSMembers)

	// Carol changes her number before the SMS goes: the new one is
	// unverified, and gets nothing.
	require.NoError(t, b.store.AddPendingSMS(b.ctx, m.ID, []string{carol.ID}))
	b.setPhone(t, carol.ID, "+15550301")
	c, err := b.store.ClaimPendingSMS(b.ctx, carol.ID, r.ID, time.Minute)
	require.NoError(t, err)
	require.NotEmpty(t, c.Token)
	require.Empty(t, c.Phone, "no verified number to send to")
	require.NoError(t, b.store.DropPendingSMS(b.ctx, c))
	var pending int
	require.NoError(t, b.pool.QueryRow(b.ctx, `SELECT count(*) FROM sms_pending`).Scan(&pending))
	require.Zero(t, pending)
}

// TestPhoneCodeClaims: the claim of a code is taken in one short
// transaction and holds no lock while the code is sent; other runs are kept
// away until it is settled or lapses.
func TestPhoneCodeClaims(t *testing.T) {
	t.Parallel()

	t.Run("HeldThenSettled", func(t *testing.T) {
		t.Parallel()
		b := setupPhone(t)
		alice := b.user(t, "alice")
		req := b.setPhone(t, alice.ID, "+15550100")
		c, err := b.store.ClaimPhoneCode(b.ctx, req.UserID, req.CodeID, []byte("first"), time.Minute)
		require.NoError(t, err)
		require.True(t, c.Claimed)
		require.Equal(t, req.CodeID, c.CodeID)
		require.Equal(t, []byte("first"), c.Hash)
		require.Zero(t, c.HeldUntil)

		other, err := b.store.ClaimPhoneCode(b.ctx, req.UserID, req.CodeID, []byte("second"), time.Minute)
		require.NoError(t, err)
		require.False(t, other.Claimed, "a second run while the first holds the code")
		require.WithinDuration(t, c.Now.Add(time.Minute), other.HeldUntil, time.Second)

		// While the code is on its way nothing is locked: the account can
		// change and enter codes at once, and a claimed code already works
		// (its SMS may have arrived before the mark).
		quick, cancel := context.WithTimeout(b.ctx, 2*time.Second)
		defer cancel()
		_, err = b.store.UpdateProfile(quick, alice.ID, chat.ProfileUpdate{DisplayName: ptr("Alice")})
		require.NoError(t, err)
		_, err = b.store.VerifyPhone(quick, alice.ID, []byte("second"))
		require.ErrorIs(t, err, storage.ErrWrongCode)

		require.NoError(t, b.store.MarkPhoneCodeSent(b.ctx, c))
		after, err := b.store.ClaimPhoneCode(b.ctx, req.UserID, req.CodeID, []byte("third"), time.Minute)
		require.NoError(t, err)
		require.False(t, after.Claimed, "settled: nothing to do")
		require.Zero(t, after.HeldUntil)
		_, err = b.verify(alice.ID, "first")
		require.NoError(t, err)
	})

	t.Run("ReleasedCodeIsForgotten", func(t *testing.T) {
		t.Parallel()
		b := setupPhone(t)
		alice := b.user(t, "alice")
		req := b.setPhone(t, alice.ID, "+15550100")
		c, err := b.store.ClaimPhoneCode(b.ctx, req.UserID, req.CodeID, []byte("unsent"), time.Minute)
		require.NoError(t, err)
		require.NoError(t, b.store.ReleasePhoneCode(b.ctx, c))
		_, err = b.verify(alice.ID, "unsent")
		require.ErrorIs(t, err, storage.ErrWrongCode, "a code that did not go out does not verify")
		require.NotNil(t, b.makeCode(t, req, "retried"), "the retry claims the code again")
		_, err = b.verify(alice.ID, "retried")
		require.NoError(t, err)
	})

	t.Run("LapsedClaimIsTakenOver", func(t *testing.T) {
		t.Parallel()
		b := setupPhone(t)
		alice := b.user(t, "alice")
		req := b.setPhone(t, alice.ID, "+15550100")
		dead, err := b.store.ClaimPhoneCode(b.ctx, req.UserID, req.CodeID, []byte("dead run"), time.Minute)
		require.NoError(t, err)
		_, err = b.pool.Exec(b.ctx, `UPDATE phone_codes SET claimed_until = now() - interval '1 second'`)
		require.NoError(t, err)

		require.NotNil(t, b.makeCode(t, req, "next run"), "the run after the lease makes its own code")
		// The dead run's settling, had it come late, changes nothing.
		require.NoError(t, b.store.MarkPhoneCodeSent(b.ctx, dead))
		require.NoError(t, b.store.ReleasePhoneCode(b.ctx, dead))
		_, err = b.verify(alice.ID, "dead run")
		require.ErrorIs(t, err, storage.ErrWrongCode, "the code of the later run replaced it")
		_, err = b.verify(alice.ID, "next run")
		require.NoError(t, err)
	})

	t.Run("ConcurrentClaimsOneWins", func(t *testing.T) {
		t.Parallel()
		b := setupPhone(t)
		alice := b.user(t, "alice")
		req := b.setPhone(t, alice.ID, "+15550100")
		var wg sync.WaitGroup
		claims, errs := make([]chat.PhoneCode, 5), make([]error, 5)
		for i := range claims {
			wg.Go(func() {
				claims[i], errs[i] = b.store.ClaimPhoneCode(b.ctx, req.UserID, req.CodeID, []byte{byte(i)}, time.Minute)
			})
		}
		wg.Wait()
		won := 0
		for i, c := range claims {
			require.NoError(t, errs[i])
			if c.Claimed {
				won++
			} else {
				require.NotZero(t, c.HeldUntil)
			}
		}
		require.Equal(t, 1, won)
	})
}
