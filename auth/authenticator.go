package auth

import (
	"context"
	"errors"
	"fmt"

	"github.com/switchboard-chat/switchboard/chat"
)

// Store is the part of storage an Authenticator uses.
type Store interface {
	IsRevoked(ctx context.Context, jti string) (bool, error)
	Profile(ctx context.Context, userID string) (chat.Profile, error)
}

// Authenticator turns an access token into a Session: a valid token, not
// revoked by logout, of an account that still exists. The HTTP API and the
// WebSocket hub share it.
type Authenticator struct {
	tokens *Tokens
	store  Store
}

// NewAuthenticator returns an Authenticator that verifies with tokens and
// checks revocation and accounts in store.
func NewAuthenticator(tokens *Tokens, store Store) *Authenticator {
	return &Authenticator{tokens: tokens, store: store}
}

var (
	errBadToken     = chat.Errorf(chat.CodeUnauthorized, "invalid or expired access token")
	errRevokedToken = chat.Errorf(chat.CodeUnauthorized, "access token has been revoked")
)

// Authenticate returns the session token speaks for. Every refusal is a
// *chat.Error with code unauthorized; a store failure is returned as is.
func (a *Authenticator) Authenticate(ctx context.Context, token string) (chat.Session, error) {
	claims, err := a.tokens.Verify(token)
	if err != nil {
		return chat.Session{}, fmt.Errorf("%w (%w)", errBadToken, err)
	}
	revoked, err := a.store.IsRevoked(ctx, claims.TokenID)
	if err != nil {
		return chat.Session{}, fmt.Errorf("authenticate: %w", err)
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
