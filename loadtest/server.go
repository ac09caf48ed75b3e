package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// serverLimits are the limits every server the load test starts runs with:
// the per-connection send limit and the per-user HTTP write limit exist to
// stop abuse, and a load generator sends from few accounts far faster than
// any person.
var serverLimits = []string{"--rate-limit", "1000000", "--rate-burst", "1000000", "--http-rate-limit", "0",
	"--auth-rate-limit", "0", "--max-conns-per-user", "1000000"}

// serverLimitsNote says so in every report.
const serverLimitsNote = "servers started with --rate-limit 1000000 --rate-burst 1000000 --http-rate-limit 0 --auth-rate-limit 0 --max-conns-per-user 1000000 (abuse limits off)"

// spawnOptions say how to start one `switchboard serve` process.
type spawnOptions struct {
	Binary      string // path of the switchboard binary
	DatabaseURL string
	RedisURL    string // "" means the server's default
	RedisPrefix string
	SecretFile  string   // JWT key shared by the nodes of a cluster
	LogPath     string   // the server's stderr goes here
	Args        []string // more flags, after (so overriding) the load-test limits
}

// server is a running switchboard process.
type server struct {
	cmd   *exec.Cmd
	URL   string // http://127.0.0.1:port
	Debug string // pprof listener, host:port
	done  chan struct{}
	log   *os.File
}

// startServer starts a node on a loopback port of its choosing with the
// load-test limits and a pprof listener, and returns once it serves.
func startServer(ctx context.Context, o spawnOptions) (*server, error) {
	args := append([]string{"serve", "--addr", "127.0.0.1:0", "--debug-addr", "127.0.0.1:0",
		"--database-url", o.DatabaseURL, "--redis-prefix", o.RedisPrefix,
		"--jwt-secret-file", o.SecretFile, "--log-level", "info"}, serverLimits...)
	args = append(args, o.Args...)
	if o.RedisURL != "" {
		args = append(args, "--redis-url", o.RedisURL)
	}
	cmd := exec.Command(o.Binary, args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	logFile, err := os.Create(o.LogPath)
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, err
	}
	s := &server{cmd: cmd, done: make(chan struct{}), log: logFile}
	found := make(chan struct{})
	go func() {
		// Copy the log, and pick the listen addresses out of it.
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Bytes()
			_, _ = logFile.Write(append(line, '\n'))
			var entry struct {
				Msg  string `json:"msg"`
				Addr string `json:"addr"`
			}
			if json.Unmarshal(line, &entry) != nil {
				continue
			}
			switch entry.Msg {
			case "debug listener (pprof)":
				s.Debug = entry.Addr
			case "switchboard serving":
				s.URL = "http://" + entry.Addr
				close(found)
			}
		}
		_, _ = io.Copy(logFile, stderr)
	}()
	go func() {
		_ = cmd.Wait()
		close(s.done)
	}()
	select {
	case <-found:
		return s, nil
	case <-s.done:
		logFile.Close()
		return nil, fmt.Errorf("switchboard serve exited at start; see %s", o.LogPath)
	case <-time.After(60 * time.Second):
	case <-ctx.Done():
	}
	s.stop()
	return nil, errors.New("switchboard serve did not start within 60 s")
}

// Pid is the server's process id.
func (s *server) Pid() int { return s.cmd.Process.Pid }

// stop sends SIGTERM and waits for the process, killing it after 30 s.
func (s *server) stop() {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(30 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
	s.log.Close()
}

// dropDatabase removes the database of databaseURL, connecting to the
// server's postgres database to do it.
func dropDatabase(ctx context.Context, databaseURL string) error {
	u, err := url.Parse(databaseURL)
	if err != nil {
		return err
	}
	name := strings.TrimPrefix(u.Path, "/")
	u.Path = "/postgres"
	conn, err := pgx.Connect(ctx, u.String())
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
	return err
}
