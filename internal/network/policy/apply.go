package policy

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// elementsPerMessage bounds one netlink message of set elements (its attributes have 16-bit
// lengths).
const elementsPerMessage = 512

// Apply replaces the table with rs in one nftables transaction (add table, delete it, recreate
// it with everything in it), so packets see either the old ruleset or the new one, never a
// mix. Conntrack entries survive, so established connections keep flowing. opts select the
// namespace (nftables.WithNetNSFd).
func Apply(ctx context.Context, rs Ruleset, opts ...nftables.ConnOption) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	conn, err := nftables.New(append(opts, socketBuffers(rs))...)
	if err != nil {
		return fmt.Errorf("policy: nftables: %w", err)
	}
	t := &nftables.Table{Name: rs.TableName(), Family: nftables.TableFamilyINet}
	conn.AddTable(t) // makes the delete valid when the table is absent
	conn.DelTable(t)
	conn.AddTable(t)

	chains := map[string]*nftables.Chain{}
	acceptPolicy := nftables.ChainPolicyAccept
	for _, c := range rs.Chains {
		ch := &nftables.Chain{Name: c.Name, Table: t}
		switch c.Hook {
		case "":
		case "forward", "input", "prerouting":
			ch.Type = nftables.ChainTypeFilter
			ch.Priority = nftables.ChainPriorityFilter
			ch.Policy = &acceptPolicy
			switch c.Hook {
			case "forward":
				ch.Hooknum = nftables.ChainHookForward
			case "input":
				ch.Hooknum = nftables.ChainHookInput
			default:
				ch.Hooknum = nftables.ChainHookPrerouting
				ch.Priority = nftables.ChainPriorityRaw // before conntrack picks the zone
			}
		default:
			return fmt.Errorf("policy: chain %s: unknown hook %q", c.Name, c.Hook)
		}
		chains[c.Name] = conn.AddChain(ch)
	}
	sets := map[string]*nftables.Set{}
	for _, s := range rs.Sets {
		ns, elems, err := nftSet(t, s)
		if err != nil {
			return err
		}
		first := elems[:min(len(elems), elementsPerMessage)]
		if err := conn.AddSet(ns, first); err != nil {
			return fmt.Errorf("policy: set %s: %w", s.Name, err)
		}
		for rest := elems[len(first):]; len(rest) > 0; rest = rest[min(len(rest), elementsPerMessage):] {
			if err := conn.SetAddElements(ns, rest[:min(len(rest), elementsPerMessage)]); err != nil {
				return fmt.Errorf("policy: set %s: %w", s.Name, err)
			}
		}
		sets[s.Name] = ns
	}
	for _, c := range rs.Chains {
		for _, r := range c.Rules {
			exprs, err := ruleExprs(r, sets)
			if err != nil {
				return fmt.Errorf("policy: chain %s: %w", c.Name, err)
			}
			nr := &nftables.Rule{Table: t, Chain: chains[c.Name], Exprs: exprs}
			if r.Comment != "" {
				nr.UserData = userdata.AppendString(nil, userdata.TypeComment, r.Comment)
			}
			conn.AddRule(nr)
		}
	}
	if err := conn.Flush(); err != nil {
		return fmt.Errorf("policy: install table %s: %w", t.Name, err)
	}
	return nil
}

// socketBuffers sizes the netlink socket for the transaction: the whole batch goes out in one
// sendmsg, and the kernel queues one acknowledgement (echoing the request) per message before we
// read any, so both buffers must hold about the whole batch — a few MiB at 1,000 rules, beyond
// the default limits. The *FORCE options pass rmem_max/wmem_max with CAP_NET_ADMIN, which
// programming nftables needs anyway; without it the plain options cap at the limits.
func socketBuffers(rs Ruleset) nftables.ConnOption {
	size := 1 << 20
	for _, c := range rs.Chains {
		size += 1024 * (len(c.Rules) + 1)
	}
	for _, s := range rs.Sets {
		size += 256 + 96*(2*len(s.Addrs)+2*len(s.Ports)+len(s.Jumps)+len(s.Zones))
	}
	return nftables.WithSockOptions(func(c *netlink.Conn) error {
		raw, err := c.SyscallConn()
		if err != nil {
			return err
		}
		var serr error
		err = raw.Control(func(fd uintptr) {
			for _, o := range [][2]int{{unix.SO_SNDBUFFORCE, unix.SO_SNDBUF}, {unix.SO_RCVBUFFORCE, unix.SO_RCVBUF}} {
				if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, o[0], size) != nil {
					serr = errors.Join(serr, unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, o[1], size))
				}
			}
		})
		if err != nil {
			return err
		}
		return serr
	})
}

