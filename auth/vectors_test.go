package auth_test

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"

	"github.com/switchboard-chat/switchboard/auth"
	"github.com/switchboard-chat/switchboard/internal/testvectors"
)

type jwtVectorsFile struct {
	Verification string            `json:"verification"`
	Published    []publishedVector `json:"published"`
	Generated    generatedSection  `json:"generated"`
}

// publishedVector is a vector copied from an RFC, golang-jwt's tests or
// jwt.io. Its expect is an object: what is checked -> verdict.
type publishedVector struct {
	Name   string  `json:"name"`
	Token  *string `json:"token"`
	KeyHex string  `json:"key_hex"`
	KeyJWK *struct {
		Kty string `json:"kty"`
		K   string `json:"k"`
	} `json:"key_jwk"`
	SecretUTF8 string          `json:"secret_utf8"`
	Expect     json.RawMessage `json:"expect"`
}

type generatedSection struct {
	SecretUTF8    string            `json:"secret_utf8"`
	NowUnix       int64             `json:"now_unix"`
	AllowedAlgs   []string          `json:"allowed_algs"`
	LeewaySeconds *int              `json:"leeway_seconds"`
	Vectors       []generatedVector `json:"vectors"`
}

// generatedVector is a token made with the section's secret, checked at the
// section's now. Its expect is "accept", "reject" or
// "implementation-defined" with what golang-jwt was observed to do.
type generatedVector struct {
	Name     string            `json:"name"`
	Token    *string           `json:"token"`
	Expect   json.RawMessage   `json:"expect"`
	Reason   string            `json:"reason"`
	Observed map[string]string `json:"observed"`
}

func loadJWTVectors(t *testing.T) *jwtVectorsFile {
	t.Helper()
	// The published JWT test vectors (see testdata/README.md).
	raw, err := os.ReadFile(testvectors.Path("jwt.json"))
	require.NoError(t, err, "the published JWT vectors must be present")
	var f jwtVectorsFile
	require.NoError(t, json.Unmarshal(raw, &f))

	// The verdicts were computed with golang-jwt configured as the note says;
	// referenceParser reproduces that configuration.
	for _, setting := range []string{"github.com/golang-jwt/jwt/v5", "WithValidMethods([HS256])", "WithExpirationRequired", "fixed clock"} {
		require.Contains(t, f.Verification, setting, "the file's verification note changed: review referenceParser")
	}
	require.NotEmpty(t, f.Published)
	require.NotEmpty(t, f.Generated.Vectors)
	return &f
}

// referenceParser is golang-jwt configured as the vectors file's
// verification note says: HS256 only, exp required, a fixed clock, no
// leeway. It checks neither iss nor aud.
func referenceParser(now time.Time) *jwt.Parser {
	return jwt.NewParser(
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithExpirationRequired(),
		jwt.WithTimeFunc(func() time.Time { return now }),
	)
}

// referenceParse parses token with the reference settings, or with opts
// instead if given, into jwt.MapClaims as jwt.Parse does: the plain parser
// the verdicts were computed with (with RegisteredClaims, golang-jwt would
// take a JSON string holding a number as a NumericDate).
func referenceParse(token string, key []byte, now time.Time, opts ...jwt.ParserOption) error {
	p := referenceParser(now)
	if len(opts) > 0 {
		p = jwt.NewParser(opts...)
	}
	_, err := p.ParseWithClaims(token, jwt.MapClaims{}, keyFunc(key))
	return err
}

// newVerifier returns our verifier with key, the default issuer and
// audience, and a clock stopped at now.
func newVerifier(t *testing.T, key []byte, now time.Time, configure ...func(*auth.Config)) *auth.Tokens {
	t.Helper()
	cfg := auth.Config{Secret: key, Now: func() time.Time { return now }}
	for _, f := range configure {
		f(&cfg)
	}
	tokens, err := auth.New(cfg)
	require.NoError(t, err)
	return tokens
}

