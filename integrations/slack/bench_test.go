package slack_test

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/switchboard-chat/switchboard/chat"
	"github.com/switchboard-chat/switchboard/integrations/slack"
	"github.com/switchboard-chat/switchboard/storage/storagetest"
)

// BenchmarkEventsWebhook is what Slack waits for (at most 3 s): a signed
// message event of a bridged channel, verified, looked up and queued.
func BenchmarkEventsWebhook(b *testing.B) {
	bundle := setup(b)
	alice := bundle.user(b, "alice", "")
	general := bundle.Room(b, alice, "general", chat.Public)
	bundle.bridge(b, general, "C123ABC456")
	n := 0
	for b.Loop() {
		n++
		body := messageEvent(b, map[string]any{"event_id": fmt.Sprintf("Ev%d", n)}, nil)
		if r := signed(b, bundle.events, "application/json", body); r.Status != http.StatusOK {
			b.Fatalf("status %d: %s", r.Status, r.Body)
		}
	}
	if len(bundle.queue.queued()) != n {
		b.Fatalf("%d jobs queued, want %d", len(bundle.queue.queued()), n)
	}
}

// BenchmarkEventTask is the job: one Slack message stored as a guest's.
func BenchmarkEventTask(b *testing.B) {
	bundle := setup(b)
	alice := bundle.user(b, "alice", "")
	general := bundle.Room(b, alice, "general", chat.Public)
	bundle.bridge(b, general, "C123ABC456")
	handle := slack.HandleEventTask(bundle.Store, storagetest.NewPoster(b, bundle.Store))
	n := 0
	for b.Loop() {
		// The webhook makes the job's payload, off the clock.
		b.StopTimer()
		n++
		body := messageEvent(b, map[string]any{"event_id": fmt.Sprintf("Ev%d", n)}, map[string]any{"text": "hi &amp; bye"})
		if r := signed(b, bundle.events, "application/json", body); r.Status != http.StatusOK {
			b.Fatalf("status %d: %s", r.Status, r.Body)
		}
		jobs := bundle.queue.queued()
		b.StartTimer()
		if err := handle(bundle.Ctx, jobs[len(jobs)-1].Payload); err != nil {
			b.Fatal(err)
		}
	}
	if got := len(bundle.Stored(b, chat.SourceSlack)); got != n {
		b.Fatalf("%d messages stored, want %d", got, n)
	}
}
