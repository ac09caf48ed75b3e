package twilio_test

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-chat/switchboard/chat"
	"github.com/switchboard-chat/switchboard/integrations"
	"github.com/switchboard-chat/switchboard/integrations/jobs"
	"github.com/switchboard-chat/switchboard/integrations/jobs/jobstest"
	"github.com/switchboard-chat/switchboard/integrations/twilio"
	"github.com/switchboard-chat/switchboard/integrations/twilio/twiliotest"
	"github.com/switchboard-chat/switchboard/storage"
)

// The SMS and code jobs against the real storage and the fake Twilio API:
// what each sends, and what a run that dies, fails or meets another run of
// the same work leaves behind.

const testFrom = "+15005550006"

// scheduled is one EnqueueAt call.
type scheduled struct {
	Key string
	At  time.Time
}

// scheduler records what the SMS job schedules.
type scheduler struct {
	mu   sync.Mutex
	jobs []scheduled
}

func (s *scheduler) EnqueueAt(_ context.Context, _, key string, _ []byte, at time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.jobs = append(s.jobs, scheduled{key, at})
	return nil
}

func (s *scheduler) scheduled() []scheduled {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]scheduled(nil), s.jobs...)
}

type jobBundle struct {
	*testBundle
	fake    *twiliotest.API
	sender  *twilio.Sender
	breaker *jobs.Breaker
	sched   *scheduler
}

func setupJobs(t *testing.T) *jobBundle {
	t.Helper()
	b := &jobBundle{testBundle: setup(t), sched: &scheduler{}}
	b.fake = twiliotest.New(t, "AC0123456789abcdef0123456789abcdef", "0123456789abcdef0123456789abcdef")
	var err error
	b.sender, err = twilio.NewSender(twilio.SenderConfig{
		AccountSID: b.fake.AccountSID, AuthToken: b.fake.AuthToken, From: testFrom, APIURL: b.fake.URL(),
	})
	require.NoError(t, err)
	b.breaker = jobstest.Breaker(t, "twilio")
	return b
}

// smsJob is bob, who wants SMS at his verified number, in alice's room.
type smsJob struct {
	alice, bob chat.User
	room       chat.Room
	payload    []byte
}

const bobPhone = "+14155550101"

func (b *jobBundle) smsJob(t *testing.T) smsJob {
	t.Helper()
	j := smsJob{alice: b.user(t, "alice", ""), bob: b.user(t, "bob", bobPhone)}
	j.room = b.Room(t, j.alice, "general", chat.Public)
	_, _, err := b.Store.Join(b.Ctx, j.bob.ID, j.room.ID)
	require.NoError(t, err)
	j.payload, _ = json.Marshal(integrations.SMSPayload{UserID: j.bob.ID, RoomID: j.room.ID})
	return j
}

// post stores a message of alice as pending for bob, as the fanout does.
func (b *jobBundle) post(t *testing.T, j smsJob, body string) {
	t.Helper()
	m := b.Say(t, j.room, j.alice, body)
	require.NoError(t, b.Store.AddPendingSMS(b.Ctx, m.ID, []string{j.bob.ID}))
}

func (b *jobBundle) handleSMS(store twilio.SMSStore) jobs.Handler {
	return twilio.HandleSMS(store, b.sender, b.breaker, b.sched, time.Minute)
}

func (b *jobBundle) pending(t *testing.T) int {
	t.Helper()
	var n int
	require.NoError(t, b.Pool.QueryRow(b.Ctx, `SELECT count(*) FROM sms_pending`).Scan(&n))
	return n
}

// smsStore lets a test break the storage the SMS job sees.
type smsStore struct {
	*storage.Store
	claimed func() // called after a claim
	markErr error  // MarkSMSSent fails with it, writing nothing
}

func (s smsStore) ClaimPendingSMS(ctx context.Context, userID, roomID string, lease time.Duration) (chat.SMSClaim, error) {
	c, err := s.Store.ClaimPendingSMS(ctx, userID, roomID, lease)
	if s.claimed != nil {
		s.claimed()
	}
	return c, err
}

func (s smsStore) MarkSMSSent(ctx context.Context, c chat.SMSClaim) error {
	if s.markErr != nil {
		return s.markErr
	}
	return s.Store.MarkSMSSent(ctx, c)
}

