package router

import (
	"fmt"
	"net/netip"
	"strings"
	"syscall"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// TableName is the nftables table (family ip) of a router's namespace,
// owned completely by this package.
const TableName = "strata-router"

// Chains of the table: both nat, at the usual NAT priorities.
const (
	chainPrerouting  = "prerouting"  // dstnat
	chainPostrouting = "postrouting" // srcnat
)

// Rule is one NAT rule: it matches the non-zero fields and translates the
// source (snat) or destination (dnat) address to To, or masquerades.
type Rule struct {
	Chain      string
	IIFNot     string       // iifname !=
	OIF        string       // oifname
	OIFNot     string       // oifname !=
	Saddr      netip.Prefix // ip saddr
	Daddr      netip.Prefix // ip daddr
	DNATed     bool         // ct status dnat
	SNAT       bool         // snat; else dnat
	Masquerade bool         // instead of snat/dnat
	To         netip.Addr
}

// Ruleset is the router's table, plain data so tests compare its String.
type Ruleset struct {
	Rules []Rule
}

// Rules is the NAT of st: floating IPs first (DNAT in, SNAT out), so they
// win over the router's general SNAT to its external address.
func Rules(st RouterState) Ruleset {
	var rs Ruleset
	if st.External == nil {
		return rs
	}
	ext := st.External.Name
	for _, f := range st.Floating {
		// Not bound to the external interface: instances on the
		// router's other subnets reach a floating IP too.
		rs.Rules = append(rs.Rules, Rule{Chain: chainPrerouting, Daddr: netip.PrefixFrom(f.Floating, 32), To: f.Fixed})
	}
	for _, f := range st.Floating {
		rs.Rules = append(rs.Rules, Rule{Chain: chainPostrouting, OIF: ext, Saddr: netip.PrefixFrom(f.Fixed, 32), SNAT: true, To: f.Floating})
	}
	if st.SNAT {
		for _, i := range st.Interfaces {
			rs.Rules = append(rs.Rules, Rule{Chain: chainPostrouting, OIF: ext, Saddr: i.Address.Masked(), SNAT: true, To: st.External.Address.Addr()})
		}
	}
	if len(st.Floating) > 0 {
		// An instance reaching a floating IP from inside (hairpin): the
		// answer must come back through the router to be un-DNATed, not
		// straight from a neighbour on the same subnet.
		rs.Rules = append(rs.Rules, Rule{Chain: chainPostrouting, IIFNot: ext, OIFNot: ext, DNATed: true, Masquerade: true})
	}
	return rs
}

// String renders rs in nft's syntax.
func (rs Ruleset) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "table ip %s {\n", TableName)
	for _, c := range []struct{ name, hook, prio string }{
		{chainPrerouting, "prerouting", "dstnat"},
		{chainPostrouting, "postrouting", "srcnat"},
	} {
		fmt.Fprintf(&b, "\tchain %s {\n\t\ttype nat hook %s priority %s; policy accept;\n", c.name, c.hook, c.prio)
		for _, r := range rs.Rules {
			if r.Chain == c.name {
				fmt.Fprintf(&b, "\t\t%s\n", r)
			}
		}
		b.WriteString("\t}\n")
	}
	b.WriteString("}\n")
	return b.String()
}

func (r Rule) String() string {
	var parts []string
	if r.IIFNot != "" {
		parts = append(parts, fmt.Sprintf("iifname != %q", r.IIFNot))
	}
	if r.OIF != "" {
		parts = append(parts, fmt.Sprintf("oifname %q", r.OIF))
	}
	if r.OIFNot != "" {
		parts = append(parts, fmt.Sprintf("oifname != %q", r.OIFNot))
	}
	if r.Saddr.IsValid() {
		parts = append(parts, "ip saddr "+prefixString(r.Saddr))
	}
	if r.Daddr.IsValid() {
		parts = append(parts, "ip daddr "+prefixString(r.Daddr))
	}
	if r.DNATed {
		parts = append(parts, "ct status dnat")
	}
	switch {
	case r.Masquerade:
		parts = append(parts, "masquerade")
	case r.SNAT:
		parts = append(parts, "snat to "+r.To.String())
	default:
		parts = append(parts, "dnat to "+r.To.String())
	}
	return strings.Join(parts, " ")
}

func prefixString(p netip.Prefix) string {
	if p.IsSingleIP() {
		return p.Addr().String()
	}
	return p.String()
}

