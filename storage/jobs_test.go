package storage_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

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

	n, err := b.store.RelayOutbox(b.ctx, 10, func([]storage.OutboxEntry) error { return errors.New("redis down") })
	require.Error(t, err)
	require.Zero(t, n)
	require.Equal(t, want, b.outboxMessages(t), "a failed enqueue keeps every row")

	var got []string
	n, err = b.store.RelayOutbox(b.ctx, 2, func(es []storage.OutboxEntry) error {
		for _, e := range es {
			got = append(got, e.MessageID)
		}
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
		_, err := b.store.RelayOutbox(b.ctx, 10, func(es []storage.OutboxEntry) error {
			close(holding)
			<-release
			return nil
		})
		done <- err
	}()
	<-holding
	second := b.send(t, r.ID, alice.ID, "two")
	var got []string
	_, err := b.store.RelayOutbox(b.ctx, 10, func(es []storage.OutboxEntry) error {
		for _, e := range es {
			got = append(got, e.MessageID)
		}
		return nil
	})
	require.NoError(t, err)
	close(release)
	require.NoError(t, <-done)
	require.Equal(t, []string{second.ID}, got, "the row held by the first relay (message %s) is skipped", first.ID)
	require.Empty(t, b.outboxMessages(t))
}

func TestSendPendingSMSFoldsAndThrottles(t *testing.T) {
	t.Parallel()
	b := withOutbox(t)
	alice, bob := b.user(t, "alice"), b.user(t, "bob")
	r := b.room(t, alice.ID, "general", chat.Public)
	b.join(t, bob.ID, r.ID)
	b.wantSMS(t, bob.ID, "+15550005")
	m1, m2 := b.send(t, r.ID, alice.ID, "one"), b.send(t, r.ID, alice.ID, "two")
	require.NoError(t, b.store.AddPendingSMS(b.ctx, m1.ID, []string{bob.ID}))
	require.NoError(t, b.store.AddPendingSMS(b.ctx, m2.ID, []string{bob.ID}))
	require.NoError(t, b.store.AddPendingSMS(b.ctx, m2.ID, []string{bob.ID}), "a repeat is ignored")

	var sent []storage.PendingSMS
	record := func(s storage.PendingSMS) error { sent = append(sent, s); return nil }
	fail := func(storage.PendingSMS) error { return errors.New("twilio down") }

	_, err := b.store.SendPendingSMS(b.ctx, bob.ID, r.ID, time.Minute, fail)
	require.Error(t, err)
	next, err := b.store.SendPendingSMS(b.ctx, bob.ID, r.ID, time.Minute, record)
	require.NoError(t, err)
	require.True(t, next.IsZero())
	require.Len(t, sent, 1, "a failed send changes nothing: the retry sends both")
	require.Equal(t, "+15550005", sent[0].Phone)
	require.Equal(t, "general", sent[0].RoomName)
	require.Equal(t, []int64{m1.Seq, m2.Seq}, seqsOf(chat.EncodeAll(sent[0].Messages)))

	next, err = b.store.SendPendingSMS(b.ctx, bob.ID, r.ID, time.Minute, record)
	require.NoError(t, err)
	require.True(t, next.IsZero(), "nothing pending: nothing to schedule")
	require.Len(t, sent, 1, "running the job again sends nothing")

	m3 := b.send(t, r.ID, alice.ID, "three")
	require.NoError(t, b.store.AddPendingSMS(b.ctx, m3.ID, []string{bob.ID}))
	next, err = b.store.SendPendingSMS(b.ctx, bob.ID, r.ID, time.Minute, record)
	require.NoError(t, err)
	require.Len(t, sent, 1, "within the minute nothing goes out")
	require.WithinDuration(t, time.Now().Add(time.Minute), next, 10*time.Second)

	_, err = b.pool.Exec(b.ctx, `UPDATE sms_throttle SET last_sent_at = now() - interval '61 seconds'`)
	require.NoError(t, err)
	_, err = b.store.SendPendingSMS(b.ctx, bob.ID, r.ID, time.Minute, record)
	require.NoError(t, err)
	require.Len(t, sent, 2)
	require.Equal(t, []int64{m3.Seq}, seqsOf(chat.EncodeAll(sent[1].Messages)))
}

func TestSendPendingSMSConcurrentRunsSendOnce(t *testing.T) {
	t.Parallel()
	b := withOutbox(t)
	alice, bob := b.user(t, "alice"), b.user(t, "bob")
	r := b.room(t, alice.ID, "general", chat.Public)
	b.join(t, bob.ID, r.ID)
	b.wantSMS(t, bob.ID, "+15550006")
	m := b.send(t, r.ID, alice.ID, "one")
	require.NoError(t, b.store.AddPendingSMS(b.ctx, m.ID, []string{bob.ID}))

	var sends atomic.Int32
	var wg sync.WaitGroup
	for range 5 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := b.store.SendPendingSMS(b.ctx, bob.ID, r.ID, time.Minute, func(storage.PendingSMS) error {
				sends.Add(1)
				time.Sleep(50 * time.Millisecond)
				return nil
			})
			require.NoError(t, err)
		}()
	}
	wg.Wait()
	require.EqualValues(t, 1, sends.Load())
}

func TestRunOnce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var runs atomic.Int32
	do := func(context.Context) error { runs.Add(1); time.Sleep(20 * time.Millisecond); return nil }

	ran, err := b.store.RunOnce(b.ctx, "k1", func(context.Context) error { return errors.New("slack down") })
	require.Error(t, err)
	require.False(t, ran)

	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := b.store.RunOnce(b.ctx, "k1", do)
			require.NoError(t, err)
		}()
	}
	wg.Wait()
	require.EqualValues(t, 1, runs.Load(), "a failed run releases the key; then exactly one of the concurrent runs does the work")
	ran, err = b.store.RunOnce(b.ctx, "k1", do)
	require.NoError(t, err)
	require.False(t, ran)
	ran, err = b.store.RunOnce(b.ctx, "k2", do)
	require.NoError(t, err)
	require.True(t, ran)
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
