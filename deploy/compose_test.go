package deploy

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
)

var composeDir = filepath.Join(root, "deploy", "compose")

// composeServiceKeys are the keys of the Compose specification's service
// that compose.yaml may use: a misspelt one fails instead of being
// ignored. Extend it from the specification when a service needs more.
var composeServiceKeys = map[string]bool{
	"image": true, "build": true, "command": true, "entrypoint": true, "environment": true,
	"depends_on": true, "healthcheck": true, "ports": true, "volumes": true, "networks": true,
	"restart": true, "stop_grace_period": true, "stop_signal": true, "read_only": true,
	"cap_drop": true, "security_opt": true, "ulimits": true, "user": true, "tmpfs": true,
}

// TestCompose checks deploy/compose as far as it can be without a
// container engine: the YAML parses, the three nodes are behind the load
// balancer, the LB passes WebSocket upgrades and balances round robin, and
// the nodes' settings are ones the server reads.
func TestCompose(t *testing.T) {
	t.Parallel()
	s := readServer(t)
	data, err := os.ReadFile(filepath.Join(composeDir, "compose.yaml"))
	require.NoError(t, err)
	// yaml.v3 resolves the anchors and merge keys (<<) as Compose does (a
	// key beside a merge overrides the merged one), and refuses duplicate
	// keys.
	var doc map[string]any
	require.NoError(t, yaml.Unmarshal(data, &doc))

	for k := range doc {
		require.True(t, slices.Contains([]string{"name", "services", "networks", "volumes"}, k) || strings.HasPrefix(k, "x-"),
			"compose.yaml: top-level %q", k)
	}
	services, ok := doc["services"].(map[string]any)
	require.True(t, ok, "compose.yaml has no services")
	for name, svc := range services {
		for k := range svc.(map[string]any) {
			require.True(t, composeServiceKeys[k], "service %s: %q is not a key compose.yaml uses (a typo?)", name, k)
		}
	}
	svc := func(name string) map[string]any {
		t.Helper()
		v, ok := services[name].(map[string]any)
		require.True(t, ok, "no service %s", name)
		return v
	}
	for _, name := range []string{"postgres", "redis", "migrate", "lb"} {
		svc(name)
	}

	// The nodes: every service that runs serve.
	var nodes []string
	for name := range services {
		if cmd := strs(svc(name)["command"]); len(cmd) > 0 && cmd[0] == "serve" {
			nodes = append(nodes, name)
		}
	}
	slices.Sort(nodes)
	require.Equal(t, []string{"switchboard-1", "switchboard-2", "switchboard-3"}, nodes)

	lb := svc("lb")
	lbAddr := networkAddress(t, lb)
	var port int32
	for _, name := range append([]string{"migrate"}, nodes...) {
		n := svc(name)
		build, ok := n["build"].(map[string]any)
		require.True(t, ok, "%s: build", name)
		_, err := os.Stat(filepath.Join(composeDir, build["context"].(string), "Dockerfile"))
		require.NoError(t, err, "%s: the build context holds no Dockerfile", name)
		require.Equal(t, true, n["read_only"], "%s: read_only", name)
		require.Equal(t, []string{"ALL"}, strs(n["cap_drop"]), name)

		env, ok := n["environment"].(map[string]any)
		require.True(t, ok, "%s: environment as a mapping", name)
		for k, v := range env {
			require.True(t, s.knownEnv(k), "%s: the server reads no %s", name, k)
			s.checkEnvValue(t, name, k, fmt.Sprint(v))
		}
		for _, dep := range []string{"DATABASE_URL", "REDIS_URL"} {
			require.Contains(t, env, dep, name)
			host := hostOf(t, env[dep].(string))
			require.Contains(t, services, host, "%s: %s names %s, which is no service", name, dep, host)
		}
		if name == "migrate" {
			require.Equal(t, []string{"migrate", "up"}, strs(n["command"]))
			continue
		}
		port = portOf(t, env["SWITCHBOARD_ADDR"].(string))
		trusted := env["SWITCHBOARD_TRUSTED_PROXIES"].(string)
		_, cidr, err := net.ParseCIDR(trusted)
		require.NoError(t, err, "%s: SWITCHBOARD_TRUSTED_PROXIES", name)
		require.True(t, cidr.Contains(net.ParseIP(lbAddr)), "%s: SWITCHBOARD_TRUSTED_PROXIES %s does not hold the LB's %s", name, trusted, lbAddr)
		ones, _ := cidr.Mask.Size()
		require.Equal(t, 32, ones, "%s: trust the LB alone", name)

		// Compose must wait for the drain before it kills.
		grace, err := time.ParseDuration(n["stop_grace_period"].(string))
		require.NoError(t, err, name)
		args := strs(n["command"])
		require.Greater(t, grace, s.shutdownOf(t, name, args), "%s: stop_grace_period must exceed --shutdown-timeout", name)
		deps, ok := n["depends_on"].(map[string]any)
		require.True(t, ok, "%s: depends_on with conditions", name)
		require.Equal(t, "service_completed_successfully", deps["migrate"].(map[string]any)["condition"],
			"%s: the nodes start after the migrations, not racing each other", name)
	}

	// Only loopback is published.
	for name := range services {
		for _, p := range strs(svc(name)["ports"]) {
			require.True(t, strings.HasPrefix(p, "127.0.0.1:"), "%s publishes %s beyond loopback", name, p)
		}
	}

	// The load balancer: every node, round robin, WebSocket upgrades.
	var conf string
	for _, v := range strs(lb["volumes"]) {
		if src, dst, ok := strings.Cut(v, ":"); ok && strings.HasPrefix(dst, "/etc/nginx/nginx.conf") {
			b, err := os.ReadFile(filepath.Join(composeDir, src))
			require.NoError(t, err, "lb mounts %s", src)
			conf = string(b)
		}
	}
	require.NotEmpty(t, conf, "lb mounts no nginx.conf")
	require.ElementsMatch(t, nodes, strs(lb["depends_on"]), "nginx resolves the nodes' names at start: it starts after them")
	upstream := regexp.MustCompile(`(?s)upstream\s+(\w+)\s*\{(.*?)\}`).FindStringSubmatch(conf)
	require.NotNil(t, upstream, "nginx.conf has no upstream block")
	var servers []string
	for _, m := range regexp.MustCompile(`(?m)^\s*server\s+([^\s;]+)`).FindAllStringSubmatch(upstream[2], -1) {
		servers = append(servers, m[1])
	}
	var want []string
	for _, n := range nodes {
		want = append(want, fmt.Sprintf("%s:%d", n, port))
	}
	require.Equal(t, want, servers, "the upstream is every node, on SWITCHBOARD_ADDR's port")
	for _, sticky := range []string{"ip_hash", "hash ", "sticky", "least_conn", "random"} {
		require.NotContains(t, upstream[2], sticky, "round robin: no %s", sticky)
	}
	for _, line := range []string{
		"proxy_pass http://" + upstream[1] + ";",
		"proxy_http_version 1.1;",
		"proxy_set_header Upgrade $http_upgrade;",
		"proxy_set_header Connection $connection_upgrade;",
		"proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
	} {
		require.Contains(t, conf, line)
	}
	read := regexp.MustCompile(`proxy_read_timeout\s+(\w+);`).FindStringSubmatch(conf)
	require.NotNil(t, read, "proxy_read_timeout: nginx's 60 s default is as long as the server's idle timeout")
	d, err := time.ParseDuration(read[1])
	require.NoError(t, err)
	require.Greater(t, d, time.Minute, "a quiet WebSocket must outlive the server's 25 s pings")
}