// Remove deletes the table; a missing table is fine.
func Remove(ctx context.Context, opts ...nftables.ConnOption) error {
	return RemoveTable(ctx, TableName, opts...)
}

// RemoveTable deletes an inet table; a missing table is fine.
func RemoveTable(ctx context.Context, name string, opts ...nftables.ConnOption) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	conn, err := nftables.New(opts...)
	if err != nil {
		return fmt.Errorf("policy: nftables: %w", err)
	}
	t := &nftables.Table{Name: name, Family: nftables.TableFamilyINet}
	conn.AddTable(t)
	conn.DelTable(t)
	if err := conn.Flush(); err != nil {
		return fmt.Errorf("policy: delete table %s: %w", name, err)
	}
	return nil
}

// nftSet returns the set and its elements; interval sets take a start element and an
// end-marker one past the end (none when the range runs to the top of the key space).
func nftSet(t *nftables.Table, s Set) (*nftables.Set, []nftables.SetElement, error) {
	ns := &nftables.Set{Table: t, Name: s.Name}
	var elems []nftables.SetElement
	switch s.Kind {
	case AddrSetKind:
		ns.KeyType, ns.Interval = nftables.TypeIPAddr, true
		for _, r := range s.Addrs {
			elems = append(elems, nftables.SetElement{Key: r.First.AsSlice()})
			if end := u32(r.Last); end != ^uint32(0) {
				elems = append(elems, nftables.SetElement{Key: binary.BigEndian.AppendUint32(nil, end+1), IntervalEnd: true})
			}
		}
	case PortSetKind:
		ns.KeyType, ns.Interval = nftables.TypeInetService, true
		for _, r := range s.Ports {
			elems = append(elems, nftables.SetElement{Key: binaryutil.BigEndian.PutUint16(r.First)})
			if r.Last != 65535 {
				elems = append(elems, nftables.SetElement{Key: binaryutil.BigEndian.PutUint16(r.Last + 1), IntervalEnd: true})
			}
		}
	case VerdictMap:
		ns.KeyType, ns.DataType, ns.IsMap = nftables.TypeIPAddr, nftables.TypeVerdict, true
		for _, e := range s.Jumps {
			elems = append(elems, nftables.SetElement{Key: e.Key.First.AsSlice(),
				VerdictData: &expr.Verdict{Kind: expr.VerdictJump, Chain: e.Chain}})
		}
	case LinkVerdictMap:
		ns.KeyType, ns.DataType, ns.IsMap = nftables.MustConcatSetType(nftables.TypeEtherAddr, nftables.TypeIFName), nftables.TypeVerdict, true
		ns.Concatenation = true
		for _, e := range s.Jumps {
			elems = append(elems, nftables.SetElement{Key: linkKey(e.Link),
				VerdictData: &expr.Verdict{Kind: expr.VerdictJump, Chain: e.Chain}})
		}
	case ZoneMap:
		// The zone is a 16-bit host-order value that ct set zone loads from the start of a
		// 32-bit register.
		ns.KeyType, ns.DataType, ns.IsMap = nftables.TypeIFName, nftables.TypeInteger, true
		for _, z := range s.Zones {
			elems = append(elems, nftables.SetElement{Key: ifname(z.Bridge),
				Val: append(binaryutil.NativeEndian.PutUint16(z.Zone), 0, 0)})
		}
	default:
		return nil, nil, fmt.Errorf("policy: set %s: unknown kind %d", s.Name, s.Kind)
	}
	return ns, elems, nil
}

// linkKey is a LinkVerdictMap key: the MAC padded to 8 bytes (registers are 4-byte words),
// then the bridge name as a 16-byte ifname.
func linkKey(l *Link) []byte {
	k := make([]byte, 8, 8+unix.IFNAMSIZ)
	copy(k, l.MAC)
	return append(k, ifname(l.Bridge)...)
}

func ifname(name string) []byte {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, name)
	return b
}

// Registers of a concatenated key: 32-bit ones, NFT_REG32_00 onwards.
const (
	regConcat0 = 8  // the MAC, 2 words
	regConcat1 = 10 // the interface name, 4 words
)

// Offsets in the IPv4 header.
const (
	offSaddr = 12
	offDaddr = 16
)

