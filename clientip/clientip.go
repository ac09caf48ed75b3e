// Package clientip finds the address of the client behind an HTTP request:
// the TCP peer, or, when the peer is a trusted proxy, the address that
// proxy reports in X-Forwarded-For (SPEC §3). It is its own package
// because the HTTP API (auth limits) and the hub (the cap on sockets that
// have not authenticated) must apply one rule, and the hub imports nothing
// but chat: the command hands it Resolver.IP as a function.
package clientip

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// Resolver tells the client address of a request. The zero value trusts no
// proxy: the client is always the TCP peer.
type Resolver struct {
	trusted []netip.Prefix
}

// New returns a Resolver that believes X-Forwarded-For from peers in the
// comma-separated CIDRs (a bare address counts as its own /32 or /128).
func New(trustedProxies string) (Resolver, error) {
	var r Resolver
	for _, s := range strings.Split(trustedProxies, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil {
				return Resolver{}, fmt.Errorf("trusted proxies: %q is neither a CIDR nor an address", s)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		r.trusted = append(r.trusted, p.Masked())
	}
	return r, nil
}

func (r Resolver) isTrusted(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range r.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// IP returns the client address of req as a string. When the peer is
// trusted, X-Forwarded-For is read from the right (the hop nearest to us)
// and the first address that is not itself a trusted proxy is the client;
// an entry that is not an address stops the walk there, so a client cannot
// put words in a proxy's mouth. Everything else is the peer.
func (r Resolver) IP(req *http.Request) string {
	peer, err := netip.ParseAddrPort(req.RemoteAddr)
	if err != nil {
		host, _, splitErr := net.SplitHostPort(req.RemoteAddr)
		if splitErr != nil {
			return req.RemoteAddr
		}
		return host
	}
	client := peer.Addr().Unmap()
	if !r.isTrusted(client) {
		return client.String()
	}
	hops := req.Header.Values("X-Forwarded-For")
	for i := len(hops) - 1; i >= 0; i-- {
		parts := strings.Split(hops[i], ",")
		for j := len(parts) - 1; j >= 0; j-- {
			a, err := netip.ParseAddr(strings.TrimSpace(parts[j]))
			if err != nil {
				return client.String()
			}
			client = a.Unmap()
			if !r.isTrusted(client) {
				return client.String()
			}
		}
	}
	return client.String()
}
