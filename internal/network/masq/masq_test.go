package masq

import (
	"bytes"
	"context"
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"

	"github.com/strata-cloud/strata/internal/network/netnstest"
)

func TestBuild(t *testing.T) {
	tests := []struct {
		name    string
		cidr    string
		bridge  string
		wantErr string
	}{
		{name: "ok", cidr: "10.42.0.0/16", bridge: "strata0"},
		{name: "unmasked cidr", cidr: "10.42.7.1/16", bridge: "strata0"},
		{name: "ipv6", cidr: "fd00::/48", bridge: "strata0", wantErr: "IPv4"},
		{name: "no bridge", cidr: "10.42.0.0/16", wantErr: "bridge"},
		{name: "long bridge", cidr: "10.42.0.0/16", bridge: "0123456789abcdef", wantErr: "bridge"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs, err := Build(netip.MustParsePrefix(tt.cidr), tt.bridge)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if rs.Table.Name != TableName || len(rs.Chains) != 2 || len(rs.Rules) != 3 {
				t.Fatalf("unexpected ruleset %+v", rs)
			}
			// the masquerade rule compares saddr == and daddr != the masked cluster network
			masq := rs.Rules[0].Exprs
			src, dst := masq[2].(*expr.Cmp), masq[5].(*expr.Cmp)
			if src.Op != expr.CmpOpEq || dst.Op != expr.CmpOpNeq || !bytes.Equal(src.Data, []byte{10, 42, 0, 0}) ||
				!bytes.Equal(masq[1].(*expr.Bitwise).Mask, []byte{255, 255, 0, 0}) {
				t.Fatalf("unexpected match %+v %+v", src, dst)
			}
			if _, ok := masq[len(masq)-1].(*expr.Masq); !ok {
				t.Fatal("last expression is not masquerade")
			}
		})
	}
}

func TestEnsureInNamespace(t *testing.T) {
	ctx := context.Background()
	n := netnstest.New(t)
	opt := nftables.WithNetNSFd(int(n.Fd()))
	for range 2 { // idempotent
		if err := EnsureMasquerade(ctx, netip.MustParsePrefix("10.42.0.0/16"), "strata0", opt); err != nil {
			t.Fatal(err)
		}
	}
	conn, err := nftables.New(opt)
	if err != nil {
		t.Fatal(err)
	}
	tbl, err := conn.ListTableOfFamily(TableName, nftables.TableFamilyIPv4)
	if err != nil {
		t.Fatal(err)
	}
	chains, err := conn.ListChainsOfTableFamily(nftables.TableFamilyIPv4)
	if err != nil {
		t.Fatal(err)
	}
	rules := 0
	for _, c := range chains {
		if c.Table.Name != TableName {
			continue
		}
		rs, err := conn.GetRules(tbl, c)
		if err != nil {
			t.Fatal(err)
		}
		rules += len(rs)
	}
	if len(chains) != 2 || rules != 3 {
		t.Fatalf("%d chains, %d rules after two Ensure calls", len(chains), rules)
	}
	for range 2 {
		if err := RemoveMasquerade(ctx, opt); err != nil {
			t.Fatal(err)
		}
	}
	if tables, _ := conn.ListTables(); len(tables) != 0 {
		t.Fatalf("tables left: %v", tables)
	}

	netnstest.Do(t, n, func() error {
		if err := EnsureIPForward(); err != nil {
			return err
		}
		b, err := os.ReadFile(ipForwardPath)
		if err != nil || strings.TrimSpace(string(b)) != "1" {
			t.Errorf("ip_forward = %q, %v", b, err)
		}
		return nil
	})
}
