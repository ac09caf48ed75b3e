// Package web is Switchboard's HTTP API (SPEC §3–§5, §11): accounts and
// tokens, rooms, messages and history, health; and the browser client,
// served at /. The /ws endpoint and
// /metrics are handlers it is given, so that it depends on no other package
// of ours but chat and auth.
package web

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard-chat/switchboard/auth"
	"github.com/switchboard-chat/switchboard/chat"
)

// Store is the part of storage the API uses.
type Store interface {
	CreateUser(ctx context.Context, username, passwordHash, displayName string) (chat.Profile, error)
	Credentials(ctx context.Context, username string) (chat.Profile, string, error)
	Profile(ctx context.Context, userID string) (chat.Profile, error)
	UpdateProfile(ctx context.Context, userID string, u chat.ProfileUpdate) (chat.Profile, error)
	// VerifyPhone checks a phone verification code, given as its hash
	// (auth.Tokens.HashPhoneCode), and returns the profile it verified.
	VerifyPhone(ctx context.Context, userID string, codeHash []byte) (chat.Profile, error)
	PasswordHash(ctx context.Context, userID string) (string, error)
	SetPasswordHash(ctx context.Context, userID, hash string) error

	NewSession(ctx context.Context, userID string, refreshHash []byte, expires time.Time) (string, error)
	RotateRefreshToken(ctx context.Context, old, newHash []byte, expires time.Time) (userID, session string, err error)
	SessionOf(ctx context.Context, userID string, refreshHash []byte) (string, error)
	LiveSessions(ctx context.Context, userID string) ([]string, error)
	EndSession(ctx context.Context, session string) error
	EndSessions(ctx context.Context, userID, except string) ([]string, error)

	CreateRoom(ctx context.Context, creatorID, name, visibility string) (chat.Room, error)
	RoomsOf(ctx context.Context, userID string) ([]chat.Room, error)
	PublicRooms(ctx context.Context) ([]chat.Room, error)
	// Join and AddMember report the membership they made (Joined false:
	// the user was a member already).
	Join(ctx context.Context, userID, roomID string) (chat.Room, chat.Membership, error)
	AddMember(ctx context.Context, actorID, roomID, username string) (chat.User, chat.Membership, error)
	Leave(ctx context.Context, userID, roomID string) error
	CheckMember(ctx context.Context, userID, roomID string) error
	RoomMembers(ctx context.Context, roomID string) ([]chat.User, error)

	// SPEC §14. CreateDirect reports whether it made the room and the
	// memberships it made; Ban whether the user was a member.
	CreateDirect(ctx context.Context, userID, username string) (chat.Room, bool, []chat.Membership, error)
	Members(ctx context.Context, userID, roomID string) ([]chat.Member, error)
	SetRole(ctx context.Context, actorID, roomID, targetID, role string) (chat.Member, error)
	RemoveMember(ctx context.Context, actorID, roomID, targetID string) error
	Ban(ctx context.Context, actorID, roomID, targetID string) (bool, error)
	Unban(ctx context.Context, actorID, roomID, targetID string) error
	Bans(ctx context.Context, userID, roomID string) ([]chat.Ban, error)
	UpdateRoom(ctx context.Context, actorID, roomID string, u chat.RoomUpdate) (chat.Room, error)
	Archive(ctx context.Context, actorID, roomID string) (chat.Room, error)
	Search(ctx context.Context, q chat.SearchQuery) (chat.SearchPage, error)
	FindUsers(ctx context.Context, prefix string, limit int) ([]chat.User, error)
}

// History answers history reads (package history).
type History interface {
	// Page returns a page of a room's history if the user may read it.
	Page(ctx context.Context, userID, roomID string, q chat.HistoryQuery) (chat.Page, error)
	// Thread returns a message and up to limit of its replies after
	// afterSeq, if the user may read its room.
	Thread(ctx context.Context, userID, messageID string, afterSeq int64, limit int) (chat.EncodedMessage, []chat.EncodedMessage, error)
	// Events returns up to limit (nil: the default) events of a room after
	// afterSeq, if the user may read it.
	Events(ctx context.Context, userID, roomID string, afterSeq int64, limit *int) ([]chat.RoomEvent, error)
}

