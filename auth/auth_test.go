package auth_test

import (
	"crypto/sha256"
	"encoding/hex"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/bcrypt"

	"github.com/switchboard-chat/switchboard/auth"
)

// validClaims are claims our verifier accepts at testNow, for hand-built
// tokens: tests delete or change one of them.
func validClaims() jwt.MapClaims {
	return jwt.MapClaims{
		"sub": "42",
		"iss": "switchboard",
		"aud": "switchboard",
		"iat": testNow.Unix(),
		"exp": testNow.Add(15 * time.Minute).Unix(),
		"jti": "hand-built-jti",
		"sid": "hand-built-session",
	}
}

func TestNew(t *testing.T) {
	t.Parallel()

	t.Run("Secret", func(t *testing.T) {
		t.Parallel()

		for _, tt := range []struct {
			name    string
			secret  []byte
			wantErr bool
		}{
			{name: "Nil", secret: nil, wantErr: true},
			{name: "Empty", secret: []byte{}, wantErr: true},
			{name: "15Bytes", secret: []byte("0123456789abcde"), wantErr: true},
			{name: "16Bytes", secret: []byte("0123456789abcdef")},
			{name: "32Bytes", secret: testSecret},
		} {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				tokens, err := auth.New(auth.Config{Secret: tt.secret})
				if tt.wantErr {
					require.ErrorContains(t, err, "at least 16 bytes")
					require.Nil(t, tokens)
					return
				}
				require.NoError(t, err)
				require.NotNil(t, tokens)
			})
		}
	})

	t.Run("Defaults", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t)

		token, ttl, err := bundle.tokens.Issue("42", "session-1")
		require.NoError(t, err)
		require.Equal(t, 15*time.Minute, ttl)

		header, payload, _ := splitToken(t, token)
		require.Equal(t, map[string]any{"alg": "HS256", "typ": "JWT"}, decodeSegment(t, header))
		claims := decodeSegment(t, payload)
		require.Equal(t, "switchboard", claims["iss"])
		require.Equal(t, []any{"switchboard"}, claims["aud"])
		require.Equal(t, "42", claims["sub"])
		require.InDelta(t, testNow.Unix(), claims["iat"], 0)
		require.InDelta(t, testNow.Add(15*time.Minute).Unix(), claims["exp"], 0)

		_, _, expires := bundle.tokens.NewRefreshToken()
		require.WithinDuration(t, testNow.Add(30*24*time.Hour), expires, 0)
	})

	t.Run("Custom", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t, func(c *auth.Config) {
			c.Issuer = "chat.example.com"
			c.Audience = "chat-clients"
			c.AccessTTL = 5 * time.Minute
			c.RefreshTTL = 48 * time.Hour
		})

		token, ttl, err := bundle.tokens.Issue("7", "session-1")
		require.NoError(t, err)
		require.Equal(t, 5*time.Minute, ttl)
		claims := decodeSegment(t, strings.Split(token, ".")[1])
		require.Equal(t, "chat.example.com", claims["iss"])
		require.Equal(t, []any{"chat-clients"}, claims["aud"])
		require.InDelta(t, testNow.Add(5*time.Minute).Unix(), claims["exp"], 0)

		got, err := bundle.tokens.Verify(token)
		require.NoError(t, err)
		require.Equal(t, "7", got.UserID)

		_, _, expires := bundle.tokens.NewRefreshToken()
		require.WithinDuration(t, testNow.Add(48*time.Hour), expires, 0)

		// A verifier with the defaults and the same secret refuses it.
		_, err = setup(t).tokens.Verify(token)
		require.ErrorIs(t, err, auth.ErrInvalidToken)
		require.ErrorIs(t, err, jwt.ErrTokenInvalidIssuer)
		require.ErrorIs(t, err, jwt.ErrTokenInvalidAudience)
	})

	t.Run("NilClockIsTimeNow", func(t *testing.T) {
		t.Parallel()
		tokens, err := auth.New(auth.Config{Secret: testSecret})
		require.NoError(t, err)

		token, _, err := tokens.Issue("42", "session-1")
		require.NoError(t, err)
		claims, err := tokens.Verify(token)
		require.NoError(t, err)
		require.WithinDuration(t, time.Now().Add(15*time.Minute), claims.ExpiresAt, 5*time.Second)

		_, _, expires := tokens.NewRefreshToken()
		require.WithinDuration(t, time.Now().Add(30*24*time.Hour), expires, 5*time.Second)
	})
}

