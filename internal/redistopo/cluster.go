package redistopo

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
)

const (
	// slots is the number of hash slots of a Redis Cluster.
	slots = 16384
	// nodeTimeout is the nodes' cluster-node-timeout, in milliseconds: how
	// long a node may not answer before the others count it as failing.
	nodeTimeout = 1000
)

// Cluster is a Redis Cluster of three primaries with one replica each.
type Cluster struct {
	// servers are the primaries, then their replicas in the same order, as
	// created; failovers change who is which.
	servers []*Server
}

// StartCluster starts a Redis Cluster of three primaries with one replica
// each and returns once it is healthy (see WaitHealthy). A primary that
// dies or stops answering is replaced by its replica within about two
// seconds.
//
// The cluster is made with CLUSTER ADDSLOTSRANGE, MEET and REPLICATE rather
// than with `redis-cli --cluster create`, so that its layout is fixed (node
// i+3 is the replica of node i) and every step is polled, not slept
// through. It is ready about 2 s after its nodes start either way: that is
// how long a Redis 7.0 primary waits after starting before it reports the
// cluster ok.
func StartCluster(t testing.TB) *Cluster {
	t.Helper()
	c := &Cluster{}
	for i := range 6 {
		c.servers = append(c.servers, startServer(t, fmt.Sprintf("cluster node %d", i), true, clusterArgs))
	}
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	ids := make([]string, len(c.servers))
	for i, s := range c.servers {
		id, err := s.client.ClusterMyID(ctx).Result()
		if err != nil {
			t.Fatalf("redistopo: CLUSTER MYID on %s: %v", s.Addr(), err)
		}
		ids[i] = id
		// Distinct epochs, as redis-cli sets them, spare the nodes
		// resolving a collision of six epochs 0.
		if err := s.client.Do(ctx, "CLUSTER", "SET-CONFIG-EPOCH", i+1).Err(); err != nil {
			t.Fatalf("redistopo: CLUSTER SET-CONFIG-EPOCH on %s: %v", s.Addr(), err)
		}
	}
	for i, s := range c.servers[:3] {
		if err := s.client.ClusterAddSlotsRange(ctx, i*slots/3, (i+1)*slots/3-1).Err(); err != nil {
			t.Fatalf("redistopo: CLUSTER ADDSLOTSRANGE on %s: %v", s.Addr(), err)
		}
	}
	first := strconv.Itoa(c.servers[0].port)
	for _, s := range c.servers[1:] {
		if err := s.client.ClusterMeet(ctx, "127.0.0.1", first).Err(); err != nil {
			t.Fatalf("redistopo: CLUSTER MEET on %s: %v", s.Addr(), err)
		}
	}
	// A replica must know its primary before it can be told to replicate
	// it, so wait until every node knows every other.
	waitFor(t, "cluster whose nodes all know each other", c.servers, func(ctx context.Context) error {
		for _, s := range c.servers {
			nodes, err := s.nodes(ctx)
			if err != nil {
				return err
			}
			for _, n := range nodes {
				if n.has("handshake") || n.has("noaddr") {
					return fmt.Errorf("%s: %s is %s", s.Addr(), n.addr, n.flags)
				}
			}
			if len(nodes) != len(c.servers) {
				return fmt.Errorf("%s knows %d nodes", s.Addr(), len(nodes))
			}
		}
		return nil
	})
	for i, s := range c.servers[3:] {
		if err := s.client.ClusterReplicate(ctx, ids[i]).Err(); err != nil {
			t.Fatalf("redistopo: CLUSTER REPLICATE on %s: %v", s.Addr(), err)
		}
	}
	c.WaitHealthy(t)
	return c
}

// clusterArgs are the arguments of a cluster node.
func clusterArgs(t testing.TB, dir string, port int) []string {
	return append(serverArgs(t, dir, port),
		"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
		"--cluster-node-timeout", strconv.Itoa(nodeTimeout))
}

// Addrs are the addresses of all six nodes, for a cluster client's seeds.
func (c *Cluster) Addrs() []string {
	addrs := make([]string, len(c.servers))
	for i, s := range c.servers {
		addrs[i] = s.Addr()
	}
	return addrs
}

// Servers are the six nodes: the three first primaries, then their
// replicas in the same order. Failovers change who is which; PrimaryOf
// says who serves a key now.
func (c *Cluster) Servers() []*Server { return slices.Clone(c.servers) }

