package storage_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/switchboard-chat/switchboard/chat"
	"github.com/switchboard-chat/switchboard/storage"
	"github.com/switchboard-chat/switchboard/storage/storagetest"
)

// withOutbox is setup with the outbox on for both integrations.
func withOutbox(t *testing.T) *testBundle {
	b := setup(t)
	b.store = storage.New(b.pool, storage.WithOutbox(storage.Outbox{SMS: true, Slack: true}))
	return b
}

func (b *testBundle) outboxMessages(t *testing.T) []string {
	t.Helper()
	rows, err := b.pool.Query(b.ctx, `SELECT message_id::text FROM outbox ORDER BY id`)
	require.NoError(t, err)
	var ids []string
	for rows.Next() {
		var id string
		require.NoError(t, rows.Scan(&id))
		ids = append(ids, id)
	}
	require.NoError(t, rows.Err())
	return ids
}

// wantSMS gives the user the verified number phone and turns SMS
// notifications on.
func (b *testBundle) wantSMS(t testing.TB, userID, phone string) {
	t.Helper()
	storagetest.VerifyPhone(t, b.pool, userID, phone)
	on := true
	_, err := b.store.UpdateProfile(b.ctx, userID, chat.ProfileUpdate{SMSNotify: &on})
	require.NoError(t, err)
}

func (b *testBundle) join(t testing.TB, userID, roomID string) {
	t.Helper()
	_, _, err := b.store.Join(b.ctx, userID, roomID)
	require.NoError(t, err)
}

func TestOutboxOnlyForMessagesWithOutsideWork(t *testing.T) {
	t.Parallel()
	b := withOutbox(t)
	alice, bob := b.user(t, "alice"), b.user(t, "bob")
	quiet := b.room(t, alice.ID, "quiet", chat.Public)
	b.join(t, bob.ID, quiet.ID)

	b.send(t, quiet.ID, alice.ID, "nobody wants an SMS")
	require.Empty(t, b.outboxMessages(t))

	b.wantSMS(t, alice.ID, "+15550001")
	b.send(t, quiet.ID, alice.ID, "only the sender wants SMS")
	require.Empty(t, b.outboxMessages(t), "no SMS about one's own message")
	toAlice := b.send(t, quiet.ID, bob.ID, "alice wants SMS")
	require.Equal(t, []string{toAlice.ID}, b.outboxMessages(t))

	bridged := b.room(t, bob.ID, "bridged", chat.Public)
	_, err := b.store.BridgeSlack(b.ctx, "bridged", "C123")
	require.NoError(t, err)
	fromWeb := b.send(t, bridged.ID, bob.ID, "to slack")
	b.save(t, chat.NewMessage{RoomID: bridged.ID, SenderID: bob.ID, Body: "from slack", Source: chat.SourceSlack, ExternalID: "Ev1"})
	require.Equal(t, []string{toAlice.ID, fromWeb.ID}, b.outboxMessages(t), "a message from Slack is not posted back")

	// A refused or repeated send writes no outbox row either.
	carol := b.user(t, "carol")
	_, _, err = b.store.SaveMessage(b.ctx, chat.NewMessage{RoomID: bridged.ID, SenderID: carol.ID, Body: "not a member", Source: chat.SourceWeb})
	requireCode(t, err, chat.CodeForbidden)
	again := chat.NewMessage{RoomID: bridged.ID, SenderID: bob.ID, Body: "once", Source: chat.SourceWeb, ClientID: "c1"}
	first := b.save(t, again)
	_, created, err := b.store.SaveMessage(b.ctx, again)
	require.NoError(t, err)
	require.False(t, created)
	require.Equal(t, []string{toAlice.ID, fromWeb.ID, first.ID}, b.outboxMessages(t))
}

func TestOutboxOffWritesNothing(t *testing.T) {
	t.Parallel()
	b := setup(t)
	alice, bob := b.user(t, "alice"), b.user(t, "bob")
	r := b.room(t, alice.ID, "general", chat.Public)
	b.join(t, bob.ID, r.ID)
	b.wantSMS(t, bob.ID, "+15550002")
	_, err := b.store.BridgeSlack(b.ctx, r.ID, "C1")
	require.NoError(t, err)
	b.send(t, r.ID, alice.ID, "hello")
	require.Empty(t, b.outboxMessages(t))
}

