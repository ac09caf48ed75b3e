package main

import (
	"flag"
	"io"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParseArgsTakesFlagsAnywhere(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"alice", "--password", "correct horse", "--private"},
		{"--password", "correct horse", "alice", "--private"},
		{"--private", "--password=correct horse", "alice"},
	} {
		fs := flag.NewFlagSet("users create", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		password := fs.String("password", "", "")
		private := fs.Bool("private", false, "")
		require.NoError(t, parseArgs(fs, args), "%q", args)
		require.Equal(t, []string{"alice"}, fs.Args(), "%q", args)
		require.Equal(t, "correct horse", *password)
		require.True(t, *private)
	}
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	require.Error(t, parseArgs(fs, []string{"alice", "--nope"}))
}
