package chat

import "time"

// LimitResult is a rate limiter's answer for one request: whether it may
// go ahead and what is left of its budget, enough to fill the RateLimit
// headers of an HTTP answer.
type LimitResult struct {
	// Allowed reports whether the request may go ahead; it has then been
	// counted.
	Allowed bool
	// Limit is the most requests a full budget allows (the burst).
	Limit int
	// Remaining is how many more requests would be allowed right now.
	Remaining int
	// RetryAfter is, when refused, how long until one request is allowed;
	// zero when allowed.
	RetryAfter time.Duration
	// ResetAfter is how long until the budget is full again.
	ResetAfter time.Duration
}
