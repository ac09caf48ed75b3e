package web

import (
	"context"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/switchboard-chat/switchboard/chat"
)

// Limiter limits how often one key may act; in a cluster its budget is
// shared by every node.
type Limiter interface {
	// Allow counts one request for key if the key's budget allows it. An
	// error means the limiter could not answer.
	Allow(ctx context.Context, key string) (chat.LimitResult, error)
}

// limiterLogEvery is the least time between two logs of a failing limiter,
// so that a Redis outage does not log once per request.
const limiterLogEvery = time.Minute

var errRateLimited = chat.Errorf(chat.CodeRateLimited, "too many requests; retry later")

// limited wraps h, an authenticated write endpoint, in the per-user limit
// of Config.Limiter, with the key "user:<id>". Answers carry the
// RateLimit-Limit, -Remaining and -Reset headers (IETF draft
// "RateLimit header fields for HTTP"); a refusal is 429 rate_limited with
// Retry-After too, and runs nothing of h.
//
// The limiter fails open: if it cannot answer (Redis down), the request
// goes ahead without headers, and the failure is logged at most once per
// limiterLogEvery. Refusing every write while Redis is away would turn an
// outage of an abuse guard into an outage of the API.
func (a *API) limited(h func(http.ResponseWriter, *http.Request, chat.Session)) func(http.ResponseWriter, *http.Request, chat.Session) {
	if a.cfg.Limiter == nil {
		return h
	}
	return func(w http.ResponseWriter, r *http.Request, s chat.Session) {
		res, err := a.cfg.Limiter.Allow(r.Context(), "user:"+s.User.ID)
		if err != nil {
			a.limiterFailed(r, err)
			h(w, r, s)
			return
		}
		hdr := w.Header()
		hdr.Set("RateLimit-Limit", strconv.Itoa(res.Limit))
		hdr.Set("RateLimit-Remaining", strconv.Itoa(max(res.Remaining, 0)))
		hdr.Set("RateLimit-Reset", strconv.Itoa(ceilSeconds(res.ResetAfter)))
		if !res.Allowed {
			hdr.Set("Retry-After", strconv.Itoa(max(ceilSeconds(res.RetryAfter), 1)))
			writeError(w, errRateLimited)
			return
		}
		h(w, r, s)
	}
}

// limiterFailed logs err unless it logged one less than limiterLogEvery ago.
func (a *API) limiterFailed(r *http.Request, err error) {
	now := time.Now().UnixNano()
	last := a.limiterLogged.Load()
	if last != 0 && now-last < int64(limiterLogEvery) {
		return
	}
	if !a.limiterLogged.CompareAndSwap(last, now) {
		return // another request logs this one
	}
	a.log.WarnContext(r.Context(), "rate limiter unavailable; allowing requests unlimited (logged at most once a minute)",
		slog.Any("error", err))
}

// ceilSeconds is d in whole seconds, rounded up.
func ceilSeconds(d time.Duration) int {
	if d <= 0 {
		return 0
	}
	return int(math.Ceil(d.Seconds()))
}
