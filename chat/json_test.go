package chat_test

import (
	"bytes"
	"encoding/json"
	"io"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-chat/switchboard/chat"
)

func TestCheckJSONEscapes(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name string
		json string
		ok   bool
	}{
		{"NoEscapes", `{"body":"hello"}`, true},
		{"Empty", ``, true},
		{"BMPEscape", `{"body":"caf\u00e9"}`, true},
		{"Pair", `{"body":"\ud83d\ude00"}`, true},
		{"PairUpperCase", `{"body":"\uD83D\uDE00"}`, true},
		{"PairAtEnd", `"\ud83d\ude00"`, true},
		{"TwoPairs", `"\ud83d\ude00\ud83d\ude01"`, true},
		{"EscapedBackslashThenHigh", `{"body":"\\ud800"}`, true},
		{"EscapedBackslashThenLow", `{"body":"\\udc00"}`, true},
		{"ThreeBackslashesThenPair", `"\\\ud83d\ude00"`, true},
		{"OtherEscapes", `"\n\t\"\/\b\f\r"`, true},
		{"ReplacementCharacterEscaped", `"\ufffd"`, true},
		{"MalformedEscapeLeftToDecoder", `"\u12"`, true},

		{"LoneHigh", `{"body":"\ud800"}`, false},
		{"LoneHighUpperCase", `{"body":"\uDBFF"}`, false},
		{"LoneLow", `{"body":"\udc00"}`, false},
		{"LoneLowLast", `"\udfff"`, false},
		{"HighThenText", `"\ud83dx"`, false},
		{"HighThenBMPEscape", `"\ud83d\u0041"`, false},
		{"HighThenHigh", `"\ud83d\ud83d\ude00"`, false},
		{"LowThenHigh", `"\ude00\ud83d"`, false},
		{"HighThenEscapedBackslash", `"\ud800\\udc00"`, false},
		{"HighAtEndOfText", `"\ud800`, false},
		{"HighThenShortEscape", `"\ud800\udc"`, false},
		{"ThreeBackslashesThenHigh", `"\\\ud800"`, false},
		{"InKey", `{"\ud800":"x"}`, false},
		{"AfterGoodPair", `"\ud83d\ude00 and \udc00"`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := chat.CheckJSONEscapes([]byte(tt.json))
			require.Equal(t, refLoneSurrogate([]byte(tt.json)), !tt.ok, "the reference disagrees with the table")
			if tt.ok {
				require.NoError(t, err)
				return
			}
			require.Equal(t, chat.CodeBadRequest, chat.ErrorOf(err).Code)
		})
	}
}

// FuzzCheckJSONEscapes checks CheckJSONEscapes against two references on
// any input: a scan written another way (a regular expression and
// unicode/utf16), and, for valid JSON, encoding/json itself: a text passes
// exactly when decoding it makes no U+FFFD that was not already there.
func FuzzCheckJSONEscapes(f *testing.F) {
	for _, s := range []string{
		`{"body":"\ud83d\ude00"}`, `{"body":"\ud800"}`, `{"body":"\\ud800"}`, `"\udc00"`,
		`"\\\ud800"`, `"\ud800\\udc00"`, `"\ud83d\u0041"`, `"\ufffd"`, "\"\uFFFD\"", `["\u0041", {"\ud83d\ude00": 1}]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		err := chat.CheckJSONEscapes(data)
		if err != nil {
			require.Equal(t, chat.CodeBadRequest, chat.ErrorOf(err).Code)
		}
		require.Equal(t, refLoneSurrogate(data), err != nil, "%q", data)

		if !utf8.Valid(data) || !json.Valid(data) {
			return
		}
		made := countReplacements(t, data) - strings.Count(string(data), "\uFFFD") - escapedReplacements(data)
		if err == nil {
			require.Zero(t, made, "accepted %q, which decodes with U+FFFD", data)
		} else {
			require.Positive(t, made, "refused %q, which decodes without U+FFFD", data)
		}
	})
}

// jsonEscape is one escape of JSON text; leftmost-first matching pairs
// every backslash with the character after it.
var jsonEscape = regexp.MustCompile(`(?s)\\(u[0-9A-Fa-f]{4}|.)`)

// refLoneSurrogate is the reference: whether data holds an escape of a
// surrogate that is not the first half of an adjacent pair, or the second.
func refLoneSurrogate(data []byte) bool {
	type esc struct {
		r          rune
		start, end int
	}
	var escs []esc
	for _, m := range jsonEscape.FindAllIndex(data, -1) {
		e := esc{r: -1, start: m[0], end: m[1]}
		if m[1]-m[0] == 6 && data[m[0]+1] == 'u' {
			n, _ := strconv.ParseUint(string(data[m[0]+2:m[1]]), 16, 16)
			e.r = rune(n)
		}
		escs = append(escs, e)
	}
	for i := 0; i < len(escs); i++ {
		if !utf16.IsSurrogate(escs[i].r) {
			continue
		}
		paired := i+1 < len(escs) && escs[i+1].start == escs[i].end &&
			utf16.DecodeRune(escs[i].r, escs[i+1].r) != utf8.RuneError
		if !paired {
			return true
		}
		i++
	}
	return false
}

// escapedReplacements counts the \ufffd escapes of data.
func escapedReplacements(data []byte) int {
	n := 0
	for _, m := range jsonEscape.FindAll(data, -1) {
		if strings.EqualFold(string(m), `\ufffd`) {
			n++
		}
	}
	return n
}

// countReplacements counts U+FFFD in every string and key of the JSON
// text data, as encoding/json decodes them.
func countReplacements(t *testing.T, data []byte) int {
	dec := json.NewDecoder(bytes.NewReader(data))
	n := 0
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return n
		}
		require.NoError(t, err)
		if s, ok := tok.(string); ok {
			n += strings.Count(s, "\uFFFD")
		}
	}
}