func TestRelayOutboxKeepsRowsUntilEnqueued(t *testing.T) {
	t.Parallel()
	b := withOutbox(t)
	alice, bob := b.user(t, "alice"), b.user(t, "bob")
	r := b.room(t, alice.ID, "general", chat.Public)
	b.join(t, bob.ID, r.ID)
	b.wantSMS(t, bob.ID, "+15550003")
	var want []string
	for range 3 {
		want = append(want, b.send(t, r.ID, alice.ID, "hi").ID)
	}

	n, err := b.store.RelayOutbox(b.ctx, 10, func([]chat.OutboxItem) error { return errors.New("redis down") })
	require.Error(t, err)
	require.Zero(t, n)
	require.Equal(t, want, b.outboxMessages(t), "a failed enqueue keeps every row")

	var got []string
	n, err = b.store.RelayOutbox(b.ctx, 2, func(items []chat.OutboxItem) error {
		got = append(got, messageIDs(items)...)
		return nil
	})
	require.NoError(t, err)
	require.Equal(t, 2, n)
	require.Equal(t, want[:2], got)
	require.Equal(t, want[2:], b.outboxMessages(t))
}

func TestRelayOutboxSkipsRowsAnotherRelayHolds(t *testing.T) {
	t.Parallel()
	b := withOutbox(t)
	alice, bob := b.user(t, "alice"), b.user(t, "bob")
	r := b.room(t, alice.ID, "general", chat.Public)
	b.join(t, bob.ID, r.ID)
	b.wantSMS(t, bob.ID, "+15550004")
	first := b.send(t, r.ID, alice.ID, "one")

	holding, release := make(chan struct{}), make(chan struct{})
	done := make(chan error)
	go func() {
		_, err := b.store.RelayOutbox(b.ctx, 10, func([]chat.OutboxItem) error {
			close(holding)
			<-release
			return nil
		})
		done <- err
	}()
	<-holding
	second := b.send(t, r.ID, alice.ID, "two")
	var got []string
	_, err := b.store.RelayOutbox(b.ctx, 10, func(items []chat.OutboxItem) error {
		got = append(got, messageIDs(items)...)
		return nil
	})
	require.NoError(t, err)
	close(release)
	require.NoError(t, <-done)
	require.Equal(t, []string{second.ID}, got, "the row held by the first relay (message %s) is skipped", first.ID)
	require.Empty(t, b.outboxMessages(t))
}

// pendingSMS sets up alice posting in a room whose member bob wants SMS,
// and returns bob, the room and a function that stores a message of alice
// as pending for bob.
func (b *testBundle) pendingSMS(t *testing.T, phone string) (bob chat.Profile, room chat.Room, post func(body string) chat.Message) {
	t.Helper()
	alice := b.user(t, "alice")
	bob = b.user(t, "bob")
	room = b.room(t, alice.ID, "general", chat.Public)
	b.join(t, bob.ID, room.ID)
	b.wantSMS(t, bob.ID, phone)
	return bob, room, func(body string) chat.Message {
		m := b.send(t, room.ID, alice.ID, body)
		require.NoError(t, b.store.AddPendingSMS(b.ctx, m.ID, []string{bob.ID}))
		return m
	}
}

func (b *testBundle) stillPending(t *testing.T) []string {
	t.Helper()
	rows, err := b.pool.Query(b.ctx, `SELECT message_id::text FROM sms_pending ORDER BY message_id`)
	require.NoError(t, err)
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	return ids
}

