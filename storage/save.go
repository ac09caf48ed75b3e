package storage

import (
	"context"
	"fmt"
	"time"

	"github.com/switchboard-chat/switchboard/chat"
)

// Group commit (internal/groupcommit). Calls of SaveMessage that arrive
// while a batch is being saved wait in a queue; one goroutine takes up to
// maxSaveBatch of them and stores them with one call of save_messages
// (migrations 00007, 00023): one statement, one round trip and one commit
// for the lot, with each room locked and bumped once and the messages
// inserted together. Under light load a call runs alone at once, so
// batching adds no wait; under heavy load batches grow by themselves, and
// wait saveGather for more. Postgres's cost is mostly per batch (~0.45 ms
// of CPU, against ~45 µs per message in it: BenchmarkSaveBatch), so a node
// runs one batch at a time: with four queues (by room) batches stayed
// small and Postgres spent 420 µs of CPU per message at 2,000 msgs/s on
// two nodes; with one, 230 µs (docs/performance).
const (
	maxSaveBatch = 64
	// saveGather is how long a batch waits for company when messages
	// arrived while the one before it was saved (groupcommit.Queue.Gather).
	// On two nodes at 3,000 msgs/s, 2 ms cut Postgres's CPU from 0.62-0.65
	// to 0.48-0.49 cores and 4 ms to 0.41-0.42; at 5,000 msgs/s 4 ms gave
	// an ack p99 of 37/41 ms against 44/67 for 2 ms (docs/performance). A
	// message that finds no batch running is saved at once.
	saveGather = 4 * time.Millisecond
	// saveTimeout bounds a batch. Callers wait for the true outcome rather
	// than their own context: a caller that gave up must not be told
	// "failed" about a message that was stored.
	saveTimeout = 15 * time.Second
)

const saveSQL = `SELECT * FROM save_messages($1, $2, $3, $4, $5, $6, $7, $8, $9)`

// saveCall is one SaveMessage: its arguments and, once done is closed, the
// statement's outcome.
type saveCall struct {
	rid, uid             int64
	body, source         string
	parent               *int64
	clientID, externalID *string

	status string
	msg    chat.Message
	err    error
	done   chan struct{}
}

func newSaveCall(nm chat.NewMessage) (*saveCall, error) {
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
	return &saveCall{rid: rid, uid: uid, body: nm.Body, source: nm.Source, parent: parent,
		clientID: nullable(nm.ClientID), externalID: nullable(nm.ExternalID), done: make(chan struct{})}, nil
}

// save runs c, alone or in a batch, and returns when it is done.
func (s *Store) save(c *saveCall) {
	s.saver.Add(c)
	<-c.done
}

// saveBatch stores the calls with one statement (one transaction); calls
// to one room keep their order of arrival. If the statement fails it has
// stored nothing, and each call runs again alone, so that it succeeds or
// fails on its own.
func (s *Store) saveBatch(batch []*saveCall) {
	ctx, cancel := context.WithTimeout(context.Background(), saveTimeout)
	defer cancel()
	defer func() {
		for _, c := range batch {
			close(c.done)
		}
	}()
	err := s.saveTogether(ctx, batch)
	if err == nil || len(batch) == 1 {
		for _, c := range batch {
			if c.err == nil && c.status == "" {
				c.err = err
			}
		}
		return
	}
	for _, c := range batch {
		c.status, c.msg, c.err = "", chat.Message{}, nil
		c.err = s.saveTogether(ctx, []*saveCall{c})
	}
}

// saveTogether runs save_messages on calls and sets each call's outcome.
func (s *Store) saveTogether(ctx context.Context, calls []*saveCall) error {
	n := len(calls)
	rooms, senders, parents := make([]int64, n), make([]int64, n), make([]*int64, n)
	bodies, sources := make([]string, n), make([]string, n)
	clientIDs, externalIDs := make([]*string, n), make([]*string, n)
	for i, c := range calls {
		rooms[i], senders[i], parents[i] = c.rid, c.uid, c.parent
		bodies[i], sources[i] = c.body, c.source
		clientIDs[i], externalIDs[i] = c.clientID, c.externalID
	}
	rows, err := s.db.Query(ctx, saveSQL, rooms, senders, bodies, parents, sources, clientIDs, externalIDs,
		s.outbox.Slack, s.outbox.SMS)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var ord int64
		var status string
		var x messageScan
		if err := rows.Scan(append(append([]any{&ord, &status}, x.saved()...), &x.mentions)...); err != nil {
			return err
		}
		m := x.message()
		if ord < 1 || ord > int64(n) {
			return fmt.Errorf("save_messages answered for message %d of %d", ord, n)
		}
		calls[ord-1].status, calls[ord-1].msg = status, m
	}
	return rows.Err()
}
