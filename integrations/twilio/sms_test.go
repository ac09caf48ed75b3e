package twilio_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-chat/switchboard/chat"
	"github.com/switchboard-chat/switchboard/integrations/jobs"
	"github.com/switchboard-chat/switchboard/integrations/twilio"
	"github.com/switchboard-chat/switchboard/integrations/twilio/twiliotest"
)

func TestSenderThroughTwilioGo(t *testing.T) {
	t.Parallel()
	fake := twiliotest.New(t, "AC0123456789abcdef0123456789abcdef", "0123456789abcdef0123456789abcdef")
	sender, err := twilio.NewSender(twilio.SenderConfig{
		AccountSID: fake.AccountSID, AuthToken: fake.AuthToken, From: "+15005550006", APIURL: fake.URL(),
	})
	require.NoError(t, err)

	require.NoError(t, sender.Send("+15551234567", "[#general] alice: hi"))
	require.Equal(t, []twiliotest.SMS{{To: "+15551234567", From: "+15005550006", Body: "[#general] alice: hi"}}, fake.Accepted())

	for _, tc := range []struct {
		name      string
		fail      twiliotest.Failure
		permanent bool
	}{
		{"invalid number", twiliotest.Failure{Status: http.StatusBadRequest, Code: 21211}, true},
		{"unsubscribed recipient", twiliotest.Failure{Status: http.StatusBadRequest, Code: 21610}, true},
		{"server error", twiliotest.Failure{Status: http.StatusInternalServerError, Code: 20500}, false},
		{"unavailable", twiliotest.Failure{Status: http.StatusServiceUnavailable, Code: 20503}, false},
		{"too many requests", twiliotest.Failure{Status: http.StatusTooManyRequests, Code: 20429}, false},
	} {
		fake.Fail(tc.fail)
		err := sender.Send("+15551234567", "x")
		require.Error(t, err, tc.name)
		require.Equal(t, tc.permanent, jobs.IsPermanent(err), "%s: %v", tc.name, err)
	}
	require.Len(t, fake.Accepted(), 1, "failed requests sent nothing")

	wrong, err := twilio.NewSender(twilio.SenderConfig{AccountSID: fake.AccountSID, AuthToken: "wrong", From: "+1", APIURL: fake.URL()})
	require.NoError(t, err)
	require.True(t, jobs.IsPermanent(wrong.Send("+15551234567", "x")), "bad credentials cannot succeed by retrying")

	_, err = twilio.NewSender(twilio.SenderConfig{AccountSID: "AC1"})
	require.Error(t, err)
}

func TestSenderNetworkErrorIsRetried(t *testing.T) {
	t.Parallel()
	sender, err := twilio.NewSender(twilio.SenderConfig{AccountSID: "AC1", AuthToken: "t", From: "+1", APIURL: "http://127.0.0.1:1"})
	require.NoError(t, err)
	err = sender.Send("+15551234567", "x")
	require.Error(t, err)
	require.False(t, jobs.IsPermanent(err))
}

func TestFormatSMS(t *testing.T) {
	t.Parallel()
	msg := func(user, body string) chat.Message {
		return chat.Message{Sender: chat.User{Username: user}, Body: body, CreatedAt: time.Now()}
	}
	require.Equal(t, "[#general] alice: hi", twilio.FormatSMS("general", []chat.Message{msg("alice", "hi")}))
	require.Equal(t, "[#general] alice: hi\nbob: there\nalice: again",
		twilio.FormatSMS("general", []chat.Message{msg("alice", "hi"), msg("bob", "there"), msg("alice", "again")}))

	long := twilio.FormatSMS("general", []chat.Message{msg("alice", strings.Repeat("é", 4000))})
	require.Equal(t, 1600, len([]rune(long)), "cut to Twilio's 1600 characters")
	require.True(t, strings.HasSuffix(long, "…"))
}
