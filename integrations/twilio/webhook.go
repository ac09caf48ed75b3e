// Package twilio connects Switchboard to SMS through Twilio (SPEC §8). This
// file is the inbound side: the webhook Twilio calls for each SMS to the
// Switchboard number, which posts the text to a room as its sender's account
// and answers in TwiML.
package twilio

import (
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/twilio/twilio-go/client"

	"github.com/switchboard-chat/switchboard/chat"
	"github.com/switchboard-chat/switchboard/integrations"
)

// Store is the part of storage the webhook reads.
type Store interface {
	UserByPhone(ctx context.Context, phone string) (chat.User, error)
	LastActiveRoom(ctx context.Context, userID string) (chat.Room, error)
	RoomByName(ctx context.Context, name string) (chat.Room, error)
	CheckMember(ctx context.Context, userID, roomID string) error
	MessagesBefore(ctx context.Context, roomID string, beforeSeq int64, limit int) ([]chat.EncodedMessage, error)
}

// Poster stores a message and delivers it live (hub.Hub implements it).
type Poster interface {
	Post(ctx context.Context, nm chat.NewMessage) (msg chat.Message, created bool, err error)
}

// WebhookConfig configures the inbound SMS webhook. Every field but Logger
// is required.
type WebhookConfig struct {
	// AuthToken is the Twilio account's auth token, the key of
	// X-Twilio-Signature.
	AuthToken string
	// URL is the public URL Twilio signs, exactly as configured on the
	// Twilio number: SWITCHBOARD_PUBLIC_URL + "/webhooks/twilio/sms". The
	// request's own Host and path are never used, so the webhook validates
	// behind a proxy that rewrites them.
	URL    string
	Store  Store
	Poster Poster
	// Logger; nil discards logs.
	Logger *slog.Logger
}

const (
	// maxWebhookBytes bounds the form Twilio posts (an SMS is at most 1600
	// characters; the other fields are short).
	maxWebhookBytes = 64 << 10
	// recentCount is how many messages "#room ?" answers with.
	recentCount = 5
	// recentChars shortens each message of that answer.
	recentChars = 100
)

type webhook struct {
	cfg       WebhookConfig
	validator client.RequestValidator
	log       *slog.Logger
}

// NewWebhook returns the handler of POST /webhooks/twilio/sms.
func NewWebhook(cfg WebhookConfig) (http.Handler, error) {
	if cfg.AuthToken == "" || cfg.Store == nil || cfg.Poster == nil {
		return nil, errors.New("twilio: WebhookConfig needs AuthToken, Store and Poster")
	}
	if u, err := url.Parse(cfg.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("twilio: WebhookConfig.URL %q is not an absolute http(s) URL", cfg.URL)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &webhook{cfg: cfg, validator: client.NewRequestValidator(cfg.AuthToken), log: cfg.Logger}, nil
}

func (h *webhook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeError(w, http.StatusMethodNotAllowed, chat.Errorf(chat.CodeBadRequest, "use POST"))
		return
	}
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxWebhookBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, chat.Errorf(chat.CodeTooLarge, "request body is larger than %d bytes", maxWebhookBytes))
			return
		}
		writeError(w, http.StatusBadRequest, chat.Errorf(chat.CodeBadRequest, "could not read the request body"))
		return
	}
	// ValidateBody signs the form parameters (or, when the URL carries
	// bodySHA256, the hash of a JSON body) with the configured URL, trying
	// it with and without the default port as Twilio's SDKs do.
	if !h.validator.ValidateBody(h.cfg.URL, raw, r.Header.Get("X-Twilio-Signature")) {
		h.log.WarnContext(r.Context(), "twilio webhook: bad signature", slog.String("remote_addr", r.RemoteAddr))
		writeError(w, http.StatusForbidden, chat.Errorf(chat.CodeForbidden, "invalid X-Twilio-Signature"))
		return
	}
	form, err := url.ParseQuery(string(raw))
	if err != nil {
		writeError(w, http.StatusBadRequest, chat.Errorf(chat.CodeBadRequest, "request body is not a form"))
		return
	}
	reply, err := h.handle(r.Context(), form)
	if err != nil {
		h.log.ErrorContext(r.Context(), "twilio webhook failed", slog.String("message_sid", form.Get("MessageSid")), slog.Any("error", err))
		status := http.StatusInternalServerError
		if errors.Is(err, chat.ErrUnavailable) {
			status = http.StatusServiceUnavailable
		}
		writeError(w, status, chat.ErrorOf(err))
		return
	}
	writeTwiML(w, reply)
}

