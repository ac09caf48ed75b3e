package storage

import (
	"cmp"
	"context"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/switchboard-chat/switchboard/chat"
)

// Group commit. Each SaveMessage is one call of save_message (migration
// 00003). Calls that arrive while others are being saved wait in a queue;
// a goroutine takes up to maxSaveBatch of them and sends them as one
// pipelined batch, which Postgres runs as one implicit transaction: one
// round trip and one commit for the lot. Under light load a call runs
// alone at once, so batching adds no wait. Rooms are spread over maxSavers
// queues, each with at most one goroutine, so that two batches of this
// node never wait for each other's room locks. No goroutine runs while a
// queue is empty.
const (
	maxSavers    = 4
	maxSaveBatch = 64
	// saveTimeout bounds a batch. Callers wait for the true outcome rather
	// than their own context: a caller that gave up must not be told
	// "failed" about a message that was stored.
	saveTimeout = 15 * time.Second
)

const saveSQL = `SELECT * FROM save_message($1, $2, $3, $4, $5, $6, $7, $8, $9)`

// saveCall is one SaveMessage: its arguments and, once done is closed, the
// statement's outcome.
type saveCall struct {
	rid, uid             int64
	clientID, externalID *string
	args                 []any

	status string
	msg    chat.Message
	err    error
	done   chan struct{}
}

func newSaveCall(nm chat.NewMessage, o Outbox) (*saveCall, error) {
	rid, err := parseID(nm.RoomID)
	if err != nil {
		return nil, err
	}
	uid, err := parseID(nm.SenderID)
	if err != nil {
		return nil, err
	}
	var parent *int64
	if nm.ParentID != "" {
		p, err := parseID(nm.ParentID)
		if err != nil {
			return nil, chat.Errorf(chat.CodeBadRequest, "parent_id names no message in this room")
		}
		parent = &p
	}
	c := &saveCall{rid: rid, uid: uid, clientID: nullable(nm.ClientID), externalID: nullable(nm.ExternalID), done: make(chan struct{})}
	c.args = []any{rid, uid, nm.Body, parent, nm.Source, c.clientID, c.externalID, o.Slack, o.SMS}
	return c, nil
}

func (c *saveCall) scan(row pgx.Row) { c.msg, c.err = scanMessage(row, &c.status) }

// saver is the queue of calls, for some of the rooms, waiting for a batch.
type saver struct {
	mu      sync.Mutex
	queue   []*saveCall
	running bool // a goroutine is taking batches
}

// save runs c, alone or in a batch, and returns when it is done.
func (s *Store) save(c *saveCall) {
	q := &s.savers[c.rid%maxSavers]
	q.mu.Lock()
	q.queue = append(q.queue, c)
	start := !q.running
	q.running = true
	q.mu.Unlock()
	if start {
		go s.runSaver(q)
	}
	<-c.done
}

// runSaver saves q's batches until it is empty.
func (s *Store) runSaver(q *saver) {
	for {
		q.mu.Lock()
		n := min(len(q.queue), maxSaveBatch)
		if n == 0 {
			q.running = false
			q.queue = nil
			q.mu.Unlock()
			return
		}
		batch := slices.Clone(q.queue[:n])
		q.queue = q.queue[n:]
		q.mu.Unlock()
		s.saveBatch(batch)
	}
}

// saveBatch runs the calls in one transaction, in order of room so that
// concurrent batches (of this node or another) take room locks in the same
// order and cannot deadlock; calls to one room keep their order of arrival.
// If any statement fails, the transaction has stored nothing, and each call
// runs again alone, so that it succeeds or fails on its own.
func (s *Store) saveBatch(batch []*saveCall) {
	ctx, cancel := context.WithTimeout(context.Background(), saveTimeout)
	defer cancel()
	defer func() {
		for _, c := range batch {
			close(c.done)
		}
	}()
	if len(batch) == 1 {
		batch[0].scan(s.db.QueryRow(ctx, saveSQL, batch[0].args...))
		return
	}
	slices.SortStableFunc(batch, func(a, b *saveCall) int { return cmp.Compare(a.rid, b.rid) })
	var b pgx.Batch
	for _, c := range batch {
		b.Queue(saveSQL, c.args...)
	}
	results := s.db.SendBatch(ctx, &b)
	failed := false
	for _, c := range batch {
		c.scan(results.QueryRow())
		failed = failed || c.err != nil
	}
	if err := results.Close(); err != nil || failed {
		for _, c := range batch {
			c.status, c.msg, c.err = "", chat.Message{}, nil
			c.scan(s.db.QueryRow(ctx, saveSQL, c.args...))
		}
	}
}
