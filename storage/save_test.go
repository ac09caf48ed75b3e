package storage_test

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/switchboard-chat/switchboard/chat"
	"github.com/switchboard-chat/switchboard/storage"
)

// TestConcurrentSavesFailAlone: many saves at once share batches; one that
// breaks a constraint (and so aborts its batch's transaction) fails alone,
// one refused by the rules is refused alone, and every other is stored,
// gapless.
func TestConcurrentSavesFailAlone(t *testing.T) {
	t.Parallel()
	b := setup(t)
	alice, mallory := b.user(t, "alice"), b.user(t, "mallory")
	r := b.room(t, alice.ID, "general", chat.Public)
	other := b.room(t, alice.ID, "other", chat.Public)

	const n = 60
	type outcome struct {
		msg     chat.Message
		created bool
		err     error
	}
	out := make([]outcome, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			nm := chat.NewMessage{RoomID: r.ID, SenderID: alice.ID, Body: fmt.Sprint(i), Source: chat.SourceWeb}
			switch i {
			case 17:
				nm.Source = "carrier-pigeon" // breaks the CHECK constraint: the statement raises
			case 33:
				nm.SenderID = mallory.ID // not a member: refused
			case 41, 42:
				nm.RoomID = other.ID
			}
			out[i].msg, out[i].created, out[i].err = b.store.SaveMessage(b.ctx, nm)
		}()
	}
	wg.Wait()

	var seqs []int64
	for i, o := range out {
		switch i {
		case 17:
			require.Error(t, o.err)
		case 33:
			require.ErrorIs(t, o.err, chat.ErrForbidden)
		case 41, 42:
			require.NoError(t, o.err)
			require.Equal(t, other.ID, o.msg.RoomID)
		default:
			require.NoError(t, o.err, "save %d", i)
			require.True(t, o.created)
			require.Equal(t, fmt.Sprint(i), o.msg.Body)
			seqs = append(seqs, o.msg.Seq)
		}
	}
	require.ElementsMatch(t, seqRange(1, n-4), seqs, "gapless, each once")
	require.Equal(t, n-4, b.messageCount(t, r.ID))
	require.EqualValues(t, n-4, b.lastSeq(t, r.ID))
	require.Equal(t, 2, b.messageCount(t, other.ID))
}

// TestArchivedRoomRefusedPerMessage: sends into an archived room share
// batches with sends elsewhere and are refused one by one (SPEC §14), the
// others stored; a repeat of a message stored before the archive answers
// with it, as any idempotent repeat does.
func TestArchivedRoomRefusedPerMessage(t *testing.T) {
	t.Parallel()
	b := setup(t)
	alice := b.user(t, "alice")
	open := b.room(t, alice.ID, "open", chat.Public)
	shut := b.room(t, alice.ID, "shut", chat.Public)
	early := b.save(t, chat.NewMessage{RoomID: shut.ID, SenderID: alice.ID, Body: "before", ClientID: "early", Source: chat.SourceWeb})
	_, err := b.store.Archive(b.ctx, alice.ID, shut.ID)
	require.NoError(t, err)
	shutSeq := b.lastSeq(t, shut.ID)

	const n = 40
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			room := open.ID
			if i%2 == 1 {
				room = shut.ID
			}
			_, _, errs[i] = b.store.SaveMessage(b.ctx, chat.NewMessage{RoomID: room, SenderID: alice.ID, Body: fmt.Sprint(i), Source: chat.SourceWeb})
		})
	}
	wg.Wait()
	for i, err := range errs {
		if i%2 == 1 {
			require.ErrorIs(t, err, storage.ErrArchived, "send %d into the archived room", i)
		} else {
			require.NoError(t, err, "send %d into the open room", i)
		}
	}
	require.Equal(t, int64(n/2), b.lastSeq(t, open.ID))
	require.Equal(t, shutSeq, b.lastSeq(t, shut.ID), "nothing stored in the archived room")

	again, created, err := b.store.SaveMessage(b.ctx, chat.NewMessage{RoomID: shut.ID, SenderID: alice.ID, Body: "before", ClientID: "early", Source: chat.SourceWeb})
	require.NoError(t, err)
	require.False(t, created)
	require.Equal(t, early.ID, again.ID)
}

