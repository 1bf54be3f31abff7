package main

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	tasksapi "github.com/containerd/containerd/api/services/tasks/v1"
	runcoptions "github.com/containerd/containerd/api/types/runc/options"
	tasktypes "github.com/containerd/containerd/api/types/task"
	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/oci"

	"github.com/strata-cloud/strata/internal/testenv"
)

const (
	// criNamespace is where the node's CRI plugin keeps images, pods' containers and tasks; the
	// reference containers run beside them, from the image the bench imported there.
	criNamespace = "k8s.io"
	snapshotter  = "overlayfs"
	ctrTimeout   = 2 * time.Minute
)

// ctrBench starts the bench image through the embedded containerd's own
// client, as `ctr run -d` would: the reference for what the pod path adds
// (sandbox, CNI, kubelet, API round trips).
type ctrBench struct {
	c        *containerd.Client
	img      containerd.Image
	runc     string
	runcRoot string
}

// ctrResult is one reference round: each container's time from the start
// of NewContainer to the return of task Start, in start order.
type ctrResult struct {
	n     int
	start []time.Duration
}

func newCtrBench(ctx context.Context, srv *testenv.Server) (*ctrBench, error) {
	runc, err := exec.LookPath("runc")
	if err != nil {
		return nil, err
	}
	c, err := containerd.New(filepath.Join(srv.ContainerdDir(), "containerd.sock"), containerd.WithDefaultNamespace(criNamespace))
	if err != nil {
		return nil, fmt.Errorf("containerd client: %w", err)
	}
	img, err := c.GetImage(ctx, benchImage)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("image %s in containerd: %w", benchImage, err)
	}
	// The node's private runc root, as its CRI runtime uses, so that the
	// server's cleanup finds anything left under its data dir.
	return &ctrBench{c: c, img: img, runc: runc, runcRoot: filepath.Join(srv.ContainerdDir(), "runc")}, nil
}

func (b *ctrBench) close() { b.c.Close() }

// round starts n containers at once, then removes them all.
func (b *ctrBench) round(ctx context.Context, n int) (ctrResult, error) {
	ctx, cancel := context.WithTimeout(ctx, ctrTimeout)
	defer cancel()
	res := ctrResult{n: n, start: make([]time.Duration, n)}
	ctrs := make([]containerd.Container, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := fmt.Sprintf("strata-bench-ctr-%d-%d", n, i)
			t0 := time.Now()
			ctrs[i], errs[i] = b.run(ctx, id)
			res.start[i] = time.Since(t0)
		}()
	}
	wg.Wait()
	for i := range n {
		if ctrs[i] != nil {
			errs = append(errs, b.remove(ctx, ctrs[i]))
		}
	}
	return res, errors.Join(errs...)
}

// run creates the container (with its own snapshot of the image) and
// starts its task.
func (b *ctrBench) run(ctx context.Context, id string) (containerd.Container, error) {
	c, err := b.c.NewContainer(ctx, id,
		containerd.WithImage(b.img),
		containerd.WithSnapshotter(snapshotter),
		containerd.WithNewSnapshot(id, b.img),
		containerd.WithRuntime("io.containerd.runc.v2", &runcoptions.Options{BinaryName: b.runc, Root: b.runcRoot}),
		containerd.WithNewSpec(oci.WithImageConfig(b.img), oci.WithProcessArgs(sleeper...)),
	)
	if err != nil {
		return nil, fmt.Errorf("container %s: %w", id, err)
	}
	task, err := c.NewTask(ctx, cio.NullIO)
	if err != nil {
		return c, fmt.Errorf("task %s: %w", id, err)
	}
	if err := task.Start(ctx); err != nil {
		return c, fmt.Errorf("start %s: %w", id, err)
	}
	return c, nil
}

func (b *ctrBench) remove(ctx context.Context, c containerd.Container) error {
	if task, err := c.Task(ctx, nil); err == nil {
		exited, werr := task.Wait(ctx)
		if err := task.Kill(ctx, syscall.SIGKILL); err == nil && werr == nil {
			<-exited
		}
		if _, err := task.Delete(ctx, containerd.WithProcessKill); err != nil {
			return fmt.Errorf("delete task %s: %w", c.ID(), err)
		}
	}
	if err := c.Delete(ctx, containerd.WithSnapshotCleanup); err != nil {
		return fmt.Errorf("delete container %s: %w", c.ID(), err)
	}
	return nil
}

// waitNoTasks waits until no task runs in the CRI namespace: the kubelet has
// stopped the containers and sandboxes of deleted pods.
func (b *ctrBench) waitNoTasks(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		resp, err := b.c.TaskService().List(ctx, &tasksapi.ListTasksRequest{})
		if err != nil {
			return fmt.Errorf("list containerd tasks: %w", err)
		}
		running := 0
		for _, t := range resp.Tasks {
			if t.Status == tasktypes.Status_RUNNING || t.Status == tasktypes.Status_CREATED || t.Status == tasktypes.Status_PAUSED {
				running++
			}
		}
		if running == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d containerd tasks still run %s after their pods were deleted", running, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// waitNoContainers waits until the CRI namespace holds no containers (the
// kubelet has removed those of deleted pods, sandboxes included).
func (b *ctrBench) waitNoContainers(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		cs, err := b.c.Containers(ctx)
		if err != nil {
			return fmt.Errorf("list containerd containers: %w", err)
		}
		if len(cs) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d containers still in containerd %s after their pods were deleted", len(cs), timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}
