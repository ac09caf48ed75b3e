// Package slacktest is a fake of the Slack Web API's chat.postMessage on
// 127.0.0.1 for tests: point SLACK_API_URL at URL and read the posts with
// Posts.
package slacktest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// Post is one accepted chat.postMessage call.
type Post struct {
	Channel, Text, Username string
}

// Failure is a scripted answer: an HTTP status other than 200, or a 200
// with {"ok":false,"error":Error}.
type Failure struct {
	Status int
	Error  string
}

// API is the fake; requests must carry the bot token.
type API struct {
	Token string
	srv   *httptest.Server

	mu       sync.Mutex
	posts    []Post
	failures []Failure
	requests int
}

// New starts a fake for the bot token and stops it when t ends.
func New(t testing.TB, token string) *API {
	a := &API{Token: token}
	a.srv = httptest.NewServer(http.HandlerFunc(a.serve))
	t.Cleanup(a.srv.Close)
	return a
}

// URL is the SLACK_API_URL for this fake (it ends in "/").
func (a *API) URL() string { return a.srv.URL + "/api/" }

// Fail scripts the answers to the next len(fs) requests.
func (a *API) Fail(fs ...Failure) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.failures = append(a.failures, fs...)
}

// Posts returns the accepted posts.
func (a *API) Posts() []Post {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]Post(nil), a.posts...)
}

// Requests counts every request.
func (a *API) Requests() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.requests
}

func (a *API) serve(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.requests++
	w.Header().Set("Content-Type", "application/json")
	if r.URL.Path != "/api/chat.postMessage" {
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
	if len(a.failures) > 0 {
		f := a.failures[0]
		a.failures = a.failures[1:]
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
	a.posts = append(a.posts, p)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"ok": true, "channel": p.Channel, "ts": fmt.Sprintf("1700000000.%06d", len(a.posts)),
		"message": map[string]any{"text": p.Text, "username": p.Username, "bot_id": "B0FAKE"},
	})
}
