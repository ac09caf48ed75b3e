package hub

import "github.com/coder/websocket"

// The close codes of SPEC §6, in one place.
const (
	closeNormal       = websocket.StatusNormalClosure           // 1000
	closeGoingAway    = websocket.StatusGoingAway               // 1001: server shutdown
	closeUnsupported  = websocket.StatusUnsupportedData         // 1003: binary frames
	closeInvalidUTF8  = websocket.StatusInvalidFramePayloadData // 1007
	closePolicy       = websocket.StatusPolicyViolation         // 1008: persistent abuse
	closeTooBig       = websocket.StatusMessageTooBig           // 1009
	closeInternal     = websocket.StatusInternalError           // 1011
	closeTryLater     = websocket.StatusTryAgainLater           // 1013: slow consumer
	closeUnauthorized = websocket.StatusCode(4401)
	closeForbidden    = websocket.StatusCode(4403)
)