// Poster stores a message or a change to one and delivers it (package
// poster).
type Poster interface {
	Post(ctx context.Context, m chat.NewMessage) (chat.Message, bool, error)
	Update(ctx context.Context, u chat.Update) (chat.Message, bool, error)
}

// Changes is told of what changes cached reads on every node
// (*cache.Cache is one): after a user's profile or memberships change.
type Changes interface {
	UserChanged(ctx context.Context, userID string, names bool)
}

// Hub is what the API needs from live delivery: applying membership
// changes and ended sessions to open connections on every node.
type Hub interface {
	// Joined subscribes the user's open connections to the room, catching
	// up from m.FromSeq.
	Joined(ctx context.Context, m chat.Membership)
	// Left unsubscribes them, telling them why ("left", "removed").
	Left(ctx context.Context, userID, roomID, reason string)
	// EndSessions closes the user's connections of those sessions with 4401.
	EndSessions(ctx context.Context, userID string, sessions []string)
	// RoomUpdated tells the room's connected members its new name, topic
	// or archived state.
	RoomUpdated(ctx context.Context, room chat.Room)
}

// Authenticator turns a Bearer token into a session.
type Authenticator interface {
	Authenticate(ctx context.Context, token string) (chat.Session, error)
}

// Config configures the API. Store, History, Poster, Changes, Hub, Auth,
// Tokens, Denylist and Ready are required.
type Config struct {
	Store   Store
	History History
	Poster  Poster
	Changes Changes
	Hub     Hub
	Auth    Authenticator
	Tokens  *auth.Tokens
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
	// AuthLimiter limits login, register and refresh per client IP, and
	// LoginBackoff delays logins to a username after failures (SPEC §3);
	// nil means no limit. See authlimits.go.
	AuthLimiter  Limiter
	LoginBackoff Backoff
	// ClientIP tells the client address of a request (trusted proxies);
	// nil means the TCP peer.
	ClientIP func(*http.Request) string
	// Registerer registers the API's metrics; nil leaves them unregistered.
	Registerer prometheus.Registerer
	// Ready reports whether the node can serve (Postgres, Redis). On an
	// error /readyz answers 503 in the error shape with the message of the
	// *chat.Error it wraps ("postgres unreachable"), or a generic one, and
	// logs the error whole: driver text and addresses stay in the log.
	Ready func(ctx context.Context) error
	// Webhooks maps route patterns ("POST /webhooks/twilio/sms"; each
	// names its method) to the handlers of the integrations that are on;
	// another method answers 405, any other path under /webhooks/ 404.
	Webhooks map[string]http.Handler
	// WebSocket serves /ws; Metrics serves /metrics. Nil leaves them out.
	WebSocket http.Handler
	Metrics   http.Handler
	// Logger; nil discards logs.
	Logger *slog.Logger
}

// API serves the HTTP endpoints.
type API struct {
	cfg    Config
	log    *slog.Logger
	mux    *http.ServeMux
	client *client

	// limiterLogged is when a limiter failure was last logged, in Unix
	// nanoseconds; zero before the first.
	limiterLogged atomic.Int64
	authMetrics   *authMetrics
}

