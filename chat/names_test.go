package chat_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-chat/switchboard/chat"
)

// invisibleOnly are texts made only of characters that show nothing: each
// is refused as a display name and as a body.
var invisibleOnly = map[string]string{
	"ZeroWidthSpace":     "\u200b",
	"ZeroWidthJoiners":   "\u200c\u200d",
	"WordJoiner":         "\u2060",
	"SoftHyphen":         "\u00ad",
	"ByteOrderMark":      "\ufeff",
	"MixedWithSpaces":    " \u200b \u00a0\u3000\ufeff ",
	"LeftToRightMark":    "\u200e",
	"HangulFiller":       "\u3164",
	"VariationSelector":  "\ufe0f",
	"TagCharacters":      "\U000e0041\U000e0042",
	"InvisibleOperators": "\u2061\u2062",
}

func TestNormalizeDisplayName(t *testing.T) {
	t.Parallel()

	ok := []struct{ name, in, want string }{
		{"Plain", "Alice", "Alice"},
		{"Trimmed", "  Alice Liddell \u00a0", "Alice Liddell"},
		{"NonLatin", "李小龙", "李小龙"},
		{"OneCharacter", "Z", "Z"},
		{"SixtyFourCharacters", strings.Repeat("é", 64), strings.Repeat("é", 64)},
		{"EmojiWithJoiner", "👩\u200d💻", "👩\u200d💻"},
		{"ZeroWidthInside", "a\u200bb", "a\u200bb"},
		{"RightToLeftMark", "\u05e9\u05dc\u05d5\u05dd\u200f", "\u05e9\u05dc\u05d5\u05dd\u200f"},
		{"Markup", "<b>bold</b>", "<b>bold</b>"},
	}
	for _, tt := range ok {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := chat.NormalizeDisplayName(tt.in)
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}

	refused := map[string]string{
		"Empty":                "",
		"Spaces":               "   ",
		"SixtyFiveCharacters":  strings.Repeat("é", 65),
		"NotUTF8":              "bad \xff",
		"NUL":                  "nul\x00name",
		"Tab":                  "tab\tname",
		"Newline":              "two\nlines",
		"Escape":               "\x1b[31mred",
		"C1Control":            "a\u0085b",
		"Delete":               "a\u007fb",
		"LeftToRightEmbedding": "a\u202ab",
		"RightToLeftOverride":  "\u202egnp.exe",
		"PopDirectional":       "a\u202cb",
		"LeftToRightIsolate":   "\u2066a\u2069",
		"FirstStrongIsolate":   "a\u2068b",
		"RightToLeftIsolate":   "a\u2067b",
	}
	for name, in := range invisibleOnly {
		refused["Invisible"+name] = in
	}
	for name, in := range refused {
		t.Run("Refused"+name, func(t *testing.T) {
			t.Parallel()
			_, err := chat.NormalizeDisplayName(in)
			require.Error(t, err)
			require.Equal(t, chat.CodeBadRequest, chat.ErrorOf(err).Code, "%v", err)
		})
	}
}

func TestNormalizeBodyInvisible(t *testing.T) {
	t.Parallel()
	for name, in := range invisibleOnly {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := chat.NormalizeBody(in)
			require.Equal(t, chat.CodeBadRequest, chat.ErrorOf(err).Code, "%v", err)
		})
	}
	for _, in := range []string{"a\u200b", "\u200bhi\u200b", "👍", "\u0600", "-"} {
		got, err := chat.NormalizeBody(" " + in + " ")
		require.NoError(t, err, "%q", in)
		require.Equal(t, in, got)
	}
}

func TestNewUsername(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"alice": "alice", "Alice.B": "alice.b", "slack_user": "slack_user", "slackers": "slackers", "my-slack-x": "my-slack-x",
	} {
		got, err := chat.NewUsername(in)
		require.NoError(t, err, in)
		require.Equal(t, want, got)
		require.True(t, chat.ValidUsername(got))
	}
	for _, in := range []string{"slack-x", "Slack-U123", "SLACK-abc", "slack-", "ab", strings.Repeat("a", 33), "two words", "émile"} {
		_, err := chat.NewUsername(in)
		require.Equal(t, chat.CodeBadRequest, chat.ErrorOf(err).Code, "%q: %v", in, err)
	}
	require.True(t, chat.ValidUsername("slack-u123"), "a Slack guest's username has the form of any other")
}