func TestClaimPendingSMS(t *testing.T) {
	t.Parallel()

	t.Run("ClaimReleaseMark", func(t *testing.T) {
		t.Parallel()
		b := withOutbox(t)
		bob, r, post := b.pendingSMS(t, "+15550005")
		c, err := b.store.ClaimPendingSMS(b.ctx, bob.ID, r.ID, time.Minute)
		require.NoError(t, err)
		require.Empty(t, c.Token, "nothing pending: nothing claimed")
		require.Zero(t, c.HeldUntil)

		m1, m2 := post("one"), post("two")
		require.NoError(t, b.store.AddPendingSMS(b.ctx, m2.ID, []string{bob.ID}), "a repeat is ignored")
		c, err = b.store.ClaimPendingSMS(b.ctx, bob.ID, r.ID, time.Minute)
		require.NoError(t, err)
		require.NotEmpty(t, c.Token)
		require.Equal(t, "+15550005", c.Phone)
		require.Equal(t, "general", c.RoomName)
		require.Equal(t, []int64{m1.Seq, m2.Seq}, seqsOf(chat.EncodeAll(c.Messages)))
		require.Zero(t, c.LastSentAt, "no SMS went to bob yet")
		require.WithinDuration(t, time.Now(), c.Now, 10*time.Second)

		held, err := b.store.ClaimPendingSMS(b.ctx, bob.ID, r.ID, time.Minute)
		require.NoError(t, err)
		require.Empty(t, held.Token, "a second run while the first holds the pair")
		require.Empty(t, held.Messages)
		require.WithinDuration(t, c.Now.Add(time.Minute), held.HeldUntil, time.Second)

		// A failed send releases the claim: the next run gets the same.
		require.NoError(t, b.store.ReleaseSMSClaim(b.ctx, c))
		again, err := b.store.ClaimPendingSMS(b.ctx, bob.ID, r.ID, time.Minute)
		require.NoError(t, err)
		require.NotEqual(t, c.Token, again.Token)
		require.Equal(t, c.Messages, again.Messages)

		// A message that comes while the SMS is on its way stays pending.
		m3 := post("three")
		require.NoError(t, b.store.MarkSMSSent(b.ctx, again))
		require.Equal(t, []string{m3.ID}, b.stillPending(t))
		next, err := b.store.ClaimPendingSMS(b.ctx, bob.ID, r.ID, time.Minute)
		require.NoError(t, err)
		require.NotEmpty(t, next.Token, "the mark settled the claim")
		require.Equal(t, []int64{m3.Seq}, seqsOf(chat.EncodeAll(next.Messages)))
		require.WithinDuration(t, next.Now, next.LastSentAt, time.Second, "the mark recorded the SMS")
	})

	t.Run("LapsedClaimIsTakenOver", func(t *testing.T) {
		t.Parallel()
		b := withOutbox(t)
		bob, r, post := b.pendingSMS(t, "+15550006")
		m := post("one")
		dead, err := b.store.ClaimPendingSMS(b.ctx, bob.ID, r.ID, time.Minute)
		require.NoError(t, err)
		_, err = b.pool.Exec(b.ctx, `UPDATE sms_throttle SET claimed_until = now() - interval '1 second'`)
		require.NoError(t, err)

		next, err := b.store.ClaimPendingSMS(b.ctx, bob.ID, r.ID, time.Minute)
		require.NoError(t, err)
		require.NotEmpty(t, next.Token, "the claim of a run that died lapses")
		require.NotEqual(t, dead.Token, next.Token)
		require.Equal(t, []int64{m.Seq}, seqsOf(chat.EncodeAll(next.Messages)), "and its messages go with the next run")

		// The first run was only slow: its release leaves the new claim
		// alone, its mark records what it sent and leaves the claim too.
		require.NoError(t, b.store.ReleaseSMSClaim(b.ctx, dead))
		held, err := b.store.ClaimPendingSMS(b.ctx, bob.ID, r.ID, time.Minute)
		require.NoError(t, err)
		require.NotZero(t, held.HeldUntil)
		require.NoError(t, b.store.MarkSMSSent(b.ctx, dead))
		require.Empty(t, b.stillPending(t))
		held, err = b.store.ClaimPendingSMS(b.ctx, bob.ID, r.ID, time.Minute)
		require.NoError(t, err)
		require.NotZero(t, held.HeldUntil, "still the second run's")
		require.NoError(t, b.store.ReleaseSMSClaim(b.ctx, next))
	})

	t.Run("DropSettlesWithoutSMS", func(t *testing.T) {
		t.Parallel()
		b := withOutbox(t)
		bob, r, post := b.pendingSMS(t, "+15550007")
		post("one")
		_, err := b.store.UpdateProfile(b.ctx, bob.ID, chat.ProfileUpdate{Phone: ptr("")})
		require.NoError(t, err)
		c, err := b.store.ClaimPendingSMS(b.ctx, bob.ID, r.ID, time.Minute)
		require.NoError(t, err)
		require.NotEmpty(t, c.Token)
		require.Empty(t, c.Phone, "the number is gone")
		require.NoError(t, b.store.DropPendingSMS(b.ctx, c))
		require.Empty(t, b.stillPending(t))
		var last *time.Time
		var claim *string
		require.NoError(t, b.pool.QueryRow(b.ctx, `SELECT last_sent_at, claim::text FROM sms_throttle`).Scan(&last, &claim))
		require.Nil(t, last, "no SMS went out")
		require.Nil(t, claim)
	})

	t.Run("ConcurrentClaimsOneWins", func(t *testing.T) {
		t.Parallel()
		b := withOutbox(t)
		bob, r, post := b.pendingSMS(t, "+15550008")
		post("one")
		var wg sync.WaitGroup
		claims, errs := make([]chat.SMSClaim, 5), make([]error, 5)
		for i := range claims {
			wg.Go(func() { claims[i], errs[i] = b.store.ClaimPendingSMS(b.ctx, bob.ID, r.ID, time.Minute) })
		}
		wg.Wait()
		won := 0
		for i, c := range claims {
			require.NoError(t, errs[i])
			if c.Token != "" {
				won++
			} else {
				require.NotZero(t, c.HeldUntil)
			}
		}
		require.Equal(t, 1, won)
	})

	t.Run("SettlingNeedsAClaim", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		c := chat.SMSClaim{UserID: "1", RoomID: "1"}
		require.Error(t, b.store.MarkSMSSent(b.ctx, c))
		require.Error(t, b.store.DropPendingSMS(b.ctx, c))
		require.Error(t, b.store.ReleaseSMSClaim(b.ctx, c))
	})
}

