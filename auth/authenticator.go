package auth

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/switchboard-chat/switchboard/chat"
)

// Store is the part of storage an Authenticator uses.
type Store interface {
	Profile(ctx context.Context, userID string) (chat.Profile, error)
}

// RevocationAwareStore is a Store that also tells, in the same call,
// whether a token was revoked: a cache that reads both from Redis in one
// round trip is one. An Authenticator whose store is one asks it instead of
// its Denylist, which must be the one whose entries the store reads.
type RevocationAwareStore interface {
	Store
	// ProfileUnlessRevoked returns the profile of userID, or revoked true
	// if the token jti was revoked. An error that leaves the revocation
	// unknown wraps ErrRevocationUnknown.
	ProfileUnlessRevoked(ctx context.Context, userID, jti string) (p chat.Profile, revoked bool, err error)
}

// ErrRevocationUnknown marks a failure to learn whether a token was revoked.
var ErrRevocationUnknown = errors.New("cannot tell whether the token was revoked")

// Denylist holds the ids (jti) of access tokens revoked by logout, shared by
// every node of a cluster so that a logout is honoured everywhere (SPEC §3).
type Denylist interface {
	// Revoke refuses jti from now on. It may forget jti once expires has
	// passed, since the token is refused for being expired from then on.
	Revoke(ctx context.Context, jti string, expires time.Time) error
	// IsRevoked reports whether jti was revoked.
	IsRevoked(ctx context.Context, jti string) (bool, error)
}

// Authenticator turns an access token into a Session: a valid token, not
// revoked by logout, of an account that still exists. The HTTP API and the
// WebSocket hub share it.
type Authenticator struct {
	tokens   *Tokens
	store    Store
	denylist Denylist
}

// NewAuthenticator returns an Authenticator that verifies with tokens,
// checks revocation in denylist and accounts in store.
func NewAuthenticator(tokens *Tokens, store Store, denylist Denylist) *Authenticator {
	return &Authenticator{tokens: tokens, store: store, denylist: denylist}
}

var (
	errBadToken     = chat.Errorf(chat.CodeUnauthorized, "invalid or expired access token")
	errRevokedToken = chat.Errorf(chat.CodeUnauthorized, "access token has been revoked")
	errNoDenylist   = chat.Errorf(chat.CodeUnavailable, "cannot check whether the access token was revoked; try again")
)

// Authenticate returns the session token speaks for. Every refusal is a
// *chat.Error with code unauthorized; a store failure is returned as is. A
// denylist failure fails closed: the error has code unavailable, because a
// token that may have been logged out is never accepted.
func (a *Authenticator) Authenticate(ctx context.Context, token string) (chat.Session, error) {
	claims, err := a.tokens.Verify(token)
	if err != nil {
		return chat.Session{}, fmt.Errorf("%w (%w)", errBadToken, err)
	}
	p, revoked, err := a.profileUnlessRevoked(ctx, claims.UserID, claims.TokenID)
	if errors.Is(err, ErrRevocationUnknown) {
		return chat.Session{}, fmt.Errorf("authenticate: %w: %w", errNoDenylist, err)
	}
	if revoked {
		return chat.Session{}, errRevokedToken
	}
	if errors.Is(err, chat.ErrNotFound) {
		return chat.Session{}, errBadToken
	}
	if err != nil {
		return chat.Session{}, fmt.Errorf("authenticate: %w", err)
	}
	return chat.Session{User: p.User, TokenID: claims.TokenID, ExpiresAt: claims.ExpiresAt}, nil
}

func (a *Authenticator) profileUnlessRevoked(ctx context.Context, userID, jti string) (chat.Profile, bool, error) {
	if s, ok := a.store.(RevocationAwareStore); ok {
		return s.ProfileUnlessRevoked(ctx, userID, jti)
	}
	revoked, err := a.denylist.IsRevoked(ctx, jti)
	if err != nil {
		return chat.Profile{}, false, fmt.Errorf("%w: %w", ErrRevocationUnknown, err)
	}
	if revoked {
		return chat.Profile{}, true, nil
	}
	p, err := a.store.Profile(ctx, userID)
	return p, false, err
}
