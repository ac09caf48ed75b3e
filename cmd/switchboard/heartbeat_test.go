package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"

	"github.com/switchboard-chat/switchboard/hub"
)

// TestHeartbeat: the server pings; a client that answers (it keeps reading,
// which is when a WebSocket client answers pings) stays connected past the
// idle timeout, and one that goes silent is closed.
func TestHeartbeat(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, func(c *hub.Config) {
		c.PingInterval = 100 * time.Millisecond
		c.IdleTimeout = 400 * time.Millisecond
	})
	alice := s.register(t, "alice")

	alive := s.dialWS(t, alice.Token)
	alive.ready()
	silent := s.dialWS(t, alice.Token)

	// The reading client is not closed for three idle timeouts.
	frames, readErr := make(chan string, 100), make(chan error, 1)
	go func() {
		for {
			_, data, err := alive.Conn.Read(context.Background())
			if err != nil {
				readErr <- err
				return
			}
			frames <- string(data)
		}
	}()
	select {
	case err := <-readErr:
		t.Fatalf("answering client was closed: %v", err)
	case <-time.After(1200 * time.Millisecond):
	}

	// The silent one (it never read, so never answered a ping) is gone:
	// writing to it soon fails.
	require.Eventually(t, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		return silent.Conn.Write(ctx, websocket.MessageText, []byte(`{"type":"ping"}`)) != nil
	}, 10*time.Second, 50*time.Millisecond) // after the close handshake times out

	// And the live one still works.
	alive.send(map[string]any{"type": "ping", "id": "p"})
	for gotPong := false; !gotPong; {
		select {
		case f := <-frames:
			gotPong = strings.Contains(f, `"pong"`)
		case err := <-readErr:
			t.Fatalf("answering client was closed: %v", err)
		case <-time.After(5 * time.Second):
			t.Fatal("no pong")
		}
	}
}
