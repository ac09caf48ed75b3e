package main

import (
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-chat/switchboard/broker/brokertest"
	"github.com/switchboard-chat/switchboard/integrations/jobs"
	"github.com/switchboard-chat/switchboard/integrations/slack/slacktest"
	"github.com/switchboard-chat/switchboard/integrations/twilio/twiliotest"
	"github.com/switchboard-chat/switchboard/storage/storagetest"
)

const (
	testTwilioSID   = "AC0123456789abcdef0123456789abcdef"
	testTwilioToken = "0123456789abcdef0123456789abcdef"
)

func newFakeTwilio(t *testing.T) *twiliotest.API {
	return twiliotest.New(t, testTwilioSID, testTwilioToken)
}

// twilioSignature is X-Twilio-Signature for a form POST to url (the
// algorithm of testdata/twilio.json at the repository root).
func twilioSignature(token, url string, form url.Values) string {
	keys := make([]string, 0, len(form))
	for k := range form {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString(url)
	for _, k := range keys {
		vs := append([]string(nil), form[k]...)
		sort.Strings(vs)
		for _, v := range vs {
			b.WriteString(k + v)
		}
	}
	mac := hmac.New(sha1.New, []byte(token))
	mac.Write([]byte(b.String()))
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// smsWebhook posts an inbound SMS to the node, signed over the node's
// public URL as Twilio would sign it.
func (s *testServer) smsWebhook(t *testing.T, from, body, sid string) (int, string) {
	t.Helper()
	form := url.Values{"From": {from}, "To": {testTwilioFrom}, "Body": {body}, "MessageSid": {sid}, "AccountSid": {testTwilioSID}}
	req, err := http.NewRequest("POST", s.URL+"/webhooks/twilio/sms", strings.NewReader(form.Encode()))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X-Twilio-Signature", twilioSignature(testTwilioToken, "http://switchboard.test/webhooks/twilio/sms", form))
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(raw)
}

// slackWebhook posts a signed request to /webhooks/slack/{path}.
func (s *testServer) slackWebhook(t *testing.T, path, contentType, body string) (int, string) {
	t.Helper()
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	mac := hmac.New(sha256.New, []byte(testSlackSecret))
	mac.Write([]byte("v0:" + ts + ":" + body))
	req, err := http.NewRequest("POST", s.URL+"/webhooks/slack/"+path, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("X-Slack-Request-Timestamp", ts)
	req.Header.Set("X-Slack-Signature", "v0="+hex.EncodeToString(mac.Sum(nil)))
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(raw)
}

// setProfile sets fields of u's profile through PATCH /api/v1/me.
func (s *testServer) setProfile(t *testing.T, u testUser, fields map[string]any) {
	t.Helper()
	r := s.do(t, "PATCH", "/api/v1/me", u.Token, fields)
	require.Equal(t, http.StatusOK, r.Status, "patch me: %s", r.Raw)
}

// verifiedPhone gives u the verified number phone in storage, skipping the
// code by SMS (the phone tests go through it); for tests of what verified
// numbers do. The node's cache does not hear of it: read no profile after.
func (s *testServer) verifiedPhone(t *testing.T, u testUser, phone string) {
	t.Helper()
	storagetest.VerifyPhone(t, s.node.pool, u.ID, phone)
}

// roomName returns the name of room id as u sees it.
func (s *testServer) roomName(t *testing.T, u testUser, id string) string {
	t.Helper()
	r := s.do(t, "GET", "/api/v1/rooms", u.Token, nil)
	require.Equal(t, http.StatusOK, r.Status)
	for _, room := range r.Body["rooms"].([]any) {
		if m := room.(map[string]any); m["id"] == id {
			return m["name"].(string)
		}
	}
	t.Fatalf("room %s not among %s's rooms", id, u.Username)
	return ""
}

func (s *testServer) bridge(t *testing.T, room, channel string) {
	t.Helper()
	_, err := s.node.pool.Exec(t.Context(), `UPDATE rooms SET slack_channel_id = $2 WHERE id = $1::bigint`, room, channel)
	require.NoError(t, err)
}

func (s *testServer) history(t *testing.T, u testUser, room string) []map[string]any {
	t.Helper()
	r := s.do(t, "GET", "/api/v1/rooms/"+room+"/messages?limit=100", u.Token, nil)
	require.Equal(t, http.StatusOK, r.Status, "history: %s", r.Raw)
	var out []map[string]any
	for _, m := range r.Body["messages"].([]any) {
		out = append(out, m.(map[string]any))
	}
	return out
}

// sendWS sends body into room over c and waits for its ack.
func sendWS(t *testing.T, c *wsClient, room, body string) map[string]any {
	t.Helper()
	id := fmt.Sprintf("s-%d", time.Now().UnixNano())
	c.send(map[string]any{"type": "send", "id": id, "room": room, "body": body})
	for {
		obj := c.next()
		if obj["type"] == "ack" && obj["id"] == id {
			return obj["message"].(map[string]any)
		}
		require.Contains(t, []any{"message", "typing", "subscribed"}, obj["type"], "waiting for ack, got %v", obj)
	}
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	require.Eventually(t, cond, 15*time.Second, 20*time.Millisecond, what)
}

func TestSMSInboundDeliveredLive(t *testing.T) {
	t.Parallel()
	fake := newFakeTwilio(t)
	s := newTestServerWith(t, nodeOptions{twilio: fake})
	alice, bob := s.register(t, "alice"), s.register(t, "bob")
	room := s.createRoom(t, alice, "public")
	s.addMember(t, alice, room, bob)
	s.verifyPhone(t, fake, alice, "+15551110001")
	bobWS := s.dialWS(t, bob.Token)
	bobWS.ready()

	name := s.roomName(t, alice, room)
	status, twiml := s.smsWebhook(t, "+15551110001", "#"+name+" hello from my phone", "SM0001")
	require.Equal(t, http.StatusOK, status, twiml)
	m := bobWS.nextOf("message", "subscribed")["message"].(map[string]any)
	require.Equal(t, "hello from my phone", m["body"])
	require.Equal(t, "sms", m["source"])
	require.Equal(t, alice.ID, m["sender"].(map[string]any)["id"])

	// Twilio retries the same MessageSid: stored once.
	status, _ = s.smsWebhook(t, "+15551110001", "#"+name+" hello from my phone", "SM0001")
	require.Equal(t, http.StatusOK, status)
	require.Len(t, s.history(t, alice, room), 1)

	// A forged signature stores nothing.
	form := url.Values{"From": {"+15551110001"}, "Body": {"#" + name + " forged"}, "MessageSid": {"SM0002"}}
	req, _ := http.NewRequest("POST", s.URL+"/webhooks/twilio/sms", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X-Twilio-Signature", twilioSignature("wrong-token", "http://switchboard.test/webhooks/twilio/sms", form))
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusForbidden, resp.StatusCode)
	require.Len(t, s.history(t, alice, room), 1)
}

func TestSMSOutboundToOfflineMembersFoldedPerMinute(t *testing.T) {
	t.Parallel()
	fake := newFakeTwilio(t)
	s := newTestServerWith(t, nodeOptions{twilio: fake})
	alice, bob, carol := s.register(t, "alice"), s.register(t, "bob"), s.register(t, "carol")
	room := s.createRoom(t, alice, "public")
	s.addMember(t, alice, room, bob)
	s.addMember(t, alice, room, carol)
	s.verifiedPhone(t, bob, "+15552220002")
	s.verifiedPhone(t, carol, "+15553330003")
	s.setProfile(t, bob, map[string]any{"sms_notify": true})
	s.setProfile(t, carol, map[string]any{"sms_notify": true})
	carolWS := s.dialWS(t, carol.Token) // carol is online: no SMS for her
	carolWS.ready()
	aliceWS := s.dialWS(t, alice.Token)
	aliceWS.ready()
	name := s.roomName(t, alice, room)

	sendWS(t, aliceWS, room, "first")
	eventually(t, "bob gets the first SMS", func() bool { return len(fake.Accepted()) == 1 })
	require.Equal(t, twiliotest.SMS{To: "+15552220002", From: testTwilioFrom, Body: "[#" + name + "] " + alice.Username + ": first"}, fake.Accepted()[0])

	// Within the throttle window (1 s in tests, a minute in production)
	// the next messages wait and go out together.
	sendWS(t, aliceWS, room, "second")
	sendWS(t, aliceWS, room, "third")
	eventually(t, "bob gets the folded SMS", func() bool { return len(fake.Accepted()) == 2 })
	require.Equal(t, "[#"+name+"] "+alice.Username+": second\n"+alice.Username+": third", fake.Accepted()[1].Body)
	time.Sleep(1500 * time.Millisecond)
	require.Len(t, fake.Accepted(), 2, "no other SMS: none to carol (online), none to alice (the sender)")
}

func TestSMSRetriesAfterTwilioErrorsAndDeadLettersRefusedNumbers(t *testing.T) {
	t.Parallel()
	fake := newFakeTwilio(t)
	s := newTestServerWith(t, nodeOptions{twilio: fake})
	alice, bob, dave := s.register(t, "alice"), s.register(t, "bob"), s.register(t, "dave")
	room := s.createRoom(t, alice, "public")
	s.addMember(t, alice, room, bob)
	s.verifiedPhone(t, bob, "+15552220002")
	s.setProfile(t, bob, map[string]any{"sms_notify": true})
	aliceWS := s.dialWS(t, alice.Token)
	aliceWS.ready()

	fake.Fail(twiliotest.Failure{Status: 500, Code: 20500}, twiliotest.Failure{Status: 503, Code: 20503}, twiliotest.Failure{Status: 429, Code: 20429})
	sendWS(t, aliceWS, room, "through the errors")
	eventually(t, "sent after three failures", func() bool { return len(fake.Accepted()) == 1 })
	require.Equal(t, 4, fake.Requests())

	room2 := s.createRoom(t, alice, "public")
	s.addMember(t, alice, room2, dave)
	s.verifiedPhone(t, dave, "+15554440004")
	s.setProfile(t, dave, map[string]any{"sms_notify": true})
	fake.Fail(twiliotest.Failure{Status: 400, Code: 21211})
	sendWS(t, aliceWS, room2, "to a number Twilio refuses")
	var dead []jobs.DeadJob
	eventually(t, "dead-lettered at once", func() bool {
		var err error
		dead, err = s.node.queue.Dead(t.Context())
		return err == nil && len(dead) == 1
	})
	require.Equal(t, 1, dead[0].Attempts)
	require.Contains(t, dead[0].LastError, "21211")
	require.Equal(t, "sms:send", dead[0].Type)
	requests := fake.Requests()
	time.Sleep(300 * time.Millisecond)
	require.Equal(t, requests, fake.Requests(), "no retry of a refused number")

	// The operator sees it with the CLI and re-queues it.
	var listed []jobs.DeadJob
	require.NoError(t, json.Unmarshal([]byte(runCLI(t, s, "jobs", "dead", "--json")), &listed))
	require.Len(t, listed, 1)
	require.Equal(t, dead[0].ID, listed[0].ID)
	table := runCLI(t, s, "jobs", "stats")
	require.Regexp(t, `(?m)^\S+:sms\s+0\s+0\s+0\s+0\s+1\s`, table, "one dead SMS job")
	require.Regexp(t, `(?m)^twilio\s+closed\s`, table)
	require.Contains(t, runCLI(t, s, "jobs", "retry", dead[0].ID), "queued again")
	eventually(t, "the re-queued job sends", func() bool { return len(fake.Accepted()) == 2 })
	require.Equal(t, "+15554440004", fake.Accepted()[1].To)
}

// cliCommand is the binary run with args (no spaces within one) against
// s's database and Redis prefix.
func cliCommand(s *testServer, args ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "SWITCHBOARD_TEST_MAIN=1", "SWITCHBOARD_TEST_ARGS="+strings.Join(args, " "),
		"SWITCHBOARD_REDIS_PREFIX="+s.prefix, "DATABASE_URL="+s.database)
	cmd.Env = append(cmd.Env, brokertest.Current().Env()...)
	return cmd
}

// runCLI runs the binary with args against s's database and Redis prefix
// and returns its standard output.
func runCLI(t *testing.T, s *testServer, args ...string) string {
	t.Helper()
	cmd := cliCommand(s, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, "%v: %s", args, stderr.String())
	return string(out)
}

// TestWorkerKilledMidJobLosesNothing: a `switchboard worker` killed while
// Twilio has not answered its request yet; the job is recovered when its
// lease runs out (asynq: 30 s, picked up once expired 30 s more) by
// another node's workers, and the SMS goes out once.
func TestWorkerKilledMidJobLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("waits a minute for the killed worker's lease to expire")
	}
	t.Parallel()
	fake := newFakeTwilio(t)
	db := storagetest.NewDatabase(t)
	prefix := brokertest.Prefix()
	a := newTestServerWith(t, nodeOptions{databaseURL: db, redisPrefix: prefix, twilio: fake, noWorkers: true})
	alice, bob := a.register(t, "alice"), a.register(t, "bob")
	room := a.createRoom(t, alice, "public")
	a.addMember(t, alice, room, bob)
	a.verifiedPhone(t, bob, "+15552220002")
	a.setProfile(t, bob, map[string]any{"sms_notify": true})

	release := fake.Hold()
	defer release()
	worker := exec.Command(os.Args[0])
	worker.Env = append(os.Environ(), "SWITCHBOARD_TEST_MAIN=1", "SWITCHBOARD_TEST_ARGS=worker",
		"DATABASE_URL="+db, "SWITCHBOARD_REDIS_PREFIX="+prefix,
		"TWILIO_ACCOUNT_SID="+testTwilioSID, "TWILIO_AUTH_TOKEN="+testTwilioToken,
		"TWILIO_FROM_NUMBER="+testTwilioFrom, "TWILIO_API_URL="+fake.URL(), "SWITCHBOARD_LOG_LEVEL=warn")
	worker.Env = append(worker.Env, brokertest.Current().Env()...)
	require.NoError(t, worker.Start())
	t.Cleanup(func() { _ = worker.Process.Kill(); _ = worker.Wait() })

	r := a.do(t, "POST", "/api/v1/rooms/"+room+"/messages", alice.Token, map[string]any{"body": "survive the crash"})
	require.Equal(t, http.StatusCreated, r.Status)
	eventually(t, "the worker is inside the Twilio call", func() bool { return fake.Requests() == 1 })
	require.NoError(t, worker.Process.Kill())
	_ = worker.Wait()
	killed := time.Now()
	release()
	require.Empty(t, fake.Accepted(), "the killed worker's request was never answered")

	time.Sleep(time.Until(killed.Add(62 * time.Second)))
	newTestServerWith(t, nodeOptions{databaseURL: db, redisPrefix: prefix, twilio: fake})
	eventually(t, "another node's worker recovers the job", func() bool { return len(fake.Accepted()) == 1 })
	time.Sleep(time.Second)
	require.Len(t, fake.Accepted(), 1)
	require.Contains(t, fake.Accepted()[0].Body, "survive the crash")
}

