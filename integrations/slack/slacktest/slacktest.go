// Package slacktest is a fake of the Slack Web API's chat.postMessage,
// chat.update and chat.delete on 127.0.0.1 for tests: point SLACK_API_URL
// at URL and read the calls with Accepted. The skeleton (counting, scripted failures, holding, waiting) is
// fakeapi's; this package knows Slack's path, token and JSON.
package slacktest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/switchboard-chat/switchboard/internal/fakeapi"
)

// Post is one accepted call: chat.postMessage (Method ""), or
// chat.update or chat.delete of the post with timestamp TS.
type Post struct {
	Method                  string
	Channel, Text, Username string
	TS                      string
}

// Failure is a scripted answer: an HTTP status other than 200, or a 200
// with {"ok":false,"error":Error}.
type Failure struct {
	Status int
	Error  string
}

// API is the fake; requests must carry the bot token. A held request, once
// released, fails with 503.
type API struct {
	Token string
	*fakeapi.Server[Post, Failure]
}

// New starts a fake for the bot token and stops it when t ends.
func New(t testing.TB, token string) *API {
	a := &API{Token: token}
	a.Server = fakeapi.New[Post, Failure](t, fakeapi.Config{
		Serve: a.serve,
		Held:  func(w http.ResponseWriter) { w.WriteHeader(http.StatusServiceUnavailable) },
	})
	return a
}

// URL is the SLACK_API_URL for this fake (it ends in "/api/").
func (a *API) URL() string { return a.Server.URL() + "/api/" }

func (a *API) serve(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	method := strings.TrimPrefix(r.URL.Path, "/api/")
	if method != "chat.postMessage" && method != "chat.update" && method != "chat.delete" {
		_ = json.NewEncoder(w).Encode(map[string]any{"ok": false, "error": "unknown_method"})
		return
	}
	if err := r.ParseForm(); err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	token := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	if token == "" {
		token = r.PostForm.Get("token")
	}
	if token != a.Token {
		_ = json.NewEncoder(w).Encode(map[string]any{"ok": false, "error": "invalid_auth"})
		return
	}
	if f, ok := a.NextFailure(); ok {
		if f.Status != 0 && f.Status != http.StatusOK {
			if f.Status == http.StatusTooManyRequests {
				w.Header().Set("Retry-After", "1")
			}
			w.WriteHeader(f.Status)
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"ok": false, "error": f.Error})
		return
	}
	p := Post{Channel: r.PostForm.Get("channel"), Text: r.PostForm.Get("text"), Username: r.PostForm.Get("username")}
	if method != "chat.postMessage" {
		p.Method, p.TS = method, r.PostForm.Get("ts")
		a.Accept(p)
		_ = json.NewEncoder(w).Encode(map[string]any{"ok": true, "channel": p.Channel, "ts": p.TS, "text": p.Text})
		return
	}
	n := a.Accept(p)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"ok": true, "channel": p.Channel, "ts": TS(n),
		"message": map[string]any{"text": p.Text, "username": p.Username, "bot_id": "B0FAKE"},
	})
}

// TS is the timestamp the fake gives the nth call it accepted (from 1).
func TS(n int) string { return fmt.Sprintf("1700000000.%06d", n) }
