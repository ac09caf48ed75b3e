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
	revoked, err := a.denylist.IsRevoked(ctx, claims.TokenID)
	if err != nil {
		return chat.Session{}, fmt.Errorf("authenticate: %w: %w", errNoDenylist, err)
	}
	if revoked {
		return chat.Session{}, errRevokedToken
	}
	p, err := a.store.Profile(ctx, claims.UserID)
	if errors.Is(err, chat.ErrNotFound) {
		return chat.Session{}, errBadToken
	}
	if err != nil {
		return chat.Session{}, fmt.Errorf("authenticate: %w", err)
	}
	return chat.Session{User: p.User, TokenID: claims.TokenID, ExpiresAt: claims.ExpiresAt}, nil
}