func TestSlackOutboundPostsEveryMessageNotFromSlack(t *testing.T) {
	t.Parallel()
	fake := slacktest.New(t, testSlackBotToken)
	s := newTestServerWith(t, nodeOptions{slack: fake})
	alice := s.register(t, "alice")
	room := s.createRoom(t, alice, "public")
	name := s.roomName(t, alice, room)
	require.Contains(t, runCLI(t, s, "rooms", "bridge-slack", name, "C0BRIDGED"), "bridged to Slack channel C0BRIDGED")
	s.setProfile(t, alice, map[string]any{"display_name": "Alice L."})
	aliceWS := s.dialWS(t, alice.Token)
	aliceWS.ready()

	fake.Fail(slacktest.Failure{Status: 500})
	sendWS(t, aliceWS, room, "hello slack")
	eventually(t, "posted after a 500", func() bool { return len(fake.Accepted()) == 1 })
	require.Equal(t, slacktest.Post{Channel: "C0BRIDGED", Text: "hello slack", Username: "Alice L."}, fake.Accepted()[0])
	r := s.do(t, "POST", "/api/v1/rooms/"+room+"/messages", alice.Token, map[string]any{"body": "over http"})
	require.Equal(t, http.StatusCreated, r.Status)
	eventually(t, "HTTP posts go too", func() bool { return len(fake.Accepted()) == 2 })

	// A message from the bridged channel is stored and delivered, not
	// posted back.
	event := map[string]any{
		"type": "event_callback", "event_id": "Ev0TEST1", "event_time": time.Now().Unix(),
		"event": map[string]any{"type": "message", "channel": "C0BRIDGED", "user": "U0GUEST", "text": "hi from slack", "ts": "1.2"},
	}
	raw, _ := json.Marshal(event)
	status, body := s.slackWebhook(t, "events", "application/json", string(raw))
	require.Equal(t, http.StatusOK, status, body)
	m := aliceWS.nextOf("message", "subscribed")["message"].(map[string]any)
	if m["body"] == "over http" { // alice's own HTTP post, delivered to her socket first
		m = aliceWS.nextOf("message", "subscribed")["message"].(map[string]any)
	}
	require.Equal(t, "hi from slack", m["body"])
	require.Equal(t, "slack", m["source"])
	require.Equal(t, "slack-u0guest", m["sender"].(map[string]any)["username"])
	status, _ = s.slackWebhook(t, "events", "application/json", string(raw))
	require.Equal(t, http.StatusOK, status, "Slack's retry of the same event")
	time.Sleep(500 * time.Millisecond)
	require.Len(t, s.history(t, alice, room), 3, "the retried event is stored once")
	require.Len(t, fake.Accepted(), 2, "nothing from Slack goes back to Slack")

	require.Contains(t, runCLI(t, s, "rooms", "unbridge-slack", room), "no longer bridged")
	sendWS(t, aliceWS, room, "after unbridging")
	time.Sleep(500 * time.Millisecond)
	require.Len(t, fake.Accepted(), 2, "an unbridged room posts nothing")
}

