// Package testvectors loads the published test vectors of ../shared/testdata
// (beside the repository) for the tests of every package, so that each file
// is parsed in one place. Tests only: it fails the test when a file is
// missing rather than skipping.
package testvectors

import (
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// Path returns the path of a file in ../shared/testdata.
func Path(name string) string {
	_, here, _, _ := runtime.Caller(0) // .../internal/testvectors/testvectors.go
	root := filepath.Join(filepath.Dir(here), "..", "..")
	return filepath.Join(root, "..", "shared", "testdata", name)
}

// UTF8Case is one payload of Autobahn cases 6.5–6.23.
type UTF8Case struct {
	ID      string // e.g. "6.5.1"
	Valid   bool   // whether Payload is valid UTF-8
	Payload []byte
}

// AutobahnUTF8 returns the 132 payloads of autobahn_utf8_6x.json, sorted by
// case id.
func AutobahnUTF8(tb testing.TB) []UTF8Case {
	tb.Helper()
	raw, err := os.ReadFile(Path("autobahn_utf8_6x.json"))
	if err != nil {
		tb.Fatalf("testvectors: %v", err)
	}
	var file struct {
		Cases map[string]struct {
			Valid      bool   `json:"valid_utf8"`
			PayloadHex string `json:"payload_hex"`
		} `json:"cases"`
	}
	if err := json.Unmarshal(raw, &file); err != nil {
		tb.Fatalf("testvectors: autobahn_utf8_6x.json: %v", err)
	}
	out := make([]UTF8Case, 0, len(file.Cases))
	for id, c := range file.Cases {
		p, err := hex.DecodeString(c.PayloadHex)
		if err != nil {
			tb.Fatalf("testvectors: case %s: %v", id, err)
		}
		out = append(out, UTF8Case{ID: id, Valid: c.Valid, Payload: p})
	}
	slices.SortFunc(out, func(a, b UTF8Case) int { return strings.Compare(a.ID, b.ID) })
	if len(out) != 132 {
		tb.Fatalf("testvectors: autobahn_utf8_6x.json has %d cases, want 132", len(out))
	}
	return out
}
