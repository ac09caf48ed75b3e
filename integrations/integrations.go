// Package integrations carries stored messages to the outside world. The
// relay moves outbox rows (written in each message's transaction by the
// store) into the job queue; the fanout job then decides who
// gets an SMS (offline members who asked for them) and whether the message
// goes to a bridged Slack channel, and enqueues those jobs. The Twilio and
// Slack packages send them; package jobs is the queue.
package integrations

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"time"

	"github.com/switchboard-chat/switchboard/chat"
	"github.com/switchboard-chat/switchboard/integrations/jobs"
)

// FanoutKind is the job that turns one stored message into SMS and Slack jobs.
var FanoutKind = jobs.Kind{Type: "message:fanout", Queue: "default", MaxAttempts: 10}

// Job types of the SMS and Slack senders; their packages register handlers.
const (
	SMSType         = "sms:send"
	SlackPostType   = "slack:post"
	SlackMirrorType = "slack:mirror"
)

// Store is what the relay and the fanout read and write.
type Store interface {
	RelayOutbox(ctx context.Context, limit int, enqueue func(items []chat.OutboxItem) error) (int, error)
	Notice(ctx context.Context, messageID string) (chat.Notice, error)
	AddPendingSMS(ctx context.Context, messageID string, userIDs []string) error
	ForgetRuns(ctx context.Context, cutoff time.Time) error
}

// Presence says which users are online on any node.
type Presence interface {
	Online(ctx context.Context, userIDs []string) ([]string, error)
}

// Enqueuer adds jobs; *jobs.Queue implements it.
type Enqueuer interface {
	Enqueue(ctx context.Context, typ, key string, payload []byte) error
}

// BatchEnqueuer adds many jobs at once, recording them in the job journal
// with one statement; *jobs.Queue implements it.
type BatchEnqueuer interface {
	Job(typ, key string, payload []byte, at time.Time) (chat.Job, error)
	EnqueueJobs(ctx context.Context, jobs ...chat.Job) error
}

// MessagePayload is the payload of the fanout and Slack post jobs, and
// (with Seq, the edit or delete) of the Slack mirror job.
type MessagePayload struct {
	MessageID string `json:"message_id"`
	Seq       int64  `json:"seq,omitempty"`
}

// SMSPayload is the payload of an SMS job: send what is pending for this
// user about this room.
type SMSPayload struct {
	UserID string `json:"user_id"`
	RoomID string `json:"room_id"`
}

// Fanout is the handler of FanoutKind.
type Fanout struct {
	Store    Store
	Presence Presence
	Queue    Enqueuer
	SMS      bool // Twilio is configured
	Slack    bool // Slack is configured
}

// Handle enqueues the SMS and Slack jobs of one message. Every enqueue has a
// key derived from the message, so running it twice adds nothing.
func (f *Fanout) Handle(ctx context.Context, payload []byte) error {
	var p MessagePayload
	if err := json.Unmarshal(payload, &p); err != nil {
		return jobs.Permanent(fmt.Errorf("fanout payload: %w", err))
	}
	n, err := f.Store.Notice(ctx, p.MessageID)
	if errors.Is(err, chat.ErrNotFound) {
		return jobs.Permanent(fmt.Errorf("message %s: %w", p.MessageID, err))
	}
	if err != nil {
		return err
	}
	if f.Slack && n.SlackChannel != "" && n.Message.Source != "slack" {
		if err := f.Queue.Enqueue(ctx, SlackPostType, "slack-post:"+n.Message.ID, payload); err != nil {
			return err
		}
	}
	if !f.SMS || len(n.SMSMembers) == 0 {
		return nil
	}
	ids := make([]string, len(n.SMSMembers))
	for i, u := range n.SMSMembers {
		ids[i] = u.ID
	}
	online, err := f.Presence.Online(ctx, ids)
	if err != nil {
		return err
	}
	offline := without(ids, online)
	if len(offline) == 0 {
		return nil
	}
	if err := f.Store.AddPendingSMS(ctx, n.Message.ID, offline); err != nil {
		return err
	}
	for _, uid := range offline {
		body, _ := json.Marshal(SMSPayload{UserID: uid, RoomID: n.Message.RoomID})
		if err := f.Queue.Enqueue(ctx, SMSType, fmt.Sprintf("sms:%s:%s:%s", uid, n.Message.RoomID, n.Message.ID), body); err != nil {
			return err
		}
	}
	return nil
}