func TestHandleSMSFoldsAndThrottles(t *testing.T) {
	t.Parallel()
	b := setupJobs(t)
	j := b.smsJob(t)
	handle := b.handleSMS(b.Store)
	b.post(t, j, "one")
	b.post(t, j, "two")

	b.fake.Fail(twiliotest.Failure{Status: 500, Code: 20500})
	err := handle(b.Ctx, j.payload)
	require.Error(t, err)
	require.False(t, jobs.IsPermanent(err))
	require.Empty(t, b.fake.Accepted())
	require.NoError(t, handle(b.Ctx, j.payload), "the retry")
	require.Equal(t, []twiliotest.SMS{{To: bobPhone, From: testFrom, Body: "[#general] alice: one\nalice: two"}}, b.fake.Accepted(),
		"a failed send changes nothing: the retry sends both, in one SMS")
	require.NoError(t, handle(b.Ctx, j.payload))
	require.Len(t, b.fake.Accepted(), 1, "running the job again sends nothing")

	b.post(t, j, "three")
	require.NoError(t, handle(b.Ctx, j.payload))
	require.Len(t, b.fake.Accepted(), 1, "within the minute nothing goes out")
	next := b.sched.scheduled()
	require.Len(t, next, 1)
	require.WithinDuration(t, time.Now().Add(time.Minute), next[0].At, 10*time.Second, "the job comes back when the minute ends")
	require.Contains(t, next[0].Key, "sms:"+j.bob.ID+":"+j.room.ID+":at:")
	require.Equal(t, 1, b.pending(t))

	_, err = b.Pool.Exec(b.Ctx, `UPDATE sms_throttle SET last_sent_at = now() - interval '61 seconds'`)
	require.NoError(t, err)
	require.NoError(t, handle(b.Ctx, j.payload))
	require.Len(t, b.fake.Accepted(), 2)
	require.Equal(t, "[#general] alice: three", b.fake.Accepted()[1].Body)
	require.Zero(t, b.pending(t))
}

// TestHandleSMSMentionSkipsTheFold: a message that mentions the member
// goes out within the minute of the last SMS, yet mentions are still
// throttled (MentionThrottle).
func TestHandleSMSMentionSkipsTheFold(t *testing.T) {
	t.Parallel()
	b := setupJobs(t)
	j := b.smsJob(t)
	handle := b.handleSMS(b.Store)
	b.post(t, j, "one")
	require.NoError(t, handle(b.Ctx, j.payload))
	require.Len(t, b.fake.Accepted(), 1)

	b.post(t, j, "two")
	require.NoError(t, handle(b.Ctx, j.payload))
	require.Len(t, b.fake.Accepted(), 1, "folded: within the minute")
	b.post(t, j, "@bob look")
	require.NoError(t, handle(b.Ctx, j.payload))
	require.Len(t, b.fake.Accepted(), 1, "a mention waits out MentionThrottle too")
	next := b.sched.scheduled()
	require.WithinDuration(t, time.Now().Add(twilio.MentionThrottle), next[len(next)-1].At, 5*time.Second)

	_, err := b.Pool.Exec(b.Ctx, `UPDATE sms_throttle SET last_sent_at = now() - interval '11 seconds'`)
	require.NoError(t, err)
	require.NoError(t, handle(b.Ctx, j.payload))
	require.Len(t, b.fake.Accepted(), 2, "the mention went out before the minute ended")
	require.Equal(t, "[#general] alice: two\nalice: @bob look", b.fake.Accepted()[1].Body)
}

// TestHandleSMSSkipsDeletedMessages: a message deleted while it waited
// for its SMS is left out; when all were, nothing is sent and nothing
// stays pending.
func TestHandleSMSSkipsDeletedMessages(t *testing.T) {
	t.Parallel()
	b := setupJobs(t)
	j := b.smsJob(t)
	handle := b.handleSMS(b.Store)
	del := func(body string) {
		m := b.Say(t, j.room, j.alice, body)
		require.NoError(t, b.Store.AddPendingSMS(b.Ctx, m.ID, []string{j.bob.ID}))
		_, _, err := b.Store.UpdateMessage(b.Ctx, chat.Update{Action: chat.ActionDelete, MessageID: m.ID, UserID: j.alice.ID})
		require.NoError(t, err)
	}
	del("oops")
	require.NoError(t, handle(b.Ctx, j.payload))
	require.Zero(t, b.fake.Requests())
	require.Zero(t, b.pending(t))

	b.post(t, j, "kept")
	del("gone")
	require.NoError(t, handle(b.Ctx, j.payload))
	require.Equal(t, []twiliotest.SMS{{To: bobPhone, From: testFrom, Body: "[#general] alice: kept"}}, b.fake.Accepted())
	require.Zero(t, b.pending(t))
}

func TestHandleSMSDropsWhatAnUnverifiedNumberWaitedFor(t *testing.T) {
	t.Parallel()
	b := setupJobs(t)
	j := b.smsJob(t)
	b.post(t, j, "one")
	_, err := b.Store.UpdateProfile(b.Ctx, j.bob.ID, chat.ProfileUpdate{Phone: ptr("")})
	require.NoError(t, err)
	require.NoError(t, b.handleSMS(b.Store)(b.Ctx, j.payload))
	require.Zero(t, b.fake.Requests())
	require.Zero(t, b.pending(t), "dropped")
}

