package slack

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/slack-go/slack/slackevents"

	"github.com/switchboard-chat/switchboard/chat"
	"github.com/switchboard-chat/switchboard/integrations/jobs"
)

// EventTaskType is the job type of a Slack message to store.
const EventTaskType = "slack:event"

// eventTask is the payload of an EventTaskType job: one message of a
// bridged channel, as the webhook saw it.
type eventTask struct {
	EventID   string `json:"event_id"`
	RoomID    string `json:"room_id"`
	Channel   string `json:"channel"`
	SlackUser string `json:"slack_user"`
	Text      string `json:"text"` // Slack's formatting, as received
}

type eventsHandler struct{ *webhook }

// NewEventsHandler returns the handler of POST /webhooks/slack/events, the
// Events API. It answers url_verification with the challenge and turns
// each new message of a person in a bridged channel into an EventTaskType
// job keyed "slack-event:" + event_id, so that Slack's retries queue it
// once. Everything else signed is acknowledged and ignored: other event
// types, bot messages (Switchboard's own posts included), edits, deletions,
// joins and channels bridged to no room. It answers at once; if the job
// cannot be queued it answers 500 so that Slack retries.
func NewEventsHandler(cfg WebhookConfig) (http.Handler, error) {
	if cfg.Queue == nil {
		return nil, errors.New("slack: the events handler needs WebhookConfig.Queue")
	}
	h, err := newWebhook(cfg)
	if err != nil {
		return nil, err
	}
	return eventsHandler{h}, nil
}

// newMessageSubtypes are the message subtypes that carry a new message of
// a person; the others (message_changed, message_deleted, channel_join,
// bot_message, ...) are not stored.
var newMessageSubtypes = map[string]bool{"": true, "me_message": true, "thread_broadcast": true, "file_share": true}

func (h eventsHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	raw, ok := h.read(w, r)
	if !ok {
		return
	}
	// encoding/json would store U+FFFD for invalid bytes and lone
	// surrogate escapes (SPEC §2).
	if !utf8.Valid(raw) || chat.CheckJSONEscapes(raw) != nil {
		writeError(w, http.StatusBadRequest, chat.Errorf(chat.CodeBadRequest, "request body is not valid UTF-8"))
		return
	}
	// The signature proved the sender; the deprecated verification token
	// adds nothing.
	ev, err := slackevents.ParseEvent(raw, slackevents.OptionNoVerifyToken())
	if err != nil {
		if !json.Valid(raw) {
			writeError(w, http.StatusBadRequest, chat.Errorf(chat.CodeBadRequest, "request body is not JSON"))
			return
		}
		// An event type slack-go does not know: none we need.
		h.log.DebugContext(r.Context(), "slack event ignored", slog.Any("error", err))
		w.WriteHeader(http.StatusOK)
		return
	}
	switch data := ev.Data.(type) {
	case *slackevents.EventsAPIURLVerificationEvent:
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(w, data.Challenge)
	case *slackevents.EventsAPICallbackEvent:
		if err := h.enqueue(r.Context(), data, ev.InnerEvent); err != nil {
			h.log.ErrorContext(r.Context(), "slack event not queued", slog.String("event_id", data.EventID), slog.Any("error", err))
			writeError(w, http.StatusInternalServerError, chat.Errorf(chat.CodeInternal, "the event could not be queued; retry"))
			return
		}
		w.WriteHeader(http.StatusOK)
	default:
		w.WriteHeader(http.StatusOK)
	}
}

// enqueue queues the job of a message event worth storing; it returns nil
// for events that are ignored.
func (h eventsHandler) enqueue(ctx context.Context, cb *slackevents.EventsAPICallbackEvent, inner slackevents.EventsAPIInnerEvent) error {
	m, ok := inner.Data.(*slackevents.MessageEvent)
	if !ok || cb.EventID == "" || m.BotID != "" || !newMessageSubtypes[m.SubType] || m.User == "" || strings.TrimSpace(m.Text) == "" {
		return nil
	}
	room, err := h.cfg.Store.RoomBySlackChannel(ctx, m.Channel)
	if errors.Is(err, chat.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	payload, err := json.Marshal(eventTask{EventID: cb.EventID, RoomID: room.ID, Channel: m.Channel, SlackUser: m.User, Text: m.Text})
	if err != nil {
		return err
	}
	return h.cfg.Queue.Enqueue(ctx, EventTaskType, "slack-event:"+cb.EventID, payload)
}

// HandleEventTask is the job handler for EventTaskType: it stores the
// message (Source "slack", ExternalID the event_id, so a job that runs twice
// stores once) in the room the channel was bridged to. The sender is the
// Switchboard user whose slack_user_id it is, if they are a member of the
// room, else the Slack user's guest account (created and added to the room
// on first use). A sender that cannot be mapped (the guest's username
// belongs to a real account, or the Slack id makes no username) and a
// message Switchboard refuses (over 4000 characters, say) fail with
// jobs.Permanent and the reason: retrying cannot help, so the job goes to
// the dead-letter set at once (SPEC §9).
func HandleEventTask(store Store, poster Poster) jobs.Handler {
	return func(ctx context.Context, payload []byte) error {
		var t eventTask
		if err := json.Unmarshal(payload, &t); err != nil {
			return jobs.Permanent(fmt.Errorf("slack event task: payload: %w", err))
		}
		sender, err := eventSender(ctx, store, t.SlackUser, t.RoomID)
		if err != nil {
			return refused(fmt.Errorf("slack event %s: Slack user %s cannot be mapped to a sender: %w", t.EventID, t.SlackUser, err))
		}
		_, _, err = poster.Post(ctx, chat.NewMessage{
			RoomID: t.RoomID, SenderID: sender.ID, Body: plainText(ctx, store, t.Text),
			Source: chat.SourceSlack, ExternalID: t.EventID,
		})
		if err != nil {
			return refused(fmt.Errorf("slack event %s: post: %w", t.EventID, err))
		}
		return nil
	}
}

// refused marks an error that is the event's own fault (a sender with no
// possible account, a body too long or not valid text, the room gone) as
// permanent: no retry can store it. Outages (unavailable) and failures of
// Switchboard (anything not a *chat.Error) are retried.
func refused(err error) error {
	var ce *chat.Error
	if errors.As(err, &ce) && ce.Code != chat.CodeUnavailable && ce.Code != chat.CodeInternal {
		return jobs.Permanent(err)
	}
	return err
}

// eventSender is who a Slack user's message in roomID is stored as.
func eventSender(ctx context.Context, store Store, slackUser, roomID string) (chat.User, error) {
	u, err := store.UserBySlackID(ctx, slackUser)
	if err == nil {
		err = store.CheckMember(ctx, u.ID, roomID)
		if err == nil {
			return u, nil
		}
	}
	if !errors.Is(err, chat.ErrNotFound) && !errors.Is(err, chat.ErrForbidden) {
		return chat.User{}, err
	}
	return store.SlackGuest(ctx, slackUser, roomID)
}
