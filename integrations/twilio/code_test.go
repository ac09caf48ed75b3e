package twilio_test

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-chat/switchboard/broker/brokertest"
	"github.com/switchboard-chat/switchboard/chat"
	"github.com/switchboard-chat/switchboard/integrations/jobs"
	"github.com/switchboard-chat/switchboard/integrations/jobs/jobstest"
	"github.com/switchboard-chat/switchboard/integrations/twilio"
	"github.com/switchboard-chat/switchboard/integrations/twilio/twiliotest"
	"github.com/switchboard-chat/switchboard/storage"
)

// hashCode stands for auth.Tokens.HashPhoneCode.
func hashCode(userID, code string) []byte {
	h := sha256.Sum256([]byte(userID + ":" + code))
	return h[:]
}

var codeText = regexp.MustCompile(`^Your Switchboard code is ([0-9]{6})$`)

// codeJob is a code alice asked for by setting her number.
type codeJob struct {
	user    chat.User
	phone   string
	payload []byte
}

// askCode sets phone on user's profile, as PATCH /api/v1/me does, and
// returns the code job it asked for.
func (b *jobBundle) askCode(t *testing.T, user chat.User, phone string) codeJob {
	t.Helper()
	rdb, prefix := brokertest.NewClient(t)
	q, err := jobs.New(jobs.Config{Redis: rdb, Prefix: prefix, Kinds: []jobs.Kind{twilio.CodeKind}})
	require.NoError(t, err)
	var pushed []chat.Job
	store := storage.New(b.Pool, storage.WithPhoneCodes(twilio.CodeJob(q), func(_ context.Context, j chat.Job) error {
		pushed = append(pushed, j)
		return nil
	}))
	_, err = store.UpdateProfile(b.Ctx, user.ID, chat.ProfileUpdate{Phone: &phone})
	require.NoError(t, err)
	require.Len(t, pushed, 1, "a code was asked for")
	var p twilio.CodePayload
	require.NoError(t, json.Unmarshal(pushed[0].Payload, &p))
	require.Equal(t, twilio.CodeKind.Type, pushed[0].Type)
	require.Equal(t, "sms-code:"+p.CodeID, pushed[0].Key)
	require.Equal(t, user.ID, p.UserID)
	return codeJob{user: user, phone: phone, payload: pushed[0].Payload}
}

func (b *jobBundle) handleCode(store twilio.CodeStore) jobs.Handler {
	return twilio.HandleCode(store, b.sender, b.breaker, hashCode)
}

// codes returns the codes the fake accepted for phone, oldest first.
func (b *jobBundle) codes(t *testing.T, phone string) []string {
	t.Helper()
	var out []string
	for _, m := range b.fake.Accepted() {
		if m.To == phone {
			sub := codeText.FindStringSubmatch(m.Body)
			require.NotNil(t, sub, m.Body)
			out = append(out, sub[1])
		}
	}
	return out
}

// enter enters code for j's account, as POST /api/v1/me/phone/verify does.
func (b *jobBundle) enter(j codeJob, code string) error {
	_, err := b.Store.VerifyPhone(b.Ctx, j.user.ID, hashCode(j.user.ID, code))
	return err
}

// codeStore lets a test break the storage the code job sees.
type codeStore struct {
	*storage.Store
	markErr error // MarkPhoneCodeSent fails with it, writing nothing
}

func (s codeStore) MarkPhoneCodeSent(ctx context.Context, c chat.PhoneCode) error {
	if s.markErr != nil {
		return s.markErr
	}
	return s.Store.MarkPhoneCodeSent(ctx, c)
}

