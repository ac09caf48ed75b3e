package twilio

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	twclient "github.com/twilio/twilio-go/client"
	openapi "github.com/twilio/twilio-go/rest/api/v2010"

	"github.com/switchboard-chat/switchboard/chat"
	"github.com/switchboard-chat/switchboard/integrations"
	"github.com/switchboard-chat/switchboard/integrations/jobs"
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
	// twilio-go takes no context: bound each call by the transport instead,
	// so that it ends well within the claim it runs under.
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.ResponseHeaderTimeout = 15 * time.Second
	var next http.RoundTripper = transport
	if cfg.APIURL != "" {
		base, err := url.Parse(cfg.APIURL)
		if err != nil || base.Host == "" {
			return nil, fmt.Errorf("twilio: bad API URL %q", cfg.APIURL)
		}
		// twilio-go builds absolute api.twilio.com URLs; send them to base.
		next = rebase{base: base, next: transport}
	}
	httpClient := &http.Client{Transport: deadline{d: sendTimeout, next: next}}
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

// deadline ends each request, the reading of its answer included, d after
// it started. (http.Client.Timeout would too, but with a goroutine per
// request that stays until d when the body is not closed, as twilio-go
// leaves it after an error status.)
type deadline struct {
	d    time.Duration
	next http.RoundTripper
}

func (t deadline) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx, cancel := context.WithTimeout(req.Context(), t.d)
	resp, err := t.next.RoundTrip(req.WithContext(ctx))
	if err != nil {
		cancel()
		return nil, err
	}
	resp.Body = cancelOnClose{ReadCloser: resp.Body, cancel: cancel}
	return resp, nil
}

// cancelOnClose ends a request's context when its body is closed.
type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (b cancelOnClose) Close() error {
	defer b.cancel()
	return b.ReadCloser.Close()
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

// SMSStore is what the SMS job reads and writes: it claims the SMS work of
// a (user, room) pair, calls Twilio with nothing locked, and settles the
// claim.
type SMSStore interface {
	ClaimPendingSMS(ctx context.Context, userID, roomID string, lease time.Duration) (chat.SMSClaim, error)
	MarkSMSSent(ctx context.Context, c chat.SMSClaim) error
	DropPendingSMS(ctx context.Context, c chat.SMSClaim) error
	ReleaseSMSClaim(ctx context.Context, c chat.SMSClaim) error
}

// Scheduler enqueues a job to run later; *jobs.Queue implements it.
type Scheduler interface {
	EnqueueAt(ctx context.Context, typ, key string, payload []byte, at time.Time) error
}

// Throttle is the shortest time between two SMS to one user about one room
// (SPEC §8).
const Throttle = time.Minute

// MentionThrottle replaces Throttle when what is pending mentions the user
// (SPEC §13): the SMS goes without waiting for the minute's fold, yet a
// flood of mentions still gets at most one SMS per user and room in this
// time.
const MentionThrottle = 10 * time.Second

// sendTimeout bounds one call to Twilio, connection included, well within
// integrations.ClaimLease.
const sendTimeout = 20 * time.Second

// HandleSMS returns the handler of SMSKind. It claims what is pending for
// the user about the room and sends it, through breaker, in one SMS; if an
// SMS about that room went to the user less than gap (Throttle) ago, it
// sends nothing and schedules itself for when the next one may go, which
// folds in everything that came meanwhile. While another run holds the pair
// it comes back later without using an attempt. When a message pending
// mentions the user, MentionThrottle replaces gap if shorter.
//
// What a run claims goes out at least once (SPEC §10): a failed call
// releases the claim and the retry sends it; a run that dies before Twilio
// accepted leaves a claim that lapses after integrations.ClaimLease, and
// the next run sends it. A run that dies after Twilio accepted the SMS but
// before MarkSMSSent committed leaves the same lapsing claim, and the next
// run sends the SMS again: Twilio takes no idempotency key, and a duplicate
// is better than a notification lost. Every other repeat (a second run, two
// at once, a timed-out run still calling Twilio) sends nothing more.
func HandleSMS(store SMSStore, sender *Sender, breaker *jobs.Breaker, queue Scheduler, gap time.Duration) jobs.Handler {
	return func(ctx context.Context, payload []byte) error {
		var p integrations.SMSPayload
		if err := json.Unmarshal(payload, &p); err != nil {
			return jobs.Permanent(fmt.Errorf("sms payload: %w", err))
		}
		c, err := store.ClaimPendingSMS(ctx, p.UserID, p.RoomID, integrations.ClaimLease)
		if errors.Is(err, chat.ErrNotFound) {
			return jobs.Permanent(err)
		}
		if err != nil {
			return err
		}
		// A claim taken is settled even if the job's time runs out.
		settle, cancel := integrations.SettleContext(ctx)
		defer cancel()
		gap := gap
		if mentions(c.Messages, p.UserID) {
			gap = min(gap, MentionThrottle)
		}
		// Messages deleted while they waited are not sent (SPEC §13);
		// the claim settles them all.
		live := slices.DeleteFunc(slices.Clone(c.Messages), func(m chat.Message) bool { return m.Deleted })
		switch {
		case !c.HeldUntil.IsZero():
			// Once the other run sent, the throttle holds this run's
			// messages for gap anyway.
			return jobs.Wait(integrations.ErrHeld, min(gap, c.HeldUntil.Sub(c.Now)))
		case c.Token == "":
			return nil // nothing pending: an earlier run sent it
		case c.Phone == "" || len(live) == 0:
			// The number was removed or changed (and so is unverified)
			// since: nothing to send it to; or every message pending was
			// deleted: nothing to send.
			return store.DropPendingSMS(settle, c)
		case !c.LastSentAt.IsZero() && c.Now.Sub(c.LastSentAt) < gap:
			next := c.LastSentAt.Add(gap)
			if err := store.ReleaseSMSClaim(settle, c); err != nil {
				return err
			}
			key := fmt.Sprintf("sms:%s:%s:at:%d", p.UserID, p.RoomID, next.Unix())
			return queue.EnqueueAt(ctx, SMSKind.Type, key, payload, next)
		}
		err = breaker.Do(func() error { return sender.Send(c.Phone, FormatSMS(c.RoomName, live)) })
		if err != nil {
			return errors.Join(err, store.ReleaseSMSClaim(settle, c))
		}
		return store.MarkSMSSent(settle, c)
	}
}

// mentions reports whether one of msgs mentions userID.
func mentions(msgs []chat.Message, userID string) bool {
	for _, m := range msgs {
		if slices.Contains(m.Mentions, userID) {
			return true
		}
	}
	return false
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
