package main

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// privateRedis is a redis-server of a test's own on a free loopback port,
// without persistence, that the test can kill and restart empty on the same
// address. (internal/redistopo, being written on another branch, will
// provide the same; this is the least the Redis-loss tests need meanwhile.)
type privateRedis struct {
	port int
	dir  string
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd exited
}

// startPrivateRedis starts one and kills it when t ends.
func startPrivateRedis(t *testing.T) *privateRedis {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	r := &privateRedis{port: port, dir: t.TempDir()}
	r.Restart(t)
	t.Cleanup(func() {
		if r.cmd != nil {
			r.Kill(t)
		}
	})
	return r
}

// Addr is its address, the same across restarts.
func (r *privateRedis) Addr() string { return "127.0.0.1:" + strconv.Itoa(r.port) }

// URL is its REDIS_URL.
func (r *privateRedis) URL() string { return "redis://" + r.Addr() + "/0" }

// Kill SIGKILLs the server and waits for it: everything it held is lost.
func (r *privateRedis) Kill(t *testing.T) {
	t.Helper()
	_ = r.cmd.Process.Signal(syscall.SIGKILL)
	<-r.done
	r.cmd = nil
}

// Restart starts the server, empty, and waits until it answers.
func (r *privateRedis) Restart(t *testing.T) {
	t.Helper()
	r.cmd = exec.Command("redis-server", "--port", strconv.Itoa(r.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", r.dir)
	if err := r.cmd.Start(); err != nil {
		t.Fatalf("start redis-server: %v", err)
	}
	r.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) {
		_ = cmd.Wait()
		close(done)
	}(r.cmd, r.done)
	c := redis.NewClient(&redis.Options{Addr: r.Addr(), MaxRetries: -1})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(fmt.Errorf("redis-server on %s does not answer: %w", r.Addr(), err))
		}
		time.Sleep(20 * time.Millisecond)
	}
}
