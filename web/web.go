// Package web is Switchboard's HTTP API (SPEC §3–§5, §11): accounts and
// tokens, rooms, messages and history, health; and the browser client,
// served at /. The /ws endpoint and
// /metrics are handlers it is given, so that it depends on no other package
// of ours but chat and auth.
package web

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/switchboard-chat/switchboard/auth"
	"github.com/switchboard-chat/switchboard/chat"
)

// Store is the part of storage the API uses.
type Store interface {
	CreateUser(ctx context.Context, username, passwordHash, displayName string) (chat.Profile, error)
	Credentials(ctx context.Context, username string) (chat.Profile, string, error)
	Profile(ctx context.Context, userID string) (chat.Profile, error)
	UpdateProfile(ctx context.Context, userID string, u chat.ProfileUpdate) (chat.Profile, error)
	SaveRefreshToken(ctx context.Context, userID string, hash []byte, family string, expires time.Time) error
	RotateRefreshToken(ctx context.Context, old, newHash []byte, expires time.Time) (string, error)
	RevokeRefreshToken(ctx context.Context, userID string, hash []byte) error

	CreateRoom(ctx context.Context, creatorID, name, visibility string) (chat.Room, error)
	RoomsOf(ctx context.Context, userID string) ([]chat.Room, error)
	PublicRooms(ctx context.Context) ([]chat.Room, error)
	Join(ctx context.Context, userID, roomID string) (chat.Room, error)
	AddMember(ctx context.Context, actorID, roomID, username string) (chat.User, error)
	Leave(ctx context.Context, userID, roomID string) error
	CheckMember(ctx context.Context, userID, roomID string) error
	RoomMembers(ctx context.Context, roomID string) ([]chat.User, error)

	// History returns a page of a room's history if the user may read it.
	History(ctx context.Context, userID, roomID string, q chat.HistoryQuery) ([]chat.EncodedMessage, error)
	// Thread returns a message and up to limit of its replies after
	// afterSeq, if the user may read its room.
	Thread(ctx context.Context, userID, messageID string, afterSeq int64, limit int) (chat.EncodedMessage, []chat.EncodedMessage, error)
}

// Hub is what the API needs from the node's live delivery: posting a
// message (stored and delivered as a WebSocket send would be) and applying
// membership changes to open connections.
type Hub interface {
	Post(ctx context.Context, m chat.NewMessage) (chat.Message, bool, error)
	JoinRoom(ctx context.Context, userID, roomID string)
	LeaveRoom(ctx context.Context, userID, roomID string)
}

// Authenticator turns a Bearer token into a session.
type Authenticator interface {
	Authenticate(ctx context.Context, token string) (chat.Session, error)
}

// Config configures the API. Every field but Limiter, Logger, WebSocket and
// Metrics is required.
type Config struct {
	Store  Store
	Hub    Hub
	Auth   Authenticator
	Tokens *auth.Tokens
	// Denylist records the access tokens revoked by logout; Auth must
	// consult the same one.
	Denylist auth.Denylist
	// Presence tells which users are online on any node; nil leaves out
	// GET /api/v1/rooms/{id}/presence.
	Presence interface {
		Online(ctx context.Context, userIDs []string) ([]string, error)
	}
	// Limiter limits each user's authenticated writes (POST, PATCH and
	// DELETE under /api/v1, but logout); nil means no limit. See limited.
	Limiter Limiter
	// Ready reports whether the node can serve (Postgres, Redis). On an
	// error /readyz answers 503 in the error shape with the message of the
	// *chat.Error it wraps ("postgres unreachable"), or a generic one, and
	// logs the error whole: driver text and addresses stay in the log.
	Ready func(ctx context.Context) error
	// Webhooks maps route patterns ("POST /webhooks/twilio/sms") to the
	// handlers of the integrations that are on; any other path under
	// /webhooks/ answers 404.
	Webhooks map[string]http.Handler
	// WebSocket serves /ws; Metrics serves /metrics. Nil leaves them out.
	WebSocket http.Handler
	Metrics   http.Handler
	// Logger; nil discards logs.
	Logger *slog.Logger
}

