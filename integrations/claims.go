package integrations

import (
	"context"
	"errors"
	"time"
)

// The jobs that call Twilio or Slack take their work with a claim in one
// short transaction (storage's ClaimPendingSMS, ClaimPhoneCode, ClaimRun),
// make the call with no transaction open and nothing locked, and settle the
// claim in another. A claim that is never settled lapses after ClaimLease,
// and the next run does the work: a run that died before the API accepted
// loses nothing, one that died after it and before settling has the work
// done twice (neither API takes an idempotency key).

const (
	// ClaimLease is how long a claim keeps other runs of its work away. It
	// outlasts any run that is still at work: the senders bound each call
	// (Twilio: 20 s; Slack: the job's 30 s context) and settle within
	// SettleTimeout after it.
	ClaimLease = 45 * time.Second
	// SettleTimeout bounds recording the outcome of a call.
	SettleTimeout = 5 * time.Second
	// HeldRetry is how soon a run comes back while another one holds its
	// work: that one is about to settle it.
	HeldRetry = time.Second
)

// ErrHeld is wrapped by the error of a run deferred (jobs.Wait) because
// another run holds the same work.
var ErrHeld = errors.New("another run holds this work")

// SettleContext is ctx for recording what an API did, outliving ctx by up
// to SettleTimeout: once the API accepted, recording it is what keeps the
// next run from doing the work again, even when the job's own time is up.
func SettleContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), SettleTimeout)
}
