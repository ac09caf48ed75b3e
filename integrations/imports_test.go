package integrations_test

import (
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestImports keeps the integrations on their side of STYLE §1: outside
// their tests they import, of ours, only the shared vocabulary (chat), auth,
// each other and internal helpers (and their test helper packages, other
// test helpers). Storage, the hub and the rest reach them
// through the small interfaces each package declares, wired by cmd.
func TestImports(t *testing.T) {
	t.Parallel()
	const module = "github.com/switchboard-chat/switchboard/"
	allowed := []string{"chat", "auth", "integrations", "internal/"}
	files := 0
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return err
		}
		files++
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		for _, spec := range f.Imports {
			imp, _ := strconv.Unquote(spec.Path.Value)
			ours, ok := strings.CutPrefix(imp, module)
			if !ok {
				continue
			}
			// A test helper package (twiliotest) may use others (brokertest).
			permitted := strings.HasSuffix(filepath.Dir(path), "test") && strings.HasSuffix(ours, "test")
			for _, a := range allowed {
				permitted = permitted || ours == a || strings.HasPrefix(ours, a+"/") || (strings.HasSuffix(a, "/") && strings.HasPrefix(ours, a))
			}
			require.True(t, permitted, "%s imports %s", path, imp)
		}
		return nil
	})
	require.NoError(t, err)
	require.Greater(t, files, 10, "the walk found the integrations' files")
}
