package hub

import "github.com/coder/websocket"

// The close codes of SPEC §6 that the hub sends, in one place. 1009 (frame
// too big) is sent by coder/websocket itself once SetReadLimit is exceeded.
const (
	closeNormal       = websocket.StatusNormalClosure           // 1000
	closeGoingAway    = websocket.StatusGoingAway               // 1001: server shutdown
	closeUnsupported  = websocket.StatusUnsupportedData         // 1003: binary frames
	closeInvalidUTF8  = websocket.StatusInvalidFramePayloadData // 1007
	closePolicy       = websocket.StatusPolicyViolation         // 1008: persistent abuse, silence
	closeTryLater     = websocket.StatusTryAgainLater           // 1013: slow consumer, store down at connect
	closeUnauthorized = websocket.StatusCode(4401)
)
