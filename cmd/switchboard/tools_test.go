package main

import (
	"flag"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParseArgsTakesFlagsAnywhere(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"alice", "--display-name", "Alice L.", "--private"},
		{"--display-name", "Alice L.", "alice", "--private"},
		{"--private", "--display-name=Alice L.", "alice"},
	} {
		fs := flag.NewFlagSet("users create", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		display := fs.String("display-name", "", "")
		private := fs.Bool("private", false, "")
		require.NoError(t, parseArgs(fs, args), "%q", args)
		require.Equal(t, []string{"alice"}, fs.Args(), "%q", args)
		require.Equal(t, "Alice L.", *display)
		require.True(t, *private)
	}
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	require.Error(t, parseArgs(fs, []string{"alice", "--nope"}))
}

// TestCLIUsersCreatePassword: switchboard users create takes the password
// from standard input or from --password-file (or a prompt on a terminal:
// TestCLIUsersCreatePasswordPrompt), never from the command line, where ps
// shows it; none given makes a random one, printed. Each account made logs
// in over HTTP with its password, and no password shows in the output.
func TestCLIUsersCreatePassword(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, nil)

	// run runs users create with args and stdin; it returns standard
	// output and the error.
	run := func(t *testing.T, stdin io.Reader, args ...string) (string, string, error) {
		t.Helper()
		cmd := cliCommand(s, append([]string{"users", "create"}, args...)...)
		cmd.Stdin = stdin
		var stdout, stderr strings.Builder
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		return stdout.String(), stderr.String(), err
	}
	refusedLogin := func(t *testing.T, username, password string) {
		t.Helper()
		r := s.do(t, "POST", "/api/v1/auth/login", "", map[string]any{"username": username, "password": password})
		require.Equal(t, http.StatusUnauthorized, r.Status, "body: %s", r.Raw)
	}

	t.Run("FromStdin", func(t *testing.T) {
		t.Parallel()
		out, stderr, err := run(t, strings.NewReader("piped password\nsecond line\n"), "cli_stdin")
		require.NoError(t, err, stderr)
		require.Contains(t, out, "created user cli_stdin")
		require.NotContains(t, out+stderr, "piped password")
		s.login(t, "cli_stdin", "piped password")
	})

	t.Run("FromFile", func(t *testing.T) {
		t.Parallel()
		file := filepath.Join(t.TempDir(), "password")
		require.NoError(t, os.WriteFile(file, []byte("filed password\r\n"), 0o600))
		out, stderr, err := run(t, nil, "cli_file", "--password-file", file)
		require.NoError(t, err, stderr)
		require.NotContains(t, out+stderr, "filed password")
		s.login(t, "cli_file", "filed password")

		_, stderr, err = run(t, nil, "cli_nofile", "--password-file", file+".missing")
		require.Error(t, err)
		require.Contains(t, stderr, "password file")
	})

	t.Run("RandomWhenNoneGiven", func(t *testing.T) {
		t.Parallel()
		out, stderr, err := run(t, strings.NewReader(""), "cli_random")
		require.NoError(t, err, stderr)
		m := regexp.MustCompile(`(?m)^password: (\S+)$`).FindStringSubmatch(out)
		require.NotNil(t, m, "output: %s", out)
		require.Len(t, m[1], 16)
		s.login(t, "cli_random", m[1])
	})

	t.Run("NotFromArgv", func(t *testing.T) {
		t.Parallel()
		_, stderr, err := run(t, nil, "cli_argv", "--password", "argv-password")
		require.Error(t, err)
		require.Contains(t, stderr, "-password")
		refusedLogin(t, "cli_argv", "argv-password")
	})

	t.Run("RulesOfRegister", func(t *testing.T) {
		t.Parallel()
		_, stderr, err := run(t, strings.NewReader("correct horse\n"), "slack-u0cli")
		require.Error(t, err)
		require.Contains(t, stderr, "reserved for Slack guests")
		refusedLogin(t, "slack-u0cli", "correct horse")

		_, stderr, err = run(t, strings.NewReader("correct horse\n"), "cli_bidi", "--display-name", "\u202eevil")
		require.Error(t, err)
		require.Contains(t, stderr, "bidirectional")
		refusedLogin(t, "cli_bidi", "correct horse")
	})
}