// requireRefusedOnlyForOurClaims checks a token that golang-jwt accepts with
// the reference settings: tokens must refuse it, and only because of the
// claims we require on top of those (iss and aud equal to ours, exp), never
// for its algorithm, signature, encoding or times.
func requireRefusedOnlyForOurClaims(t *testing.T, tokens *auth.Tokens, token, issuer, audience string) {
	t.Helper()
	claims, err := tokens.Verify(token)
	require.ErrorIs(t, err, auth.ErrInvalidToken)
	require.Zero(t, claims)

	// What the token lacks or gets wrong, read from its (unverified) claims.
	mc := jwt.MapClaims{}
	_, _, perr := jwt.NewParser().ParseUnverified(token, mc)
	require.NoError(t, perr)
	want := []error{jwt.ErrTokenInvalidClaims}
	var wantMissing []string
	if _, ok := mc["exp"]; !ok {
		wantMissing = append(wantMissing, "exp")
	}
	if iss, _ := mc.GetIssuer(); iss == "" {
		wantMissing = append(wantMissing, "iss")
	} else if iss != issuer {
		want = append(want, jwt.ErrTokenInvalidIssuer)
	}
	if aud, _ := mc.GetAudience(); len(aud) == 0 {
		wantMissing = append(wantMissing, "aud")
	} else if !slices.Contains(aud, audience) {
		want = append(want, jwt.ErrTokenInvalidAudience)
	}
	if len(wantMissing) > 0 {
		want = append(want, jwt.ErrTokenRequiredClaimMissing)
	}
	require.Greater(t, len(want), 1, "the token meets all our claim rules: it should not be refused for its claims")

	// Exactly these reasons: in particular no signature, algorithm,
	// encoding, exp, nbf or iat error.
	require.ElementsMatch(t, messages(want...), reasons(err), "refused for: %v", err)
	require.ElementsMatch(t, wantMissing, missingClaims(err), "refused for: %v", err)
}

// requireRefusedLikeReference checks a token whose verdict is "reject": the
// reference settings refuse it, and so does our verifier, for at least the
// same reason (ours checks more claims, so it may add iss/aud reasons).
func requireRefusedLikeReference(t *testing.T, tokens *auth.Tokens, token string, refErr error) {
	t.Helper()
	require.Error(t, refErr, "the file says reject but golang-jwt with the note's settings accepts the token")
	claims, err := tokens.Verify(token)
	require.ErrorIs(t, err, auth.ErrInvalidToken)
	require.Zero(t, claims)
	require.Subset(t, reasons(err), reasons(refErr), "ours: %v\nreference: %v", err, refErr)
	require.Subset(t, missingClaims(err), missingClaims(refErr))
	require.ErrorContains(t, err, refErr.Error())
}

// verdictWord is the first word of a verdict: "reject (expired: ...)" -> "reject".
func verdictWord(verdict string) string {
	f := strings.Fields(strings.ReplaceAll(verdict, "(", " "))
	if len(f) == 0 {
		return ""
	}
	return f[0]
}

func TestJWTVectorsPublished(t *testing.T) {
	t.Parallel()

	f := loadJWTVectors(t)
	fallbackSecret := []byte(f.Generated.SecretUTF8)
	fallbackNow := time.Unix(f.Generated.NowUnix, 0)
	requireUniqueNames(t, f)

	for _, v := range f.Published {
		t.Run(v.Name, func(t *testing.T) {
			t.Parallel()

			require.NotNil(t, v.Token, "vector has no token")
			token := *v.Token
			key := publishedKey(t, v, fallbackSecret)

			var expect map[string]string
			require.NoError(t, json.Unmarshal(v.Expect, &expect), "unrecognised expect shape: %s", v.Expect)
			require.NotEmpty(t, expect, "vector has no expectation")

			// A clock at which the token has not expired yet, so that a
			// refusal below is not merely expiry.
			now := fallbackNow
			var rc jwt.RegisteredClaims
			_, _, _ = jwt.NewParser().ParseUnverified(token, &rc)
			if rc.ExpiresAt != nil {
				now = rc.ExpiresAt.Add(-time.Second)
			}

			for what, verdict := range expect {
				t.Run(what, func(t *testing.T) {
					t.Parallel()
					checkPublishedExpectation(t, token, key, now, what, verdict)
				})
			}
		})
	}
}

