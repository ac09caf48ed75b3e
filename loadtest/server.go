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
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// limitProfile is how the servers the load test starts set their abuse
// limits, and what every result they measure says about it.
type limitProfile struct {
	name string
	args []string
	note string
}

// trustLoopback makes the servers believe X-Forwarded-For from the load
// test, so that each registering client counts as its own address (the
// auth limit is 60 a minute per client IP).
var trustLoopback = []string{"--trusted-proxies", "127.0.0.1/32"}

var (
	// limitsDefault: every abuse limit at its default, and each user of
	// the load test under them. Every open-loop scenario runs so.
	limitsDefault = limitProfile{"default", trustLoopback,
		"abuse limits at their defaults (sends 10/s with bursts of 20 per connection, HTTP writes 5/s with bursts of 20 per user, " +
			"auth 60/min per client IP, 20 connections per user), every user under them; --trusted-proxies 127.0.0.1/32 and " +
			"each registering client with an X-Forwarded-For address of its own"}
	// limitsManyConns: the same but the connection cap, which the
	// connections scenario needs (19,000 connections of 200 accounts).
	limitsManyConns = limitProfile{"default, connection cap off", append(slices.Clone(trustLoopback), "--max-conns-per-user", "1000000"),
		"abuse limits at their defaults except --max-conns-per-user 1000000: this scenario holds about 95 connections per account"}
	// limitsOff: the first version's, for the closed-loop scenarios, which
	// send from few accounts as fast as answers come.
	limitsOff = limitProfile{"off", []string{"--rate-limit", "1000000", "--rate-burst", "1000000", "--http-rate-limit", "0",
		"--auth-rate-limit", "0", "--max-conns-per-user", "1000000"},
		"abuse limits OFF (" + offFlags + "): closed loop sends from few accounts as fast as answers come"}
)

// offFlags are limitsOff's flags as the notes spell them.
const offFlags = "--rate-limit 1000000 --rate-burst 1000000 --http-rate-limit 0 --auth-rate-limit 0 --max-conns-per-user 1000000"

// spawnArgs are flags every server the load test starts gets: a pprof
// listener on loopback, and access tokens that outlive a long sweep (15
// minutes by default; a connection is closed when its token expires).
var spawnArgs = []string{"--debug-addr", "127.0.0.1:0", "--access-ttl", "2h"}

// spawnOptions say how to start one `switchboard serve` process.
type spawnOptions struct {
	Binary      string // path of the switchboard binary
	DatabaseURL string
	RedisURL    string // "" means the server's default
	// RedisCluster, when set, is a Redis Cluster's seed nodes, used
	// instead of RedisURL.
	RedisCluster string
	RedisPrefix  string
	SecretFile   string   // JWT key shared by the nodes of a cluster
	LogPath      string   // the server's stderr goes here
	Args         []string // more flags: the limit profile's and the scenario's
}

// server is a running switchboard process.
type server struct {
	cmd   *exec.Cmd
	URL   string // http://127.0.0.1:port
	Debug string // pprof listener, host:port
	done  chan struct{}
	log   *os.File
}

// startServer starts a node on a loopback port of its choosing with a
// pprof listener, and returns once it serves.
func startServer(ctx context.Context, o spawnOptions) (*server, error) {
	args := append([]string{"serve", "--addr", "127.0.0.1:0",
		"--database-url", o.DatabaseURL, "--redis-prefix", o.RedisPrefix,
		"--jwt-secret-file", o.SecretFile, "--log-level", "info"}, spawnArgs...)
	args = append(args, o.Args...)
	if o.RedisURL != "" {
		args = append(args, "--redis-url", o.RedisURL)
	}
	if o.RedisCluster != "" {
		args = append(args, "--redis-cluster-addrs", o.RedisCluster)
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
