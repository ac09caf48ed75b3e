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
// anyway; a server frame larger than the write buffer costs one more
// write, which batching makes rare.
const (
	connReadBuffer  = 512
	connWriteBuffer = 2048
)

// smallBuffers is the ResponseWriter given to websocket.Accept: its Hijack
// returns the connection with small buffers of its own. net/http's buffers
// become garbage at once.
type smallBuffers struct {
	http.ResponseWriter
}

// Hijack takes over the connection from net/http, keeping any bytes it
// already read past the upgrade request (a client may send its first frame
// right after the handshake) in the new reader's buffer: websocket.Accept
// takes what is buffered there and then reads the socket directly.
func (w smallBuffers) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	n := brw.Reader.Buffered()
	if n == 0 {
		return conn, bufio.NewReadWriter(bufio.NewReaderSize(conn, connReadBuffer), bufio.NewWriterSize(conn, connWriteBuffer)), nil
	}
	early, _ := brw.Reader.Peek(n)
	br := bufio.NewReaderSize(io.MultiReader(bytes.NewReader(bytes.Clone(early)), conn), max(connReadBuffer, n))
	if _, err := br.Peek(n); err != nil { // fills the buffer from the early bytes alone
		conn.Close()
		return nil, nil, err
	}
	return conn, bufio.NewReadWriter(br, bufio.NewWriterSize(conn, connWriteBuffer)), nil
}