// strs is a YAML sequence of scalars as strings; nil for anything else.
func strs(v any) []string {
	list, ok := v.([]any)
	if !ok {
		return nil
	}
	out := make([]string, 0, len(list))
	for _, e := range list {
		out = append(out, fmt.Sprint(e))
	}
	return out
}

// networkAddress is the one fixed ipv4_address of a service.
func networkAddress(t *testing.T, svc map[string]any) string {
	t.Helper()
	nets, ok := svc["networks"].(map[string]any)
	require.True(t, ok, "networks as a mapping")
	for _, n := range nets {
		if m, ok := n.(map[string]any); ok {
			if a, ok := m["ipv4_address"].(string); ok {
				require.NotNil(t, net.ParseIP(a), a)
				return a
			}
		}
	}
	t.Fatal("no ipv4_address")
	return ""
}

// hostOf is the host of a URL such as redis://redis:6379/0.
func hostOf(t *testing.T, u string) string {
	t.Helper()
	_, rest, ok := strings.Cut(u, "://")
	require.True(t, ok, u)
	if _, after, ok := strings.Cut(rest, "@"); ok {
		rest = after
	}
	host, _, err := net.SplitHostPort(strings.SplitN(rest, "/", 2)[0])
	require.NoError(t, err, u)
	return host
}
