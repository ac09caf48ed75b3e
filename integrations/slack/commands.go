package slack

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"unicode"

	"github.com/slack-go/slack"
	"github.com/slack-go/slack/slackutilsx"

	"github.com/switchboard-chat/switchboard/chat"
	"github.com/switchboard-chat/switchboard/integrations"
)

const (
	// defaultRecent and maxRecent bound /switchboard recent.
	defaultRecent = 5
	maxRecent     = 20
)

const usage = "Usage:\n" +
	"`/switchboard post #room text` posts text to a Switchboard room.\n" +
	"`/switchboard recent #room [n]` shows its n latest messages (default 5, at most 20)."

type commandsHandler struct{ *webhook }

// NewCommandsHandler returns the handler of POST /webhooks/slack/commands,
// the slash command /switchboard. It answers every signed request 200 with
// an ephemeral message, seen only by the Slack user who typed the command.
func NewCommandsHandler(cfg WebhookConfig) (http.Handler, error) {
	h, err := newWebhook(cfg)
	if err != nil {
		return nil, err
	}
	return commandsHandler{h}, nil
}

// ephemeral is Slack's answer to a slash command seen only by its author.
type ephemeral struct {
	ResponseType string `json:"response_type"`
	Text         string `json:"text"`
}

func (h commandsHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	raw, ok := h.read(w, r)
	if !ok {
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(raw))
	cmd, err := slack.SlashCommandParse(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, chat.Errorf(chat.CodeBadRequest, "request body is not a form"))
		return
	}
	reply, err := h.run(r.Context(), cmd)
	if err != nil {
		h.log.ErrorContext(r.Context(), "slack command failed", slog.String("slack_user", cmd.UserID), slog.Any("error", err))
		reply = "Switchboard could not do that just now; please try again."
	}
	writeJSON(w, http.StatusOK, ephemeral{ResponseType: slack.ResponseTypeEphemeral, Text: reply})
}

// run carries out one command and returns the answer (Slack mrkdwn). An
// error is a failure of Switchboard, not of the command.
func (h commandsHandler) run(ctx context.Context, cmd slack.SlashCommand) (string, error) {
	verb, rest := cutWord(plainText(ctx, h.cfg.Store, cmd.Text))
	verb = strings.ToLower(verb)
	roomArg, rest := cutWord(rest)
	name := strings.TrimPrefix(roomArg, "#")
	if (verb != "post" && verb != "recent") || name == "" || (verb == "post" && rest == "") {
		return usage, nil
	}
	limit := defaultRecent
	if verb == "recent" && rest != "" {
		n, err := strconv.Atoi(rest)
		if err != nil || n < 1 || n > maxRecent {
			return usage, nil
		}
		limit = n
	}
	user, err := h.cfg.Store.UserBySlackID(ctx, cmd.UserID)
	if errors.Is(err, chat.ErrNotFound) {
		return fmt.Sprintf("Your Slack account is not linked to a Switchboard account yet. "+
			"Set your Slack user id, %s, as slack_user_id in your Switchboard profile, then try again.", escape(cmd.UserID)), nil
	}
	if err != nil {
		return "", err
	}
	room, err := h.cfg.Store.RoomByName(ctx, name)
	if errors.Is(err, chat.ErrNotFound) {
		return notInRoom(name), nil
	}
	if err != nil {
		return "", err
	}
	if verb == "recent" {
		return h.recent(ctx, user, room, limit)
	}
	return h.post(ctx, user, room, rest, cmd.TriggerID)
}

func (h commandsHandler) post(ctx context.Context, user chat.User, room chat.Room, text, triggerID string) (string, error) {
	// Slack gives every invocation its own trigger_id: a replayed request
	// stores nothing new.
	_, _, err := h.cfg.Poster.Post(ctx, chat.NewMessage{
		RoomID: room.ID, SenderID: user.ID, Body: text, Source: chat.SourceSlack, ExternalID: triggerID,
	})
	var e *chat.Error
	switch {
	case err == nil:
		return "Posted to #" + escape(room.Name) + ".", nil
	case errors.Is(err, chat.ErrForbidden) || errors.Is(err, chat.ErrNotFound):
		return notInRoom(room.Name), nil
	case errors.As(err, &e) && (e.Code == chat.CodeBadRequest || e.Code == chat.CodeTooLarge):
		return "Not posted: " + escape(e.Message) + ".", nil
	default:
		return "", err
	}
}

func (h commandsHandler) recent(ctx context.Context, user chat.User, room chat.Room, limit int) (string, error) {
	msgs, err := integrations.Recent(ctx, h.cfg.Store, user.ID, room.ID, limit)
	if errors.Is(err, integrations.ErrNotMember) {
		return notInRoom(room.Name), nil
	}
	if err != nil {
		return "", err
	}
	if len(msgs) == 0 {
		return "#" + escape(room.Name) + " has no messages yet.", nil
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Latest in #%s:", escape(room.Name))
	for _, m := range msgs {
		fmt.Fprintf(&b, "\n*%s*: %s", escape(m.Sender.Username), escape(m.Body))
	}
	return b.String(), nil
}

func notInRoom(name string) string { return "You are not in a room named #" + escape(name) + "." }

// escape makes text safe in a Slack message: &, < and > as entities.
func escape(text string) string { return slackutilsx.EscapeMessage(text) }

// cutWord splits the first word of s (after leading space) from the rest,
// which is trimmed.
func cutWord(s string) (word, rest string) {
	s = strings.TrimSpace(s)
	i := strings.IndexFunc(s, unicode.IsSpace)
	if i < 0 {
		return s, ""
	}
	return s[:i], strings.TrimSpace(s[i:])
}
