package archtest

import (
	"bufio"
	"bytes"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"testing"
)

// module is the repository's module path.
const module = "github.com/switchboard-chat/switchboard"

// rule is what one package of ours may import. Imports of its _test.go
// files are free: tests may reach for any helper.
type rule struct {
	// ours are the packages of this module it may import, relative to the
	// module ("chat", "integrations/jobs"); "*" means every package that
	// is not a test helper.
	ours []string
	// third are the prefixes of the non-standard packages it may import
	// (a prefix matches itself and what is below it); nil means any.
	third []string
	// deny are standard or third-party packages it must not import, by
	// prefix as above.
	deny []string
}

// none allows no third-party package at all.
var none = []string{}

// Third-party packages named by the rules.
const (
	redis  = "github.com/redis/go-redis"
	pgx    = "github.com/jackc/pgx"
	twilio = "github.com/twilio/twilio-go"
	slack  = "github.com/slack-go/slack"
	asynq  = "github.com/hibiken/asynq"
)

// rules is the target dependency graph of SPEC's components and STYLE §1:
// imports point toward the leaves (chat first), the hub knows only chat,
// storage is SQL and nothing else, and only cmd/switchboard wires the
// components together. Every package of the module needs a row: a new
// package fails this test until someone decides what it may import.
var rules = map[string]rule{
	// Leaves.
	"chat":                 {third: none},
	"clientip":             {ours: []string{"chat"}},
	"migrations":           {},
	"internal/groupcommit": {third: none},
	"internal/devpg":       {},

	// Domain services.
	"auth":      {ours: []string{"chat"}, deny: []string{redis, pgx, "net/http"}},
	"storage":   {ours: []string{"chat", "internal/groupcommit"}, third: []string{pgx}, deny: []string{"net/http"}},
	"presence":  {ours: []string{"chat"}},
	"ratelimit": {ours: []string{"chat"}},
	"denylist":  {ours: []string{"chat"}},
	"cache":     {ours: []string{"chat", "internal/groupcommit"}, deny: []string{pgx, "net/http"}},
	"history":   {ours: []string{"chat"}, third: none},

	// Transport. The poster is how a message enters: it publishes through
	// the hub's event type.
	"hub":    {ours: []string{"chat"}, deny: []string{redis, pgx}},
	"poster": {ours: []string{"chat", "hub"}, deny: []string{redis, pgx, "net/http"}},
	"broker": {ours: []string{"chat", "hub", "internal/groupcommit"}},
	"web":    {ours: []string{"chat", "auth"}, deny: []string{redis, pgx}},

	// Integrations: the outbox, the job queue, the vendors.
	// They declare what they need of storage as interfaces over chat types.
	"integrations":        {ours: []string{"chat", "integrations/jobs"}, deny: []string{pgx}},
	"integrations/jobs":   {ours: []string{"chat"}},
	"integrations/twilio": {ours: []string{"chat", "auth", "integrations", "integrations/jobs"}, deny: []string{pgx}},
	"integrations/slack":  {ours: []string{"chat", "integrations", "integrations/jobs"}, deny: []string{pgx}},

	// Commands: the server wires everything; the load generator speaks only
	// the public protocol, so it imports nothing of ours.
	"cmd/switchboard": {ours: []string{"*"}},
	"loadtest":        {},

	// Test helpers, imported by tests only.
	"storage/storagetest": {ours: []string{"chat", "storage", "migrations", "poster"}},
	"internal/apitest": {ours: []string{"auth", "broker/brokertest", "cache", "clientip", "denylist", "history", "hub",
		"poster", "presence", "ratelimit", "storage", "storage/storagetest", "web"}},
	"broker/brokertest":              {},
	"integrations/twilio/twiliotest": {ours: []string{"internal/fakeapi"}},
	"integrations/slack/slacktest":   {ours: []string{"internal/fakeapi"}},
	"integrations/jobs/jobstest":     {ours: []string{"broker/brokertest", "integrations", "integrations/jobs"}},
	"internal/fakeapi":               {},
	"internal/redistopo":             {third: []string{redis}},
	"internal/testvectors":           {},
	"internal/archtest":              {},

	// Tests only: the checks of deploy/ (Kubernetes manifests, compose,
	// Dockerfile). Its one non-test file is the package comment; the
	// Kubernetes API modules stay in its _test.go files, out of every
	// binary.
	"deploy": {third: none},
}

// pending are imports that break the rules today and are being removed on
// another branch: each is logged instead of failing the test, and an entry
// that no longer happens fails it, so that the entry goes when the change
// lands. Keep it short, each entry with its reason.
var pending = map[string]string{}

// testHelper reports whether pkg is imported by tests only.
func testHelper(pkg string) bool {
	return strings.HasSuffix(pkg, "test") || pkg == "internal/testvectors" || pkg == "internal/archtest"
}