func TestHandleSMSConcurrentRunsSendOnce(t *testing.T) {
	t.Parallel()
	b := setupJobs(t)
	j := b.smsJob(t)
	b.post(t, j, "one")
	handle := b.handleSMS(b.Store)
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
	require.Equal(t, 1, b.fake.Requests(), "one run called Twilio; the others were deferred or found nothing")
	require.Len(t, b.fake.Accepted(), 1)
	require.NoError(t, handle(b.Ctx, j.payload))
	require.Equal(t, 1, b.fake.Requests())
}

// TestHandleSMSNothingLockedDuringTheCall: while one run waits for Twilio,
// another run of the pair is deferred at once (no lock to wait on), and the
// fanout still adds messages; when the call fails, the retry sends
// everything once.
func TestHandleSMSNothingLockedDuringTheCall(t *testing.T) {
	t.Parallel()
	b := setupJobs(t)
	j := b.smsJob(t)
	b.post(t, j, "one")
	handle := b.handleSMS(b.Store)
	release := b.fake.Hold()
	defer release()
	first := make(chan error, 1)
	go func() { first <- handle(b.Ctx, j.payload) }()
	b.fake.WaitRequests(t, 1)

	quick, cancel := context.WithTimeout(b.Ctx, 2*time.Second)
	defer cancel()
	jobstest.RequireHeld(t, handle(quick, j.payload))
	b.post(t, j, "two")
	require.Equal(t, 1, b.fake.Requests())

	release() // Twilio answers 503: nothing was sent
	err := <-first
	require.Error(t, err)
	require.False(t, jobs.IsPermanent(err))
	require.NoError(t, handle(b.Ctx, j.payload), "the retry")
	require.Equal(t, []twiliotest.SMS{{To: bobPhone, From: testFrom, Body: "[#general] alice: one\nalice: two"}}, b.fake.Accepted())
}

// TestHandleSMSCrashWindows: what a run that stops between its steps leaves
// to the next run (README, "Exactly once, honestly").
func TestHandleSMSCrashWindows(t *testing.T) {
	t.Parallel()

	t.Run("DiedAfterClaim", func(t *testing.T) {
		t.Parallel()
		b := setupJobs(t)
		j := b.smsJob(t)
		b.post(t, j, "one")
		_, err := b.Store.ClaimPendingSMS(b.Ctx, j.bob.ID, j.room.ID, time.Minute) // and died
		require.NoError(t, err)
		handle := b.handleSMS(b.Store)
		jobstest.RequireHeld(t, handle(b.Ctx, j.payload))
		require.Zero(t, b.fake.Requests(), "the claim keeps the next run away while it may be alive")

		b.LapseClaims(t)
		require.NoError(t, handle(b.Ctx, j.payload))
		require.NoError(t, handle(b.Ctx, j.payload))
		require.Len(t, b.fake.Accepted(), 1, "sent once, by the run after the lease")
	})

	t.Run("DiedAfterTwilioAccepted", func(t *testing.T) {
		t.Parallel()
		b := setupJobs(t)
		j := b.smsJob(t)
		b.post(t, j, "one")
		died := errors.New("the process died before MarkSMSSent")
		require.ErrorIs(t, b.handleSMS(smsStore{Store: b.Store, markErr: died})(b.Ctx, j.payload), died)
		require.Len(t, b.fake.Accepted(), 1)

		handle := b.handleSMS(b.Store)
		jobstest.RequireHeld(t, handle(b.Ctx, j.payload))
		require.Len(t, b.fake.Accepted(), 1)
		b.LapseClaims(t)
		require.NoError(t, handle(b.Ctx, j.payload))
		require.Len(t, b.fake.Accepted(), 2,
			"at least once: Twilio takes no idempotency key, so the run after the lease sends the SMS again")
		require.Equal(t, b.fake.Accepted()[0], b.fake.Accepted()[1])
		require.NoError(t, handle(b.Ctx, j.payload))
		require.Len(t, b.fake.Accepted(), 2)
	})

	t.Run("JobTimedOutDuringTheCall", func(t *testing.T) {
		t.Parallel()
		b := setupJobs(t)
		j := b.smsJob(t)
		b.post(t, j, "one")
		ctx, timeout := context.WithCancel(b.Ctx)
		require.NoError(t, b.handleSMS(smsStore{Store: b.Store, claimed: timeout})(ctx, j.payload),
			"the send is recorded after the job's context ended")
		require.Len(t, b.fake.Accepted(), 1)
		require.Zero(t, b.pending(t))
		require.NoError(t, b.handleSMS(b.Store)(b.Ctx, j.payload))
		require.Len(t, b.fake.Accepted(), 1, "so the retry sends nothing")
	})
}