// API serves the HTTP endpoints.
type API struct {
	cfg Config
	log *slog.Logger
	mux *http.ServeMux

	// limiterLogged is when a limiter failure was last logged, in Unix
	// nanoseconds; zero before the first.
	limiterLogged atomic.Int64
}

// New returns the API's handler.
func New(cfg Config) (*API, error) {
	if cfg.Store == nil || cfg.Hub == nil || cfg.Auth == nil || cfg.Tokens == nil || cfg.Denylist == nil || cfg.Ready == nil {
		return nil, errors.New("web: Config needs Store, Hub, Auth, Tokens, Denylist and Ready")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	a := &API{cfg: cfg, log: cfg.Logger, mux: http.NewServeMux()}
	a.routes()
	return a, nil
}

func (a *API) routes() {
	m := a.mux
	m.HandleFunc("POST /api/v1/auth/register", a.register)
	m.HandleFunc("POST /api/v1/auth/login", a.login)
	m.HandleFunc("POST /api/v1/auth/refresh", a.refresh)
	// Authenticated writes go through limited; logout does not, so that a
	// throttled client can still end its session.
	m.HandleFunc("POST /api/v1/auth/logout", a.authed(a.logout))
	m.HandleFunc("GET /api/v1/me", a.authed(a.me))
	m.HandleFunc("PATCH /api/v1/me", a.authed(a.limited(a.patchMe)))

	m.HandleFunc("POST /api/v1/rooms", a.authed(a.limited(a.createRoom)))
	m.HandleFunc("GET /api/v1/rooms", a.authed(a.listRooms))
	m.HandleFunc("GET /api/v1/rooms/public", a.authed(a.publicRooms))
	m.HandleFunc("POST /api/v1/rooms/{id}/join", a.authed(a.limited(a.joinRoom)))
	m.HandleFunc("POST /api/v1/rooms/{id}/members", a.authed(a.limited(a.addMember)))
	m.HandleFunc("DELETE /api/v1/rooms/{id}/members/me", a.authed(a.limited(a.leaveRoom)))
	m.HandleFunc("POST /api/v1/rooms/{id}/messages", a.authed(a.limited(a.postMessage)))
	m.HandleFunc("GET /api/v1/rooms/{id}/messages", a.authed(a.history))
	m.HandleFunc("GET /api/v1/messages/{id}", a.authed(a.thread))
	if a.cfg.Presence != nil {
		m.HandleFunc("GET /api/v1/rooms/{id}/presence", a.authed(a.presence))
	}
	m.HandleFunc("GET /api/v1/messages/{id}/replies", a.authed(a.replies))

	m.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	m.HandleFunc("GET /readyz", a.readyz)
	if a.cfg.WebSocket != nil {
		m.Handle("GET /ws", a.cfg.WebSocket)
	}
	if a.cfg.Metrics != nil {
		m.Handle("GET /metrics", a.cfg.Metrics)
	}
	for pattern, h := range a.cfg.Webhooks {
		m.Handle(pattern, h)
	}
	notFound := func(w http.ResponseWriter, r *http.Request) {
		writeError(w, chat.Errorf(chat.CodeNotFound, "no such endpoint: %s %s", r.Method, r.URL.Path))
	}
	m.HandleFunc("/api/", notFound)
	m.HandleFunc("/webhooks/", notFound)
	m.Handle("/", clientHandler())
}

func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.mux.ServeHTTP(w, r) }