func ruleExprs(r Rule, sets map[string]*nftables.Set) ([]expr.Any, error) {
	var e []expr.Any
	lookup := func(name string, dreg bool) (*expr.Lookup, error) {
		s, ok := sets[name]
		if !ok {
			return nil, fmt.Errorf("no set %s", name)
		}
		return &expr.Lookup{SourceRegister: 1, SetName: s.Name, SetID: s.ID, IsDestRegSet: dreg}, nil
	}
	if r.SetZone != "" {
		s, ok := sets[r.SetZone]
		if !ok {
			return nil, fmt.Errorf("no set %s", r.SetZone)
		}
		return []expr.Any{
			&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
			&expr.Lookup{SourceRegister: 1, DestRegister: 1, IsDestRegSet: true, SetName: s.Name, SetID: s.ID},
			&expr.Ct{Key: expr.CtKeyZONE, Register: 1, SourceRegister: true},
		}, nil
	}
	if m := r.LinkVMap; m != nil {
		s, ok := sets[m.Set]
		if !ok {
			return nil, fmt.Errorf("no set %s", m.Set)
		}
		macOff, dev := uint32(6), expr.MetaKeyIIFNAME
		if m.Field == "daddr" {
			macOff, dev = 0, expr.MetaKeyOIFNAME
		}
		return []expr.Any{
			&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.NFPROTO_IPV4}},
			&expr.Meta{Key: expr.MetaKeyIIFTYPE, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.NativeEndian.PutUint16(unix.ARPHRD_ETHER)},
			&expr.Payload{DestRegister: regConcat0, Base: expr.PayloadBaseLLHeader, Offset: macOff, Len: 6},
			&expr.Meta{Key: dev, Register: regConcat1},
			&expr.Lookup{SourceRegister: regConcat0, SetName: s.Name, SetID: s.ID, IsDestRegSet: true},
		}, nil
	}
	if r.Established {
		e = append(e,
			&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
				Mask: binaryutil.NativeEndian.PutUint32(expr.CtStateBitESTABLISHED | expr.CtStateBitRELATED),
				Xor:  binaryutil.NativeEndian.PutUint32(0)},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(0)})
	}
	for _, m := range []*AddrMatch{r.VMap, r.Addr} {
		if m == nil {
			continue
		}
		off := uint32(offSaddr)
		if m.Field == "daddr" {
			off = offDaddr
		}
		e = append(e,
			&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.NFPROTO_IPV4}},
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: 4})
		switch {
		case m.Set != "":
			l, err := lookup(m.Set, m == r.VMap)
			if err != nil {
				return nil, err
			}
			e = append(e, l)
		case m.Range.First == m.Range.Last:
			e = append(e, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: m.Range.First.AsSlice()})
		default:
			e = append(e, &expr.Range{Op: expr.CmpOpEq, Register: 1, FromData: m.Range.First.AsSlice(), ToData: m.Range.Last.AsSlice()})
		}
	}
	if r.VMap != nil {
		return e, nil // the map's element is the verdict
	}
	if r.Proto != 0 {
		e = append(e,
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{r.Proto}})
	}
	if m := r.DPort; m != nil {
		if r.Proto == 0 {
			return nil, fmt.Errorf("port match without a protocol")
		}
		e = append(e, &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2})
		switch {
		case m.Set != "":
			l, err := lookup(m.Set, false)
			if err != nil {
				return nil, err
			}
			e = append(e, l)
		case m.First == m.Last:
			e = append(e, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(m.First)})
		default:
			e = append(e, &expr.Range{Op: expr.CmpOpEq, Register: 1,
				FromData: binaryutil.BigEndian.PutUint16(m.First), ToData: binaryutil.BigEndian.PutUint16(m.Last)})
		}
	}
	if m := r.ICMP; m != nil {
		if r.Proto != ProtoICMP {
			return nil, fmt.Errorf("icmp match without protocol icmp")
		}
		if m.First != 0 || m.Last != 255 {
			e = append(e, &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 1})
			if m.First == m.Last {
				e = append(e, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{m.First}})
			} else {
				e = append(e, &expr.Range{Op: expr.CmpOpEq, Register: 1, FromData: []byte{m.First}, ToData: []byte{m.Last}})
			}
		}
		if m.HasCode {
			e = append(e,
				&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 1, Len: 1},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{m.Code}})
		}
	}
	var v expr.Verdict
	switch r.Verdict.Kind {
	case "accept":
		v.Kind = expr.VerdictAccept
	case "drop":
		v.Kind = expr.VerdictDrop
	case "return":
		v.Kind = expr.VerdictReturn
	case "jump":
		v.Kind, v.Chain = expr.VerdictJump, r.Verdict.Chain
	default:
		return nil, fmt.Errorf("unknown verdict %q", r.Verdict.Kind)
	}
	return append(e, &v), nil
}
