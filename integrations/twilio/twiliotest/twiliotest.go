// Package twiliotest is a fake of Twilio's Messages API on 127.0.0.1 for
// tests: point TWILIO_API_URL (twilio.SenderConfig.APIURL) at URL and read
// what arrived with Accepted. The skeleton (counting, scripted failures,
// holding, waiting) is fakeapi's; this package knows Twilio's paths,
// credentials and JSON.
package twiliotest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"

	"github.com/switchboard-chat/switchboard/internal/fakeapi"
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

// API is the fake. Requests must carry the account's basic-auth
// credentials; a held request, once released, fails with 503.
type API struct {
	AccountSID, AuthToken string
	*fakeapi.Server[SMS, Failure]
}

// New starts a fake for the account sid/token and stops it when t ends.
func New(t testing.TB, sid, token string) *API {
	a := &API{AccountSID: sid, AuthToken: token}
	a.Server = fakeapi.New[SMS, Failure](t, fakeapi.Config{
		Serve: a.serve,
		Held: func(w http.ResponseWriter) {
			twilioError(w, http.StatusServiceUnavailable, 20503, "held request: not accepted")
		},
	})
	return a
}

func (a *API) serve(w http.ResponseWriter, r *http.Request) {
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
	if fail, ok := a.NextFailure(); ok {
		twilioError(w, fail.Status, fail.Code, fmt.Sprintf("scripted failure %d", fail.Code))
		return
	}
	n := a.Accept(SMS{To: r.PostForm.Get("To"), From: r.PostForm.Get("From"), Body: r.PostForm.Get("Body")})
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
