package twilio_test

import (
	"fmt"
	"testing"

	"github.com/switchboard-chat/switchboard/chat"
)

// BenchmarkWebhook is one signed SMS to a named room, from the HTTP request
// to the stored message and Twilio's answer.
func BenchmarkWebhook(b *testing.B) {
	bundle := setup(b)
	alice := bundle.user(b, "alice", "+14155550100")
	bundle.Room(b, alice, "general", chat.Public)
	n := 0
	for b.Loop() {
		n++
		if reply := bundle.sms(b, "+14155550100", "#general hello", fmt.Sprintf("SM%d", n)).requireTwiML(b); reply != "" {
			b.Fatalf("reply %q", reply)
		}
	}
}