func TestSlackCommandPostsToTheRoom(t *testing.T) {
	t.Parallel()
	s := newTestServerWith(t, nodeOptions{slack: slacktest.New(t, testSlackBotToken)})
	alice, bob := s.register(t, "alice"), s.register(t, "bob")
	room := s.createRoom(t, alice, "public")
	s.addMember(t, alice, room, bob)
	s.setProfile(t, alice, map[string]any{"slack_user_id": "U0ALICE"})
	bobWS := s.dialWS(t, bob.Token)
	bobWS.ready()
	name := s.roomName(t, alice, room)

	form := url.Values{"command": {"/switchboard"}, "text": {"post #" + name + " from a slash command"},
		"user_id": {"U0ALICE"}, "channel_id": {"C0OTHER"}, "team_id": {"T0"}}
	status, body := s.slackWebhook(t, "commands", "application/x-www-form-urlencoded", form.Encode())
	require.Equal(t, http.StatusOK, status, body)
	m := bobWS.nextOf("message", "subscribed")["message"].(map[string]any)
	require.Equal(t, "from a slash command", m["body"])
	require.Equal(t, "slack", m["source"])
	require.Equal(t, alice.ID, m["sender"].(map[string]any)["id"])
}

func TestIntegrationsOffWithoutCredentials(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, nil)
	for _, path := range []string{"/webhooks/twilio/sms", "/webhooks/slack/commands", "/webhooks/slack/events"} {
		r := s.do(t, "POST", path, "", "x=1")
		require.Equal(t, http.StatusNotFound, r.Status, path)
	}
	alice, bob := s.register(t, "alice"), s.register(t, "bob")
	room := s.createRoom(t, alice, "public")
	s.addMember(t, alice, room, bob)
	s.verifiedPhone(t, bob, "+15552220002")
	s.setProfile(t, bob, map[string]any{"sms_notify": true})
	s.bridge(t, room, "C0X")
	r := s.do(t, "POST", "/api/v1/rooms/"+room+"/messages", alice.Token, map[string]any{"body": "hi"})
	require.Equal(t, http.StatusCreated, r.Status)
	var outbox int
	require.NoError(t, s.node.pool.QueryRow(t.Context(), `SELECT count(*) FROM outbox`).Scan(&outbox))
	require.Zero(t, outbox, "nothing enqueued for integrations that are off")
	stats, err := s.node.queue.Stats(t.Context())
	require.NoError(t, err)
	for _, q := range stats {
		require.Zero(t, q.Pending+q.Scheduled+q.Retry+q.Dead+q.Processed, "queue %s", q.Queue)
	}
}

