package dns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	mdns "github.com/miekg/dns"
)

// Resolver answers the queries the cluster does not own. Forwarder is the real one; tests may
// inject others to provoke faults.
type Resolver interface {
	Exchange(ctx context.Context, m *mdns.Msg) (*mdns.Msg, error)
}

// Forwarder sends queries to upstream servers in order over UDP, retrying over TCP when an answer
// comes back truncated, and moves to the next server when one fails.
type Forwarder struct {
	// Servers are "host:port" addresses.
	Servers []string
	// Timeout bounds each exchange with one server.
	Timeout time.Duration
}

// Exchange implements Resolver. The answer keeps the query's ID.
func (f *Forwarder) Exchange(ctx context.Context, m *mdns.Msg) (*mdns.Msg, error) {
	if len(f.Servers) == 0 {
		return nil, errors.New("no upstream DNS servers")
	}
	q := m.Copy()
	var errs []error
	var fallback *mdns.Msg
	for _, srv := range f.Servers {
		if err := ctx.Err(); err != nil {
			errs = append(errs, err)
			break
		}
		q.Id = mdns.Id() // a fresh ID per upstream exchange
		resp, err := f.exchange(ctx, q, srv)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		resp.Id = m.Id
		// A server that cannot answer is worth skipping while others might.
		if resp.Rcode == mdns.RcodeServerFailure || resp.Rcode == mdns.RcodeRefused {
			if fallback == nil {
				fallback = resp
			}
			continue
		}
		return resp, nil
	}
	if fallback != nil {
		return fallback, nil
	}
	return nil, fmt.Errorf("forward %s: %w", questionString(m), errors.Join(errs...))
}

func (f *Forwarder) exchange(ctx context.Context, q *mdns.Msg, server string) (*mdns.Msg, error) {
	timeout := f.Timeout
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
	c := &mdns.Client{Net: "udp", Timeout: timeout}
	resp, _, err := c.ExchangeContext(ctx, q, server)
	if err == nil && resp.Truncated {
		c.Net = "tcp"
		resp, _, err = c.ExchangeContext(ctx, q, server)
	}
	if err != nil {
		return nil, fmt.Errorf("upstream %s: %w", server, err)
	}
	return resp, nil
}

// UpstreamsFromResolvConf returns the nameservers of a resolv.conf file as "host:port",
// leaving out loopback addresses (stub resolvers that pods cannot reach and that may forward
// back here) and the addresses in exclude (the cluster DNS itself).
func UpstreamsFromResolvConf(path string, exclude []netip.Addr) ([]string, error) {
	cc, err := mdns.ClientConfigFromFile(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	port := cc.Port
	if port == "" {
		port = "53"
	}
	var out []string
	for _, s := range cc.Servers {
		a, err := netip.ParseAddr(s)
		if err != nil {
			continue
		}
		a = a.Unmap()
		if a.IsLoopback() || a.IsUnspecified() || containsAddr(exclude, a) {
			continue
		}
		out = append(out, net.JoinHostPort(a.String(), port))
	}
	return out, nil
}

func containsAddr(list []netip.Addr, a netip.Addr) bool {
	for _, x := range list {
		if x.Unmap() == a.WithZone("") {
			return true
		}
	}
	return false
}

func questionString(m *mdns.Msg) string {
	if len(m.Question) == 0 {
		return "empty query"
	}
	q := m.Question[0]
	return q.Name + " " + mdns.TypeToString[q.Qtype]
}