// components are the parts that only cmd/switchboard may import together:
// a package may use at most one of them besides its own.
var components = []string{"web", "hub", "broker", "cache", "storage", "presence", "integrations"}

// component is the component pkg belongs to, or "".
func component(pkg string) string {
	for _, c := range components {
		if pkg == c || strings.HasPrefix(pkg, c+"/") {
			return c
		}
	}
	return ""
}

// imports lists the module's packages with the imports of their non-test
// files, from `go list` run at the repository's root.
func imports(t *testing.T) map[string][]string {
	t.Helper()
	_, here, _, _ := runtime.Caller(0) // <repo>/internal/archtest/archtest_test.go
	cmd := exec.Command("go", "list", "-f", `{{.ImportPath}}{{range .Imports}} {{.}}{{end}}`, "./...")
	cmd.Dir = filepath.Join(filepath.Dir(here), "..", "..")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	pkgs := map[string][]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		pkgs[rel(fields[0])] = fields[1:]
	}
	if len(pkgs) == 0 {
		t.Fatal("go list found no packages")
	}
	return pkgs
}

// rel is path relative to the module, or path itself when it is not ours.
func rel(path string) string {
	if path == module {
		return "."
	}
	return strings.TrimPrefix(path, module+"/")
}

func ours(path string) bool { return path == module || strings.HasPrefix(path, module+"/") }

// standard reports whether path is a standard-library package: its first
// element has no dot.
func standard(path string) bool {
	first, _, _ := strings.Cut(path, "/")
	return !strings.Contains(first, ".")
}

func matches(prefixes []string, path string) bool {
	for _, p := range prefixes {
		if path == p || strings.HasPrefix(path, p+"/") {
			return true
		}
	}
	return false
}

// TestImports checks every package of the module against its rule, and
// that every rule names a package that exists.
func TestImports(t *testing.T) {
	pkgs := imports(t)
	names := make([]string, 0, len(pkgs))
	for pkg := range pkgs {
		names = append(names, pkg)
	}
	sort.Strings(names)
	seen := map[string]bool{}
	broken := func(pkg, dep, format string, args ...any) {
		t.Helper()
		if why, ok := pending[pkg+" -> "+dep]; ok {
			seen[pkg+" -> "+dep] = true
			t.Logf("pending: %s imports %s, against its rule (%s)", pkg, dep, why)
			return
		}
		t.Errorf(format, args...)
	}
	for _, pkg := range names {
		r, ok := rules[pkg]
		if !ok {
			t.Errorf("%s: no import rule; add a row to rules in internal/archtest (and to docs/architecture.md) saying which packages of ours it may import", pkg)
			continue
		}
		for _, imp := range pkgs[pkg] {
			switch {
			case ours(imp):
				dep := rel(imp)
				allowed := slices.Contains(r.ours, dep) || (slices.Contains(r.ours, "*") && !testHelper(dep))
				if !allowed {
					broken(pkg, dep, "%s imports %s; it may import only %s", pkg, dep, list(r.ours))
				}
			case matches(r.deny, imp):
				t.Errorf("%s imports %s, which it must not", pkg, imp)
			case !standard(imp) && r.third != nil && !matches(r.third, imp):
				t.Errorf("%s imports %s; of third-party packages it may import only %s", pkg, imp, list(r.third))
			}
		}
	}
	for pkg := range rules {
		if _, ok := pkgs[pkg]; !ok {
			t.Errorf("rule for %s, which does not exist: remove or rename the row", pkg)
		}
	}
	for edge := range pending {
		if !seen[edge] {
			t.Errorf("pending %q no longer happens: delete it from pending in internal/archtest", edge)
		}
	}
}

// TestOnlyCmdWires checks that no package but the commands imports two
// components (besides its own): putting web, hub, broker, cache, storage,
// presence and the integrations together is cmd/switchboard's job. It
// holds whatever the rules above allow, so that widening a rule cannot
// quietly turn a package into a second place of wiring.
func TestOnlyCmdWires(t *testing.T) {
	for pkg, deps := range imports(t) {
		if strings.HasPrefix(pkg, "cmd/") || testHelper(pkg) {
			continue
		}
		seen := map[string]bool{}
		for _, imp := range deps {
			if c := component(rel(imp)); ours(imp) && c != "" && c != component(pkg) {
				seen[c] = true
			}
		}
		if len(seen) > 1 {
			t.Errorf("%s imports the components %s together; only cmd/switchboard wires components", pkg, list(keys(seen)))
		}
	}
}

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func list(s []string) string {
	if len(s) == 0 {
		return "nothing"
	}
	return strings.Join(s, ", ")
}