func TestHandleCode(t *testing.T) {
	t.Parallel()

	t.Run("SentOnce", func(t *testing.T) {
		t.Parallel()
		b := setupJobs(t)
		j := b.askCode(t, b.user(t, "alice", ""), "+14155550111")
		handle := b.handleCode(b.Store)
		require.NoError(t, handle(b.Ctx, j.payload))
		require.NoError(t, handle(b.Ctx, j.payload), "a second run")
		codes := b.codes(t, j.phone)
		require.Len(t, codes, 1)
		require.NoError(t, b.enter(j, codes[0]))
	})

	t.Run("FailedSendIsRetriedWithANewCode", func(t *testing.T) {
		t.Parallel()
		b := setupJobs(t)
		j := b.askCode(t, b.user(t, "alice", ""), "+14155550112")
		handle := b.handleCode(b.Store)
		b.fake.Fail(twiliotest.Failure{Status: 500, Code: 20500})
		err := handle(b.Ctx, j.payload)
		require.Error(t, err)
		require.False(t, jobs.IsPermanent(err))
		require.NoError(t, handle(b.Ctx, j.payload))
		codes := b.codes(t, j.phone)
		require.Len(t, codes, 1)
		require.NoError(t, b.enter(j, codes[0]))
	})

	t.Run("ConcurrentRunsSendOnce", func(t *testing.T) {
		t.Parallel()
		b := setupJobs(t)
		j := b.askCode(t, b.user(t, "alice", ""), "+14155550113")
		handle := b.handleCode(b.Store)
		errs := make([]error, 5)
		var wg sync.WaitGroup
		for i := range errs {
			wg.Go(func() { errs[i] = handle(b.Ctx, j.payload) })
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				jobstest.RequireHeld(t, err)
			}
		}
		require.Equal(t, 1, b.fake.Requests())
	})

	// While the code is on its way nothing is locked: the account's owner
	// can enter codes at once, and another run is deferred at once.
	t.Run("NothingLockedDuringTheCall", func(t *testing.T) {
		t.Parallel()
		b := setupJobs(t)
		j := b.askCode(t, b.user(t, "alice", ""), "+14155550114")
		handle := b.handleCode(b.Store)
		release := b.fake.Hold()
		defer release()
		first := make(chan error, 1)
		go func() { first <- handle(b.Ctx, j.payload) }()
		b.fake.WaitRequests(t, 1)

		quick, cancel := context.WithTimeout(b.Ctx, 2*time.Second)
		defer cancel()
		_, err := b.Store.VerifyPhone(quick, j.user.ID, hashCode(j.user.ID, "000000"))
		require.ErrorIs(t, err, storage.ErrWrongCode)
		jobstest.RequireHeld(t, handle(quick, j.payload))

		release()
		require.Error(t, <-first)
		require.NoError(t, handle(b.Ctx, j.payload), "the retry")
		codes := b.codes(t, j.phone)
		require.Len(t, codes, 1)
		require.NoError(t, b.enter(j, codes[0]))
	})

	t.Run("DiedAfterClaim", func(t *testing.T) {
		t.Parallel()
		b := setupJobs(t)
		j := b.askCode(t, b.user(t, "alice", ""), "+14155550115")
		var p twilio.CodePayload
		require.NoError(t, json.Unmarshal(j.payload, &p))
		_, err := b.Store.ClaimPhoneCode(b.Ctx, p.UserID, p.CodeID, hashCode(p.UserID, "111111"), time.Minute) // and died
		require.NoError(t, err)
		handle := b.handleCode(b.Store)
		jobstest.RequireHeld(t, handle(b.Ctx, j.payload))
		require.Zero(t, b.fake.Requests())

		b.LapseClaims(t)
		require.NoError(t, handle(b.Ctx, j.payload))
		codes := b.codes(t, j.phone)
		require.Len(t, codes, 1, "sent once, by the run after the lease")
		require.NoError(t, b.enter(j, codes[0]))
	})

	t.Run("DiedAfterTwilioAccepted", func(t *testing.T) {
		t.Parallel()
		b := setupJobs(t)
		j := b.askCode(t, b.user(t, "alice", ""), "+14155550116")
		died := errors.New("the process died before MarkPhoneCodeSent")
		require.ErrorIs(t, b.handleCode(codeStore{Store: b.Store, markErr: died})(b.Ctx, j.payload), died)
		handle := b.handleCode(b.Store)
		jobstest.RequireHeld(t, handle(b.Ctx, j.payload))
		b.LapseClaims(t)
		require.NoError(t, handle(b.Ctx, j.payload))
		codes := b.codes(t, j.phone)
		require.Len(t, codes, 2, "at least once: the run after the lease sends a new code")
		require.ErrorIs(t, b.enter(j, codes[0]), storage.ErrWrongCode, "which replaces the first")
		require.NoError(t, b.enter(j, codes[1]))
	})

	t.Run("NumberVerifiedByAnotherAccount", func(t *testing.T) {
		t.Parallel()
		b := setupJobs(t)
		b.user(t, "alice", "+14155550117")
		j := b.askCode(t, b.user(t, "mallory", ""), "+14155550117")
		handle := b.handleCode(b.Store)
		require.NoError(t, handle(b.Ctx, j.payload))
		require.NoError(t, handle(b.Ctx, j.payload))
		require.Zero(t, b.fake.Requests(), "no SMS to a number another account verified")
		var made, settled bool
		require.NoError(t, b.Pool.QueryRow(b.Ctx, `SELECT code_hash IS NOT NULL, claimed_until IS NULL FROM phone_codes WHERE user_id = $1::bigint`,
			j.user.ID).Scan(&made, &settled))
		require.True(t, made && settled, "its code is made all the same")
	})
}
