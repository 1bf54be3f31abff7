package vmhandler

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	computev1alpha1 "github.com/strata-cloud/strata/api/compute/v1alpha1"
	"github.com/strata-cloud/strata/internal/agent/containerd"
	"github.com/strata-cloud/strata/internal/controller/virtualmachine"
	"github.com/strata-cloud/strata/internal/vm/launcher"
)

// The migration tunnel. Launchers have no network of their own (their
// pod's address belongs to the guest), so a migration's two streams (the
// memory and the disks' NBD) run from a unix socket the source node's
// agent makes inside the source launcher's container, over TCP between the
// two agents, to the target launcher's unix sockets. Each TCP connection
// starts with one header line naming the migration (namespace, name, UID)
// and the target socket; the target's agent serves it only while that
// migration is in progress towards a pod on its node.

// TunnelPort is where every agent accepts migration streams (on its node IP).
const TunnelPort = 10251

const tunnelMagic = "STRATA-MIGRATE/1"

// tunnelHeader is a connection's first line.
type tunnelHeader struct {
	Namespace, Name, UID, Socket string
}

func (h tunnelHeader) String() string {
	return strings.Join([]string{tunnelMagic, h.Namespace, h.Name, h.UID, h.Socket}, " ") + "\n"
}

func parseHeader(line string) (tunnelHeader, error) {
	f := strings.Fields(line)
	if len(f) != 5 || f[0] != tunnelMagic {
		return tunnelHeader{}, errors.New("not a migration stream")
	}
	h := tunnelHeader{Namespace: f[1], Name: f[2], UID: f[3], Socket: f[4]}
	if h.Socket != launcher.MigrateInSocket && h.Socket != launcher.NBDSocket {
		return h, fmt.Errorf("socket %q is not a migration socket", h.Socket)
	}
	return h, nil
}

// containerRunDir is a launcher container's run directory seen from the host.
func containerRunDir(pid int) string {
	return filepath.Join(fmt.Sprintf("/proc/%d/root", pid), launcher.DefaultRunDir)
}

// serveTunnel accepts migration streams until ctx ends.
func (h *Handler) serveTunnel(ctx context.Context) error {
	lis, err := (&net.ListenConfig{}).Listen(ctx, "tcp", net.JoinHostPort(h.cfg.NodeIP.String(), fmt.Sprint(TunnelPort)))
	if err != nil {
		return fmt.Errorf("migration tunnel: %w", err)
	}
	go func() {
		<-ctx.Done()
		lis.Close()
	}()
	for {
		conn, err := lis.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		go func() {
			if err := h.serveStream(ctx, conn); err != nil {
				h.cfg.Logger.Warn("migration stream refused", "from", conn.RemoteAddr(), "err", err)
			}
		}()
	}
}

// serveStream checks one stream's header against its migration and joins
// it to the target launcher's socket.
func (h *Handler) serveStream(ctx context.Context, conn net.Conn) error {
	defer conn.Close()
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReaderSize(conn, 512)
	line, err := br.ReadString('\n')
	if err != nil {
		return err
	}
	conn.SetReadDeadline(time.Time{})
	hdr, err := parseHeader(line)
	if err != nil {
		return err
	}
	m, err := h.getMigration(ctx, hdr.Namespace, hdr.Name)
	if err != nil {
		return err
	}
	switch {
	case string(m.UID) != hdr.UID:
		return fmt.Errorf("migration %s/%s: wrong UID", hdr.Namespace, hdr.Name)
	case m.Status.TargetNode != h.cfg.NodeName:
		return fmt.Errorf("migration %s/%s does not go to this node", hdr.Namespace, hdr.Name)
	case m.Status.Phase != computev1alpha1.MigrationTargetReady && m.Status.Phase != computev1alpha1.MigrationRunning:
		return fmt.Errorf("migration %s/%s is %s", hdr.Namespace, hdr.Name, m.Status.Phase)
	}
	// The target launcher may still be starting QEMU: give it time to
	// open its sockets.
	var target net.Conn
	deadline := time.Now().Add(30 * time.Second)
	for {
		pid, err := h.launcherPID(ctx, m.Namespace, m.Status.TargetPod)
		if err == nil {
			var d net.Dialer
			if target, err = d.DialContext(ctx, "unix", filepath.Join(containerRunDir(pid), hdr.Socket)); err == nil {
				break
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("target launcher socket %s: %w", hdr.Socket, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	defer target.Close()
	splice(conn, br, target)
	return nil
}

// launcherPID is the host PID of a local launcher pod's launcher.
func (h *Handler) launcherPID(ctx context.Context, ns, pod string) (int, error) {
	p, err := h.cfg.Client.CoreV1().Pods(ns).Get(ctx, pod, metav1.GetOptions{})
	if err != nil {
		return 0, err
	}
	if p.Spec.NodeName != h.cfg.NodeName {
		return 0, fmt.Errorf("pod %s/%s is not on this node", ns, pod)
	}
	return containerd.ContainerPID(ctx, h.cfg.ContainerdSocket, string(p.UID), virtualmachine.LauncherContainer)
}

// splice copies both ways until either side ends (r reads conn, which may
// hold buffered bytes).
func splice(conn net.Conn, r io.Reader, other net.Conn) {
	var wg sync.WaitGroup
	wg.Go(func() {
		io.Copy(other, r)
		closeWrite(other)
	})
	wg.Go(func() {
		io.Copy(conn, other)
		closeWrite(conn)
	})
	wg.Wait()
}

func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
		return
	}
	c.Close()
}

// outbound makes a unix socket inside the source launcher's container
// (runDir is its run directory seen from the host) whose connections are
// tunnelled to the target node's agent with header hdr.
func outbound(ctx context.Context, runDir, name, targetAddr string, hdr tunnelHeader) (io.Closer, error) {
	path := filepath.Join(runDir, name)
	os.Remove(path)
	lis, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("tunnel socket in the source launcher: %w", err)
	}
	go func() {
		for {
			conn, err := lis.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				var d net.Dialer
				dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				remote, err := d.DialContext(dctx, "tcp", targetAddr)
				cancel()
				if err != nil {
					return
				}
				defer remote.Close()
				if _, err := io.WriteString(remote, hdr.String()); err != nil {
					return
				}
				splice(conn, conn, remote)
			}()
		}
	}()
	return lis, nil
}
