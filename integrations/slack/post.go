package slack

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/slack-go/slack"

	"github.com/switchboard-chat/switchboard/chat"
	"github.com/switchboard-chat/switchboard/integrations"
	"github.com/switchboard-chat/switchboard/integrations/jobs"
)

// PostKind is the job that posts one message to its room's Slack channel.
var PostKind = jobs.Kind{Type: integrations.SlackPostType, Queue: "slack", MaxAttempts: 8, Timeout: 30 * time.Second}

// MirrorKind is the job that mirrors one edit or delete of a message we
// posted to Slack (SPEC §13).
var MirrorKind = jobs.Kind{Type: integrations.SlackMirrorType, Queue: "slack", MaxAttempts: 8, Timeout: 30 * time.Second}

// EventKind is the job that stores one message event from Slack.
var EventKind = jobs.Kind{Type: EventTaskType, Queue: "default", MaxAttempts: 10}

// APIConfig configures the Slack Web API client.
type APIConfig struct {
	BotToken string
	// APIURL replaces https://slack.com/api/ (SLACK_API_URL, ending in "/";
	// tests point it at a local fake). Empty: Slack's.
	APIURL string
}

// NewAPI returns a slack-go client for cfg.
func NewAPI(cfg APIConfig) *slack.Client {
	var opts []slack.Option
	if cfg.APIURL != "" {
		opts = append(opts, slack.OptionAPIURL(cfg.APIURL))
	}
	return slack.New(cfg.BotToken, opts...)
}

// PostStore is what the post job reads and writes: it claims the post,
// calls Slack with nothing locked, and settles the claim.
type PostStore interface {
	Notice(ctx context.Context, messageID string) (chat.Notice, error)
	ClaimRun(ctx context.Context, key string, lease time.Duration) (chat.RunClaim, error)
	FinishRun(ctx context.Context, c chat.RunClaim) error
	ReleaseRun(ctx context.Context, c chat.RunClaim) error
	// RecordSlackPost remembers the Slack message a post made, for the
	// mirroring of later edits and deletes.
	RecordSlackPost(ctx context.Context, messageID, channel, ts string) error
}

// HandlePost returns the handler of PostKind: it posts the message with
// chat.postMessage under the sender's display name, once per message even
// if the job runs twice. The post is claimed under "slack-post:<message
// id>"; a failed call releases the claim for the retry, and a run that
// meets another one's claim comes back later without using an attempt.
// As for SMS (see integrations.ClaimLease), a run that dies after Slack
// accepted the post and before FinishRun has it posted again by the run
// after the lease.
func HandlePost(store PostStore, api *slack.Client, breaker *jobs.Breaker) jobs.Handler {
	return func(ctx context.Context, payload []byte) error {
		var p integrations.MessagePayload
		if err := json.Unmarshal(payload, &p); err != nil {
			return jobs.Permanent(fmt.Errorf("slack post payload: %w", err))
		}
		n, err := store.Notice(ctx, p.MessageID)
		if errors.Is(err, chat.ErrNotFound) {
			return jobs.Permanent(err)
		}
		if err != nil {
			return err
		}
		if n.SlackChannel == "" || n.Message.Deleted {
			return nil // unbridged or deleted since
		}
		c, err := store.ClaimRun(ctx, "slack-post:"+n.Message.ID, integrations.ClaimLease)
		switch {
		case err != nil:
			return err
		case !c.HeldUntil.IsZero():
			return jobs.Wait(integrations.ErrHeld, min(integrations.HeldRetry, c.HeldUntil.Sub(c.Now)))
		case c.Token == "":
			return nil // posted already
		}
		var channel, ts string
		err = breaker.Do(func() error {
			var err error
			channel, ts, err = api.PostMessageContext(ctx, n.SlackChannel,
				slack.MsgOptionText(n.Message.Body, true),
				slack.MsgOptionUsername(n.Message.Sender.DisplayName))
			return classify(err)
		})
		settle, cancel := integrations.SettleContext(ctx)
		defer cancel()
		if err != nil {
			return errors.Join(err, store.ReleaseRun(settle, c))
		}
		if err := store.RecordSlackPost(settle, n.Message.ID, channel, ts); err != nil {
			return errors.Join(err, store.ReleaseRun(settle, c))
		}
		return store.FinishRun(settle, c)
	}
}

// MirrorStore is what the mirror job reads.
type MirrorStore interface {
	Message(ctx context.Context, id string) (chat.EncodedMessage, error)
	SlackPost(ctx context.Context, messageID string) (channel, ts string, found bool, err error)
}

// errNotPosted retries a mirror whose message the post job has not posted
// yet.
var errNotPosted = errors.New("slack: the message is not posted yet")

// HandleMirror returns the handler of MirrorKind: it makes the Slack post
// of a message show the message's current state, with chat.update (its
// body) or chat.delete (a deleted message). Applying the current state is
// idempotent, so a repeat, or jobs of two changes run in any order, leave
// the post as the message is. Before the post job recorded its post, the
// job retries; a deleted message never posted needs nothing.
func HandleMirror(store MirrorStore, api *slack.Client, breaker *jobs.Breaker) jobs.Handler {
	return func(ctx context.Context, payload []byte) error {
		var p integrations.MessagePayload
		if err := json.Unmarshal(payload, &p); err != nil {
			return jobs.Permanent(fmt.Errorf("slack mirror payload: %w", err))
		}
		m, err := store.Message(ctx, p.MessageID)
		if errors.Is(err, chat.ErrNotFound) {
			return jobs.Permanent(err)
		}
		if err != nil {
			return err
		}
		channel, ts, found, err := store.SlackPost(ctx, p.MessageID)
		switch {
		case err != nil:
			return err
		case !found && m.Deleted:
			return nil // the post job skips it
		case !found:
			return errNotPosted // a retry, using an attempt: a post that never comes ends it
		}
		return breaker.Do(func() error {
			var err error
			if m.Deleted {
				_, _, err = api.DeleteMessageContext(ctx, channel, ts)
				var refused slack.SlackErrorResponse
				if errors.As(err, &refused) && refused.Err == "message_not_found" {
					return nil // deleted already
				}
			} else {
				_, _, _, err = api.UpdateMessageContext(ctx, channel, ts, slack.MsgOptionText(m.Body, true))
			}
			return classify(err)
		})
	}
}

// retryable are Slack's error strings that a later call may not get.
var retryable = map[string]bool{
	"ratelimited": true, "internal_error": true, "fatal_error": true,
	"service_unavailable": true, "request_timeout": true,
}

// classify marks Slack's answers that no retry can change (channel_not_found,
// not_in_channel, invalid_auth...) as permanent; 5xx, 429 and network errors
// are retried (a 429 after the time Slack asks for).
func classify(err error) error {
	if err == nil {
		return nil
	}
	var rate *slack.RateLimitedError
	if errors.As(err, &rate) {
		return jobs.Wait(err, max(rate.RetryAfter, time.Second))
	}
	var refused slack.SlackErrorResponse
	if errors.As(err, &refused) && !retryable[refused.Err] {
		return jobs.Permanent(fmt.Errorf("slack refused the post: %w", err))
	}
	return fmt.Errorf("slack: %w", err)
}
