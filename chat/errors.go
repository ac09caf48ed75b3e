package chat

import (
	"errors"
	"fmt"
	"time"
)

// Code is one of the error codes of SPEC §2.
type Code string

// The error codes of SPEC §2.
const (
	CodeBadRequest   Code = "bad_request"
	CodeUnauthorized Code = "unauthorized"
	CodeForbidden    Code = "forbidden"
	CodeNotFound     Code = "not_found"
	CodeConflict     Code = "conflict"
	CodeTooLarge     Code = "too_large"
	CodeRateLimited  Code = "rate_limited"
	CodeUnavailable  Code = "unavailable"
	CodeInternal     Code = "internal"

	// CodeInvalidCredentials is the 401 of a failed login (SPEC §3), kept
	// apart from CodeUnauthorized so a client can tell "wrong password"
	// from "token expired".
	CodeInvalidCredentials Code = "invalid_credentials"
)

// Error is an error a client may see: a code from SPEC §2 and a human
// readable message. Anything that is not an *Error reaches clients as
// "internal" with a generic message, so internal details never leak.
type Error struct {
	Code    Code
	Message string
	// RetryAfter is, for CodeRateLimited, how long until the request may
	// succeed; zero when unknown.
	RetryAfter time.Duration
}

func (e *Error) Error() string { return string(e.Code) + ": " + e.Message }

// Errorf returns an *Error with a formatted message.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Sentinels for the common cases; compare with errors.Is.
var (
	ErrNotFound    = &Error{Code: CodeNotFound, Message: "not found"}
	ErrForbidden   = &Error{Code: CodeForbidden, Message: "not a member of this room"}
	ErrUnavailable = &Error{Code: CodeUnavailable, Message: "the message store is unavailable; try again"}

	// ErrRefreshReused answers a refresh token presented a second time:
	// it may have been stolen, so its whole session has ended.
	ErrRefreshReused = &Error{Code: CodeUnauthorized, Message: "refresh token was already used; this session has ended"}
	// ErrRefreshInvalid answers an unknown, expired or revoked refresh token.
	ErrRefreshInvalid = &Error{Code: CodeUnauthorized, Message: "invalid refresh token"}
)

// ErrRevocationUnknown marks a failure to learn whether a session ended
// (the denylist could not be read): whoever checks a token must refuse it
// as unavailable rather than accept it.
var ErrRevocationUnknown = errors.New("cannot tell whether the session ended")

// ErrorOf returns the client-visible error for err: err itself when it is an
// *Error (possibly wrapped), else an internal error.
func ErrorOf(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return &Error{Code: CodeInternal, Message: "internal error"}
}
