package redistopo

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
)

const (
	// masterName is the name the Sentinels know the primary by.
	masterName = "switchboard"
	// downAfter is the Sentinels' down-after-milliseconds: how long a
	// server may not answer before a Sentinel counts it as down. It must be
	// well above one second: a Sentinel that has just switched to a new
	// primary may take up to a second to connect to it (it reconnects a link
	// at most once a second), and with 1000 it sometimes counts the new
	// primary down before its first PING is answered, then fails over
	// again, to whatever replica there is (Redis 7.0.15, seen here).
	downAfter = 2000
	// sentinelFailoverTimeout is the Sentinels' failover-timeout, in
	// milliseconds: how long a failover may take before it is abandoned,
	// and half the time before the same Sentinel tries again.
	sentinelFailoverTimeout = 5000
)

// Sentinel is a primary with one replica, watched by three Sentinels
// (quorum 2) under the master name MasterName.
type Sentinel struct {
	// servers are the first primary and its replica; failovers change who
	// is which.
	servers   []*Server
	sentinels []*Server
}

// StartSentinel starts a primary, its replica and three Sentinels watching
// them, and returns once the topology is healthy (see WaitHealthy). A
// primary that dies or stops answering is replaced by the replica within a
// few seconds: the Sentinels count it down after two.
func StartSentinel(t testing.TB) *Sentinel {
	t.Helper()
	s := &Sentinel{}
	primary := startServer(t, "server 0", false, serverArgs)
	replica := startServer(t, "server 1", false, func(t testing.TB, dir string, port int) []string {
		return append(serverArgs(t, dir, port), "--replicaof", "127.0.0.1", strconv.Itoa(primary.port))
	})
	s.servers = []*Server{primary, replica}
	for i := range 3 {
		s.sentinels = append(s.sentinels, startServer(t, fmt.Sprintf("sentinel %d", i), false,
			func(t testing.TB, dir string, port int) []string {
				return sentinelArgs(t, dir, port, primary.port)
			}))
	}
	s.WaitHealthy(t)
	return s
}

// sentinelArgs writes the configuration file of a Sentinel watching the
// primary on primaryPort and returns the arguments that start it. Sentinel
// needs a file: it writes what it learns into it.
func sentinelArgs(t testing.TB, dir string, port, primaryPort int) []string {
	conf := filepath.Join(dir, "sentinel.conf")
	text := fmt.Sprintf(`port %d
bind 127.0.0.1
dir %s
sentinel monitor %s 127.0.0.1 %d 2
sentinel down-after-milliseconds %[3]s %[5]d
sentinel failover-timeout %[3]s %[6]d
`, port, dir, masterName, primaryPort, downAfter, sentinelFailoverTimeout)
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		t.Fatalf("redistopo: %v", err)
	}
	return []string{conf, "--sentinel"}
}

// MasterName is the name the Sentinels know the primary by, for
// redis.FailoverOptions.MasterName.
func (s *Sentinel) MasterName() string { return masterName }

// SentinelAddrs are the addresses of the three Sentinels.
func (s *Sentinel) SentinelAddrs() []string {
	addrs := make([]string, len(s.sentinels))
	for i, sn := range s.sentinels {
		addrs[i] = sn.Addr()
	}
	return addrs
}

// Servers are the primary and the replica, as started: failovers change
// who is which; Primary says who is primary now.
func (s *Sentinel) Servers() []*Server { return slices.Clone(s.servers) }

// Primary is the server the live Sentinels name as primary, once they
// agree (waiting up to 30 s until they do). It may be dead, after a Kill
// and before the failover.
func (s *Sentinel) Primary(t testing.TB) *Server {
	t.Helper()
	var primary *Server
	waitFor(t, "agreement of the Sentinels on the primary", s.all(), func(ctx context.Context) error {
		var err error
		primary, err = s.named(ctx)
		return err
	})
	return primary
}

// WaitPrimary waits until the live Sentinels agree on a primary other than
// not and that server is a live primary (which takes a few seconds after
// not is killed or paused), and returns it. The old primary, if it runs, is
// still a primary then: the Sentinels make it a replica about 10 s later;
// WaitHealthy waits for that.
func (s *Sentinel) WaitPrimary(t testing.TB, not *Server) *Server {
	t.Helper()
	var primary *Server
	waitFor(t, "primary other than "+not.Addr(), s.all(), func(ctx context.Context) error {
		p, err := s.named(ctx)
		if err != nil {
			return err
		}
		if p == not {
			return fmt.Errorf("the Sentinels still name %s", p.Addr())
		}
		if err := isPrimary(ctx, p); err != nil {
			return err
		}
		primary = p
		return nil
	})
	return primary
}

// Failover has the Sentinels fail over with SENTINEL FAILOVER (without
// asking the primary, as after a crash: writes it took last may be lost)
// and returns the new primary once WaitPrimary would.
func (s *Sentinel) Failover(t testing.TB) *Server {
	t.Helper()
	old := s.Primary(t)
	// A Sentinel refuses (NOGOODSLAVE) while what it knows of the replica
	// is stale; INPROG means a failover has started already.
	waitFor(t, "SENTINEL FAILOVER accepted", s.all(), func(ctx context.Context) error {
		lives := live(s.sentinels)
		if len(lives) == 0 {
			return fmt.Errorf("no Sentinel is running")
		}
		err := lives[0].client.Do(ctx, "SENTINEL", "FAILOVER", masterName).Err()
		if err != nil && !strings.HasPrefix(err.Error(), "INPROG") {
			return fmt.Errorf("%s: SENTINEL FAILOVER: %w", lives[0].Addr(), err)
		}
		return nil
	})
	return s.WaitPrimary(t, old)
}

