// Package masq owns the node's host-level rules for the pod network: masquerade for pod traffic
// leaving the cluster CIDR, forward-accept for the pod bridge (nftables table "strata", family
// ip), and IPv4 forwarding. The rule set is built by a pure function and installed in one atomic
// nftables transaction.
package masq

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"syscall"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
)

// TableName is the nftables table (family ip) this package owns completely.
const TableName = "strata"

const ipForwardPath = "/proc/sys/net/ipv4/ip_forward"

// Ruleset is the desired content of the table.
type Ruleset struct {
	Table  *nftables.Table
	Chains []*nftables.Chain
	Rules  []*nftables.Rule
}

// Build returns the table for a cluster CIDR and pod bridge:
//
//	table ip strata {
//	  chain postrouting { type nat hook postrouting priority srcnat; policy accept;
//	    ip saddr <cluster> ip daddr != <cluster> oifname != <bridge> masquerade }
//	  chain forward { type filter hook forward priority filter; policy accept;
//	    iifname <bridge> accept
//	    oifname <bridge> accept }
//	}
//
// Pod-to-pod traffic (also across the overlay) keeps its source address; only traffic leaving
// the cluster CIDR is masqueraded. The forward chain documents intent and counts nothing;
// with policy accept it only matters once other rules here start dropping.
func Build(clusterCIDR netip.Prefix, bridge string) (Ruleset, error) {
	if !clusterCIDR.IsValid() || !clusterCIDR.Addr().Is4() {
		return Ruleset{}, fmt.Errorf("masq: cluster CIDR %v must be IPv4", clusterCIDR)
	}
	if bridge == "" || len(bridge) >= syscall.IFNAMSIZ {
		return Ruleset{}, fmt.Errorf("masq: bad bridge name %q", bridge)
	}
	clusterCIDR = clusterCIDR.Masked()
	t := &nftables.Table{Name: TableName, Family: nftables.TableFamilyIPv4}
	accept := nftables.ChainPolicyAccept
	post := &nftables.Chain{Name: "postrouting", Table: t, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource, Policy: &accept}
	fwd := &nftables.Chain{Name: "forward", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &accept}

	var masq []expr.Any
	masq = append(masq, matchIPv4Prefix(12, clusterCIDR, expr.CmpOpEq)...)  // saddr
	masq = append(masq, matchIPv4Prefix(16, clusterCIDR, expr.CmpOpNeq)...) // daddr
	masq = append(masq, matchIfName(expr.MetaKeyOIFNAME, bridge, expr.CmpOpNeq)...)
	masq = append(masq, &expr.Masq{})

	return Ruleset{
		Table:  t,
		Chains: []*nftables.Chain{post, fwd},
		Rules: []*nftables.Rule{
			{Table: t, Chain: post, Exprs: masq},
			{Table: t, Chain: fwd, Exprs: append(matchIfName(expr.MetaKeyIIFNAME, bridge, expr.CmpOpEq), &expr.Verdict{Kind: expr.VerdictAccept})},
			{Table: t, Chain: fwd, Exprs: append(matchIfName(expr.MetaKeyOIFNAME, bridge, expr.CmpOpEq), &expr.Verdict{Kind: expr.VerdictAccept})},
		},
	}, nil
}

// matchIPv4Prefix compares the IPv4 header field at offset (12 saddr, 16 daddr) against p.
func matchIPv4Prefix(offset uint32, p netip.Prefix, op expr.CmpOp) []expr.Any {
	mask := make([]byte, 4)
	for i := range p.Bits() {
		mask[i/8] |= 0x80 >> (i % 8)
	}
	addr := p.Addr().As4()
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: 4},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: mask, Xor: make([]byte, 4)},
		&expr.Cmp{Op: op, Register: 1, Data: addr[:]},
	}
}

func matchIfName(key expr.MetaKey, name string, op expr.CmpOp) []expr.Any {
	data := make([]byte, syscall.IFNAMSIZ)
	copy(data, name)
	return []expr.Any{
		&expr.Meta{Key: key, Register: 1},
		&expr.Cmp{Op: op, Register: 1, Data: data},
	}
}

// EnsureMasquerade installs the Build ruleset, replacing whatever table "strata" held, in one
// transaction (add table, delete it, recreate it with its chains and rules), so it is idempotent
// and never leaves a half-written table. opts select the namespace (nftables.WithNetNSFd).
func EnsureMasquerade(ctx context.Context, clusterCIDR netip.Prefix, bridge string, opts ...nftables.ConnOption) error {
	rs, err := Build(clusterCIDR, bridge)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	conn, err := nftables.New(opts...)
	if err != nil {
		return fmt.Errorf("masq: nftables: %w", err)
	}
	conn.AddTable(rs.Table) // make the delete below valid when the table is absent
	conn.DelTable(rs.Table)
	conn.AddTable(rs.Table)
	for _, c := range rs.Chains {
		conn.AddChain(c)
	}
	for _, r := range rs.Rules {
		conn.AddRule(r)
	}
	if err := conn.Flush(); err != nil {
		return fmt.Errorf("masq: install table %s: %w", TableName, err)
	}
	return nil
}

// RemoveMasquerade deletes the table; a missing table is fine.
func RemoveMasquerade(ctx context.Context, opts ...nftables.ConnOption) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	conn, err := nftables.New(opts...)
	if err != nil {
		return fmt.Errorf("masq: nftables: %w", err)
	}
	t := &nftables.Table{Name: TableName, Family: nftables.TableFamilyIPv4}
	conn.AddTable(t)
	conn.DelTable(t)
	if err := conn.Flush(); err != nil {
		return fmt.Errorf("masq: delete table %s: %w", TableName, err)
	}
	return nil
}

// EnsureIPForward sets net.ipv4.ip_forward=1 for the calling thread's network namespace (in the
// host namespace this is host-wide, which a node needs anyway).
func EnsureIPForward() error {
	b, err := os.ReadFile(ipForwardPath)
	if err == nil && strings.TrimSpace(string(b)) == "1" {
		return nil
	}
	if err := os.WriteFile(ipForwardPath, []byte("1\n"), 0o644); err != nil {
		return fmt.Errorf("masq: enable ip_forward: %w", err)
	}
	return nil
}
