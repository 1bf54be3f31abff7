// Package deviceplugin offers host character devices to pods as
// extended resources, through the kubelet's device plugin API: a launcher
// pod that asks for `devices.strata.io/tun: 1` gets /dev/net/tun (to
// create the VM's tap) without being privileged, the way KubeVirt gets its
// devices. The plugin registers through the kubelet's plugin watcher
// (<kubelet root>/plugins_registry), not the fixed
// /var/lib/kubelet/device-plugins socket, so several nodes on one host (the
// tests') each talk to their own kubelet.
package deviceplugin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"google.golang.org/grpc"
	dpapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"
	regapi "k8s.io/kubelet/pkg/apis/pluginregistration/v1"
)

// ResourceTun is the resource that gives a container /dev/net/tun.
const ResourceTun = "devices.strata.io/tun"

// Device is one host device node shared by up to Capacity containers at a
// time (a device node is not used up: the capacity only bounds how many
// pods the scheduler places on the node).
type Device struct {
	Resource string // extended resource name, e.g. ResourceTun
	Path     string // device node on the host and in the container
	Capacity int
}

// Tun is /dev/net/tun for up to 110 pods (the kubelet's default pod limit).
var Tun = Device{Resource: ResourceTun, Path: "/dev/net/tun", Capacity: 110}

// Serve runs the plugin for dev until ctx is done: it listens on a socket
// in the kubelet's plugin registration dir, and the kubelet connects,
// registers it and lists its devices. It returns nil when ctx ends.
func Serve(ctx context.Context, log *slog.Logger, kubeletRootDir string, dev Device) error {
	if _, err := os.Stat(dev.Path); err != nil {
		return fmt.Errorf("device %s for %s: %w", dev.Path, dev.Resource, err)
	}
	dir := filepath.Join(kubeletRootDir, "plugins_registry")
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	sock := filepath.Join(dir, strings.NewReplacer("/", "_", ".", "_").Replace(dev.Resource)+".sock")
	if err := os.Remove(sock); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	lis, err := net.Listen("unix", sock)
	if err != nil {
		return err
	}
	srv := grpc.NewServer()
	p := &plugin{dev: dev, sock: sock, log: log}
	regapi.RegisterRegistrationServer(srv, p)
	dpapi.RegisterDevicePluginServer(srv, p)
	var wg sync.WaitGroup
	wg.Go(func() {
		<-ctx.Done()
		srv.Stop()
	})
	err = srv.Serve(lis)
	wg.Wait()
	os.Remove(sock)
	if ctx.Err() != nil {
		return nil
	}
	return err
}

type plugin struct {
	regapi.UnimplementedRegistrationServer
	dpapi.UnimplementedDevicePluginServer
	dev  Device
	sock string
	log  *slog.Logger
}

// GetInfo tells the kubelet's plugin watcher what this socket serves.
func (p *plugin) GetInfo(context.Context, *regapi.InfoRequest) (*regapi.PluginInfo, error) {
	return &regapi.PluginInfo{Type: regapi.DevicePlugin, Name: p.dev.Resource, Endpoint: p.sock, SupportedVersions: []string{dpapi.Version}}, nil
}

func (p *plugin) NotifyRegistrationStatus(_ context.Context, st *regapi.RegistrationStatus) (*regapi.RegistrationStatusResponse, error) {
	if !st.PluginRegistered {
		p.log.Warn("the kubelet refused a device plugin", "resource", p.dev.Resource, "error", st.Error)
	}
	return &regapi.RegistrationStatusResponse{}, nil
}

func (p *plugin) GetDevicePluginOptions(context.Context, *dpapi.Empty) (*dpapi.DevicePluginOptions, error) {
	return &dpapi.DevicePluginOptions{}, nil
}

// ListAndWatch sends the devices once; they never change.
func (p *plugin) ListAndWatch(_ *dpapi.Empty, stream grpc.ServerStreamingServer[dpapi.ListAndWatchResponse]) error {
	devs := make([]*dpapi.Device, p.dev.Capacity)
	for i := range devs {
		devs[i] = &dpapi.Device{ID: p.dev.Resource + "-" + strconv.Itoa(i), Health: dpapi.Healthy}
	}
	if err := stream.Send(&dpapi.ListAndWatchResponse{Devices: devs}); err != nil {
		return err
	}
	<-stream.Context().Done()
	return nil
}

// Allocate gives each container the device node, read-write.
func (p *plugin) Allocate(_ context.Context, req *dpapi.AllocateRequest) (*dpapi.AllocateResponse, error) {
	resp := &dpapi.AllocateResponse{}
	for range req.ContainerRequests {
		resp.ContainerResponses = append(resp.ContainerResponses, &dpapi.ContainerAllocateResponse{
			Devices: []*dpapi.DeviceSpec{{ContainerPath: p.dev.Path, HostPath: p.dev.Path, Permissions: "rw"}},
		})
	}
	return resp, nil
}
