package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// TestCLIUsersCreatePasswordPrompt: on a terminal (a pseudo-terminal here,
// Linux only), switchboard users create asks for the password twice with
// echo off; nothing typed shows on the screen, and the account logs in with
// what was typed.
func TestCLIUsersCreatePasswordPrompt(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, nil)
	ptmx, tty := openPTY(t)
	cmd := cliCommand(s, "users", "create", "cli_tty")
	var stdout strings.Builder
	cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, &stdout, tty
	require.NoError(t, cmd.Start())
	tty.Close() // the child holds its own copy

	screen := &lockedWriter{w: new(bytes.Buffer)} // everything the terminal shows
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		_, _ = io.Copy(screen, ptmx) // ends with EIO once the child is gone
	}()
	// Type only once the prompt is out and echo is off: what is typed
	// while echo is on shows, whoever reads it.
	typeAfter := func(prompt, text string) {
		t.Helper()
		eventually(t, "prompt "+prompt, func() bool { return strings.Contains(screen.String(), prompt) && !echoOn(t, ptmx) })
		_, err := ptmx.WriteString(text + "\n")
		require.NoError(t, err)
	}
	typeAfter("Password (empty for a random one): ", "typed password")
	typeAfter("Password again: ", "typed password")
	require.NoError(t, cmd.Wait(), "screen: %q", screen.String())
	ptmx.Close()
	<-copied
	require.Contains(t, stdout.String(), "created user cli_tty")
	require.NotContains(t, screen.String()+stdout.String(), "typed password", "not echoed")
	s.login(t, "cli_tty", "typed password")
}

// openPTY opens a pseudo-terminal: its controlling side and the terminal.
func openPTY(t *testing.T) (ptmx, tty *os.File) {
	t.Helper()
	ptmx, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	require.NoError(t, err)
	t.Cleanup(func() { ptmx.Close() })
	require.NoError(t, unix.IoctlSetPointerInt(int(ptmx.Fd()), unix.TIOCSPTLCK, 0)) // unlockpt
	n, err := unix.IoctlGetInt(int(ptmx.Fd()), unix.TIOCGPTN)                       // ptsname
	require.NoError(t, err)
	tty, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	require.NoError(t, err)
	t.Cleanup(func() { tty.Close() })
	return ptmx, tty
}

// echoOn reports whether the terminal of ptmx echoes what is typed.
func echoOn(t *testing.T, ptmx *os.File) bool {
	t.Helper()
	termios, err := unix.IoctlGetTermios(int(ptmx.Fd()), unix.TCGETS)
	require.NoError(t, err)
	return termios.Lflag&unix.ECHO != 0
}