// WaitHealthy waits until the cluster is healthy, or fails the test after
// 30 s: every live node (running and not paused) reports cluster_state:ok,
// knows every other live node as not failing, and agrees with the others on
// which primary serves each of the 16384 slots; each of those primaries is
// live; and every live replica is in sync with its primary. After a primary
// is killed or paused, that is once its replica has taken over; after a
// node is restarted, once it has rejoined.
func (c *Cluster) WaitHealthy(t testing.TB) {
	t.Helper()
	waitFor(t, "healthy cluster", c.servers, c.healthy)
}

func (c *Cluster) healthy(ctx context.Context) error {
	lives := live(c.servers)
	if len(lives) == 0 {
		return fmt.Errorf("no node is running")
	}
	var want string
	for _, s := range lives {
		info, err := s.client.ClusterInfo(ctx).Result()
		if err != nil {
			return fmt.Errorf("%s: %w", s.Addr(), err)
		}
		if state := infoField(info, "cluster_state"); state != "ok" {
			return fmt.Errorf("%s: cluster_state:%s", s.Addr(), state)
		}
		nodes, err := s.nodes(ctx)
		if err != nil {
			return err
		}
		for _, o := range lives {
			n := find(nodes, o.Addr())
			switch {
			case n == nil:
				return fmt.Errorf("%s does not know %s", s.Addr(), o.Addr())
			case n.has("fail") || n.has("fail?") || n.has("handshake"):
				return fmt.Errorf("%s sees %s as %s", s.Addr(), o.Addr(), n.flags)
			case !n.has("myself") && n.link != "connected":
				return fmt.Errorf("%s: link to %s %s", s.Addr(), o.Addr(), n.link)
			}
		}
		owners, err := slotOwners(nodes)
		if err != nil {
			return fmt.Errorf("%s: %w", s.Addr(), err)
		}
		for _, r := range owners {
			if o := byAddr(c.servers, r.addr); o == nil || !o.live() {
				return fmt.Errorf("%s: slots %d-%d served by %s, which is not live", s.Addr(), r.lo, r.hi, r.addr)
			}
		}
		if got := fmt.Sprint(owners); want == "" {
			want = got
		} else if got != want {
			return fmt.Errorf("nodes disagree on slots: %s says %s, %s says %s", lives[0].Addr(), want, s.Addr(), got)
		}
		if find(nodes, s.Addr()).has("slave") {
			info, err := s.client.Info(ctx, "replication").Result()
			if err != nil {
				return fmt.Errorf("%s: %w", s.Addr(), err)
			}
			if link := infoField(info, "master_link_status"); link != "up" {
				return fmt.Errorf("%s: replica with master_link_status:%s", s.Addr(), link)
			}
		}
	}
	return nil
}

// PrimaryOf is the primary that serves key's slot now, as all live nodes
// agree (waiting up to 30 s until they do). It may be dead, after a Kill
// and before the failover.
func (c *Cluster) PrimaryOf(t testing.TB, key string) *Server {
	t.Helper()
	var primary *Server
	waitFor(t, "agreement on the primary of "+strconv.Quote(key), c.servers, func(ctx context.Context) error {
		lives := live(c.servers)
		if len(lives) == 0 {
			return fmt.Errorf("no node is running")
		}
		slot, err := lives[0].client.ClusterKeySlot(ctx, key).Result()
		if err != nil {
			return fmt.Errorf("%s: %w", lives[0].Addr(), err)
		}
		primary = nil
		for _, s := range lives {
			nodes, err := s.nodes(ctx)
			if err != nil {
				return err
			}
			owners, err := slotOwners(nodes)
			if err != nil {
				return fmt.Errorf("%s: %w", s.Addr(), err)
			}
			i := slices.IndexFunc(owners, func(r slotRange) bool { return r.lo <= int(slot) && int(slot) <= r.hi })
			o := byAddr(c.servers, owners[i].addr)
			switch {
			case o == nil:
				return fmt.Errorf("%s: slot %d served by %s, which is not ours", s.Addr(), slot, owners[i].addr)
			case primary != nil && o != primary:
				return fmt.Errorf("nodes disagree on slot %d: %s or %s", slot, primary.Addr(), o.Addr())
			}
			primary = o
		}
		return nil
	})
	return primary
}

