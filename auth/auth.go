// Package auth issues and verifies access tokens (JWT), hashes passwords and
// makes refresh tokens. It stores nothing itself: the HTTP API keeps refresh
// token hashes in storage, and revoked access token ids go to a Denylist
// shared by every node.
package auth

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/crypto/bcrypt"

	"github.com/switchboard-chat/switchboard/chat"
)

// Config configures a Tokens.
type Config struct {
	// Secret is the HS256 key shared by all nodes. Required, at least 16
	// bytes (32 random bytes are recommended and what serve generates).
	Secret []byte
	// Issuer and Audience are put in and required of every token.
	// Zero values mean "switchboard".
	Issuer, Audience string
	// AccessTTL is how long an access token lives. Zero means 15 minutes.
	AccessTTL time.Duration
	// RefreshTTL is how long a refresh token lives. Zero means 30 days.
	RefreshTTL time.Duration
	// Now is the clock; nil means time.Now. Tests set it.
	Now func() time.Time
}

// Tokens issues and verifies access tokens, and hashes phone verification
// codes with a key of its own derived from the same secret.
type Tokens struct {
	cfg     Config
	parser  *jwt.Parser
	codeKey []byte // HashPhoneCode's key
}

// Algorithms is the allow-list of JWT algorithms a token may use. Anything
// else, "none" in any spelling above all, is refused before the signature is
// looked at.
var Algorithms = []string{jwt.SigningMethodHS256.Alg()}

// New checks cfg, fills in its defaults and returns a Tokens.
func New(cfg Config) (*Tokens, error) {
	if len(cfg.Secret) < 16 {
		return nil, errors.New("auth: the JWT secret must be at least 16 bytes")
	}
	if cfg.Issuer == "" {
		cfg.Issuer = "switchboard"
	}
	if cfg.Audience == "" {
		cfg.Audience = "switchboard"
	}
	if cfg.AccessTTL == 0 {
		cfg.AccessTTL = 15 * time.Minute
	}
	if cfg.RefreshTTL == 0 {
		cfg.RefreshTTL = 30 * 24 * time.Hour
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	codeKey := hmac.New(sha256.New, cfg.Secret)
	codeKey.Write([]byte("switchboard phone verification codes"))
	return &Tokens{cfg: cfg, codeKey: codeKey.Sum(nil), parser: jwt.NewParser(
		jwt.WithValidMethods(Algorithms),
		jwt.WithExpirationRequired(),
		jwt.WithIssuer(cfg.Issuer),
		jwt.WithAudience(cfg.Audience),
		jwt.WithTimeFunc(cfg.Now),
	)}, nil
}

// Claims are what a verified access token says.
type Claims struct {
	UserID string
	// SessionID is the session the token belongs to (claim "sid"): one
	// login or register and every token pair refreshed from it. Ending
	// the session refuses all of its tokens.
	SessionID string
	TokenID   string // jti
	ExpiresAt time.Time
}

// ErrInvalidToken is returned for every token that is refused; the wrapped
// error says why, for logs only.
var ErrInvalidToken = errors.New("invalid access token")

// AccessTTL is how long the access tokens of t live.
func (t *Tokens) AccessTTL() time.Duration { return t.cfg.AccessTTL }

// Issue returns a signed access token for userID in session sessionID, and
// its lifetime.
func (t *Tokens) Issue(userID, sessionID string) (token string, ttl time.Duration, err error) {
	now := t.cfg.Now()
	claims := accessClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Subject:   userID,
			Issuer:    t.cfg.Issuer,
			Audience:  jwt.ClaimStrings{t.cfg.Audience},
			IssuedAt:  jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(t.cfg.AccessTTL)),
			ID:        randomToken(16),
		},
		SessionID: sessionID,
	}
	token, err = jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(t.cfg.Secret)
	if err != nil {
		return "", 0, fmt.Errorf("sign token: %w", err)
	}
	return token, t.cfg.AccessTTL, nil
}

// accessClaims are the claims Issue signs.
type accessClaims struct {
	jwt.RegisteredClaims
	SessionID string `json:"sid"`
}

// Verify checks the token's algorithm, signature, exp, iss and aud and
// returns its claims. It does not know about logout: callers check the
// returned SessionID against the ended sessions.
func (t *Tokens) Verify(token string) (Claims, error) {
	// MapClaims, not RegisteredClaims: RegisteredClaims' NumericDate also
	// takes a JSON string holding a number ("exp":"1700003600"), which
	// RFC 7519 does not allow; MapClaims refuses it.
	mc := jwt.MapClaims{}
	_, err := t.parser.ParseWithClaims(token, mc, func(*jwt.Token) (any, error) { return t.cfg.Secret, nil })
	if err != nil {
		return Claims{}, fmt.Errorf("%w: %w", ErrInvalidToken, err)
	}
	sub, _ := mc.GetSubject()
	jti, _ := mc["jti"].(string)
	sid, _ := mc["sid"].(string)
	exp, _ := mc.GetExpirationTime() // present: the parser requires exp
	if !chat.ValidID(sub) || jti == "" || sid == "" {
		return Claims{}, fmt.Errorf("%w: missing sub, jti or sid", ErrInvalidToken)
	}
	return Claims{UserID: sub, SessionID: sid, TokenID: jti, ExpiresAt: exp.Time}, nil
}

// NewRefreshToken returns a fresh opaque refresh token, the hash to store
// for it, and when it expires.
func (t *Tokens) NewRefreshToken() (token string, hash []byte, expires time.Time) {
	token = randomToken(32)
	return token, HashRefreshToken(token), t.cfg.Now().Add(t.cfg.RefreshTTL)
}

// HashRefreshToken is the stored form of a refresh token. The token has 256
// random bits, so a fast hash is enough: nothing can be guessed offline.
func HashRefreshToken(token string) []byte {
	h := sha256.Sum256([]byte(token))
	return h[:]
}

func randomToken(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (crypto/rand documents it)
	return base64.RawURLEncoding.EncodeToString(b)
}

// passwordCost is bcrypt's work factor: about 50 ms per hash on the 2-core
// machines we run on.
var passwordCost = bcrypt.DefaultCost

// HashPassword returns the bcrypt hash of password.
func HashPassword(password string) (string, error) {
	h, err := bcrypt.GenerateFromPassword([]byte(password), passwordCost)
	if err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	return string(h), nil
}

// CheckPassword reports whether password matches hash.
func CheckPassword(hash, password string) bool {
	return bcrypt.CompareHashAndPassword([]byte(hash), []byte(password)) == nil
}

// dummyHash is compared against when a username is unknown, so that a wrong
// name takes as long as a wrong password.
var dummyHash, _ = bcrypt.GenerateFromPassword([]byte("not a real password"), passwordCost)

// CheckNoPassword spends the time of one password check and returns false.
func CheckNoPassword(password string) bool {
	_ = bcrypt.CompareHashAndPassword(dummyHash, []byte(password))
	return false
}
