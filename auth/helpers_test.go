package auth_test

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"

	"github.com/switchboard-chat/switchboard/auth"
)

// testNow is the fixed "now" of the tests: whole seconds, because JWT times
// are whole seconds.
var testNow = time.Unix(1_700_000_000, 0)

// testSecret is the HS256 key of the tests' own verifier (32 bytes).
var testSecret = []byte("switchboard-test-secret-32-bytes")

// testClock is an injectable clock that a test can move.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func newTestClock(now time.Time) *testClock { return &testClock{now: now} }

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

type testBundle struct {
	clock  *testClock
	secret []byte
	tokens *auth.Tokens
}

// setup returns a verifier with testSecret, the default issuer, audience and
// lifetimes and a clock at testNow. configure may change the config first.
func setup(t *testing.T, configure ...func(*auth.Config)) *testBundle {
	t.Helper()
	clock := newTestClock(testNow)
	cfg := auth.Config{Secret: testSecret, Now: clock.Now}
	for _, f := range configure {
		f(&cfg)
	}
	tokens, err := auth.New(cfg)
	require.NoError(t, err)
	return &testBundle{clock: clock, secret: cfg.Secret, tokens: tokens}
}

// jwtSentinels are golang-jwt's error kinds; reasons reports which of them an
// error carries, so that tests can say exactly why a token was refused.
var jwtSentinels = []error{
	jwt.ErrTokenMalformed,
	jwt.ErrTokenUnverifiable,
	jwt.ErrTokenSignatureInvalid,
	jwt.ErrTokenInvalidClaims,
	jwt.ErrTokenRequiredClaimMissing,
	jwt.ErrTokenExpired,
	jwt.ErrTokenNotValidYet,
	jwt.ErrTokenUsedBeforeIssued,
	jwt.ErrTokenInvalidIssuer,
	jwt.ErrTokenInvalidAudience,
	jwt.ErrTokenInvalidSubject,
	jwt.ErrTokenInvalidId,
	jwt.ErrInvalidType,
}

// reasons lists the golang-jwt error kinds err wraps, by their messages.
func reasons(err error) []string {
	var rs []string
	for _, s := range jwtSentinels {
		if errors.Is(err, s) {
			rs = append(rs, s.Error())
		}
	}
	return rs
}

// messages turns error kinds into what reasons reports for them.
func messages(errs ...error) []string {
	var ms []string
	for _, e := range errs {
		ms = append(ms, e.Error())
	}
	return ms
}

var requiredClaimRE = regexp.MustCompile(`(\w+) claim is required`)

// missingClaims lists the claims golang-jwt reported as required but absent.
func missingClaims(err error) []string {
	if err == nil {
		return nil
	}
	var names []string
	for _, m := range requiredClaimRE.FindAllStringSubmatch(err.Error(), -1) {
		names = append(names, m[1])
	}
	return names
}

// keyFunc returns key for every token, like auth.Tokens does.
func keyFunc(key []byte) jwt.Keyfunc {
	return func(*jwt.Token) (any, error) { return key, nil }
}

// sign signs claims with method and key using golang-jwt.
func sign(t *testing.T, method jwt.SigningMethod, claims jwt.Claims, key any) string {
	t.Helper()
	token, err := jwt.NewWithClaims(method, claims).SignedString(key)
	require.NoError(t, err)
	return token
}

// splitToken returns the three segments of a compact JWT.
func splitToken(t *testing.T, token string) (header, payload, signature string) {
	t.Helper()
	parts := strings.Split(token, ".")
	require.Len(t, parts, 3, "a compact JWT has three segments")
	return parts[0], parts[1], parts[2]
}

// decodeSegment base64url-decodes and JSON-decodes one JWT segment.
func decodeSegment(t *testing.T, seg string) map[string]any {
	t.Helper()
	raw, err := base64.RawURLEncoding.DecodeString(seg)
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, json.Unmarshal(raw, &m))
	return m
}

// encodeSegment JSON-encodes and base64url-encodes v as a JWT segment.
func encodeSegment(t *testing.T, v any) string {
	t.Helper()
	raw, err := json.Marshal(v)
	require.NoError(t, err)
	return base64.RawURLEncoding.EncodeToString(raw)
}