func TestIssueVerifyRoundTrip(t *testing.T) {
	t.Parallel()

	t.Run("SameUser", func(t *testing.T) {
		t.Parallel()

		for _, userID := range []string{"1", "42", "9223372036854775807"} {
			t.Run(userID, func(t *testing.T) {
				t.Parallel()
				bundle := setup(t)

				token, ttl, err := bundle.tokens.Issue(userID, "session-1")
				require.NoError(t, err)
				require.Equal(t, 15*time.Minute, ttl)

				claims, err := bundle.tokens.Verify(token)
				require.NoError(t, err)
				require.Equal(t, userID, claims.UserID)
				require.NotEmpty(t, claims.TokenID)
				require.Equal(t, "session-1", claims.SessionID)
				require.WithinDuration(t, testNow.Add(ttl), claims.ExpiresAt, 0)

				// The jti and sid in the token are the ones Verify reports.
				payload := decodeSegment(t, strings.Split(token, ".")[1])
				require.Equal(t, claims.TokenID, payload["jti"])
				require.Equal(t, "session-1", payload["sid"])
			})
		}
	})

	t.Run("DistinctTokenIDs", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t)

		seen := map[string]bool{}
		for range 100 {
			token, _, err := bundle.tokens.Issue("42", "session-1")
			require.NoError(t, err)
			claims, err := bundle.tokens.Verify(token)
			require.NoError(t, err)
			require.False(t, seen[claims.TokenID], "jti %q issued twice", claims.TokenID)
			seen[claims.TokenID] = true
		}
	})

	t.Run("AnotherNodeWithTheSameConfig", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t)
		other := setup(t)

		token, _, err := other.tokens.Issue("42", "session-1")
		require.NoError(t, err)
		claims, err := bundle.tokens.Verify(token)
		require.NoError(t, err)
		require.Equal(t, "42", claims.UserID)
	})

	t.Run("UntilExpiry", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t)

		token, ttl, err := bundle.tokens.Issue("42", "session-1")
		require.NoError(t, err)

		bundle.clock.Add(ttl - time.Second)
		_, err = bundle.tokens.Verify(token)
		require.NoError(t, err, "valid one second before exp")

		bundle.clock.Add(time.Second)
		claims, err := bundle.tokens.Verify(token)
		require.ErrorIs(t, err, auth.ErrInvalidToken)
		require.ErrorIs(t, err, jwt.ErrTokenExpired, "refused at exp")
		require.Zero(t, claims)
	})
}

func TestVerifyAccepts(t *testing.T) {
	t.Parallel()

	for _, tt := range []struct {
		name   string
		claims func() jwt.MapClaims
		want   auth.Claims
	}{
		{
			name:   "HandBuilt",
			claims: validClaims,
			want:   auth.Claims{UserID: "42", SessionID: "hand-built-session", TokenID: "hand-built-jti", ExpiresAt: testNow.Add(15 * time.Minute)},
		},
		{
			name: "AudienceListWithOurs",
			claims: func() jwt.MapClaims {
				c := validClaims()
				c["aud"] = []string{"somewhere-else", "switchboard"}
				return c
			},
			want: auth.Claims{UserID: "42", SessionID: "hand-built-session", TokenID: "hand-built-jti", ExpiresAt: testNow.Add(15 * time.Minute)},
		},
		{
			name: "NoIssuedAt",
			claims: func() jwt.MapClaims {
				c := validClaims()
				delete(c, "iat")
				return c
			},
			want: auth.Claims{UserID: "42", SessionID: "hand-built-session", TokenID: "hand-built-jti", ExpiresAt: testNow.Add(15 * time.Minute)},
		},
		{
			name: "NotBeforeNow",
			claims: func() jwt.MapClaims {
				c := validClaims()
				c["nbf"] = testNow.Unix()
				return c
			},
			want: auth.Claims{UserID: "42", SessionID: "hand-built-session", TokenID: "hand-built-jti", ExpiresAt: testNow.Add(15 * time.Minute)},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			bundle := setup(t)

			token := sign(t, jwt.SigningMethodHS256, tt.claims(), bundle.secret)
			got, err := bundle.tokens.Verify(token)
			require.NoError(t, err)
			require.Equal(t, tt.want.UserID, got.UserID)
			require.Equal(t, tt.want.TokenID, got.TokenID)
			require.Equal(t, tt.want.SessionID, got.SessionID)
			require.WithinDuration(t, tt.want.ExpiresAt, got.ExpiresAt, 0)
		})
	}
}

