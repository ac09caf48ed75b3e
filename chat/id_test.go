package chat_test

import (
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-chat/switchboard/chat"
)

func TestParseID(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		id   string
		want int64 // 0: refused
	}{
		{"1", 1},
		{"13", 13},
		{"9223372036854775807", 9223372036854775807},
		{"", 0},
		{"0", 0},
		{"013", 0},
		{"00", 0},
		{"+13", 0},
		{"-13", 0},
		{" 13", 0},
		{"13 ", 0},
		{"1_3", 0},
		{"0x0d", 0},
		{"1e3", 0},
		{"13\x00", 0},
		{"１３", 0}, // full-width digits
		{"9223372036854775808", 0},
	} {
		t.Run(strconv.Quote(tt.id), func(t *testing.T) {
			t.Parallel()
			n, ok := chat.ParseID(tt.id)
			require.Equal(t, tt.want != 0, ok)
			require.Equal(t, tt.want, n)
			require.Equal(t, ok, chat.ValidID(tt.id))
		})
	}
}

// FuzzParseID checks that an id is accepted exactly when it is the one
// spelling the server writes for a positive number: every accepted string
// formats back to itself, so no object has two names.
func FuzzParseID(f *testing.F) {
	for _, s := range []string{"1", "13", "013", "+13", " 13", "-1", "0", "9223372036854775807", "99999999999999999999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, ok := chat.ParseID(s)
		if !ok {
			if m, err := strconv.ParseInt(s, 10, 64); err == nil && m > 0 && chat.FormatID(m) == s {
				t.Fatalf("refused %q, which the server writes for %d", s, m)
			}
			return
		}
		if n <= 0 || chat.FormatID(n) != s {
			t.Fatalf("accepted %q as %d, which the server writes as %q", s, n, chat.FormatID(n))
		}
	})
}
