package netnstest

import (
	"bufio"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
)

// ServeLine accepts TCP connections on addr inside n until the test ends and
// answers each with the line "ok".
func ServeLine(t testing.TB, n ns.NetNS, addr netip.AddrPort) {
	t.Helper()
	var ln net.Listener
	Do(t, n, func() (err error) {
		ln, err = net.Listen("tcp4", addr.String())
		return err
	})
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write([]byte("ok\n"))
			c.Close()
		}
	}()
}

// DialLine connects from inside n to a ServeLine listener and reads its line;
// a dropped SYN times out.
func DialLine(n ns.NetNS, addr netip.AddrPort) error {
	return n.Do(func(ns.NetNS) error {
		c, err := net.DialTimeout("tcp4", addr.String(), 700*time.Millisecond)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(time.Second))
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			return err
		}
		if strings.TrimSpace(line) != "ok" {
			return errors.New("unexpected answer " + line)
		}
		return nil
	})
}