func TestVerifyRefuses(t *testing.T) {
	t.Parallel()

	// issue returns a token our bundle issued for user 42.
	issue := func(t *testing.T, b *testBundle) string {
		t.Helper()
		token, _, err := b.tokens.Issue("42", "session-1")
		require.NoError(t, err)
		return token
	}
	// issueElsewhere returns a token for user 42 from a verifier with the
	// same clock and a changed config.
	issueElsewhere := func(t *testing.T, b *testBundle, configure func(*auth.Config)) string {
		t.Helper()
		cfg := auth.Config{Secret: b.secret, Now: b.clock.Now}
		configure(&cfg)
		tokens, err := auth.New(cfg)
		require.NoError(t, err)
		token, _, err := tokens.Issue("42", "session-1")
		require.NoError(t, err)
		return token
	}
	// withHeader replaces the header of our own token, keeping its payload
	// and signature.
	withHeader := func(t *testing.T, b *testBundle, header map[string]any, keepSignature bool) string {
		t.Helper()
		_, payload, sig := splitToken(t, issue(t, b))
		if !keepSignature {
			sig = ""
		}
		return encodeSegment(t, header) + "." + payload + "." + sig
	}
	without := func(claim string) jwt.MapClaims {
		c := validClaims()
		delete(c, claim)
		return c
	}
	with := func(claim string, value any) jwt.MapClaims {
		c := validClaims()
		c[claim] = value
		return c
	}

	for _, tt := range []struct {
		name  string
		token func(t *testing.T, b *testBundle) string
		// want are the golang-jwt error kinds the refusal carries, exactly.
		want []error
		// wantMissing are the required claims reported absent, exactly.
		wantMissing []string
		// wantMessage is part of the error message.
		wantMessage string
		// anyReason skips the want and wantMissing checks.
		anyReason bool
	}{
		{
			name: "AnotherSecret",
			token: func(t *testing.T, b *testBundle) string {
				return issueElsewhere(t, b, func(c *auth.Config) { c.Secret = []byte("another-secret-of-thirty-two-byt") })
			},
			want: []error{jwt.ErrTokenSignatureInvalid},
		},
		{
			name: "AnotherIssuer",
			token: func(t *testing.T, b *testBundle) string {
				return issueElsewhere(t, b, func(c *auth.Config) { c.Issuer = "evil.example.com" })
			},
			want: []error{jwt.ErrTokenInvalidClaims, jwt.ErrTokenInvalidIssuer},
		},
		{
			name: "AnotherAudience",
			token: func(t *testing.T, b *testBundle) string {
				return issueElsewhere(t, b, func(c *auth.Config) { c.Audience = "admin-api" })
			},
			want: []error{jwt.ErrTokenInvalidClaims, jwt.ErrTokenInvalidAudience},
		},
		{
			name: "Expired",
			token: func(t *testing.T, b *testBundle) string {
				token := issue(t, b)
				b.clock.Add(15*time.Minute + time.Second)
				return token
			},
			want: []error{jwt.ErrTokenInvalidClaims, jwt.ErrTokenExpired},
		},
		{
			name: "ExpiredLongAgo",
			token: func(t *testing.T, b *testBundle) string {
				token := issue(t, b)
				b.clock.Add(30 * 24 * time.Hour)
				return token
			},
			want: []error{jwt.ErrTokenInvalidClaims, jwt.ErrTokenExpired},
		},
		{
			name: "AlgNoneFromOurClaims",
			token: func(t *testing.T, b *testBundle) string {
				return withHeader(t, b, map[string]any{"alg": "none", "typ": "JWT"}, false)
			},
			want:        []error{jwt.ErrTokenSignatureInvalid},
			wantMessage: "signing method none is invalid",
		},
		{
			name: "AlgNoneFromOurClaimsSignatureKept",
			token: func(t *testing.T, b *testBundle) string {
				return withHeader(t, b, map[string]any{"alg": "none", "typ": "JWT"}, true)
			},
			want:        []error{jwt.ErrTokenSignatureInvalid},
			wantMessage: "signing method none is invalid",
		},
		{
			name: "AlgNoneCapitalisedFromOurClaims",
			token: func(t *testing.T, b *testBundle) string {
				return withHeader(t, b, map[string]any{"alg": "None", "typ": "JWT"}, false)
			},
			want:        []error{jwt.ErrTokenUnverifiable},
			wantMessage: "signing method (alg) is unavailable",
		},
		{
			name: "AlgNoneUpperCaseFromOurClaims",
			token: func(t *testing.T, b *testBundle) string {
				return withHeader(t, b, map[string]any{"alg": "NONE", "typ": "JWT"}, false)
			},
			want:        []error{jwt.ErrTokenUnverifiable},
			wantMessage: "signing method (alg) is unavailable",
		},
		{
			name: "AlgNoneSignedByGolangJWT",
			token: func(t *testing.T, b *testBundle) string {
				return sign(t, jwt.SigningMethodNone, validClaims(), jwt.UnsafeAllowNoneSignatureType)
			},
			want:        []error{jwt.ErrTokenSignatureInvalid},
			wantMessage: "signing method none is invalid",
		},
		{
			name: "NoAlg",
			token: func(t *testing.T, b *testBundle) string {
				return withHeader(t, b, map[string]any{"typ": "JWT"}, true)
			},
			want:        []error{jwt.ErrTokenUnverifiable},
			wantMessage: "signing method (alg) is unspecified",
		},
		{
			name: "HS512WithOurSecret",
			token: func(t *testing.T, b *testBundle) string {
				return sign(t, jwt.SigningMethodHS512, validClaims(), b.secret)
			},
			want:        []error{jwt.ErrTokenSignatureInvalid},
			wantMessage: "signing method HS512 is invalid",
		},
		{
			name: "HS384WithOurSecret",
			token: func(t *testing.T, b *testBundle) string {
				return sign(t, jwt.SigningMethodHS384, validClaims(), b.secret)
			},
			want:        []error{jwt.ErrTokenSignatureInvalid},
			wantMessage: "signing method HS384 is invalid",
		},
		{
			name: "RS256HeaderWithOurHMACSignature",
			token: func(t *testing.T, b *testBundle) string {
				return withHeader(t, b, map[string]any{"alg": "RS256", "typ": "JWT"}, true)
			},
			want:        []error{jwt.ErrTokenSignatureInvalid},
			wantMessage: "signing method RS256 is invalid",
		},
		{
			name: "PayloadModified",
			token: func(t *testing.T, b *testBundle) string {
				header, payload, sig := splitToken(t, issue(t, b))
				claims := decodeSegment(t, payload)
				claims["sub"] = "1"
				return header + "." + encodeSegment(t, claims) + "." + sig
			},
			want: []error{jwt.ErrTokenSignatureInvalid},
		},
		{
			name: "ExpExtended",
			token: func(t *testing.T, b *testBundle) string {
				header, payload, sig := splitToken(t, issue(t, b))
				claims := decodeSegment(t, payload)
				claims["exp"] = testNow.Add(365 * 24 * time.Hour).Unix()
				return header + "." + encodeSegment(t, claims) + "." + sig
			},
			want: []error{jwt.ErrTokenSignatureInvalid},
		},
		{
			name: "HeaderModified",
			token: func(t *testing.T, b *testBundle) string {
				return withHeader(t, b, map[string]any{"alg": "HS256", "typ": "JWT", "kid": "1"}, true)
			},
			want: []error{jwt.ErrTokenSignatureInvalid},
		},
		{
			name: "SignatureStripped",
			token: func(t *testing.T, b *testBundle) string {
				header, payload, _ := splitToken(t, issue(t, b))
				return header + "." + payload + "."
			},
			want: []error{jwt.ErrTokenSignatureInvalid},
		},
		{
			name: "NoExpWithOurSecret",
			token: func(t *testing.T, b *testBundle) string {
				return sign(t, jwt.SigningMethodHS256, without("exp"), b.secret)
			},
			want:        []error{jwt.ErrTokenInvalidClaims, jwt.ErrTokenRequiredClaimMissing},
			wantMissing: []string{"exp"},
		},
		{
			name: "NoExpRegisteredClaimsWithOurSecret",
			token: func(t *testing.T, b *testBundle) string {
				return sign(t, jwt.SigningMethodHS256, jwt.RegisteredClaims{
					Subject:  "42",
					Issuer:   "switchboard",
					Audience: jwt.ClaimStrings{"switchboard"},
					IssuedAt: jwt.NewNumericDate(testNow),
					ID:       "no-exp",
				}, b.secret)
			},
			want:        []error{jwt.ErrTokenInvalidClaims, jwt.ErrTokenRequiredClaimMissing},
			wantMissing: []string{"exp"},
		},
		{
			// RFC 7519 §2: a NumericDate is a JSON number. The exact
			// reason depends on how the claims are decoded.
			name: "ExpAsString",
			token: func(t *testing.T, b *testBundle) string {
				return sign(t, jwt.SigningMethodHS256, with("exp", strconv.FormatInt(testNow.Add(15*time.Minute).Unix(), 10)), b.secret)
			},
			anyReason:   true,
			wantMessage: "exp",
		},
		{
			name: "NoIssuer",
			token: func(t *testing.T, b *testBundle) string {
				return sign(t, jwt.SigningMethodHS256, without("iss"), b.secret)
			},
			want:        []error{jwt.ErrTokenInvalidClaims, jwt.ErrTokenRequiredClaimMissing},
			wantMissing: []string{"iss"},
		},
		{
			name: "NoAudience",
			token: func(t *testing.T, b *testBundle) string {
				return sign(t, jwt.SigningMethodHS256, without("aud"), b.secret)
			},
			want:        []error{jwt.ErrTokenInvalidClaims, jwt.ErrTokenRequiredClaimMissing},
			wantMissing: []string{"aud"},
		},
		{
			name: "NotValidYet",
			token: func(t *testing.T, b *testBundle) string {
				return sign(t, jwt.SigningMethodHS256, with("nbf", testNow.Add(time.Minute).Unix()), b.secret)
			},
			want: []error{jwt.ErrTokenInvalidClaims, jwt.ErrTokenNotValidYet},
		},
		{
			// The signature and every registered claim are fine: only our
			// own rule about sub refuses it.
			name: "SubNotNumeric",
			token: func(t *testing.T, b *testBundle) string {
				return sign(t, jwt.SigningMethodHS256, with("sub", "user-123"), b.secret)
			},
			wantMessage: "missing sub, jti or sid",
		},
		{
			name: "SubNumericWithSpace",
			token: func(t *testing.T, b *testBundle) string {
				return sign(t, jwt.SigningMethodHS256, with("sub", " 42"), b.secret)
			},
			wantMessage: "missing sub, jti or sid",
		},
		{
			name: "SubEmpty",
			token: func(t *testing.T, b *testBundle) string {
				return sign(t, jwt.SigningMethodHS256, with("sub", ""), b.secret)
			},
			wantMessage: "missing sub, jti or sid",
		},
		{
			name: "NoSub",
			token: func(t *testing.T, b *testBundle) string {
				return sign(t, jwt.SigningMethodHS256, without("sub"), b.secret)
			},
			wantMessage: "missing sub, jti or sid",
		},
		{
			name: "NonNumericSubIssuedByUs",
			token: func(t *testing.T, b *testBundle) string {
				token, _, err := b.tokens.Issue("alice", "session-1")
				require.NoError(t, err)
				return token
			},
			wantMessage: "missing sub, jti or sid",
		},
		{
			name: "NoJTI",
			token: func(t *testing.T, b *testBundle) string {
				return sign(t, jwt.SigningMethodHS256, without("jti"), b.secret)
			},
			wantMessage: "missing sub, jti or sid",
		},
		{
			name: "NoSessionID",
			token: func(t *testing.T, b *testBundle) string {
				return sign(t, jwt.SigningMethodHS256, without("sid"), b.secret)
			},
			wantMessage: "missing sub, jti or sid",
		},
		{
			name: "SessionIDNotAString",
			token: func(t *testing.T, b *testBundle) string {
				return sign(t, jwt.SigningMethodHS256, with("sid", 7), b.secret)
			},
			wantMessage: "missing sub, jti or sid",
		},
		{
			name: "SubWithLeadingZero",
			token: func(t *testing.T, b *testBundle) string {
				return sign(t, jwt.SigningMethodHS256, with("sub", "042"), b.secret)
			},
			wantMessage: "missing sub, jti or sid",
		},
		{
			name: "JTIEmpty",
			token: func(t *testing.T, b *testBundle) string {
				return sign(t, jwt.SigningMethodHS256, with("jti", ""), b.secret)
			},
			wantMessage: "missing sub, jti or sid",
		},
		{
			name:        "Empty",
			token:       func(*testing.T, *testBundle) string { return "" },
			want:        []error{jwt.ErrTokenMalformed},
			wantMessage: "invalid number of segments",
		},
		{
			name:  "NotAJWT",
			token: func(*testing.T, *testBundle) string { return "Bearer hello" },
			want:  []error{jwt.ErrTokenMalformed},
		},
		{
			name: "FourSegments",
			token: func(t *testing.T, b *testBundle) string {
				return issue(t, b) + ".extra"
			},
			want:        []error{jwt.ErrTokenMalformed},
			wantMessage: "invalid number of segments",
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			bundle := setup(t)

			token := tt.token(t, bundle)
			claims, err := bundle.tokens.Verify(token)
			require.ErrorIs(t, err, auth.ErrInvalidToken)
			require.Zero(t, claims, "a refused token yields no claims")
			if !tt.anyReason {
				require.ElementsMatch(t, messages(tt.want...), reasons(err), "refused for: %v", err)
				require.ElementsMatch(t, tt.wantMissing, missingClaims(err), "refused for: %v", err)
			}
			if tt.wantMessage != "" {
				require.ErrorContains(t, err, tt.wantMessage)
			}
		})
	}
}