func without(all, drop []string) []string {
	skip := make(map[string]bool, len(drop))
	for _, d := range drop {
		skip[d] = true
	}
	var out []string
	for _, a := range all {
		if !skip[a] {
			out = append(out, a)
		}
	}
	return out
}

// Relay moves outbox rows into the job queue (and so the job journal,
// which keeps a job until it ran).
type Relay struct {
	Store    Store
	Queue    BatchEnqueuer
	Interval time.Duration // between polls of an empty outbox; 0: 200 ms
	Logger   *slog.Logger
}

// relayBatch is how many outbox rows one transaction hands over.
const relayBatch = 100

// Run relays until ctx ends. A failure (Postgres or Redis down) is logged and
// retried with growing pauses; the rows stay in the outbox meanwhile.
func (r *Relay) Run(ctx context.Context) {
	interval := r.Interval
	if interval <= 0 {
		interval = 200 * time.Millisecond
	}
	pause, lastForget := interval, time.Time{}
	for {
		n, err := r.Store.RelayOutbox(ctx, relayBatch, func(items []chat.OutboxItem) error {
			batch := make([]chat.Job, len(items))
			for i, it := range items {
				// A message fans out; an edit or delete is mirrored to
				// Slack, each once (keyed by its seq).
				typ, key := FanoutKind.Type, "fanout:"+it.MessageID
				if it.EventSeq > 0 {
					typ, key = SlackMirrorType, fmt.Sprintf("slack-mirror:%s:%d", it.MessageID, it.EventSeq)
				}
				payload, _ := json.Marshal(MessagePayload{MessageID: it.MessageID, Seq: it.EventSeq})
				j, err := r.Queue.Job(typ, key, payload, time.Time{})
				if err != nil {
					return err
				}
				batch[i] = j
			}
			return r.Queue.EnqueueJobs(ctx, batch...)
		})
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			pause = min(pause*2, 5*time.Second)
			r.Logger.WarnContext(ctx, "outbox relay failed; the rows stay for the next pass", slog.Any("error", err), slog.Duration("retry_in", pause))
		case n == relayBatch:
			pause = 0
		default:
			pause = interval
		}
		if time.Since(lastForget) > time.Hour {
			// The idempotency keys of side effects only need to outlive retries.
			if err := r.Store.ForgetRuns(ctx, time.Now().Add(-7*24*time.Hour)); err == nil {
				lastForget = time.Now()
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(pause):
		}
	}
}

// ErrNotMember is Recent's answer for a room the user is not in, whether
// it is private or does not exist (the two are told apart to no one).
var ErrNotMember = errors.New("not a member of that room")

// RecentStore is what Recent reads.
type RecentStore interface {
	CheckMember(ctx context.Context, userID, roomID string) error
	MessagesBefore(ctx context.Context, roomID string, beforeSeq int64, limit int) ([]chat.EncodedMessage, error)
}

// Recent returns the newest n messages of roomID that are not deleted
// (among its newest 4n), oldest first, for its member userID: what `#room
// ?` by SMS and `/switchboard recent` answer.
func Recent(ctx context.Context, store RecentStore, userID, roomID string, n int) ([]chat.EncodedMessage, error) {
	if err := store.CheckMember(ctx, userID, roomID); err != nil {
		if errors.Is(err, chat.ErrForbidden) || errors.Is(err, chat.ErrNotFound) {
			return nil, ErrNotMember
		}
		return nil, err
	}
	msgs, err := store.MessagesBefore(ctx, roomID, math.MaxInt64, 4*n)
	if err != nil {
		return nil, err
	}
	msgs = slices.DeleteFunc(msgs, func(m chat.EncodedMessage) bool { return m.Deleted })
	return msgs[max(len(msgs)-n, 0):], nil
}
