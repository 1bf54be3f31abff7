package launcher

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"syscall"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"

	"github.com/strata-cloud/strata/internal/vm/dhcp"
	"github.com/strata-cloud/strata/internal/vm/metadata"
)

// The metadata service (package metadata) for a pod-bound NIC's guest. The
// launcher serves one VM, so "only the VM's own port" holds by
// construction: the bridge holds 169.254.169.254 (podnet.go), the guest's
// lease routes it there on the link (DHCP option 121), and the requests
// never leave the pod. Two more things keep it that way:
//
//   - a route to the guest's address on the bridge, so the answers find
//     the guest (the pod interface lost its address and routes to it);
//   - nftables (table bridge LinkLocalTable): nothing that enters the
//     bridge through the pod interface reaches the launcher, and the
//     guest's ARP requests for the bridge's addresses do not leave through
//     it. Every launcher bridge holds the same link-local addresses, and
//     the node's bridge floods ARP to every pod: without these rules
//     another VM's launcher could answer this guest, or this one answer
//     other guests.
//
// The handler also refuses requests from any source but the guest.

// LinkLocalTable is the nftables table (family bridge) in the pod's
// network namespace that keeps the bridge's link-local addresses inside.
const LinkLocalTable = "strata-launcher"

// startMetadata serves the metadata of the VM behind lease on bridge br
// (which plugs in podIf) and returns lease with the route to the service.
// Only the first pod-bound NIC gets it. Without an instance to describe
// (no cloudInit in the spec) or when the pod's network cannot be set up
// for it, the VM runs without the service and lease is returned unchanged.
func (r *runner) startMetadata(ctx context.Context, br, podIf string, lease dhcp.Lease) dhcp.Lease {
	ci := r.cfg.Spec.CloudInit
	if ci == nil {
		return lease
	}
	for _, n := range r.cfg.Spec.NICs {
		if n.PodInterface != "" && n.PodInterface != podIf {
			return lease // not the first
		}
		if n.PodInterface == podIf {
			break
		}
	}
	inst := metadata.Instance{
		UUID: ci.InstanceID, Name: r.cfg.Spec.Name, Hostname: ci.Hostname, PublicKeys: ci.PublicKeys,
		GuestAddr: lease.Addr.Addr(), MAC: lease.MAC.String(), MTU: lease.MTU, DNS: lease.DNS,
	}
	if ci.UserData != "" {
		inst.UserData = []byte(ci.UserData)
	}
	h, err := metadata.NewHandler(inst, r.logf)
	if err == nil {
		err = isolateLinkLocal(br, podIf, inst.GuestAddr)
	}
	var l net.Listener
	if err == nil {
		l, err = metadata.Listen()
	}
	if err != nil {
		r.logf("metadata service off: %v", err)
		return lease
	}
	go func() {
		if err := metadata.Serve(ctx, l, h); err != nil {
			r.logf("%v", err)
		}
	}()
	r.logf("metadata service on http://%s/ for %s", metadata.Addr, inst.GuestAddr)
	lease.Routes = append(lease.Routes, dhcp.Route{Dst: netip.PrefixFrom(metadata.Addr, 32)})
	return lease
}

// isolateLinkLocal routes guest over br and installs LinkLocalTable.
func isolateLinkLocal(br, podIf string, guest netip.Addr) error {
	link, err := netlink.LinkByName(br)
	if err != nil {
		return err
	}
	route := &netlink.Route{LinkIndex: link.Attrs().Index, Scope: netlink.SCOPE_LINK,
		Dst: &net.IPNet{IP: guest.AsSlice(), Mask: net.CIDRMask(32, 32)}}
	if err := netlink.RouteReplace(route); err != nil {
		return fmt.Errorf("route to the guest %s on %s: %w", guest, br, err)
	}
	conn, err := nftables.New()
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	t := &nftables.Table{Name: LinkLocalTable, Family: nftables.TableFamilyBridge}
	conn.AddTable(t) // make the delete valid when the table is absent
	conn.DelTable(t)
	conn.AddTable(t)
	chains, rules := linkLocalRules(t, podIf)
	for _, c := range chains {
		conn.AddChain(c)
	}
	for _, r := range rules {
		conn.AddRule(r)
	}
	if err := conn.Flush(); err != nil {
		return fmt.Errorf("nftables table bridge %s: %w", LinkLocalTable, err)
	}
	return nil
}

// linkLocalRules are
//
//	table bridge strata-launcher {
//	  chain input { type filter hook input priority filter; policy accept;
//	    iifname <podIf> drop }
//	  chain forward { type filter hook forward priority filter; policy accept;
//	    oifname <podIf> ether type arp arp daddr ip 169.254.169.254 drop
//	    oifname <podIf> ether type arp arp daddr ip 169.254.75.10 drop }
//	}
func linkLocalRules(t *nftables.Table, podIf string) ([]*nftables.Chain, []*nftables.Rule) {
	accept := nftables.ChainPolicyAccept
	in := &nftables.Chain{Name: "input", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter, Policy: &accept}
	fwd := &nftables.Chain{Name: "forward", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &accept}
	drop := &expr.Verdict{Kind: expr.VerdictDrop}
	rules := []*nftables.Rule{{Table: t, Chain: in, Exprs: append(ifName(expr.MetaKeyIIFNAME, podIf), drop)}}
	for _, a := range []netip.Addr{metadata.Addr, DHCPServerAddr} {
		a4 := a.As4()
		e := ifName(expr.MetaKeyOIFNAME, podIf)
		e = append(e,
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseLLHeader, Offset: 12, Len: 2},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binary.BigEndian.AppendUint16(nil, syscall.ETH_P_ARP)},
			// The target protocol address of an Ethernet/IPv4 ARP message.
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 24, Len: 4},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: a4[:]},
			drop)
		rules = append(rules, &nftables.Rule{Table: t, Chain: fwd, Exprs: e})
	}
	return []*nftables.Chain{in, fwd}, rules
}

func ifName(key expr.MetaKey, name string) []expr.Any {
	data := make([]byte, syscall.IFNAMSIZ)
	copy(data, name)
	return []expr.Any{&expr.Meta{Key: key, Register: 1}, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: data}}
}
