package twilio

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	twclient "github.com/twilio/twilio-go/client"
	openapi "github.com/twilio/twilio-go/rest/api/v2010"

	"github.com/switchboard-chat/switchboard/chat"
	"github.com/switchboard-chat/switchboard/integrations"
	"github.com/switchboard-chat/switchboard/integrations/jobs"
	"github.com/switchboard-chat/switchboard/storage"
)

// SMSKind is the job that sends one (folded) SMS notification.
var SMSKind = jobs.Kind{Type: integrations.SMSType, Queue: "sms", MaxAttempts: 8, Timeout: 30 * time.Second}

// SenderConfig configures outbound SMS.
type SenderConfig struct {
	AccountSID string
	AuthToken  string
	From       string // the Twilio number messages come from
	// APIURL replaces https://api.twilio.com (TWILIO_API_URL; tests point it
	// at a local fake). Empty: Twilio's.
	APIURL string
}

// Sender sends SMS through Twilio's Messages API with twilio-go.
type Sender struct {
	api  *openapi.ApiService
	from string
}

// NewSender returns a Sender for cfg.
func NewSender(cfg SenderConfig) (*Sender, error) {
	if cfg.AccountSID == "" || cfg.AuthToken == "" || cfg.From == "" {
		return nil, errors.New("twilio: account SID, auth token and from number are required")
	}
	// twilio-go takes no context: bound each call by the transport instead.
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.ResponseHeaderTimeout = 15 * time.Second
	httpClient := &http.Client{Transport: transport}
	if cfg.APIURL != "" {
		base, err := url.Parse(cfg.APIURL)
		if err != nil || base.Host == "" {
			return nil, fmt.Errorf("twilio: bad API URL %q", cfg.APIURL)
		}
		// twilio-go builds absolute api.twilio.com URLs; send them to base.
		httpClient.Transport = rebase{base: base, next: transport}
	}
	c := &twclient.Client{
		Credentials: twclient.NewCredentials(cfg.AccountSID, cfg.AuthToken),
		HTTPClient:  httpClient,
	}
	c.SetAccountSid(cfg.AccountSID)
	return &Sender{api: openapi.NewApiService(twclient.NewRequestHandler(c)), from: cfg.From}, nil
}

// rebase sends every request to another scheme and host.
type rebase struct {
	base *url.URL
	next http.RoundTripper
}

func (r rebase) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context())
	req.URL.Scheme, req.URL.Host = r.base.Scheme, r.base.Host
	req.URL.Path = strings.TrimSuffix(r.base.Path, "/") + req.URL.Path
	req.Host = r.base.Host
	return r.next.RoundTrip(req)
}

// Send sends body to the number to. Errors Twilio gives for a request that
// cannot succeed (4xx other than 429: an invalid or unsubscribed number)
// are jobs.Permanent; others (5xx, 429, network) are worth a retry.
func (s *Sender) Send(to, body string) error {
	params := &openapi.CreateMessageParams{}
	params.SetTo(to)
	params.SetFrom(s.from)
	params.SetBody(body)
	_, err := s.api.CreateMessage(params)
	var rest *twclient.TwilioRestError
	if errors.As(err, &rest) && rest.Status >= 400 && rest.Status < 500 && rest.Status != http.StatusTooManyRequests {
		return jobs.Permanent(fmt.Errorf("twilio refused the SMS (status %d, code %d): %s", rest.Status, rest.Code, rest.Message))
	}
	if err != nil {
		return fmt.Errorf("twilio: %w", err)
	}
	return nil
}

// SMSStore is what the SMS job reads and writes.
type SMSStore interface {
	SendPendingSMS(ctx context.Context, userID, roomID string, gap time.Duration, send func(storage.PendingSMS) error) (time.Time, error)
}

// Scheduler enqueues a job to run later; *jobs.Queue implements it.
type Scheduler interface {
	EnqueueAt(ctx context.Context, typ, key string, payload []byte, at time.Time) error
}

// Throttle is the shortest time between two SMS to one user about one room
// (SPEC §8).
const Throttle = time.Minute

// HandleSMS returns the handler of SMSKind: it sends, in one SMS, every
// message pending for the user about the room, through breaker; if an SMS
// about that room went to the user less than gap (Throttle) ago, it
// schedules itself for when the next one may go instead.
func HandleSMS(store SMSStore, sender *Sender, breaker *jobs.Breaker, queue Scheduler, gap time.Duration) jobs.Handler {
	return func(ctx context.Context, payload []byte) error {
		var p integrations.SMSPayload
		if err := json.Unmarshal(payload, &p); err != nil {
			return jobs.Permanent(fmt.Errorf("sms payload: %w", err))
		}
		next, err := store.SendPendingSMS(ctx, p.UserID, p.RoomID, gap, func(sms storage.PendingSMS) error {
			return breaker.Do(func() error { return sender.Send(sms.Phone, FormatSMS(sms.RoomName, sms.Messages)) })
		})
		if errors.Is(err, chat.ErrNotFound) {
			return jobs.Permanent(err)
		}
		if err != nil || next.IsZero() {
			return err
		}
		key := fmt.Sprintf("sms:%s:%s:at:%d", p.UserID, p.RoomID, next.Unix())
		return queue.EnqueueAt(ctx, SMSKind.Type, key, payload, next)
	}
}

// maxSMSChars keeps a folded SMS within what Twilio accepts in one message
// (1600 characters).
const maxSMSChars = 1600

// FormatSMS renders messages of one room as one SMS (SPEC §8): the first
// line "[#room] alice: text", each further message "bob: text" on its own
// line, cut to Twilio's 1600 characters.
func FormatSMS(room string, msgs []chat.Message) string {
	var b strings.Builder
	fmt.Fprintf(&b, "[#%s] ", room)
	for i, m := range msgs {
		if i > 0 {
			b.WriteByte('\n')
		}
		fmt.Fprintf(&b, "%s: %s", m.Sender.Username, m.Body)
	}
	s := b.String()
	if utf8.RuneCountInString(s) <= maxSMSChars {
		return s
	}
	r := []rune(s)
	return string(r[:maxSMSChars-1]) + "…"
}
