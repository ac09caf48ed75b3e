package hub

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
)

// Buffer sizes of a WebSocket after the upgrade. net/http hands a hijacked
// connection a 4 KiB reader and a 4 KiB writer, which every idle
// connection would hold for its whole life. Client frames are small
// (sends, pings) and bufio reads a larger payload straight from the socket
// anyway. The writer needs no buffer of its own: see frameWriter.
const (
	connReadBuffer  = 512
	connWriteBuffer = frameHold
)

// frameHold is how many bytes of a frame frameWriter holds back: more than
// the longest frame header (14 bytes).
const frameHold = 16

// smallBuffers is the ResponseWriter given to websocket.Accept: its Hijack
// returns the connection with small buffers of its own. net/http's buffers
// become garbage at once. After Accept, conn is the hijacked connection.
type smallBuffers struct {
	http.ResponseWriter
	conn   net.Conn
	writer *frameWriter
}

// Hijack takes over the connection from net/http, keeping any bytes it
// already read past the upgrade request (a client may send its first frame
// right after the handshake) in the new reader's buffer: websocket.Accept
// takes what is buffered there and then reads the socket directly.
func (w *smallBuffers) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	w.conn = conn
	w.writer = &frameWriter{conn: conn}
	bw := bufio.NewWriterSize(w.writer, connWriteBuffer)
	n := brw.Reader.Buffered()
	if n == 0 {
		return conn, bufio.NewReadWriter(bufio.NewReaderSize(conn, connReadBuffer), bw), nil
	}
	early, _ := brw.Reader.Peek(n)
	br := bufio.NewReaderSize(io.MultiReader(bytes.NewReader(bytes.Clone(early)), conn), max(connReadBuffer, n))
	if _, err := br.Peek(n); err != nil { // fills the buffer from the early bytes alone
		conn.Close()
		return nil, nil, err
	}
	return conn, bufio.NewReadWriter(br, bw), nil
}

// frameWriter is what coder/websocket's bufio.Writer writes to. That
// buffer holds only frameHold bytes, so a longer frame arrives here in
// (usually) two writes: the full buffer, with the header and the start of
// the payload, then the rest of the payload straight from the caller. The
// first part is held back and both go out in one writev, so that a frame
// still costs one syscall while an idle connection holds 32 bytes of
// buffers instead of a 2 KiB (or 4 KiB) one. It reads the length from
// each frame's header, so it never holds the end of a frame.
//
// Since it sees every frame's header, it also tells the connection of each
// frame before its first byte goes out (frameStart) and after its last
// went out (frameSent), with the frame's opcode. coder/websocket writes a
// frame whole under its write lock, so these run in the order the frames
// go out.
type frameWriter struct {
	conn net.Conn
	held [frameHold]byte
	n    int   // bytes in held: the start of the frame in progress
	rest int64 // bytes of the frame in progress not seen yet; 0 between frames
	op   byte  // opcode of the frame in progress
	vec  [2][]byte
	bufs net.Buffers

	// Set before the connection's first data frame; nil before.
	frameStart, frameSent func(op byte)
}

// WebSocket opcodes (RFC 6455 §5.2) the hooks are told of.
const (
	opText  = 0x1
	opClose = 0x8
)

func (w *frameWriter) Write(p []byte) (int, error) {
	total := len(p)
	for len(p) > 0 {
		if w.rest == 0 {
			size, ok := frameSize(w.held[:w.n], p)
			if !ok { // the header goes on in the next write
				w.n += copy(w.held[w.n:], p)
				return total, nil
			}
			w.rest = size - int64(w.n)
			if w.n > 0 {
				w.op = w.held[0] & 0x0f
			} else {
				w.op = p[0] & 0x0f
			}
			if w.frameStart != nil {
				w.frameStart(w.op)
			}
		}
		if int64(len(p)) >= w.rest { // p ends the frame
			end := int(w.rest)
			if err := w.send(p[:end]); err != nil {
				return total - len(p), err
			}
			w.rest = 0
			p = p[end:]
			if w.frameSent != nil {
				w.frameSent(w.op)
			}
			continue
		}
		// The frame goes on after p.
		if w.n+len(p) <= len(w.held) {
			w.n += copy(w.held[w.n:], p)
			w.rest -= int64(len(p))
			return total, nil
		}
		if err := w.send(p); err != nil {
			return total - len(p), err
		}
		w.rest -= int64(len(p))
		return total, nil
	}
	return total, nil
}

// send writes the held bytes and p, in one writev when both are there.
func (w *frameWriter) send(p []byte) error {
	if w.n == 0 {
		_, err := w.conn.Write(p)
		return err
	}
	// WriteTo consumes the Buffers it is called on, and takes its address:
	// fields, so that no frame allocates them.
	w.vec[0], w.vec[1] = w.held[:w.n], p
	w.bufs = w.vec[:]
	w.n = 0
	_, err := w.bufs.WriteTo(w.conn)
	w.vec[1] = nil // the caller's
	return err
}

// frameSize reads the header of the WebSocket frame that starts at a and
// goes on in b, and returns the whole frame's length (header and payload),
// or false when a and b do not hold the whole header yet.
func frameSize(a, b []byte) (int64, bool) {
	at := func(i int) byte {
		if i < len(a) {
			return a[i]
		}
		return b[i-len(a)]
	}
	have := len(a) + len(b)
	if have < 2 {
		return 0, false
	}
	lenByte := at(1)
	head := 2
	if lenByte&0x80 != 0 { // masked: a 4-byte key follows the length
		head += 4
	}
	var payload int64
	switch l := lenByte & 0x7f; l {
	case 126:
		head += 2
		if have < head {
			return 0, false
		}
		payload = int64(at(2))<<8 | int64(at(3))
	case 127:
		head += 8
		if have < head {
			return 0, false
		}
		for i := 2; i < 10; i++ {
			payload = payload<<8 | int64(at(i))
		}
	default:
		payload = int64(l)
	}
	if have < head {
		return 0, false
	}
	return int64(head) + payload, true
}
