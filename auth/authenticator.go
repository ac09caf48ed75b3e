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
// whether a session ended: a cache that reads both from Redis in one round
// trip is one. An Authenticator whose store is one asks it instead of its
// Denylist, which must be the one whose entries the store reads.
type RevocationAwareStore interface {
	Store
	// ProfileUnlessEnded returns the profile of userID, or ended true if
	// the session sessionID ended. An error that leaves that unknown wraps
	// chat.ErrRevocationUnknown.
	ProfileUnlessEnded(ctx context.Context, userID, sessionID string) (p chat.Profile, ended bool, err error)
}

// Denylist holds the sessions that ended (logout, logout-all, a password
// change), shared by every node of a cluster so that the end is honoured
// everywhere (SPEC §3).
type Denylist interface {
	// EndSessions refuses every access token of the given sessions from
	// now on. It may forget them after until, when all of their access
	// tokens have expired anyway.
	EndSessions(ctx context.Context, until time.Time, sessionIDs ...string) error
	// Ended returns those of sessionIDs that ended.
	Ended(ctx context.Context, sessionIDs ...string) ([]string, error)
}

// Authenticator turns an access token into a Session: a valid token of a
// session that has not ended, of an account that still exists. The HTTP
// API and the WebSocket hub share it.
type Authenticator struct {
	tokens   *Tokens
	store    Store
	denylist Denylist
}

// NewAuthenticator returns an Authenticator that verifies with tokens,
// checks ended sessions in denylist and accounts in store.
func NewAuthenticator(tokens *Tokens, store Store, denylist Denylist) *Authenticator {
	return &Authenticator{tokens: tokens, store: store, denylist: denylist}
}

var (
	errBadToken     = chat.Errorf(chat.CodeUnauthorized, "invalid or expired access token")
	errEndedSession = chat.Errorf(chat.CodeUnauthorized, "the session of this access token has ended")
	errNoDenylist   = chat.Errorf(chat.CodeUnavailable, "cannot check whether the session ended; try again")
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
	p, ended, err := a.profileUnlessEnded(ctx, claims.UserID, claims.SessionID)
	if errors.Is(err, chat.ErrRevocationUnknown) {
		return chat.Session{}, fmt.Errorf("authenticate: %w: %w", errNoDenylist, err)
	}
	if ended {
		return chat.Session{}, errEndedSession
	}
	if errors.Is(err, chat.ErrNotFound) {
		return chat.Session{}, errBadToken
	}
	if err != nil {
		return chat.Session{}, fmt.Errorf("authenticate: %w", err)
	}
	return chat.Session{User: p.User, ID: claims.SessionID, ExpiresAt: claims.ExpiresAt}, nil
}

func (a *Authenticator) profileUnlessEnded(ctx context.Context, userID, sessionID string) (chat.Profile, bool, error) {
	if s, ok := a.store.(RevocationAwareStore); ok {
		return s.ProfileUnlessEnded(ctx, userID, sessionID)
	}
	ended, err := a.denylist.Ended(ctx, sessionID)
	if err != nil {
		return chat.Profile{}, false, fmt.Errorf("%w: %w", chat.ErrRevocationUnknown, err)
	}
	if len(ended) > 0 {
		return chat.Profile{}, true, nil
	}
	p, err := a.store.Profile(ctx, userID)
	return p, false, err
}
