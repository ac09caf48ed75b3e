package hub

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"
)

// recordConn is a net.Conn that keeps what is written to it.
type recordConn struct {
	net.Conn
	out bytes.Buffer
}

func (c *recordConn) Write(p []byte) (int, error) { return c.out.Write(p) }

// frame builds a WebSocket frame header for a payload of n bytes, masked or
// not, followed by the payload.
func frame(n int, masked bool, fill byte) []byte {
	var f []byte
	f = append(f, 0x81)
	mask := byte(0)
	if masked {
		mask = 0x80
	}
	switch {
	case n > 0xffff:
		f = append(f, mask|127)
		f = binary.BigEndian.AppendUint64(f, uint64(n))
	case n > 125:
		f = append(f, mask|126)
		f = binary.BigEndian.AppendUint16(f, uint16(n))
	default:
		f = append(f, mask|byte(n))
	}
	if masked {
		f = append(f, 1, 2, 3, 4)
	}
	return append(f, bytes.Repeat([]byte{fill}, n)...)
}

func TestFrameWriter(t *testing.T) {
	t.Parallel()

	sizes := []int{0, 1, 9, 10, 11, 12, 13, 14, 15, 16, 17, 100, 125, 126, 127, 2000, 65535, 65536, 70000}

	t.Run("FlushedFramesGoOutWhole", func(t *testing.T) {
		t.Parallel()
		// As coder/websocket writes: header and payload, then a flush.
		rec := &recordConn{}
		bw := bufio.NewWriterSize(&frameWriter{conn: rec}, connWriteBuffer)
		var want []byte
		for i, n := range sizes {
			for _, masked := range []bool{false, true} {
				f := frame(n, masked, byte('a'+i))
				want = append(want, f...)
				head := len(f) - n
				_, err := bw.Write(f[:head])
				require.NoError(t, err)
				_, err = bw.Write(f[head:])
				require.NoError(t, err)
				require.NoError(t, bw.Flush())
				require.Equal(t, want, rec.out.Bytes(), "frame of %d bytes, masked %v", n, masked)
			}
		}
	})

	t.Run("AnyChunking", func(t *testing.T) {
		t.Parallel()
		// Frames back to back, written in random pieces with random
		// flushes: the stream comes out unchanged.
		rng := rand.New(rand.NewPCG(1, 2))
		for range 50 {
			rec := &recordConn{}
			bw := bufio.NewWriterSize(&frameWriter{conn: rec}, connWriteBuffer)
			var stream []byte
			for range 20 {
				stream = append(stream, frame(sizes[rng.IntN(len(sizes))], rng.IntN(2) == 0, 'x')...)
			}
			for p := stream; len(p) > 0; {
				k := min(len(p), 1+rng.IntN(40))
				_, err := bw.Write(p[:k])
				require.NoError(t, err)
				p = p[k:]
				if rng.IntN(3) == 0 {
					require.NoError(t, bw.Flush())
				}
			}
			require.NoError(t, bw.Flush())
			require.Equal(t, stream, rec.out.Bytes())
		}
	})
}

// TestOneWritePerFrame checks that a WebSocket accepted with smallBuffers
// writes each message with one syscall, whatever its size.
func TestOneWritePerFrame(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("counts write syscalls in /proc/self/io")
	}
	sizes := []int{1, 20, 120, 500, 3000, 20000, 60000}
	const rounds = 20

	start, done := make(chan struct{}), make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := websocket.Accept(&smallBuffers{ResponseWriter: w}, r, &websocket.AcceptOptions{CompressionMode: websocket.CompressionDisabled})
		if err != nil {
			return
		}
		defer ws.CloseNow()
		<-start
		for i := range rounds * len(sizes) {
			msg := strings.Repeat(strconv.Itoa(i%10), sizes[i%len(sizes)])
			if err := ws.Write(context.Background(), websocket.MessageText, []byte(msg)); err != nil {
				return
			}
		}
		<-done
	}))
	defer srv.Close()

	ctx := t.Context()
	ws, _, err := websocket.Dial(ctx, srv.URL, nil)
	require.NoError(t, err)
	defer ws.CloseNow()
	ws.SetReadLimit(-1)

	before := writeSyscalls(t)
	close(start)
	for i := range rounds * len(sizes) {
		_, data, err := ws.Read(ctx)
		require.NoError(t, err)
		require.Equal(t, strings.Repeat(strconv.Itoa(i%10), sizes[i%len(sizes)]), string(data))
	}
	writes := writeSyscalls(t) - before
	close(done)
	// Two writes per frame (header, then payload) would be twice as many;
	// allow a little for whatever else the process writes meanwhile.
	require.LessOrEqual(t, writes, int64(rounds*len(sizes)+10))
}

// writeSyscalls is how many write syscalls this process has made.
func writeSyscalls(t *testing.T) int64 {
	t.Helper()
	data, err := os.ReadFile("/proc/self/io")
	require.NoError(t, err)
	for line := range strings.Lines(string(data)) {
		if v, ok := strings.CutPrefix(line, "syscw: "); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			require.NoError(t, err)
			return n
		}
	}
	t.Fatal("no syscw in /proc/self/io")
	return 0
}
