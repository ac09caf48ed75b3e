// Package twiliotest is a fake of Twilio's Messages API on 127.0.0.1 for
// tests: point TWILIO_API_URL (twilio.SenderConfig.APIURL) at URL and read
// what arrived with Sent.
package twiliotest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
)

// SMS is one message the fake accepted.
type SMS struct {
	To, From, Body string
}

// Failure is a scripted answer to the next request: Twilio's error JSON
// with this HTTP status and Twilio error code.
type Failure struct {
	Status int
	Code   int
}

// API is the fake. Requests must carry the account's basic-auth credentials.
type API struct {
	AccountSID, AuthToken string
	srv                   *httptest.Server

	mu       sync.Mutex
	sent     []SMS
	failures []Failure
	requests int
	hold     chan struct{} // non-nil: requests wait for it to close
}

// New starts a fake for the account sid/token and stops it when t ends.
func New(t testing.TB, sid, token string) *API {
	a := &API{AccountSID: sid, AuthToken: token}
	a.srv = httptest.NewServer(http.HandlerFunc(a.serve))
	t.Cleanup(a.srv.Close)
	return a
}

// URL is the base URL to use instead of https://api.twilio.com.
func (a *API) URL() string { return a.srv.URL }

// Fail makes the next len(fs) requests fail as given, in order.
func (a *API) Fail(fs ...Failure) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.failures = append(a.failures, fs...)
}

// Hold makes requests wait, without an answer, until the returned function
// is called; then they fail with 503 and nothing is accepted (as when the
// client gave up first).
func (a *API) Hold() (release func()) {
	a.mu.Lock()
	defer a.mu.Unlock()
	ch := make(chan struct{})
	a.hold = ch
	var once sync.Once
	return func() {
		once.Do(func() {
			a.mu.Lock()
			a.hold = nil
			a.mu.Unlock()
			close(ch)
		})
	}
}

// Sent returns the messages accepted so far.
func (a *API) Sent() []SMS {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]SMS(nil), a.sent...)
}

// Requests counts every request, accepted or not.
func (a *API) Requests() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.requests
}

func (a *API) serve(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	a.requests++
	hold := a.hold
	a.mu.Unlock()
	if hold != nil {
		select {
		case <-hold:
		case <-r.Context().Done():
		}
		twilioError(w, http.StatusServiceUnavailable, 20503, "held request: not accepted")
		return
	}
	user, pass, ok := r.BasicAuth()
	if r.Method != http.MethodPost || r.URL.Path != "/2010-04-01/Accounts/"+a.AccountSID+"/Messages.json" {
		twilioError(w, http.StatusNotFound, 20404, "The requested resource "+r.URL.Path+" was not found")
		return
	}
	if !ok || user != a.AccountSID || pass != a.AuthToken {
		twilioError(w, http.StatusUnauthorized, 20003, "Authenticate")
		return
	}
	if err := r.ParseForm(); err != nil {
		twilioError(w, http.StatusBadRequest, 21602, err.Error())
		return
	}
	a.mu.Lock()
	var fail *Failure
	if len(a.failures) > 0 {
		fail = &a.failures[0]
		a.failures = a.failures[1:]
	}
	if fail == nil {
		a.sent = append(a.sent, SMS{To: r.PostForm.Get("To"), From: r.PostForm.Get("From"), Body: r.PostForm.Get("Body")})
	}
	n := len(a.sent)
	a.mu.Unlock()
	if fail != nil {
		twilioError(w, fail.Status, fail.Code, fmt.Sprintf("scripted failure %d", fail.Code))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"sid": fmt.Sprintf("SM%032d", n), "status": "queued",
		"to": r.PostForm.Get("To"), "from": r.PostForm.Get("From"), "body": r.PostForm.Get("Body"),
	})
}

// twilioError writes Twilio's error document.
func twilioError(w http.ResponseWriter, status, code int, message string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"code": code, "message": message, "status": status,
		"more_info": fmt.Sprintf("https://www.twilio.com/docs/errors/%d", code),
	})
}