// TestOutboxSurvivesRelayDownAndRedisOutage: a message committed while no
// relay runs (as if the process died between commit and enqueue) and one
// committed while Redis is unreachable both reach Twilio afterwards, once.
func TestOutboxSurvivesRelayDownAndRedisOutage(t *testing.T) {
	t.Parallel()
	fake := newFakeTwilio(t)
	db := storagetest.NewDatabase(t)
	prefix := brokertest.Prefix()
	proxy := brokertest.NewProxy(t)

	// The first node has no workers: its messages stay in the outbox.
	a := newTestServerWith(t, nodeOptions{databaseURL: db, redisPrefix: prefix, twilio: fake, noWorkers: true})
	alice, bob := a.register(t, "alice"), a.register(t, "bob")
	room := a.createRoom(t, alice, "public")
	a.addMember(t, alice, room, bob)
	a.verifiedPhone(t, bob, "+15552220002")
	a.setProfile(t, bob, map[string]any{"sms_notify": true})
	aliceWS := a.dialWS(t, alice.Token)
	aliceWS.ready()
	sendWS(t, aliceWS, room, "while no relay runs")
	time.Sleep(300 * time.Millisecond)
	require.Empty(t, fake.Accepted())

	// A node with workers, whose Redis goes away for a while.
	b := newTestServerWith(t, nodeOptions{databaseURL: db, redisPrefix: prefix, redisURL: proxy.URL(), twilio: fake})
	eventually(t, "the waiting message is relayed and sent", func() bool { return len(fake.Accepted()) == 1 })
	require.Equal(t, "[#"+a.roomName(t, alice, room)+"] "+alice.Username+": while no relay runs", fake.Accepted()[0].Body)

	bWS := b.dialWS(t, alice.Token)
	bWS.ready()
	proxy.Cut()
	m := sendWS(t, bWS, room, "during the redis outage")
	require.Equal(t, "during the redis outage", m["body"])
	time.Sleep(time.Second)
	var waiting int
	require.NoError(t, b.node.pool.QueryRow(t.Context(), `SELECT count(*) FROM outbox`).Scan(&waiting))
	require.Equal(t, 1, waiting, "the job waits in Postgres while Redis is down")
	require.Len(t, fake.Accepted(), 1)
	proxy.Restore()
	eventually(t, "sent once Redis is back", func() bool { return len(fake.Accepted()) == 2 })
	time.Sleep(1500 * time.Millisecond)
	require.Len(t, fake.Accepted(), 2, "each message sent once")
	require.Contains(t, fake.Accepted()[1].Body, "during the redis outage")
}