// handle answers one signed SMS with the text of the TwiML reply ("" for
// none). An error is a failure of Switchboard, not of the sender.
func (h *webhook) handle(ctx context.Context, form url.Values) (string, error) {
	user, err := h.cfg.Store.UserByPhone(ctx, form.Get("From"))
	if errors.Is(err, chat.ErrNotFound) {
		return notRegistered, nil
	}
	if err != nil {
		return "", err
	}
	// The whole SMS must be text (UTF-8, no NUL, not blank) before any
	// look-up; the length limit applies to what is posted, after "#room".
	body := strings.TrimSpace(form.Get("Body"))
	if _, err := chat.NormalizeBody(body); err != nil && chat.ErrorOf(err).Code != chat.CodeTooLarge {
		return notSent(err)
	}
	var room chat.Room
	if name, text, ok := roomPrefix(body); ok {
		room, err = h.cfg.Store.RoomByName(ctx, name)
		if errors.Is(err, chat.ErrNotFound) {
			return notInRoom(name), nil
		}
		if err != nil {
			return "", err
		}
		switch text {
		case "?":
			return h.recent(ctx, user, room)
		case "":
			return fmt.Sprintf("Write your message after #%s, or send \"#%s ?\" for its latest messages.", room.Name, room.Name), nil
		}
		body = text
	} else {
		room, err = h.cfg.Store.LastActiveRoom(ctx, user.ID)
		if errors.Is(err, chat.ErrNotFound) {
			return usage, nil
		}
		if err != nil {
			return "", err
		}
	}
	msg, created, err := h.cfg.Poster.Post(ctx, chat.NewMessage{
		RoomID: room.ID, SenderID: user.ID, Body: body, Source: chat.SourceSMS, ExternalID: form.Get("MessageSid"),
	})
	if errors.Is(err, chat.ErrForbidden) || errors.Is(err, chat.ErrNotFound) {
		return notInRoom(room.Name), nil
	}
	if err != nil {
		return notSent(err)
	}
	h.log.DebugContext(ctx, "sms stored", slog.String("message_id", msg.ID), slog.String("room_id", msg.RoomID),
		slog.Bool("created", created))
	return "", nil
}

// recent lists the latest messages of room to user, one per line.
func (h *webhook) recent(ctx context.Context, user chat.User, room chat.Room) (string, error) {
	msgs, err := integrations.Recent(ctx, h.cfg.Store, user.ID, room.ID, recentCount)
	if errors.Is(err, integrations.ErrNotMember) {
		return notInRoom(room.Name), nil
	}
	if err != nil {
		return "", err
	}
	if len(msgs) == 0 {
		return fmt.Sprintf("#%s has no messages yet.", room.Name), nil
	}
	var b strings.Builder
	fmt.Fprintf(&b, "#%s, latest:", room.Name)
	for _, m := range msgs {
		fmt.Fprintf(&b, "\n%s: %s", m.Sender.Username, shorten(m.Body, recentChars))
	}
	return b.String(), nil
}

// roomPrefix splits "#name text" into the room name and the trimmed text.
func roomPrefix(body string) (name, text string, ok bool) {
	rest, ok := strings.CutPrefix(body, "#")
	if !ok {
		return "", "", false
	}
	name, text = rest, ""
	if i := strings.IndexFunc(rest, unicode.IsSpace); i >= 0 {
		name, text = rest[:i], strings.TrimSpace(rest[i:])
	}
	return name, text, name != ""
}

// shorten puts s on one line and cuts it to at most n characters.
func shorten(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return string([]rune(s)[:n-1]) + "…"
}

// notRegistered answers an SMS from a number that is no account's verified
// phone: unverified numbers count as unknown (SPEC §8).
const notRegistered = "This number is not registered with Switchboard. Add it as the phone of your account and verify it to post by SMS."

// usage answers plain text from someone who has posted in none of their
// rooms: being in a room, or added to one, does not make it the target.
const usage = `Send "#room-name your message" to post in a room you are in. Plain text goes to the room you last posted in.`

func notInRoom(name string) string { return fmt.Sprintf("You are not in a room named #%s.", name) }

// notSent is the reply to a message that breaks the rules of SPEC §5; other
// errors are Switchboard's and go back to the caller.
func notSent(err error) (string, error) {
	var e *chat.Error
	if errors.As(err, &e) && (e.Code == chat.CodeBadRequest || e.Code == chat.CodeTooLarge) {
		return "Not sent: " + e.Message + ".", nil
	}
	return "", err
}

// twiml is a TwiML answer: <Response/> or one <Message>.
type twiml struct {
	XMLName xml.Name `xml:"Response"`
	Message *string  `xml:"Message,omitempty"`
}

func writeTwiML(w http.ResponseWriter, reply string) {
	t := twiml{}
	if reply != "" {
		t.Message = &reply
	}
	out, _ := xml.Marshal(t) // a struct of strings always encodes
	w.Header().Set("Content-Type", "text/xml; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	_, _ = io.WriteString(w, xml.Header)
	_, _ = w.Write(out)
}

// writeError answers in the error shape of SPEC §2.
func writeError(w http.ResponseWriter, status int, e *chat.Error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"code": string(e.Code), "message": e.Message}})
}