func checkPublishedExpectation(t *testing.T, token string, key []byte, now time.Time, what, verdict string) {
	t.Helper()
	word := verdictWord(verdict)

	switch {
	case what == "signature" || strings.HasPrefix(what, "signature_under_"):
		// The signature alone, under HS256 or the named algorithm.
		alg := strings.TrimPrefix(strings.TrimPrefix(what, "signature"), "_under_")
		if alg == "" {
			alg = jwt.SigningMethodHS256.Alg()
		}
		require.NotNil(t, jwt.GetSigningMethod(alg), "unknown algorithm %q", alg)
		err := referenceParse(token, key, now, jwt.WithValidMethods([]string{alg}), jwt.WithoutClaimsValidation())
		switch word {
		case "valid":
			require.NoError(t, err)
		case "invalid":
			require.ErrorIs(t, err, jwt.ErrTokenSignatureInvalid)
			if alg == jwt.SigningMethodHS256.Alg() {
				// Our verifier refuses it for its signature and nothing else.
				claims, err := newVerifier(t, key, now).Verify(token)
				require.ErrorIs(t, err, auth.ErrInvalidToken)
				require.Zero(t, claims)
				require.ElementsMatch(t, messages(jwt.ErrTokenSignatureInvalid), reasons(err), "refused for: %v", err)
			}
		default:
			require.FailNowf(t, "unrecognised verdict", "%s: %q", what, verdict)
		}

	case what == "HS256_server" || what == "HS256_only_server":
		// An HS256-only server must refuse the token for its algorithm,
		// before looking at its claims.
		require.Equal(t, "reject", word, "unrecognised verdict %q", verdict)
		tokens := newVerifier(t, key, now)
		requireRefusedLikeReference(t, tokens, token, referenceParse(token, key, now))
		_, err := tokens.Verify(token)
		require.NotContains(t, reasons(err), jwt.ErrTokenInvalidClaims.Error(), "refused for its claims, not its algorithm: %v", err)
		require.Subset(t, messages(jwt.ErrTokenSignatureInvalid, jwt.ErrTokenUnverifiable), reasons(err), "refused for: %v", err)
		require.NotEmpty(t, reasons(err))

	case strings.HasPrefix(what, "at_time_"):
		sec, err := strconv.ParseInt(strings.TrimPrefix(what, "at_time_"), 10, 64)
		require.NoError(t, err)
		at := time.Unix(sec, 0)
		switch word {
		case "accept":
			require.NoError(t, referenceParse(token, key, at), "golang-jwt with the note's settings must accept it")
			requireRefusedOnlyForOurClaims(t, newVerifier(t, key, at), token, "switchboard", "switchboard")
			// With our issuer set to the token's, only what is still
			// missing remains.
			mc := jwt.MapClaims{}
			_, _, err := jwt.NewParser().ParseUnverified(token, mc)
			require.NoError(t, err)
			if iss, _ := mc.GetIssuer(); iss != "" {
				tokens := newVerifier(t, key, at, func(c *auth.Config) { c.Issuer = iss })
				requireRefusedOnlyForOurClaims(t, tokens, token, iss, "switchboard")
			}
		case "reject":
			requireRefusedLikeReference(t, newVerifier(t, key, at), token, referenceParse(token, key, at))
		default:
			require.FailNowf(t, "unrecognised verdict", "%s: %q", what, verdict)
		}

	case strings.HasPrefix(what, "at_any_time_after_"):
		after, err := time.Parse(time.RFC3339, strings.TrimPrefix(what, "at_any_time_after_"))
		require.NoError(t, err)
		require.Equal(t, "reject", word, "unrecognised verdict %q", verdict)
		for _, at := range []time.Time{after, after.Add(time.Second), after.Add(365 * 24 * time.Hour)} {
			tokens := newVerifier(t, key, at)
			requireRefusedLikeReference(t, tokens, token, referenceParse(token, key, at))
			if strings.Contains(verdict, "expired") {
				_, err := tokens.Verify(token)
				require.ErrorIs(t, err, jwt.ErrTokenExpired)
			}
		}

	case what == "no_exp":
		// "accept only if exp is optional": we require exp, so we refuse.
		require.True(t, strings.HasPrefix(verdict, "accept only if exp is optional"), "unrecognised verdict %q", verdict)
		// Signature, algorithm and times are fine when exp is optional...
		err := referenceParse(token, key, now,
			jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
			jwt.WithTimeFunc(func() time.Time { return now }))
		require.NoError(t, err)
		// ...the reference settings require exp and refuse it for that...
		refErr := referenceParse(token, key, now)
		require.ErrorIs(t, refErr, jwt.ErrTokenRequiredClaimMissing)
		require.Equal(t, []string{"exp"}, missingClaims(refErr))
		// ...and so do we, for that and our iss/aud only.
		tokens := newVerifier(t, key, now)
		requireRefusedLikeReference(t, tokens, token, refErr)
		requireRefusedOnlyForOurClaims(t, tokens, token, "switchboard", "switchboard")

	default:
		require.FailNowf(t, "unrecognised expectation", "%s: %q", what, verdict)
	}
}