func TestPasswords(t *testing.T) {
	t.Parallel()

	t.Run("RoundTrip", func(t *testing.T) {
		t.Parallel()

		for _, tt := range []struct {
			name     string
			password string
			wrong    []string
		}{
			{
				name:     "ASCII",
				password: "correct horse battery staple",
				wrong:    []string{"", "Correct horse battery staple", "correct horse battery staple "},
			},
			{
				name:     "ShortestAllowed",
				password: "12345678",
				wrong:    []string{"1234567", "123456789"},
			},
			{
				name:     "Unicode",
				password: "pässwörd-🔑-密码",
				wrong:    []string{"pässwörd"},
			},
		} {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()

				hash, err := auth.HashPassword(tt.password)
				require.NoError(t, err)
				require.NotEqual(t, tt.password, hash, "the stored hash is not the password")
				require.NotContains(t, hash, tt.password)
				cost, err := bcrypt.Cost([]byte(hash))
				require.NoError(t, err, "the stored hash is a bcrypt hash")
				require.GreaterOrEqual(t, cost, bcrypt.DefaultCost, "a slow hash")

				require.True(t, auth.CheckPassword(hash, tt.password))
				for _, wrong := range tt.wrong {
					require.False(t, auth.CheckPassword(hash, wrong), "wrong password %q accepted", wrong)
				}
			})
		}
	})

	t.Run("Salted", func(t *testing.T) {
		t.Parallel()

		a, err := auth.HashPassword("same password")
		require.NoError(t, err)
		b, err := auth.HashPassword("same password")
		require.NoError(t, err)
		require.NotEqual(t, a, b, "two hashes of one password differ")
		require.True(t, auth.CheckPassword(a, "same password"))
		require.True(t, auth.CheckPassword(b, "same password"))
	})

	t.Run("NotAHash", func(t *testing.T) {
		t.Parallel()

		for _, tt := range []struct {
			name, hash, password string
		}{
			{name: "Empty", hash: "", password: ""},
			{name: "PlainTextStored", hash: "hunter22", password: "hunter22"},
			{name: "Truncated", hash: "$2a$10$", password: "hunter22"},
		} {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				require.False(t, auth.CheckPassword(tt.hash, tt.password))
			})
		}
	})

	t.Run("CheckNoPassword", func(t *testing.T) {
		t.Parallel()

		for _, tt := range []struct{ name, password string }{
			{name: "Empty", password: ""},
			{name: "Ordinary", password: "correct horse battery staple"},
			// The password of the internal dummy hash must not log anyone in.
			{name: "DummyHashPassword", password: "not a real password"},
		} {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				require.False(t, auth.CheckNoPassword(tt.password))
			})
		}
	})

	t.Run("LongerThan72BytesIsAnError", func(t *testing.T) {
		t.Parallel()

		// bcrypt only reads 72 bytes; HashPassword says so rather than
		// silently ignoring the rest. Callers must turn this into a 400.
		hash, err := auth.HashPassword(strings.Repeat("a", 73))
		require.ErrorIs(t, err, bcrypt.ErrPasswordTooLong)
		require.Empty(t, hash)
	})
}