func TestClaimRun(t *testing.T) {
	t.Parallel()

	t.Run("ClaimReleaseFinish", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		c, err := b.store.ClaimRun(b.ctx, "k1", time.Minute)
		require.NoError(t, err)
		require.NotEmpty(t, c.Token)
		require.Equal(t, "k1", c.Key)

		held, err := b.store.ClaimRun(b.ctx, "k1", time.Minute)
		require.NoError(t, err)
		require.Empty(t, held.Token, "a second run while the first holds the key")
		require.WithinDuration(t, c.Now.Add(time.Minute), held.HeldUntil, time.Second)

		// While the work is under way nothing is locked: other keys are
		// claimed at once.
		quick, cancel := context.WithTimeout(b.ctx, 2*time.Second)
		defer cancel()
		other, err := b.store.ClaimRun(quick, "k2", time.Minute)
		require.NoError(t, err)
		require.NotEmpty(t, other.Token)

		require.NoError(t, b.store.ReleaseRun(b.ctx, c), "slack down")
		again, err := b.store.ClaimRun(b.ctx, "k1", time.Minute)
		require.NoError(t, err)
		require.NotEmpty(t, again.Token, "a released key is claimed again")
		require.NoError(t, b.store.FinishRun(b.ctx, again))
		done, err := b.store.ClaimRun(b.ctx, "k1", time.Minute)
		require.NoError(t, err)
		require.Equal(t, chat.RunClaim{Key: "k1", Now: done.Now}, done, "done: nothing to claim")
		require.Error(t, b.store.ReleaseRun(b.ctx, done), "nothing to release")
	})

	t.Run("LapsedClaimIsTakenOver", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		dead, err := b.store.ClaimRun(b.ctx, "k", time.Minute)
		require.NoError(t, err)
		_, err = b.pool.Exec(b.ctx, `UPDATE job_runs SET claimed_until = now() - interval '1 second'`)
		require.NoError(t, err)
		next, err := b.store.ClaimRun(b.ctx, "k", time.Minute)
		require.NoError(t, err)
		require.NotEmpty(t, next.Token)
		require.NotEqual(t, dead.Token, next.Token)

		// The first run was only slow: its release leaves the new claim
		// alone; its finish records the work, which no run claims again.
		require.NoError(t, b.store.ReleaseRun(b.ctx, dead))
		held, err := b.store.ClaimRun(b.ctx, "k", time.Minute)
		require.NoError(t, err)
		require.NotZero(t, held.HeldUntil)
		require.NoError(t, b.store.FinishRun(b.ctx, dead))
		require.NoError(t, b.store.ReleaseRun(b.ctx, next), "the second run failed: the work stays done")
		done, err := b.store.ClaimRun(b.ctx, "k", time.Minute)
		require.NoError(t, err)
		require.Empty(t, done.Token)
		require.Zero(t, done.HeldUntil)
	})

	t.Run("FinishWithoutARowRecordsIt", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		// The claim lapsed, another run took it, failed and released it:
		// the first run's finish still records the work.
		require.NoError(t, b.store.FinishRun(b.ctx, chat.RunClaim{Key: "k", Token: "00000000-0000-0000-0000-000000000000"}))
		done, err := b.store.ClaimRun(b.ctx, "k", time.Minute)
		require.NoError(t, err)
		require.Empty(t, done.Token)
	})

	t.Run("ConcurrentClaimsOneWins", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		var wg sync.WaitGroup
		claims, errs := make([]chat.RunClaim, 5), make([]error, 5)
		for i := range claims {
			wg.Go(func() { claims[i], errs[i] = b.store.ClaimRun(b.ctx, "k", time.Minute) })
		}
		wg.Wait()
		won := 0
		for i, c := range claims {
			require.NoError(t, errs[i])
			if c.Token != "" {
				won++
			} else {
				require.NotZero(t, c.HeldUntil)
			}
		}
		require.Equal(t, 1, won)
	})

	t.Run("ForgetRuns", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		for _, k := range []string{"old done", "old claim", "new done", "new claim"} {
			c, err := b.store.ClaimRun(b.ctx, k, time.Minute)
			require.NoError(t, err)
			if strings.HasSuffix(k, "done") {
				require.NoError(t, b.store.FinishRun(b.ctx, c))
			}
		}
		_, err := b.pool.Exec(b.ctx, `
			UPDATE job_runs SET done_at = now() - interval '8 days' WHERE key = 'old done';
			UPDATE job_runs SET claimed_until = now() - interval '8 days' WHERE key = 'old claim'`)
		require.NoError(t, err)
		require.NoError(t, b.store.ForgetRuns(b.ctx, time.Now().Add(-7*24*time.Hour)))
		rows, err := b.pool.Query(b.ctx, `SELECT key FROM job_runs ORDER BY key`)
		require.NoError(t, err)
		keys, err := pgx.CollectRows(rows, pgx.RowTo[string])
		require.NoError(t, err)
		require.Equal(t, []string{"new claim", "new done"}, keys)
	})
}

