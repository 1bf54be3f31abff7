package cni

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"

	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
)

// LoopbackType is the plugin containerd's CRI runs in every pod sandbox
// before the pod network, to bring up "lo". The strata binary serves it
// too, so a node needs no CNI plugin package.
const LoopbackType = "loopback"

// LoopbackMain implements the loopback plugin for one invocation.
func LoopbackMain(stdin io.Reader, getenv func(string) string, stdout io.Writer) error {
	cmd := getenv("CNI_COMMAND")
	if cmd == "VERSION" {
		return supportedVersions.Encode(stdout)
	}
	data, err := io.ReadAll(stdin)
	if err != nil {
		return writeError(stdout, types.NewError(types.ErrIOFailure, "read stdin", err.Error()))
	}
	confVersion, err := (&version.ConfigDecoder{}).Decode(data)
	if err != nil {
		return writeError(stdout, types.NewError(types.ErrDecodingFailure, err.Error(), ""))
	}
	if cmd != "ADD" {
		return nil // DEL, CHECK, GC, STATUS: nothing to undo or check
	}
	netns := getenv("CNI_NETNS")
	err = ns.WithNetNSPath(netns, func(ns.NetNS) error {
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return err
		}
		return netlink.LinkSetUp(lo)
	})
	if err != nil {
		return writeError(stdout, types.NewError(types.ErrInternal, fmt.Sprintf("bring up lo in %s", netns), err.Error()))
	}
	zero := 0
	res := &current.Result{
		CNIVersion: current.ImplementedSpecVersion,
		Interfaces: []*current.Interface{{Name: "lo", Sandbox: netns}},
		IPs: []*current.IPConfig{
			{Interface: &zero, Address: net.IPNet{IP: net.IPv4(127, 0, 0, 1), Mask: net.CIDRMask(8, 32)}},
		},
	}
	return printResult(res, confVersion, stdout)
}

func writeError(out io.Writer, te *types.Error) error {
	b, _ := json.MarshalIndent(te, "", "    ")
	_, _ = out.Write(append(b, '\n'))
	return te
}

// MultiCall runs the plugin the executable was invoked as (argv[0]:
// PluginType or LoopbackType) and returns the exit code, or false when
// argv[0] names neither.
func MultiCall(args []string) (int, bool) {
	switch filepath.Base(args[0]) {
	case LoopbackType:
		if LoopbackMain(os.Stdin, os.Getenv, os.Stdout) != nil {
			return 1, true
		}
		return 0, true
	case PluginType:
		if err := Main(context.Background(), os.Stdin, os.Getenv, os.Stdout, os.Stderr); err != nil {
			return 1, true
		}
		return 0, true
	}
	return 0, false
}
