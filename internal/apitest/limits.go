package apitest

import (
	"net/http"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-chat/switchboard/ratelimit"
)

// SlowLimit refills one request every 10 s, so that nothing refills while
// a test runs.
var SlowLimit = ratelimit.Limit{Rate: 0.1, Burst: 5}

// From is a request header naming the client behind a trusted proxy.
func From(ip string) http.Header { return http.Header{"X-Forwarded-For": {ip}} }

// RequireRateLimitHeaders checks the RateLimit-* headers of an answer of
// the limited endpoints and returns RateLimit-Remaining.
func RequireRateLimitHeaders(t testing.TB, r Response, limit int) int {
	t.Helper()
	require.Equal(t, strconv.Itoa(limit), r.Header.Get("RateLimit-Limit"), "%s", r.Raw)
	remaining, err := strconv.Atoi(r.Header.Get("RateLimit-Remaining"))
	require.NoError(t, err)
	reset, err := strconv.Atoi(r.Header.Get("RateLimit-Reset"))
	require.NoError(t, err)
	require.Positive(t, reset)
	return remaining
}

// RequireRetryAfter checks a 429 rate_limited answer whose Retry-After is
// between atLeast and atMost seconds.
func RequireRetryAfter(t testing.TB, r Response, atLeast, atMost int) {
	t.Helper()
	RequireError(t, r, http.StatusTooManyRequests, "rate_limited")
	n, err := strconv.Atoi(r.Header.Get("Retry-After"))
	require.NoError(t, err, "Retry-After %q", r.Header.Get("Retry-After"))
	require.GreaterOrEqual(t, n, atLeast)
	require.LessOrEqual(t, n, atMost)
}