func (a *API) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := a.cfg.Ready(ctx); err != nil {
		if chat.ErrorOf(err).Code != chat.CodeUnavailable {
			err = fmt.Errorf("%w: %w", errNotReady, err)
		}
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

var errNotReady = chat.Errorf(chat.CodeUnavailable, "not ready")

// authed wraps h so that it runs only with a valid Bearer token, and gives
// it the session.
func (a *API) authed(h func(http.ResponseWriter, *http.Request, chat.Session)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		scheme, token, _ := strings.Cut(r.Header.Get("Authorization"), " ")
		if !strings.EqualFold(scheme, "Bearer") || token == "" { // scheme names are case-insensitive (RFC 7235)
			writeError(w, chat.Errorf(chat.CodeUnauthorized, "missing Authorization: Bearer token"))
			return
		}
		s, err := a.cfg.Auth.Authenticate(r.Context(), strings.TrimSpace(token))
		if err != nil {
			a.fail(w, r, err)
			return
		}
		h(w, r, s)
	}
}

// statusOf maps an error code to its HTTP status (SPEC §2).
var statusOf = map[chat.Code]int{
	chat.CodeBadRequest:         http.StatusBadRequest,
	chat.CodeUnauthorized:       http.StatusUnauthorized,
	chat.CodeInvalidCredentials: http.StatusUnauthorized,
	chat.CodeForbidden:          http.StatusForbidden,
	chat.CodeNotFound:           http.StatusNotFound,
	chat.CodeConflict:           http.StatusConflict,
	chat.CodeTooLarge:           http.StatusRequestEntityTooLarge,
	chat.CodeRateLimited:        http.StatusTooManyRequests,
	chat.CodeUnavailable:        http.StatusServiceUnavailable,
	chat.CodeInternal:           http.StatusInternalServerError,
}

// fail answers err in the error shape, logging what the client is not told.
func (a *API) fail(w http.ResponseWriter, r *http.Request, err error) {
	e := chat.ErrorOf(err)
	if e.Code == chat.CodeInternal || e.Code == chat.CodeUnavailable {
		a.log.ErrorContext(r.Context(), "request failed", slog.String("method", r.Method),
			slog.String("path", r.URL.Path), slog.Any("error", err))
	}
	writeError(w, e)
}

func writeError(w http.ResponseWriter, e *chat.Error) {
	if e.Code == chat.CodeUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	writeJSON(w, statusOf[e.Code], map[string]any{"error": map[string]string{"code": string(e.Code), "message": e.Message}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	writeJSONHeader(w, status)
	_ = json.NewEncoder(w).Encode(v)
}

// writeJSONHeader starts an answer whose body is JSON that no cache keeps.
func writeJSONHeader(w http.ResponseWriter, status int) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
}

// maxRequestBytes bounds JSON request bodies.
const maxRequestBytes = 64 << 10

// decode reads a JSON object body into v, refusing unknown fields, wrong
// types, trailing data and bodies over maxRequestBytes.
func decode(w http.ResponseWriter, r *http.Request, v any) error {
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxRequestBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return chat.Errorf(chat.CodeTooLarge, "request body is larger than %d bytes", maxRequestBytes)
		}
		return chat.Errorf(chat.CodeBadRequest, "could not read the request body")
	}
	// encoding/json would silently turn invalid bytes and lone surrogate
	// escapes into U+FFFD.
	if !utf8.Valid(raw) {
		return chat.Errorf(chat.CodeBadRequest, "request body is not valid UTF-8")
	}
	if err := chat.CheckJSONEscapes(raw); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var typeErr *json.UnmarshalTypeError
		switch {
		case errors.As(err, &typeErr) && typeErr.Field != "":
			return chat.Errorf(chat.CodeBadRequest, "field %q has the wrong type", typeErr.Field)
		case strings.HasPrefix(err.Error(), "json: unknown field"):
			return chat.Errorf(chat.CodeBadRequest, "%s", strings.TrimPrefix(err.Error(), "json: "))
		default:
			return chat.Errorf(chat.CodeBadRequest, "request body is not a valid JSON object")
		}
	}
	if _, err := dec.Token(); err != io.EOF { // dec.More misses a stray '}' or ']'
		return chat.Errorf(chat.CodeBadRequest, "request body has data after the JSON object")
	}
	return nil
}