// publishedKey is the vector's HMAC key: key_hex, key_jwk (which must agree
// with key_hex) or secret_utf8; vectors without a key (alg none) get
// fallback.
func publishedKey(t *testing.T, v publishedVector, fallback []byte) []byte {
	t.Helper()
	var key []byte
	if v.KeyHex != "" {
		k, err := hex.DecodeString(v.KeyHex)
		require.NoError(t, err)
		key = k
	}
	if v.KeyJWK != nil {
		require.Equal(t, "oct", v.KeyJWK.Kty)
		k, err := base64.RawURLEncoding.DecodeString(v.KeyJWK.K)
		require.NoError(t, err)
		if key != nil {
			require.Equal(t, key, k, "key_jwk and key_hex disagree")
		}
		key = k
	}
	if v.SecretUTF8 != "" {
		require.Nil(t, key, "vector has more than one kind of key")
		key = []byte(v.SecretUTF8)
	}
	if key == nil {
		key = fallback
	}
	return key
}

func TestJWTVectorsGenerated(t *testing.T) {
	t.Parallel()

	f := loadJWTVectors(t)
	g := f.Generated
	require.Equal(t, auth.Algorithms, g.AllowedAlgs, "the vectors assume our algorithm allow-list")
	require.NotNil(t, g.LeewaySeconds)
	require.Zero(t, *g.LeewaySeconds, "the vectors assume no leeway, as auth.Tokens has")
	require.NotZero(t, g.NowUnix)
	secret := []byte(g.SecretUTF8)
	now := time.Unix(g.NowUnix, 0)
	requireUniqueNames(t, f)

	for _, v := range g.Vectors {
		t.Run(v.Name, func(t *testing.T) {
			t.Parallel()

			require.NotNil(t, v.Token, "vector has no token")
			token := *v.Token
			var verdict string
			require.NoError(t, json.Unmarshal(v.Expect, &verdict), "unrecognised expect shape: %s", v.Expect)
			if verdict == "implementation-defined" {
				// Use what golang-jwt v5, which we use, was observed to do.
				var observed []string
				for lib, got := range v.Observed {
					if strings.HasPrefix(lib, "golang-jwt/jwt/v5") {
						observed = append(observed, got)
					}
				}
				require.Len(t, observed, 1, "implementation-defined without one golang-jwt/jwt/v5 observation: %v", v.Observed)
				verdict = observed[0]
			}

			tokens := newVerifier(t, secret, now)
			refErr := referenceParse(token, secret, now)
			switch verdict {
			case "accept":
				require.NoError(t, refErr, "golang-jwt with the note's settings must accept it")
				requireRefusedOnlyForOurClaims(t, tokens, token, "switchboard", "switchboard")
			case "reject":
				requireRefusedLikeReference(t, tokens, token, refErr)
			default:
				require.FailNowf(t, "unrecognised verdict", "%q (%s)", verdict, v.Reason)
			}
		})
	}
}

// requireUniqueNames fails if two vectors share a name: each is a subtest
// named after it.
func requireUniqueNames(t *testing.T, f *jwtVectorsFile) {
	t.Helper()
	seen := map[string]bool{}
	for _, v := range f.Published {
		require.NotEmpty(t, v.Name)
		require.False(t, seen[v.Name], "duplicate vector name %q", v.Name)
		seen[v.Name] = true
	}
	for _, v := range f.Generated.Vectors {
		require.NotEmpty(t, v.Name)
		require.False(t, seen[v.Name], "duplicate vector name %q", v.Name)
		seen[v.Name] = true
	}
}