// TestSaveBatchEveryStatus: one batch holding every outcome a send can have
// answers each in its place, stores only the new messages, gapless, and
// moves the room's counters once.
func TestSaveBatchEveryStatus(t *testing.T) {
	t.Parallel()
	b := setup(t)
	alice, bob, mallory := b.user(t, "alice"), b.user(t, "bob"), b.user(t, "mallory")
	general := b.room(t, alice.ID, "general", chat.Public)
	secret := b.room(t, alice.ID, "secret", chat.Private)
	shut := b.room(t, alice.ID, "shut", chat.Public)
	b.join(t, bob.ID, general.ID)
	parent := b.send(t, general.ID, alice.ID, "parent")
	reply := b.reply(t, general.ID, bob.ID, parent.ID, "a reply")
	stored := b.save(t, chat.NewMessage{RoomID: general.ID, SenderID: bob.ID, Body: "stored", ClientID: "c-stored", Source: chat.SourceWeb})
	sms := b.save(t, chat.NewMessage{RoomID: general.ID, SenderID: bob.ID, Body: "by sms", ExternalID: "SM1", Source: chat.SourceSMS})
	other := b.send(t, shut.ID, alice.ID, "elsewhere")
	_, err := b.store.Archive(b.ctx, alice.ID, shut.ID)
	require.NoError(t, err)
	seq := b.lastSeq(t, general.ID)

	web := func(room, sender, body string) chat.NewMessage {
		return chat.NewMessage{RoomID: room, SenderID: sender, Body: body, Source: chat.SourceWeb}
	}
	withClient := func(nm chat.NewMessage, clientID string) chat.NewMessage { nm.ClientID = clientID; return nm }
	withParent := func(nm chat.NewMessage, parentID string) chat.NewMessage { nm.ParentID = parentID; return nm }
	batch := []struct {
		nm     chat.NewMessage
		status string
	}{
		{web(general.ID, alice.ID, "first"), "created"},
		{withClient(web(general.ID, bob.ID, "once"), "c-new"), "created"},
		{withClient(web(general.ID, bob.ID, "once again"), "c-new"), "repeat"},      // repeats the one above
		{withClient(web(general.ID, bob.ID, "stored again"), "c-stored"), "repeat"}, // repeats a stored one
		{chat.NewMessage{RoomID: general.ID, SenderID: bob.ID, Body: "sms again", ExternalID: "SM1", Source: chat.SourceSMS}, "repeat"},
		{web("999999", alice.ID, "nowhere"), "not_found"},
		{web(secret.ID, bob.ID, "not a member of a private room"), "not_found"},
		{web(general.ID, mallory.ID, "not a member"), "forbidden"},
		{web(shut.ID, alice.ID, "archived"), "archived"},
		{withParent(web(general.ID, alice.ID, "reply to another room"), other.ID), "bad_parent"},
		{withParent(web(general.ID, alice.ID, "reply to nothing"), "999999"), "bad_parent"},
		{withParent(web(general.ID, alice.ID, "reply to a reply"), reply.ID), "nested"},
		{withParent(web(general.ID, bob.ID, "a second reply"), parent.ID), "created"},
		{web(general.ID, alice.ID, "last"), "created"},
		{chat.NewMessage{RoomID: general.ID, SenderID: alice.ID, Body: "sms", ExternalID: "SM2", Source: chat.SourceSMS}, "created"},
		// The same external id into another room repeats the one above.
		{chat.NewMessage{RoomID: secret.ID, SenderID: alice.ID, Body: "sms again", ExternalID: "SM2", Source: chat.SourceSMS}, "repeat"},
	}
	nms := make([]chat.NewMessage, len(batch))
	for i, c := range batch {
		nms[i] = c.nm
	}
	statuses, msgs, err := b.store.SaveBatch(b.ctx, nms)
	require.NoError(t, err)

	var seqs []int64
	for i, c := range batch {
		require.Equal(t, c.status, statuses[i], "message %d (%s)", i, c.nm.Body)
		if c.status == "created" {
			require.Equal(t, c.nm.Body, msgs[i].Body)
			seqs = append(seqs, msgs[i].Seq)
		}
	}
	require.Equal(t, seqRange(seq+1, seq+5), seqs, "the new messages, gapless in batch order")
	require.Equal(t, seq+5, b.lastSeq(t, general.ID))
	require.Equal(t, int64(0), b.lastSeq(t, secret.ID), "nothing stored in the room of the repeat")
	require.Equal(t, msgs[1].ID, msgs[2].ID, "a client_id twice in the batch is stored once")
	require.Equal(t, "once", msgs[2].Body)
	require.Equal(t, msgs[14].ID, msgs[15].ID, "an external id twice in the batch is stored once")
	require.Equal(t, general.ID, msgs[15].RoomID)
	require.Equal(t, stored.ID, msgs[3].ID)
	require.Equal(t, sms.ID, msgs[4].ID)
	p, err := b.message(parent.ID)
	require.NoError(t, err)
	require.Equal(t, 2, p.ReplyCount)
	var readSeq int64
	require.NoError(t, b.pool.QueryRow(b.ctx, `SELECT read_seq FROM room_members WHERE room_id = $1::bigint AND user_id = $2::bigint`,
		general.ID, bob.ID).Scan(&readSeq))
	require.Equal(t, msgs[12].Seq, readSeq, "posting marks the room read up to the sender's last message")
}

