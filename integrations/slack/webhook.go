// Package slack connects Switchboard to a Slack workspace (SPEC §9). This
// part is the inbound side: the slash command /switchboard
// (NewCommandsHandler) and the Events API (NewEventsHandler), whose message
// events from bridged channels become jobs (EventTaskType) that
// HandleEventTask stores. Every request must carry a valid
// X-Slack-Signature (v0) made within 5 minutes.
package slack

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/switchboard-chat/switchboard/chat"
)

// Store is the part of storage the Slack webhooks and jobs read.
type Store interface {
	UserBySlackID(ctx context.Context, slackUserID string) (chat.User, error)
	RoomBySlackChannel(ctx context.Context, channelID string) (chat.Room, error)
	SlackGuest(ctx context.Context, slackUserID, roomID string) (chat.User, error)
	RoomByName(ctx context.Context, name string) (chat.Room, error)
	CheckMember(ctx context.Context, userID, roomID string) error
	MessagesBefore(ctx context.Context, roomID string, beforeSeq int64, limit int) ([]chat.EncodedMessage, error)
}

// Poster stores a message and delivers it live (hub.Hub implements it).
type Poster interface {
	Post(ctx context.Context, nm chat.NewMessage) (msg chat.Message, created bool, err error)
}

// Enqueuer puts a job on the queue (the jobs queue implements it). A key
// that is already queued must not queue a second job and must not be an
// error either: Slack's retries of an event enqueue its key again, and an
// error answers Slack 500. A key enqueued again after its job finished may
// run again; HandleEventTask stores each event once all the same.
type Enqueuer interface {
	Enqueue(ctx context.Context, taskType, key string, payload []byte) error
}

// WebhookConfig configures the Slack webhooks. SigningSecret, Store and
// Poster are required; Queue too for the events handler.
type WebhookConfig struct {
	// SigningSecret is the Slack app's signing secret, the key of
	// X-Slack-Signature.
	SigningSecret string
	Store         Store
	Poster        Poster
	Queue         Enqueuer
	// Now tells the time that request timestamps are checked against;
	// nil means time.Now.
	Now func() time.Time
	// Logger; nil discards logs.
	Logger *slog.Logger
}

const (
	// maxWebhookBytes bounds a request body (Slack's are a few KiB).
	maxWebhookBytes = 64 << 10
	// signatureWindow is how far X-Slack-Request-Timestamp may be from now.
	signatureWindow = 5 * time.Minute
)

// webhook is what both handlers share: the configuration and the checks
// every request passes first.
type webhook struct {
	cfg WebhookConfig
	log *slog.Logger
}

func newWebhook(cfg WebhookConfig) (*webhook, error) {
	if cfg.SigningSecret == "" || cfg.Store == nil || cfg.Poster == nil {
		return nil, errors.New("slack: WebhookConfig needs SigningSecret, Store and Poster")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &webhook{cfg: cfg, log: cfg.Logger}, nil
}

// read returns the body of a POST signed by Slack. Otherwise it answers the
// request and returns false.
func (h *webhook) read(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeError(w, http.StatusMethodNotAllowed, chat.Errorf(chat.CodeBadRequest, "use POST"))
		return nil, false
	}
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxWebhookBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, chat.Errorf(chat.CodeTooLarge, "request body is larger than %d bytes", maxWebhookBytes))
			return nil, false
		}
		writeError(w, http.StatusBadRequest, chat.Errorf(chat.CodeBadRequest, "could not read the request body"))
		return nil, false
	}
	if err := verify(h.cfg.SigningSecret, r.Header, raw, h.cfg.Now()); err != nil {
		h.log.WarnContext(r.Context(), "slack webhook: refused", slog.String("path", r.URL.Path),
			slog.String("remote_addr", r.RemoteAddr), slog.String("reason", err.Error()))
		writeError(w, http.StatusUnauthorized, chat.Errorf(chat.CodeUnauthorized, "%s", err.Error()))
		return nil, false
	}
	return raw, true
}

// verify checks Slack's v0 request signature: X-Slack-Signature must be
// "v0=" and the lower-case hex HMAC-SHA256, keyed by the signing secret, of
// "v0:" + X-Slack-Request-Timestamp + ":" + the raw body, and the timestamp
// within signatureWindow of now. slack-go's SecretsVerifier does the same
// but reads the clock itself; this one takes now so that tests can check
// the published vectors at their own time. The comparison is constant-time
// over the whole header, so an upper-case hex digest (which Slack never
// sends) does not match.
func verify(secret string, header http.Header, body []byte, now time.Time) error {
	sig, ts := header.Get("X-Slack-Signature"), header.Get("X-Slack-Request-Timestamp")
	if sig == "" || ts == "" {
		return errors.New("missing X-Slack-Signature or X-Slack-Request-Timestamp")
	}
	secs, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return errors.New("X-Slack-Request-Timestamp is not a number")
	}
	if d := now.Sub(time.Unix(secs, 0)).Abs(); d > signatureWindow {
		return fmt.Errorf("X-Slack-Request-Timestamp is %s from now; at most %s is allowed", d.Round(time.Second), signatureWindow)
	}
	mac := hmac.New(sha256.New, []byte(secret))
	fmt.Fprintf(mac, "v0:%s:", ts)
	mac.Write(body)
	want := "v0=" + hex.EncodeToString(mac.Sum(nil))
	if !hmac.Equal([]byte(sig), []byte(want)) {
		return errors.New("X-Slack-Signature does not match")
	}
	return nil
}

// writeError answers in the error shape of SPEC §2.
func writeError(w http.ResponseWriter, status int, e *chat.Error) {
	writeJSON(w, status, map[string]any{"error": map[string]string{"code": string(e.Code), "message": e.Message}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

// slackToken is one <...> of Slack's message formatting: a mention, a
// channel, a special mention or a link.
var slackToken = regexp.MustCompile(`<([^<>]*)>`)

var unescapeSlack = strings.NewReplacer("&lt;", "<", "&gt;", ">", "&amp;", "&")

// plainText turns Slack's formatted text into what a Switchboard user reads:
// <@U123> becomes @ and the user's Switchboard username (or that of their
// Slack guest), <#C123|general> becomes #general, <!here> @here, a link its
// label and URL, and &lt; &gt; &amp; the characters they stand for.
func plainText(ctx context.Context, store Store, text string) string {
	text = slackToken.ReplaceAllStringFunc(text, func(tok string) string {
		inner := tok[1 : len(tok)-1]
		target, label, labelled := strings.Cut(inner, "|")
		switch {
		case strings.HasPrefix(target, "@"):
			if labelled {
				return "@" + strings.TrimPrefix(label, "@")
			}
			id := target[1:]
			if u, err := store.UserBySlackID(ctx, id); err == nil {
				return "@" + u.Username
			}
			return "@slack-" + strings.ToLower(id)
		case strings.HasPrefix(target, "#"):
			if labelled {
				return "#" + label
			}
			return target
		case strings.HasPrefix(target, "!"):
			if labelled {
				return label
			}
			return "@" + strings.TrimPrefix(target, "!")
		case !labelled: // a link, <url> or <url|label>
			return target
		case label == target || "mailto:"+label == target:
			return label
		default:
			return label + " (" + target + ")"
		}
	})
	return unescapeSlack.Replace(text)
}
