package web

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-chat/switchboard/chat"
)

type fakeLimiter struct {
	res chat.LimitResult
	err error
}

func (f fakeLimiter) Allow(context.Context, string) (chat.LimitResult, error) { return f.res, f.err }

// limitedAPI returns an API with only the limiter and a logger into buf.
func limitedAPI(l Limiter, buf *bytes.Buffer) *API {
	log := slog.New(slog.NewTextHandler(buf, nil))
	return &API{cfg: Config{Limiter: l}, log: log}
}

func runLimited(a *API) (*httptest.ResponseRecorder, bool) {
	ran := false
	h := a.limited(func(w http.ResponseWriter, r *http.Request, s chat.Session) {
		ran = true
		w.WriteHeader(http.StatusNoContent)
	})
	w := httptest.NewRecorder()
	h(w, httptest.NewRequest("POST", "/api/v1/rooms", nil), chat.Session{User: chat.User{ID: "u1"}})
	return w, ran
}

func TestLimited(t *testing.T) {
	t.Parallel()

	t.Run("Refused", func(t *testing.T) {
		t.Parallel()
		var buf bytes.Buffer
		w, ran := runLimited(limitedAPI(fakeLimiter{res: chat.LimitResult{Limit: 20, RetryAfter: 1200 * time.Millisecond, ResetAfter: 3900 * time.Millisecond}}, &buf))
		require.False(t, ran)
		require.Equal(t, http.StatusTooManyRequests, w.Code)
		require.Contains(t, w.Body.String(), `"rate_limited"`)
		require.Equal(t, "2", w.Header().Get("Retry-After"))
		require.Equal(t, "20", w.Header().Get("RateLimit-Limit"))
		require.Equal(t, "0", w.Header().Get("RateLimit-Remaining"))
		require.Equal(t, "4", w.Header().Get("RateLimit-Reset"))
	})

	t.Run("Allowed", func(t *testing.T) {
		t.Parallel()
		var buf bytes.Buffer
		w, ran := runLimited(limitedAPI(fakeLimiter{res: chat.LimitResult{Allowed: true, Limit: 20, Remaining: 7, ResetAfter: 2 * time.Second}}, &buf))
		require.True(t, ran)
		require.Equal(t, "7", w.Header().Get("RateLimit-Remaining"))
		require.Equal(t, "2", w.Header().Get("RateLimit-Reset"))
		require.Empty(t, w.Header().Get("Retry-After"))
	})

	t.Run("FailsOpenAndLogsOnce", func(t *testing.T) {
		t.Parallel()
		var buf bytes.Buffer
		a := limitedAPI(fakeLimiter{err: errors.New("redis down")}, &buf)
		for range 3 {
			w, ran := runLimited(a)
			require.True(t, ran)
			require.Equal(t, http.StatusNoContent, w.Code)
			require.Empty(t, w.Header().Get("RateLimit-Limit"))
		}
		require.Equal(t, 1, strings.Count(buf.String(), "rate limiter unavailable"), buf.String())
	})
}