// TestSavePlansIgnoreStatistics: a connection plans the save once (a
// generic plan) and keeps that plan. Planned while the statistics said
// messages was empty, it must still find every row it needs by key once
// the table has grown: no step of a save reads the whole messages table,
// all of a room's messages, or more than a handful of rows.
func TestSavePlansIgnoreStatistics(t *testing.T) {
	t.Parallel()
	b := setup(t)
	alice := b.user(t, "alice")
	r := b.room(t, alice.ID, "general", chat.Public)
	// Statistics that say messages is empty, as on a new database.
	_, err := b.pool.Exec(b.ctx, `ALTER TABLE messages SET (autovacuum_enabled = off); ANALYZE messages`)
	require.NoError(t, err)

	cfg := b.pool.Config()
	cfg.MaxConns = 1
	var mu sync.Mutex
	var plans []string
	cfg.ConnConfig.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) {
		mu.Lock()
		defer mu.Unlock()
		plans = append(plans, n.Message)
	}
	pool, err := pgxpool.NewWithConfig(b.ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	store := storage.New(pool)
	first, _, err := store.SaveMessage(b.ctx, chat.NewMessage{RoomID: r.ID, SenderID: alice.ID, Body: "first", Source: chat.SourceWeb})
	require.NoError(t, err)

	_, err = b.pool.Exec(b.ctx, `
		INSERT INTO messages (room_id, seq, sender_id, body, source, client_id)
		SELECT $1::bigint, s, $2::bigint, 'message ' || s, 'web', 'client-' || s FROM generate_series(2, 20001) s`,
		r.ID, alice.ID)
	require.NoError(t, err)
	_, err = b.pool.Exec(b.ctx, `UPDATE rooms SET last_seq = 20001 WHERE id = $1::bigint`, r.ID)
	require.NoError(t, err)
	_, err = pool.Exec(b.ctx, `LOAD 'auto_explain'; SET auto_explain.log_min_duration = 0;
		SET auto_explain.log_nested_statements = on; SET auto_explain.log_analyze = on;
		SET auto_explain.log_level = notice`)
	require.NoError(t, err)

	m, created, err := store.SaveMessage(b.ctx, chat.NewMessage{RoomID: r.ID, SenderID: alice.ID, ParentID: first.ID,
		Body: "a reply", ClientID: "a-new-one", Source: chat.SourceWeb})
	require.NoError(t, err)
	require.True(t, created)
	require.Equal(t, int64(20002), m.Seq)
	again, created, err := store.SaveMessage(b.ctx, chat.NewMessage{RoomID: r.ID, SenderID: alice.ID, Body: "again",
		ClientID: "client-77", Source: chat.SourceWeb})
	require.NoError(t, err)
	require.False(t, created)
	require.Equal(t, "message 77", again.Body)

	mu.Lock()
	defer mu.Unlock()
	all := strings.Join(plans, "\n")
	t.Log(all)
	require.Contains(t, all, "messages_client_id_key", "the plans were logged")
	require.NotContains(t, all, "Seq Scan on messages", "a save read the whole table")
	require.NotContains(t, all, "messages_room_created_idx", "a save read all of the room's messages")
	for _, m := range regexp.MustCompile(`actual time=\S+ rows=(\d+) loops=(\d+)`).FindAllStringSubmatch(all, -1) {
		rows, _ := strconv.Atoi(m[1])
		loops, _ := strconv.Atoi(m[2])
		require.LessOrEqual(t, rows*loops, 100, "a step of a save read many rows: %s", m[0])
	}
}