// Failover has a replica of primary, which must be live, take its place
// with CLUSTER FAILOVER (primary hands over once the replica has caught up:
// no write is lost), waits until the cluster is healthy again with primary
// as the replica, and returns the new primary. To fail over from a primary
// that crashed, Kill it and WaitHealthy.
func (c *Cluster) Failover(t testing.TB, primary *Server) *Server {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	id, err := primary.client.ClusterMyID(ctx).Result()
	if err != nil {
		t.Fatalf("redistopo: Failover: CLUSTER MYID on %s: %v", primary.Addr(), err)
	}
	var replica *Server
	for _, s := range live(c.servers) {
		nodes, err := s.nodes(ctx)
		if err != nil {
			t.Fatalf("redistopo: Failover: %v", err)
		}
		if me := find(nodes, s.Addr()); me.has("slave") && me.primaryID == id {
			replica = s
			break
		}
	}
	if replica == nil {
		t.Fatalf("redistopo: Failover: %s has no live replica", primary.Addr())
	}
	if err := replica.client.ClusterFailover(ctx).Err(); err != nil {
		t.Fatalf("redistopo: CLUSTER FAILOVER on %s: %v", replica.Addr(), err)
	}
	waitFor(t, "healthy cluster with "+replica.Addr()+" as primary", c.servers, func(ctx context.Context) error {
		nodes, err := replica.nodes(ctx)
		if err != nil {
			return err
		}
		if me := find(nodes, replica.Addr()); !me.has("master") {
			return fmt.Errorf("%s is %s", replica.Addr(), me.flags)
		}
		return c.healthy(ctx)
	})
	return replica
}

// clusterNode is a line of CLUSTER NODES.
type clusterNode struct {
	addr      string // "127.0.0.1:port"
	flags     string // "myself,master"
	primaryID string // of a replica
	link      string // "connected" or "disconnected"
	slots     []string
}

func (n *clusterNode) has(flag string) bool {
	return n != nil && slices.Contains(strings.Split(n.flags, ","), flag)
}

// nodes is s's view of the cluster, from CLUSTER NODES: lines of
// "id ip:port@busport flags primary ping pong epoch link slot...".
func (s *Server) nodes(ctx context.Context) ([]clusterNode, error) {
	text, err := s.client.ClusterNodes(ctx).Result()
	if err != nil {
		return nil, fmt.Errorf("%s: CLUSTER NODES: %w", s.Addr(), err)
	}
	var nodes []clusterNode
	for line := range strings.Lines(text) {
		f := strings.Fields(line)
		if len(f) < 8 {
			continue
		}
		addr, _, _ := strings.Cut(f[1], "@")
		nodes = append(nodes, clusterNode{addr: addr, flags: f[2], primaryID: f[3], link: f[7], slots: f[8:]})
	}
	return nodes, nil
}

// find is the node at addr, or nil.
func find(nodes []clusterNode, addr string) *clusterNode {
	for i := range nodes {
		if nodes[i].addr == addr {
			return &nodes[i]
		}
	}
	return nil
}

// slotRange is slots lo to hi, served by the primary at addr.
type slotRange struct {
	lo, hi int
	addr   string
}

func (r slotRange) String() string { return fmt.Sprintf("%d-%d@%s", r.lo, r.hi, r.addr) }

// slotOwners are the slot ranges of a view of the cluster, in order; an
// error if they do not cover every slot once.
func slotOwners(nodes []clusterNode) ([]slotRange, error) {
	var ranges []slotRange
	for _, n := range nodes {
		if !n.has("master") {
			continue
		}
		for _, s := range n.slots {
			if strings.HasPrefix(s, "[") { // a slot being migrated or imported
				continue
			}
			lo, hi, isRange := strings.Cut(s, "-")
			if !isRange {
				hi = lo
			}
			l, err1 := strconv.Atoi(lo)
			h, err2 := strconv.Atoi(hi)
			if err1 != nil || err2 != nil {
				return nil, fmt.Errorf("slots %q of %s", s, n.addr)
			}
			ranges = append(ranges, slotRange{l, h, n.addr})
		}
	}
	slices.SortFunc(ranges, func(a, b slotRange) int { return a.lo - b.lo })
	next := 0
	for _, r := range ranges {
		switch {
		case r.lo > next:
			return nil, fmt.Errorf("slots %d-%d served by no primary", next, r.lo-1)
		case r.lo < next:
			return nil, fmt.Errorf("slot %d served by two primaries", r.lo)
		}
		next = r.hi + 1
	}
	if next != slots {
		return nil, fmt.Errorf("slots %d-%d served by no primary", next, slots-1)
	}
	return ranges, nil
}
