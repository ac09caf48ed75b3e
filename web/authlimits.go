package web

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard-chat/switchboard/auth"
	"github.com/switchboard-chat/switchboard/chat"
)

// This file holds the abuse limits of the auth endpoints (SPEC §3): a
// budget per client IP for login, register and refresh together, and a
// growing wait per username after failed logins. Both are answered before
// any password is hashed or checked: a password check costs about 50 ms of
// CPU, so a flood of them would starve every other request.

// Backoff delays attempts for a key after failures in a row, across every
// node (*ratelimit.Backoff is one).
type Backoff interface {
	// Wait returns zero when an attempt may go ahead, or how long it must
	// wait.
	Wait(ctx context.Context, key string) (time.Duration, error)
	Fail(ctx context.Context, key string) (int, error)
	Succeed(ctx context.Context, key string) error
}

// authMetrics count the password work and the refusals of the auth limits.
type authMetrics struct {
	passwordWork *prometheus.CounterVec // by op: hash, check
	refusals     *prometheus.CounterVec // by limit: ip, username
}

func newAuthMetrics(reg prometheus.Registerer) (*authMetrics, error) {
	m := &authMetrics{
		passwordWork: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchboard_password_work_total",
			Help: "Password hashes (register, password change) and checks (login, password change), by op.",
		}, []string{"op"}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchboard_auth_refused_total",
			Help: "Auth requests refused before any password work, by limit: ip (login, register and refresh per client IP) or username (failed logins in a row).",
		}, []string{"limit"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.passwordWork, m.refusals} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

var errAuthRateLimited = chat.Errorf(chat.CodeRateLimited, "too many sign-in attempts; retry later")

// refuseAuth answers 429 with Retry-After (whole seconds, at least 1).
func (a *API) refuseAuth(w http.ResponseWriter, limit string, retry time.Duration) {
	a.authMetrics.refusals.WithLabelValues(limit).Inc()
	w.Header().Set("Retry-After", strconv.Itoa(max(ceilSeconds(retry), 1)))
	writeError(w, errAuthRateLimited)
}

// allowAuth counts one login, register or refresh against the client IP's
// budget and answers 429 when it is spent. Like limited, it fails open.
func (a *API) allowAuth(w http.ResponseWriter, r *http.Request) bool {
	if a.cfg.AuthLimiter == nil {
		return true
	}
	res, err := a.cfg.AuthLimiter.Allow(r.Context(), "auth-ip:"+a.clientIP(r))
	if err != nil {
		a.limiterFailed(r, err)
		return true
	}
	if !res.Allowed {
		a.refuseAuth(w, "ip", res.RetryAfter)
		return false
	}
	return true
}

// allowLogin answers 429 while username must wait after failed logins.
// Like limited, it fails open.
func (a *API) allowLogin(w http.ResponseWriter, r *http.Request, username string) bool {
	if a.cfg.LoginBackoff == nil {
		return true
	}
	wait, err := a.cfg.LoginBackoff.Wait(r.Context(), "login:"+username)
	if err != nil {
		a.limiterFailed(r, err)
		return true
	}
	if wait > 0 {
		a.refuseAuth(w, "username", wait)
		return false
	}
	return true
}

func (a *API) loginFailed(r *http.Request, username string) {
	if a.cfg.LoginBackoff == nil {
		return
	}
	if _, err := a.cfg.LoginBackoff.Fail(r.Context(), "login:"+username); err != nil {
		a.limiterFailed(r, err)
	}
}

func (a *API) loginSucceeded(r *http.Request, username string) {
	if a.cfg.LoginBackoff == nil {
		return
	}
	if err := a.cfg.LoginBackoff.Succeed(r.Context(), "login:"+username); err != nil {
		a.log.WarnContext(r.Context(), "forget failed logins", slog.Any("error", err))
	}
}

func (a *API) clientIP(r *http.Request) string {
	if a.cfg.ClientIP != nil {
		return a.cfg.ClientIP(r)
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func (a *API) hashPassword(password string) (string, error) {
	a.authMetrics.passwordWork.WithLabelValues("hash").Inc()
	return auth.HashPassword(password)
}

func (a *API) checkPassword(hash, password string) bool {
	a.authMetrics.passwordWork.WithLabelValues("check").Inc()
	return auth.CheckPassword(hash, password)
}

func (a *API) checkNoPassword(password string) {
	a.authMetrics.passwordWork.WithLabelValues("check").Inc()
	auth.CheckNoPassword(password)
}