// ipsDstNAT is conntrack's IPS_DST_NAT status bit.
const ipsDstNAT = 1 << 5

// table and chains of the ruleset as nftables objects.
func (rs Ruleset) objects() (*nftables.Table, map[string]*nftables.Chain) {
	t := &nftables.Table{Name: TableName, Family: nftables.TableFamilyIPv4}
	accept := nftables.ChainPolicyAccept
	return t, map[string]*nftables.Chain{
		chainPrerouting: {Name: chainPrerouting, Table: t, Type: nftables.ChainTypeNAT,
			Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityNATDest, Policy: &accept},
		chainPostrouting: {Name: chainPostrouting, Table: t, Type: nftables.ChainTypeNAT,
			Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource, Policy: &accept},
	}
}

// exprs is r as nftables expressions.
func (r Rule) exprs() ([]expr.Any, error) {
	if !r.Masquerade && !r.To.Is4() {
		return nil, fmt.Errorf("router: rule %q: no IPv4 target", r)
	}
	var e []expr.Any
	for _, m := range []struct {
		key  expr.MetaKey
		name string
		op   expr.CmpOp
	}{
		{expr.MetaKeyIIFNAME, r.IIFNot, expr.CmpOpNeq},
		{expr.MetaKeyOIFNAME, r.OIF, expr.CmpOpEq},
		{expr.MetaKeyOIFNAME, r.OIFNot, expr.CmpOpNeq},
	} {
		if m.name == "" {
			continue
		}
		if len(m.name) >= syscall.IFNAMSIZ {
			return nil, fmt.Errorf("router: bad interface name %q", m.name)
		}
		name := make([]byte, syscall.IFNAMSIZ)
		copy(name, m.name)
		e = append(e, &expr.Meta{Key: m.key, Register: 1}, &expr.Cmp{Op: m.op, Register: 1, Data: name})
	}
	if r.Saddr.IsValid() {
		e = append(e, matchPrefix(12, r.Saddr)...)
	}
	if r.Daddr.IsValid() {
		e = append(e, matchPrefix(16, r.Daddr)...)
	}
	if r.DNATed {
		e = append(e,
			&expr.Ct{Register: 1, Key: expr.CtKeySTATUS},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
				Mask: binaryutil.NativeEndian.PutUint32(ipsDstNAT), Xor: make([]byte, 4)},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)})
	}
	if r.Masquerade {
		return append(e, &expr.Masq{}), nil
	}
	to := r.To.As4()
	nat := &expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1}
	if r.SNAT {
		nat.Type = expr.NATTypeSourceNAT
	}
	return append(e, &expr.Immediate{Register: 1, Data: to[:]}, nat), nil
}

// matchPrefix compares the IPv4 header field at offset (12 saddr, 16
// daddr) with p.
func matchPrefix(offset uint32, p netip.Prefix) []expr.Any {
	addr := p.Masked().Addr().As4()
	load := &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: 4}
	if p.Bits() == 32 {
		return []expr.Any{load, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: addr[:]}}
	}
	mask := make([]byte, 4)
	for i := range p.Bits() {
		mask[i/8] |= 0x80 >> (i % 8)
	}
	return []expr.Any{
		load,
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: mask, Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: addr[:]},
	}
}

// applyRuleset replaces the table with rs in one transaction (add table,
// delete it, recreate it), so packets never see half a ruleset; conntrack
// keeps established flows. opts select the namespace.
func applyRuleset(rs Ruleset, opts ...nftables.ConnOption) error {
	conn, err := nftables.New(opts...)
	if err != nil {
		return fmt.Errorf("router: nftables: %w", err)
	}
	t, chains := rs.objects()
	conn.AddTable(t)
	conn.DelTable(t)
	conn.AddTable(t)
	for _, name := range []string{chainPrerouting, chainPostrouting} {
		conn.AddChain(chains[name])
	}
	for _, r := range rs.Rules {
		e, err := r.exprs()
		if err != nil {
			return err
		}
		c := chains[r.Chain]
		if c == nil {
			return fmt.Errorf("router: rule %q: unknown chain %q", r, r.Chain)
		}
		conn.AddRule(&nftables.Rule{Table: t, Chain: c, Exprs: e})
	}
	if err := conn.Flush(); err != nil {
		return fmt.Errorf("router: install table %s: %w", TableName, err)
	}
	return nil
}