// New returns the API's handler.
func New(cfg Config) (*API, error) {
	if cfg.Store == nil || cfg.History == nil || cfg.Poster == nil || cfg.Changes == nil || cfg.Hub == nil ||
		cfg.Auth == nil || cfg.Tokens == nil || cfg.Denylist == nil || cfg.Ready == nil {
		return nil, errors.New("web: Config needs Store, History, Poster, Changes, Hub, Auth, Tokens, Denylist and Ready")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	m, err := newAuthMetrics(cfg.Registerer)
	if err != nil {
		return nil, fmt.Errorf("web: %w", err)
	}
	a := &API{cfg: cfg, log: cfg.Logger, mux: http.NewServeMux(), client: newClient(), authMetrics: m}
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
	m.HandleFunc("POST /api/v1/auth/logout-all", a.authed(a.logoutAll))
	m.HandleFunc("GET /api/v1/me", a.authed(a.me))
	m.HandleFunc("PATCH /api/v1/me", a.authed(a.limited(a.patchMe)))
	m.HandleFunc("POST /api/v1/me/password", a.authed(a.limited(a.changePassword)))
	m.HandleFunc("POST /api/v1/me/phone/verify", a.authed(a.limited(a.verifyPhone)))

	m.HandleFunc("POST /api/v1/rooms", a.authed(a.limited(a.createRoom)))
	m.HandleFunc("GET /api/v1/rooms", a.authed(a.listRooms))
	m.HandleFunc("GET /api/v1/rooms/public", a.authed(a.publicRooms))
	m.HandleFunc("POST /api/v1/rooms/{id}/join", a.authed(a.limited(a.joinRoom)))
	m.HandleFunc("POST /api/v1/rooms/{id}/members", a.authed(a.limited(a.addMember)))
	m.HandleFunc("DELETE /api/v1/rooms/{id}/members/me", a.authed(a.limited(a.leaveRoom)))
	m.HandleFunc("GET /api/v1/rooms/{id}/members", a.authed(a.members))
	m.HandleFunc("PATCH /api/v1/rooms/{id}/members/{user_id}", a.authed(a.limited(a.setRole)))
	m.HandleFunc("DELETE /api/v1/rooms/{id}/members/{user_id}", a.authed(a.limited(a.removeMember)))
	m.HandleFunc("POST /api/v1/rooms/{id}/bans", a.authed(a.limited(a.ban)))
	m.HandleFunc("GET /api/v1/rooms/{id}/bans", a.authed(a.bans))
	m.HandleFunc("DELETE /api/v1/rooms/{id}/bans/{user_id}", a.authed(a.limited(a.unban)))
	m.HandleFunc("PATCH /api/v1/rooms/{id}", a.authed(a.limited(a.patchRoom)))
	m.HandleFunc("POST /api/v1/rooms/{id}/archive", a.authed(a.limited(a.archive)))
	m.HandleFunc("POST /api/v1/dms", a.authed(a.limited(a.createDirect)))
	m.HandleFunc("GET /api/v1/search", a.authed(a.search))
	m.HandleFunc("GET /api/v1/users", a.authed(a.people))
	m.HandleFunc("POST /api/v1/rooms/{id}/messages", a.authed(a.limited(a.postMessage)))
	m.HandleFunc("GET /api/v1/rooms/{id}/messages", a.authed(a.history))
	m.HandleFunc("GET /api/v1/messages/{id}", a.authed(a.thread))
	m.HandleFunc("GET /api/v1/rooms/{id}/events", a.authed(a.events))
	m.HandleFunc("PATCH /api/v1/messages/{id}", a.authed(a.limited(a.editMessage)))
	m.HandleFunc("DELETE /api/v1/messages/{id}", a.authed(a.limited(a.deleteMessage)))
	m.HandleFunc("PUT /api/v1/messages/{id}/reactions/{emoji}", a.authed(a.limited(a.react)))
	m.HandleFunc("DELETE /api/v1/messages/{id}/reactions/{emoji}", a.authed(a.limited(a.unreact)))
	if a.cfg.Presence != nil {
		m.HandleFunc("GET /api/v1/rooms/{id}/presence", a.authed(a.presence))
	}
	m.HandleFunc("GET /api/v1/messages/{id}/replies", a.authed(a.replies))

	m.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	m.HandleFunc("GET /readyz", a.readyz)
	if a.cfg.WebSocket != nil {
		m.Handle("GET /ws", a.errorShape(a.cfg.WebSocket))
	}
	if a.cfg.Metrics != nil {
		m.Handle("GET /metrics", a.errorShape(a.cfg.Metrics))
	}
	for pattern, h := range a.cfg.Webhooks {
		m.Handle(pattern, h)
	}
	// Every route above names its method; what none of them takes falls
	// through to a pattern without one.
	m.HandleFunc("/api/", a.noRoute)
	m.HandleFunc("/webhooks/", a.noRoute)
	m.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if (r.Method == http.MethodGet || r.Method == http.MethodHead) && a.client.has(r.URL.Path) {
			a.client.ServeHTTP(w, r)
			return
		}
		a.noRoute(w, r)
	})
}

// noRoute answers a request that no route takes, in the error shape: 405
// with Allow when its path has routes for other methods (SPEC §2 has no
// code for it: bad_request), else 404. ServeMux's own answer would be
// plain text.
func (a *API) noRoute(w http.ResponseWriter, r *http.Request) {
	allow := a.allowed(r)
	if len(allow) == 0 {
		writeError(w, chat.Errorf(chat.CodeNotFound, "no such endpoint: %s %s", r.Method, r.URL.Path))
		return
	}
	w.Header().Set("Allow", strings.Join(allow, ", "))
	writeErrorStatus(w, http.StatusMethodNotAllowed,
		chat.Errorf(chat.CodeBadRequest, "%s is not allowed on %s; use %s", r.Method, r.URL.Path, strings.Join(allow, " or ")))
}

