package twilio

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestDeadlineBoundsTheWholeCall: a call to Twilio ends by sendTimeout
// whether the answer's headers or its body are late, which is what keeps a
// run within its claim (claimLease).
func TestDeadlineBoundsTheWholeCall(t *testing.T) {
	t.Parallel()
	stop := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/body" {
			w.WriteHeader(http.StatusCreated)
			w.(http.Flusher).Flush()
		}
		select {
		case <-r.Context().Done():
		case <-stop:
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(stop) })
	client := &http.Client{Transport: deadline{d: 200 * time.Millisecond, next: http.DefaultTransport}}

	start := time.Now()
	_, err := client.Get(srv.URL + "/headers")
	require.ErrorContains(t, err, "deadline exceeded")
	require.Less(t, time.Since(start), 5*time.Second)

	start = time.Now()
	resp, err := client.Get(srv.URL + "/body")
	require.NoError(t, err)
	defer resp.Body.Close()
	_, err = io.ReadAll(resp.Body)
	require.ErrorContains(t, err, "deadline exceeded")
	require.Less(t, time.Since(start), 5*time.Second)
}