func TestJobMetrics(t *testing.T) {
	t.Parallel()
	fake := newFakeTwilio(t)
	s := newTestServerWith(t, nodeOptions{twilio: fake})
	alice, bob := s.register(t, "alice"), s.register(t, "bob")
	room := s.createRoom(t, alice, "public")
	s.addMember(t, alice, room, bob)
	s.verifiedPhone(t, bob, "+15552220002")
	s.setProfile(t, bob, map[string]any{"sms_notify": true})
	fake.Fail(twiliotest.Failure{Status: 500, Code: 20500})
	r := s.do(t, "POST", "/api/v1/rooms/"+room+"/messages", alice.Token, map[string]any{"body": "hi"})
	require.Equal(t, http.StatusCreated, r.Status)
	eventually(t, "sent", func() bool { return len(fake.Accepted()) == 1 })

	metrics := func() string {
		resp, err := http.Get(s.URL + "/metrics")
		require.NoError(t, err)
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		return string(raw)
	}
	eventually(t, "the success is counted", func() bool {
		return strings.Contains(metrics(), `switchboard_jobs_runs_total{outcome="succeeded",type="sms:send"} 1`)
	})
	got := metrics()
	for _, want := range []string{
		`switchboard_jobs_enqueued_total{type="message:fanout"} 1`,
		`switchboard_jobs_enqueued_total{type="sms:send"} 1`,
		`switchboard_jobs_runs_total{outcome="retried",type="sms:send"} 1`,
		`switchboard_jobs_runs_total{outcome="succeeded",type="sms:send"} 1`,
		`switchboard_circuit_breaker_state{api="twilio"} 0`,
		`switchboard_jobs_queue_depth{queue="` + s.node.queue.Queues()[0] + `",state="pending"}`,
	} {
		require.Contains(t, got, want)
	}
}
