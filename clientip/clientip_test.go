package clientip_test

import (
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-chat/switchboard/clientip"
)

func TestResolver(t *testing.T) {
	t.Parallel()
	trusting, err := clientip.New("10.0.0.0/8, 192.0.2.7, ::1")
	require.NoError(t, err)
	for _, tt := range []struct {
		name     string
		resolver clientip.Resolver
		peer     string
		xff      []string
		want     string
	}{
		{name: "NoProxyTrusted", resolver: clientip.Resolver{}, peer: "10.1.2.3:5000", xff: []string{"203.0.113.9"}, want: "10.1.2.3"},
		{name: "UntrustedPeerIgnoresHeader", resolver: trusting, peer: "198.51.100.4:5000", xff: []string{"203.0.113.9"}, want: "198.51.100.4"},
		{name: "TrustedPeer", resolver: trusting, peer: "10.1.2.3:5000", xff: []string{"203.0.113.9"}, want: "203.0.113.9"},
		{name: "TrustedPeerNoHeader", resolver: trusting, peer: "10.1.2.3:5000", want: "10.1.2.3"},
		{name: "ChainOfProxies", resolver: trusting, peer: "10.1.2.3:5000", xff: []string{"203.0.113.9, 192.0.2.7, 10.9.9.9"}, want: "203.0.113.9"},
		{name: "ClientForgesLeftmost", resolver: trusting, peer: "10.1.2.3:5000", xff: []string{"1.1.1.1, 203.0.113.9"}, want: "203.0.113.9"},
		{name: "SeveralHeaders", resolver: trusting, peer: "10.1.2.3:5000", xff: []string{"1.1.1.1", "203.0.113.9"}, want: "203.0.113.9"},
		{name: "GarbageStopsTheWalk", resolver: trusting, peer: "10.1.2.3:5000", xff: []string{"1.1.1.1, not-an-ip"}, want: "10.1.2.3"},
		{name: "AllTrusted", resolver: trusting, peer: "10.1.2.3:5000", xff: []string{"10.4.4.4"}, want: "10.4.4.4"},
		{name: "IPv6Loopback", resolver: trusting, peer: "[::1]:5000", xff: []string{"2001:db8::5"}, want: "2001:db8::5"},
		{name: "MappedIPv4", resolver: trusting, peer: "[::ffff:10.1.2.3]:5000", xff: []string{"203.0.113.9"}, want: "203.0.113.9"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			req := httptest.NewRequest("GET", "/", nil)
			req.RemoteAddr = tt.peer
			for _, v := range tt.xff {
				req.Header.Add("X-Forwarded-For", v)
			}
			require.Equal(t, tt.want, tt.resolver.IP(req))
		})
	}
}

func TestNewRefusesGarbage(t *testing.T) {
	t.Parallel()
	_, err := clientip.New("10.0.0.0/8,nonsense")
	require.ErrorContains(t, err, "nonsense")
	r, err := clientip.New("")
	require.NoError(t, err)
	require.Equal(t, clientip.Resolver{}, r)
}