// probedMethods are the methods allowed tries, in the order Allow lists
// them.
var probedMethods = []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete}

// allowed lists the methods that a route (one whose pattern names its
// method) or the browser client serves on r's path, asking the mux as if r
// came with each method.
func (a *API) allowed(r *http.Request) []string {
	var allow []string
	for _, method := range probedMethods {
		probe := *r
		probe.Method = method
		_, pattern := a.mux.Handler(&probe)
		client := pattern == "/" && (method == http.MethodGet || method == http.MethodHead) && a.client.has(r.URL.Path)
		if strings.Contains(pattern, " ") || client {
			allow = append(allow, method)
		}
	}
	return allow
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

// errNotReady is what /readyz says of a Ready error that names no cause a
// client may see.
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
	switch {
	case e.Code == chat.CodeUnavailable:
		w.Header().Set("Retry-After", "1")
	case e.Code == chat.CodeRateLimited && e.RetryAfter > 0:
		w.Header().Set("Retry-After", strconv.Itoa(max(ceilSeconds(e.RetryAfter), 1)))
	}
	writeErrorStatus(w, statusOf[e.Code], e)
}

// writeErrorStatus answers e in the error shape with a status of its own.
func writeErrorStatus(w http.ResponseWriter, status int, e *chat.Error) {
	writeJSON(w, status, map[string]any{"error": map[string]string{"code": string(e.Code), "message": e.Message}})
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

// errorShape wraps h, a handler from another package (the /ws upgrade,
// whose refusals coder/websocket writes with http.Error, and /metrics), so
// that its error answers take the error shape too: a status of 400 or more
// written without a JSON Content-Type is answered {"error":{"code",
// "message"}} with the same status, the message being the first line of
// the text h wrote, and a 405 gets an Allow header if h set none. Answers
// below 400, and a hijacked connection, pass through untouched.
func (a *API) errorShape(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := &shapedWriter{ResponseWriter: w}
		h.ServeHTTP(sw, r)
		if sw.status == 0 {
			return
		}
		hdr := w.Header()
		hdr.Del("Content-Length")
		hdr.Del("Content-Type")
		if sw.status == http.StatusMethodNotAllowed && hdr.Get("Allow") == "" {
			hdr.Set("Allow", strings.Join(a.allowed(r), ", "))
		}
		msg, _, _ := strings.Cut(strings.TrimSpace(sw.text.String()), "\n")
		writeErrorStatus(w, sw.status, &chat.Error{Code: codeOfStatus(sw.status), Message: cmp.Or(msg, http.StatusText(sw.status))})
	})
}

// shapedWriter holds back an error answer that is not JSON; errorShape
// writes it in the error shape once the handler is done.
type shapedWriter struct {
	http.ResponseWriter
	status int             // the status held back; 0 while none is
	text   strings.Builder // what the handler wrote after it, up to maxShapedText bytes
}

// maxShapedText bounds what shapedWriter keeps of an error's text.
const maxShapedText = 512

func (w *shapedWriter) WriteHeader(status int) {
	if status >= 400 && w.status == 0 && !strings.HasPrefix(w.Header().Get("Content-Type"), "application/json") {
		w.status = status
		return
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *shapedWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		return w.ResponseWriter.Write(b)
	}
	w.text.Write(b[:min(len(b), max(maxShapedText-w.text.Len(), 0))])
	return len(b), nil
}

// Unwrap lets http.ResponseController reach the connection (the /ws
// upgrade hijacks it).
func (w *shapedWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// codeOfStatus is the error code of an HTTP error status (SPEC §2); a
// status with no code of its own (405, 426, ...) is bad_request or internal.
func codeOfStatus(status int) chat.Code {
	for code, s := range statusOf {
		if s == status && code != chat.CodeInvalidCredentials {
			return code
		}
	}
	if status >= 500 {
		return chat.CodeInternal
	}
	return chat.CodeBadRequest
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