func TestBridgeSlack(t *testing.T) {
	t.Parallel()
	b := setup(t)
	alice := b.user(t, "alice")
	general := b.room(t, alice.ID, "General", chat.Public)
	other := b.room(t, alice.ID, "other", chat.Public)

	r, err := b.store.BridgeSlack(b.ctx, "general", "C1")
	require.NoError(t, err)
	require.Equal(t, general.ID, r.ID)
	_, err = b.store.BridgeSlack(b.ctx, other.ID, "C1")
	requireCode(t, err, chat.CodeConflict)
	_, err = b.store.BridgeSlack(b.ctx, "nosuch", "C2")
	require.ErrorIs(t, err, chat.ErrNotFound)
	_, err = b.store.BridgeSlack(b.ctx, "999999", "C2")
	require.ErrorIs(t, err, chat.ErrNotFound)

	n, err := b.store.Notice(b.ctx, b.send(t, general.ID, alice.ID, "x").ID)
	require.NoError(t, err)
	require.Equal(t, "C1", n.SlackChannel)
	_, err = b.store.BridgeSlack(b.ctx, general.ID, "")
	require.NoError(t, err)
	n, err = b.store.Notice(b.ctx, n.Message.ID)
	require.NoError(t, err)
	require.Empty(t, n.SlackChannel)
	_, err = b.store.BridgeSlack(b.ctx, other.ID, "C1")
	require.NoError(t, err, "an unbridged channel can be bridged elsewhere")
}

// messageIDs are the messages of outbox items.
func messageIDs(items []chat.OutboxItem) []string {
	out := make([]string, len(items))
	for i, it := range items {
		out[i] = it.MessageID
	}
	return out
}