// WaitHealthy waits until the topology is healthy, or fails the test after
// 30 s: the live Sentinels agree on the primary, which is live; every other
// live server is its replica and in sync; and every live Sentinel sees the
// primary up, knows the two other Sentinels, and sees each live replica up.
//
// After a Failover, or a Restart of the server that started as primary
// (it comes back a primary), that takes about 10 s: the Sentinels make a
// stray primary a replica only on the second INFO they get from it, and
// they send INFO every 10 s (Redis 7.0).
func (s *Sentinel) WaitHealthy(t testing.TB) {
	t.Helper()
	waitFor(t, "healthy Sentinel topology", s.all(), s.healthy)
}

func (s *Sentinel) healthy(ctx context.Context) error {
	primary, err := s.named(ctx)
	if err != nil {
		return err
	}
	if err := isPrimary(ctx, primary); err != nil {
		return err
	}
	var replicas []*Server
	for _, r := range live(s.servers) {
		if r == primary {
			continue
		}
		replicas = append(replicas, r)
		info, err := r.client.Info(ctx, "replication").Result()
		if err != nil {
			return fmt.Errorf("%s: %w", r.Addr(), err)
		}
		of := net.JoinHostPort(infoField(info, "master_host"), infoField(info, "master_port"))
		if role := infoField(info, "role"); role != "slave" || of != primary.Addr() {
			return fmt.Errorf("%s is %s of %s, not a replica of %s", r.Addr(), role, of, primary.Addr())
		}
		if link := infoField(info, "master_link_status"); link != "up" {
			return fmt.Errorf("%s: replica with master_link_status:%s", r.Addr(), link)
		}
	}
	for _, sn := range live(s.sentinels) {
		master := redis.NewMapStringStringCmd(ctx, "SENTINEL", "MASTER", masterName)
		_ = sn.client.Process(ctx, master)
		if err := master.Err(); err != nil {
			return fmt.Errorf("%s: SENTINEL MASTER: %w", sn.Addr(), err)
		}
		m := master.Val()
		if m["flags"] != "master" {
			return fmt.Errorf("%s sees the primary as %s", sn.Addr(), m["flags"])
		}
		if n := m["num-other-sentinels"]; n != strconv.Itoa(len(s.sentinels)-1) {
			return fmt.Errorf("%s knows %s other Sentinels", sn.Addr(), n)
		}
		known := redis.NewMapStringStringSliceCmd(ctx, "SENTINEL", "REPLICAS", masterName)
		_ = sn.client.Process(ctx, known)
		if err := known.Err(); err != nil {
			return fmt.Errorf("%s: SENTINEL REPLICAS: %w", sn.Addr(), err)
		}
		for _, r := range replicas {
			i := slices.IndexFunc(known.Val(), func(k map[string]string) bool {
				return net.JoinHostPort(k["ip"], k["port"]) == r.Addr()
			})
			if i < 0 {
				return fmt.Errorf("%s does not know the replica %s", sn.Addr(), r.Addr())
			}
			if flags := known.Val()[i]["flags"]; flags != "slave" {
				return fmt.Errorf("%s sees the replica %s as %s", sn.Addr(), r.Addr(), flags)
			}
		}
	}
	return nil
}

// named is the server the live Sentinels name as primary, or an error if
// they do not agree or name no server of the topology.
func (s *Sentinel) named(ctx context.Context) (*Server, error) {
	lives := live(s.sentinels)
	if len(lives) == 0 {
		return nil, fmt.Errorf("no Sentinel is running")
	}
	var addr string
	for _, sn := range lives {
		cmd := redis.NewStringSliceCmd(ctx, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", masterName)
		_ = sn.client.Process(ctx, cmd)
		hostPort, err := cmd.Result()
		if err != nil || len(hostPort) != 2 {
			return nil, fmt.Errorf("%s: SENTINEL GET-MASTER-ADDR-BY-NAME: %v %v", sn.Addr(), hostPort, err)
		}
		a := net.JoinHostPort(hostPort[0], hostPort[1])
		if addr != "" && a != addr {
			return nil, fmt.Errorf("the Sentinels disagree on the primary: %s or %s", addr, a)
		}
		addr = a
	}
	p := byAddr(s.servers, addr)
	if p == nil {
		return nil, fmt.Errorf("the Sentinels name %s, which is not ours", addr)
	}
	return p, nil
}

// isPrimary returns nil if s is live and a primary.
func isPrimary(ctx context.Context, s *Server) error {
	if !s.live() {
		return fmt.Errorf("%s is not live", s.Addr())
	}
	info, err := s.client.Info(ctx, "replication").Result()
	if err != nil {
		return fmt.Errorf("%s: %w", s.Addr(), err)
	}
	if role := infoField(info, "role"); role != "master" {
		return fmt.Errorf("%s is %s", s.Addr(), role)
	}
	return nil
}

// all are the servers and the Sentinels, for failure messages.
func (s *Sentinel) all() []*Server { return append(slices.Clone(s.servers), s.sentinels...) }
