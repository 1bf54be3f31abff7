package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/remotecommand"

	"github.com/strata-cloud/strata/internal/controller/virtualmachine"
	"github.com/strata-cloud/strata/internal/vm/launcher"
	"github.com/strata-cloud/strata/internal/vm/launcherimage"
)

// annotationPaused marks a launcher pod whose guest `strata vm pause`
// paused. It is on the pod, not the VM, so it cannot outlive the QEMU it
// describes: a new launcher pod starts unpaused and unmarked.
const annotationPaused = virtualmachine.AnnotationPaused

// addVMPauseCmds adds `strata vm pause` and `strata vm unpause` to vm.
func addVMPauseCmds(vm *cobra.Command) {
	for _, c := range []struct {
		use, short, qmpCommand, want string
	}{
		{"pause", "Pause a running VM: its virtual CPUs stop (QMP stop); memory, devices and network state stay as they are", "stop", "paused"},
		{"unpause", "Resume a paused VM's virtual CPUs (QMP cont)", "cont", "running"},
	} {
		var target vmTarget
		cmd := &cobra.Command{
			Use: c.use + " NAME", Short: c.short, Args: cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				return setVMRunState(cmd.Context(), cmd.OutOrStdout(), &target, args[0], c.qmpCommand, c.want)
			},
		}
		target.addFlags(cmd)
		vm.AddCommand(cmd)
	}
}

// setVMRunState runs a QMP command that changes the guest's run state
// (stop, cont) in the VM's launcher container, checks that QEMU then
// reports the state wanted, and records it on the launcher pod.
func setVMRunState(ctx context.Context, out io.Writer, target *vmTarget, name, qmpCommand, want string) error {
	if ctx == nil {
		ctx = context.Background()
	}
	l, err := target.runningLauncher(ctx, name)
	if err != nil {
		return err
	}
	var stdout, stderr bytes.Buffer
	err = l.stream(ctx, "exec", &corev1.PodExecOptions{
		Container: virtualmachine.LauncherContainer,
		Command:   []string{launcherimage.LauncherPath, launcher.QMPCommand, qmpCommand},
		Stdout:    true,
		Stderr:    true,
	}, remotecommand.StreamOptions{Stdout: &stdout, Stderr: &stderr})
	if err != nil {
		return fmt.Errorf("%s %s: %s in the launcher: %w: %s", qmpCommand, name, launcher.QMPCommand, err, strings.TrimSpace(stderr.String()+stdout.String()))
	}
	got := runStateOf(stdout.String())
	if got != want {
		return fmt.Errorf("%s %s: QEMU reports the VM %q, want %q", qmpCommand, name, got, want)
	}
	var value any // a JSON null removes the annotation
	if want == "paused" {
		value = "true"
	}
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]any{annotationPaused: value}}})
	if _, err := l.kube.CoreV1().Pods(l.pod.Namespace).Patch(ctx, l.pod.Name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("%s is %s, but marking its launcher pod failed: %w", name, got, err)
	}
	fmt.Fprintf(out, "virtualmachine.compute.strata.io/%s %s\n", name, got)
	return nil
}

// runStateOf finds the `status: S` line of `strata-launcher qmp` output.
func runStateOf(out string) string {
	for _, line := range strings.Split(out, "\n") {
		if s, ok := strings.CutPrefix(strings.TrimSpace(line), "status: "); ok {
			return s
		}
	}
	return ""
}
