package deploy

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// root is the repository's root, seen from this package's directory (where
// `go test` runs the tests).
const root = ".."

// server is what the deploy files must agree with, read from the server's
// source: the settings cmd/switchboard reads, its HTTP routes and its
// metric names. Reading the source rather than keeping a copy here means a
// setting renamed there fails this package's tests instead of silently
// doing nothing in a cluster.
type server struct {
	// env is every environment variable name cmd/switchboard mentions
	// (every upper-case, underscored string literal of its non-test files).
	env map[string]bool
	// durations and floats are the variables read with envDuration and
	// envFloat, which keep the default when the value does not parse.
	durations, floats map[string]bool
	// flags is every flag name cmd/switchboard defines.
	flags map[string]bool
	// shutdownTimeout is the default of --shutdown-timeout.
	shutdownTimeout time.Duration
	// addr is the default of SWITCHBOARD_ADDR.
	addr string
	// routes holds the web package's patterns, "GET /readyz".
	routes map[string]bool
	// metrics holds the Prometheus metric names the server defines (the
	// Name of an Opts literal in a non-test Go file, outside loadtest).
	metrics map[string]bool
}

// runtimeEnv are variables the Go runtime reads, which the manifests may
// set beside the server's own.
var runtimeEnv = map[string]bool{"GOMEMLIMIT": true, "GOMAXPROCS": true, "GOGC": true, "GODEBUG": true}

// comingEnv are variables SPEC §15 names that cmd/switchboard may not read
// yet (another branch adds them): the manifests show them in comments only.
var comingEnv = map[string]bool{
	"REDIS_CLUSTER_ADDRS":   true,
	"REDIS_SENTINEL_ADDRS":  true,
	"REDIS_SENTINEL_MASTER": true,
	"REDIS_PASSWORD":        true,
}

// secretEnv are variables that hold secrets: they belong in a Secret,
// never in a ConfigMap or a compose file's plain settings for production.
var secretEnv = map[string]bool{
	"SWITCHBOARD_JWT_SECRET": true,
	"DATABASE_URL":           true,
	"REDIS_PASSWORD":         true,
	"TWILIO_AUTH_TOKEN":      true,
	"SLACK_SIGNING_SECRET":   true,
	"SLACK_BOT_TOKEN":        true,
}

var (
	envLiteralRE  = regexp.MustCompile(`"([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+)"`)
	envDurationRE = regexp.MustCompile(`envDuration\("([A-Z0-9_]+)"`)
	envFloatRE    = regexp.MustCompile(`envFloat\("([A-Z0-9_]+)"`)
	flagRE        = regexp.MustCompile(`\b(?:String|Bool|Int|Int64|Uint|Float64|Duration|Func|Text)(?:Var)?\(\s*(?:&[\w.]+,\s*)?"([a-z][a-z0-9-]*)"`)
	shutdownRE    = regexp.MustCompile(`"shutdown-timeout",\s*(\d+)\s*\*\s*time\.Second`)
	addrRE        = regexp.MustCompile(`"SWITCHBOARD_ADDR"\),\s*"([^"]+)"`)
	routeRE       = regexp.MustCompile(`"((?:GET|POST|PUT|PATCH|DELETE) /[^"]*)"`)
	metricRE      = regexp.MustCompile(`\bName:\s*"([a-zA-Z_:][a-zA-Z0-9_:]*)"`)
)