func TestRefreshTokens(t *testing.T) {
	t.Parallel()

	t.Run("HashAndExpiry", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t)

		token, hash, expires := bundle.tokens.NewRefreshToken()
		require.Equal(t, auth.HashRefreshToken(token), hash)
		sum := sha256.Sum256([]byte(token))
		require.Equal(t, sum[:], hash)
		require.NotEqual(t, []byte(token), hash, "the stored hash is not the token")
		require.WithinDuration(t, testNow.Add(30*24*time.Hour), expires, 0)
	})

	t.Run("CustomTTL", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t, func(c *auth.Config) { c.RefreshTTL = time.Hour })

		_, _, expires := bundle.tokens.NewRefreshToken()
		require.WithinDuration(t, testNow.Add(time.Hour), expires, 0)

		bundle.clock.Add(10 * time.Minute)
		_, _, expires = bundle.tokens.NewRefreshToken()
		require.WithinDuration(t, testNow.Add(70*time.Minute), expires, 0, "expiry follows the clock")
	})

	t.Run("Distinct", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t)

		tokens := map[string]bool{}
		hashes := map[string]bool{}
		for range 1000 {
			token, hash, _ := bundle.tokens.NewRefreshToken()
			require.False(t, tokens[token], "refresh token %q returned twice", token)
			require.False(t, hashes[string(hash)], "hash returned twice")
			tokens[token] = true
			hashes[string(hash)] = true
		}
	})

	t.Run("Shape", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t)

		// 256 random bits, base64url without padding: safe in JSON and URLs.
		token, hash, _ := bundle.tokens.NewRefreshToken()
		require.Regexp(t, regexp.MustCompile(`^[A-Za-z0-9_-]{43}$`), token)
		require.Len(t, hash, sha256.Size)
	})

	t.Run("HashRefreshToken", func(t *testing.T) {
		t.Parallel()

		for _, tt := range []struct {
			name, token, wantHex string
		}{
			// FIPS 180-2 SHA-256 examples.
			{name: "Empty", token: "", wantHex: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
			{name: "ABC", token: "abc", wantHex: "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
		} {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				require.Equal(t, tt.wantHex, hex.EncodeToString(auth.HashRefreshToken(tt.token)))
			})
		}
	})
}
