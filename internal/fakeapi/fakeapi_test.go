package fakeapi_test

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/switchboard-chat/switchboard/internal/fakeapi"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// echo is a vendor of one: it accepts the "v" of each request unless a
// failure (an HTTP status) is scripted.
type echo struct {
	*fakeapi.Server[string, int]
}

func newEcho(t *testing.T) *echo {
	e := &echo{}
	e.Server = fakeapi.New[string, int](t, fakeapi.Config{
		Serve: func(w http.ResponseWriter, r *http.Request) {
			if status, ok := e.NextFailure(); ok {
				w.WriteHeader(status)
				return
			}
			n := e.Accept(r.URL.Query().Get("v"))
			fmt.Fprint(w, n)
		},
		Held: func(w http.ResponseWriter) { w.WriteHeader(http.StatusServiceUnavailable) },
	})
	return e
}

// get returns the status of a request for v (0 if it failed).
func (e *echo) get(v string) int {
	resp, err := http.Get(e.URL() + "/?v=" + v)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestServer(t *testing.T) {
	t.Parallel()
	e := newEcho(t)
	require.Regexp(t, `^http://127\.0\.0\.1:\d+$`, e.URL())

	require.Equal(t, http.StatusOK, e.get("a"))
	e.Fail(http.StatusInternalServerError, http.StatusTooManyRequests)
	require.Equal(t, http.StatusInternalServerError, e.get("b"))
	require.Equal(t, http.StatusTooManyRequests, e.get("c"))
	require.Equal(t, http.StatusOK, e.get("d"), "failures are used up in order")
	require.Equal(t, []string{"a", "d"}, e.Accepted())
	require.Equal(t, 4, e.Requests())

	release := e.Hold()
	done := make(chan int)
	go func() { done <- e.get("held") }()
	e.WaitRequests(t, 5)
	select {
	case <-done:
		t.Fatal("a held request was answered")
	case <-time.After(50 * time.Millisecond):
	}
	release()
	require.Equal(t, http.StatusServiceUnavailable, <-done)
	release() // a second call is harmless
	require.Equal(t, []string{"a", "d"}, e.Accepted(), "nothing held is accepted")

	go e.get("late")
	e.WaitAccepted(t, 3)
	require.Equal(t, "late", e.Accepted()[2])
}
