package deploy

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// dockerfile is what the tests need of the repository's Dockerfile.
type dockerfile struct {
	text string
	// stages are the FROM lines' images, in order.
	stages []string
	uid    int64
	expose []int32
}

var (
	fromRE   = regexp.MustCompile(`(?m)^FROM\s+(\S+)(?:\s+AS\s+\S+)?\s*$`)
	userRE   = regexp.MustCompile(`(?m)^USER\s+(\S+)\s*$`)
	exposeRE = regexp.MustCompile(`(?m)^EXPOSE\s+(.+)$`)
	goLineRE = regexp.MustCompile(`(?m)^go\s+(\S+)\s*$`)
)

func readDockerfile(t *testing.T) *dockerfile {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	require.NoError(t, err)
	d := &dockerfile{text: string(data)}
	for _, m := range fromRE.FindAllStringSubmatch(d.text, -1) {
		d.stages = append(d.stages, m[1])
	}
	users := userRE.FindAllStringSubmatch(d.text, -1)
	require.Len(t, users, 1, "Dockerfile: one USER, in the final stage")
	user, _, _ := strings.Cut(users[0][1], ":")
	d.uid, err = strconv.ParseInt(user, 10, 64)
	require.NoError(t, err, "Dockerfile: USER %q must be numeric, so that runAsNonRoot can check it", users[0][1])
	for _, m := range exposeRE.FindAllStringSubmatch(d.text, -1) {
		for _, f := range strings.Fields(m[1]) {
			p, err := strconv.Atoi(strings.TrimSuffix(f, "/tcp"))
			require.NoError(t, err, "EXPOSE %s", f)
			d.expose = append(d.expose, int32(p))
		}
	}
	return d
}

// TestDockerfile checks the image definition against go.mod and the
// server; it cannot build it (that needs a container engine).
func TestDockerfile(t *testing.T) {
	t.Parallel()
	d := readDockerfile(t)
	s := readServer(t)

	require.Len(t, d.stages, 2, "a build stage and a run stage")
	gomod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	require.NoError(t, err)
	m := goLineRE.FindSubmatch(gomod)
	require.NotNil(t, m, "go.mod has no go line")
	require.Equal(t, "golang:"+string(m[1]), d.stages[0], "the build stage's Go is go.mod's")
	final := d.stages[len(d.stages)-1]
	require.True(t, final == "scratch" || strings.HasPrefix(final, "gcr.io/distroless/static"),
		"the run stage is distroless static or scratch, not %s", final)

	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", "-ldflags='-s -w'", "./cmd/switchboard"} {
		require.Contains(t, d.text, want)
	}
	require.NotZero(t, d.uid, "USER must not be root")
	require.Equal(t, []int32{portOf(t, s.addr)}, d.expose, "EXPOSE the server's default port")
	require.Regexp(t, `(?m)^ENTRYPOINT \["[^"]*/switchboard"\]$`, d.text, "ENTRYPOINT the binary, exec form")
	require.Regexp(t, `(?m)^CMD \["serve"\]$`, d.text)

	// The build context keeps what the build needs.
	ignore, err := os.ReadFile(filepath.Join(root, ".dockerignore"))
	require.NoError(t, err)
	lines := strings.Split(string(ignore), "\n")
	require.Contains(t, lines, ".git")
	for _, need := range []string{"go.mod", "go.sum", "cmd", "web", "migrations", "*"} {
		require.NotContains(t, lines, need, ".dockerignore leaves out %s, which the build needs", need)
	}
}