// readServer reads the server's settings, routes and strings from the
// repository's source.
func readServer(t *testing.T) *server {
	t.Helper()
	s := &server{
		env: map[string]bool{}, durations: map[string]bool{}, floats: map[string]bool{},
		flags: map[string]bool{}, routes: map[string]bool{}, metrics: map[string]bool{},
	}
	cmd := goSources(t, filepath.Join(root, "cmd", "switchboard"), false)
	for _, m := range envLiteralRE.FindAllStringSubmatch(cmd, -1) {
		s.env[m[1]] = true
	}
	for _, m := range envDurationRE.FindAllStringSubmatch(cmd, -1) {
		s.durations[m[1]] = true
	}
	for _, m := range envFloatRE.FindAllStringSubmatch(cmd, -1) {
		s.floats[m[1]] = true
	}
	for _, m := range flagRE.FindAllStringSubmatch(cmd, -1) {
		s.flags[m[1]] = true
	}
	m := shutdownRE.FindStringSubmatch(cmd)
	require.NotNil(t, m, "cannot find the default of --shutdown-timeout in cmd/switchboard")
	secs, err := strconv.Atoi(m[1])
	require.NoError(t, err)
	s.shutdownTimeout = time.Duration(secs) * time.Second
	m = addrRE.FindStringSubmatch(cmd)
	require.NotNil(t, m, "cannot find the default of SWITCHBOARD_ADDR in cmd/switchboard")
	s.addr = m[1]
	for _, m := range routeRE.FindAllStringSubmatch(goSources(t, filepath.Join(root, "web"), false), -1) {
		s.routes[m[1]] = true
	}
	for _, m := range metricRE.FindAllStringSubmatch(goSources(t, root, true), -1) {
		s.metrics[m[1]] = true
	}

	// The parse must have found what every server has, or it is broken.
	for _, name := range []string{"DATABASE_URL", "REDIS_URL", "SWITCHBOARD_ADDR", "SWITCHBOARD_JWT_SECRET"} {
		require.True(t, s.env[name], "found no %s in cmd/switchboard: the parse in deploy/server_test.go needs updating", name)
	}
	for _, name := range []string{"addr", "shutdown-timeout", "no-workers", "database-url"} {
		require.True(t, s.flags[name], "found no flag %q in cmd/switchboard: the parse in deploy/server_test.go needs updating", name)
	}
	require.True(t, s.durations["SWITCHBOARD_ACCESS_TTL"], "found no envDuration in cmd/switchboard")
	require.True(t, s.floats["SWITCHBOARD_RATE_LIMIT"], "found no envFloat in cmd/switchboard")
	require.True(t, s.routes["GET /healthz"], "found no GET /healthz route in web")
	require.NotEmpty(t, s.metrics, "found no Prometheus metric names in the module")
	return s
}

// goSources is the text of the non-test Go files in dir, and below it when
// recursive (skipping hidden directories, testdata, and loadtest, which
// is a client of the server).
func goSources(t *testing.T, dir string, recursive bool) string {
	t.Helper()
	var b strings.Builder
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			name := d.Name()
			if path != dir && (!recursive || strings.HasPrefix(name, ".") || name == "testdata" || name == "loadtest") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		b.Write(data)
		b.WriteByte('\n')
		return nil
	})
	require.NoError(t, err)
	return b.String()
}

// knownEnv reports whether a manifest may set name: the server or the Go
// runtime reads it.
func (s *server) knownEnv(name string) bool { return s.env[name] || runtimeEnv[name] }

// checkEnvValue checks that a value given to a variable the server parses
// as a duration or a number parses: the server would silently keep its
// default otherwise.
func (s *server) checkEnvValue(t *testing.T, where, name, value string) {
	t.Helper()
	switch {
	case s.durations[name]:
		_, err := time.ParseDuration(value)
		require.NoError(t, err, "%s: %s=%q is not a duration; the server would ignore it", where, name, value)
	case s.floats[name]:
		_, err := strconv.ParseFloat(value, 64)
		require.NoError(t, err, "%s: %s=%q is not a number; the server would ignore it", where, name, value)
	}
}

// argFlags returns the flags of a command line after its subcommands, by
// name, with their values ("" for a flag without "=").
func (s *server) argFlags(t *testing.T, where string, args []string) map[string]string {
	t.Helper()
	flags := map[string]string{}
	for _, a := range args {
		if !strings.HasPrefix(a, "-") {
			continue
		}
		name, value, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		require.True(t, s.flags[name], "%s: flag --%s is not one cmd/switchboard defines", where, name)
		flags[name] = value
	}
	return flags
}

// shutdownOf is the --shutdown-timeout a command line gives the server.
func (s *server) shutdownOf(t *testing.T, where string, args []string) time.Duration {
	t.Helper()
	v, ok := s.argFlags(t, where, args)["shutdown-timeout"]
	if !ok {
		return s.shutdownTimeout
	}
	d, err := time.ParseDuration(v)
	require.NoError(t, err, "%s: --shutdown-timeout=%q", where, v)
	return d
}

// commentedKeys returns the keys of commented-out YAML mapping entries,
// "# NAME: value", that look like environment variables.
func commentedKeys(data []byte) []string {
	var keys []string
	for _, m := range commentedKeyRE.FindAllSubmatch(data, -1) {
		keys = append(keys, string(m[1]))
	}
	return keys
}

var commentedKeyRE = regexp.MustCompile(`(?m)^\s*#\s*([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+):`)

// portOf is the port of a listen address such as ":8080".
func portOf(t *testing.T, addr string) int32 {
	t.Helper()
	i := strings.LastIndex(addr, ":")
	require.GreaterOrEqual(t, i, 0, "address %q has no port", addr)
	p, err := strconv.Atoi(addr[i+1:])
	require.NoError(t, err, "address %q", addr)
	return int32(p)
}
