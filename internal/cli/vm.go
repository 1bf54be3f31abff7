package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	computev1alpha1 "github.com/strata-cloud/strata/api/compute/v1alpha1"
	"github.com/strata-cloud/strata/internal/controller/virtualmachine"
	"github.com/strata-cloud/strata/internal/server"
)

// annotationLastRunStrategy remembers a stopped VM's run strategy for
// `strata vm start`.
const annotationLastRunStrategy = "compute.strata.io/last-run-strategy"

// adminRESTConfig is the server's admin client config from its data dir.
func adminRESTConfig(dataDir string) (*rest.Config, error) {
	path := server.AdminKubeconfig(dataDir)
	c, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w (is `strata server --data-dir %s` initialised?)", path, err, dataDir)
	}
	return c, nil
}

var vmResource = computev1alpha1.GroupVersion.WithResource("virtualmachines")

// vmAction is one `strata vm` subcommand's work on the named VM.
type vmAction struct {
	use, short string
	// act changes the VM and returns what "done" looks like: a check of
	// the VM's phase and launcher pod UID (given the UID before).
	act func(ctx context.Context, dyn dynamic.Interface, kube kubernetes.Interface, vm *unstructured.Unstructured) (done func(phase, podUID string) bool, verb string, err error)
}

func newVMCmd() *cobra.Command {
	vm := &cobra.Command{Use: "vm", Short: "Start, stop, restart, pause and unpause virtual machines"}
	for _, a := range []vmAction{
		{use: "start", short: "Start a stopped VM (restores the run strategy it had before `strata vm stop`)", act: startVM},
		{use: "stop", short: "Stop a VM: the guest gets an ACPI power-off, then is forced off after the grace period; its disks and IP are kept", act: stopVM},
		{use: "restart", short: "Restart a VM: a graceful stop and a new launcher pod on the same node, with the same disks and IP", act: restartVM},
	} {
		var target vmTarget
		var wait time.Duration
		cmd := &cobra.Command{
			Use: a.use + " NAME", Short: a.short, Args: cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				return runVMAction(cmd.Context(), cmd.OutOrStdout(), target.dataDir, target.namespace, args[0], wait, a)
			},
		}
		target.addFlags(cmd)
		cmd.Flags().DurationVar(&wait, "wait", 5*time.Minute, "how long to wait for the VM to get there (0: do not wait)")
		vm.AddCommand(cmd)
	}
	vm.AddCommand(newVMMigrateCmd())
	addVMPauseCmds(vm)
	return vm
}

var migrationResource = computev1alpha1.GroupVersion.WithResource("virtualmachinemigrations")

func newVMMigrateCmd() *cobra.Command {
	var dataDir, namespace, target string
	var wait time.Duration
	cmd := &cobra.Command{
		Use:   "migrate NAME",
		Short: "Move a running VM to another node without stopping it (a VirtualMachineMigration); Ctrl-C cancels it",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dyn, _, err := adminClients(dataDir)
			if err != nil {
				return err
			}
			res := dyn.Resource(migrationResource).Namespace(namespace)
			spec := map[string]any{"vmName": args[0]}
			if target != "" {
				spec["targetNode"] = target
			}
			obj, err := res.Create(cmd.Context(), &unstructured.Unstructured{Object: map[string]any{
				"apiVersion": computev1alpha1.GroupVersion.String(), "kind": "VirtualMachineMigration",
				"metadata": map[string]any{"generateName": args[0] + "-migration-", "namespace": namespace},
				"spec":     spec,
			}}, metav1.CreateOptions{})
			if err != nil {
				return fmt.Errorf("create migration: %w", err)
			}
			name := obj.GetName()
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "virtualmachinemigration.compute.strata.io/%s created\n", name)
			if wait <= 0 {
				return nil
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), wait)
			defer cancel()
			last := ""
			for {
				obj, err := res.Get(ctx, name, metav1.GetOptions{})
				if err != nil {
					if cmd.Context().Err() != nil { // interrupted: cancel the migration
						res.Delete(context.Background(), name, metav1.DeleteOptions{})
						return fmt.Errorf("interrupted: migration %s cancelled", name)
					}
					return fmt.Errorf("waiting for %s: %w", name, err)
				}
				m := &computev1alpha1.VirtualMachineMigration{}
				if err := runtime.DefaultUnstructuredConverter.FromUnstructured(obj.Object, m); err != nil {
					return err
				}
				line := string(m.Status.Phase)
				if p := m.Status.Progress; p != nil && !m.Status.Phase.Finished() {
					line += fmt.Sprintf(" %s %d%%", p.Stage, p.Percent)
				}
				if line != last && line != "" {
					fmt.Fprintf(out, "%s: %s\n", name, line)
					last = line
				}
				switch m.Status.Phase {
				case computev1alpha1.MigrationSucceeded:
					fmt.Fprintf(out, "%s moved from %s to %s in %s, paused %d ms\n", args[0], m.Status.SourceNode, m.Status.TargetNode,
						(time.Duration(m.Status.TotalMillis) * time.Millisecond).Round(time.Millisecond), m.Status.DowntimeMillis)
					return nil
				case computev1alpha1.MigrationFailed, computev1alpha1.MigrationCancelled:
					return fmt.Errorf("migration %s: %s", m.Status.Phase, m.Status.Message)
				}
				select {
				case <-ctx.Done():
					if cmd.Context().Err() != nil {
						res.Delete(context.Background(), name, metav1.DeleteOptions{})
						return fmt.Errorf("interrupted: migration %s cancelled", name)
					}
					return fmt.Errorf("migration %s is still %s after %s (kubectl get vmim %s -n %s)", name, m.Status.Phase, wait, name, namespace)
				case <-time.After(500 * time.Millisecond):
				}
			}
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", defaultDataDir(), "the server's data directory (its admin kubeconfig)")
	cmd.Flags().StringVarP(&namespace, "namespace", "n", "default", "namespace (project) of the VM")
	cmd.Flags().StringVar(&target, "to", "", "target node (default: the scheduler picks another node)")
	cmd.Flags().DurationVar(&wait, "wait", 10*time.Minute, "how long to follow the migration (0: do not wait)")
	return cmd
}

// adminClients are dynamic and typed clients from the server's admin
// kubeconfig.
func adminClients(dataDir string) (dynamic.Interface, kubernetes.Interface, error) {
	rc, err := adminRESTConfig(dataDir)
	if err != nil {
		return nil, nil, err
	}
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		return nil, nil, err
	}
	kube, err := kubernetes.NewForConfig(rc)
	return dyn, kube, err
}

func runVMAction(ctx context.Context, out io.Writer, dataDir, ns, name string, wait time.Duration, a vmAction) error {
	dyn, kube, err := adminClients(dataDir)
	if err != nil {
		return err
	}
	vms := dyn.Resource(vmResource).Namespace(ns)
	obj, err := vms.Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return fmt.Errorf("virtual machine %q not found in namespace %s (kubectl get vm -n %s)", name, ns, ns)
	}
	if err != nil {
		return err
	}
	done, verb, err := a.act(ctx, dyn, kube, obj)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "virtualmachine.compute.strata.io/%s %s\n", name, verb)
	if wait <= 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	last := ""
	for {
		obj, err := vms.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("waiting for %s: %w", name, err)
		}
		phase, _, _ := unstructured.NestedString(obj.Object, "status", "phase")
		podUID := ""
		podName, _, _ := unstructured.NestedString(obj.Object, "status", "launcherPod")
		if podName == "" {
			podName = virtualmachine.LauncherPodName(name)
		}
		if pod, err := kube.CoreV1().Pods(ns).Get(ctx, podName, metav1.GetOptions{}); err == nil && pod.DeletionTimestamp == nil {
			podUID = string(pod.UID)
		}
		if phase != last {
			fmt.Fprintf(out, "%s: %s\n", name, phase)
			last = phase
		}
		if done(phase, podUID) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s is %s after %s; see kubectl describe vm %s -n %s", name, phase, wait, name, ns)
		case <-time.After(time.Second):
		}
	}
}

func patchVM(ctx context.Context, dyn dynamic.Interface, vm *unstructured.Unstructured, patch map[string]any) error {
	b, err := json.Marshal(patch)
	if err != nil {
		return err
	}
	_, err = dyn.Resource(vmResource).Namespace(vm.GetNamespace()).Patch(ctx, vm.GetName(), types.MergePatchType, b, metav1.PatchOptions{})
	return err
}

func stopVM(ctx context.Context, dyn dynamic.Interface, _ kubernetes.Interface, vm *unstructured.Unstructured) (func(string, string) bool, string, error) {
	strategy, _, _ := unstructured.NestedString(vm.Object, "spec", "runStrategy")
	meta := map[string]any{}
	if strategy != string(computev1alpha1.RunStrategyHalted) && strategy != "" {
		meta["annotations"] = map[string]any{annotationLastRunStrategy: strategy}
	}
	err := patchVM(ctx, dyn, vm, map[string]any{"metadata": meta, "spec": map[string]any{"runStrategy": computev1alpha1.RunStrategyHalted}})
	return func(phase, _ string) bool { return phase == string(computev1alpha1.VirtualMachineStopped) }, "stopping", err
}

func startVM(ctx context.Context, dyn dynamic.Interface, _ kubernetes.Interface, vm *unstructured.Unstructured) (func(string, string) bool, string, error) {
	strategy := vm.GetAnnotations()[annotationLastRunStrategy]
	if strategy == "" || strategy == string(computev1alpha1.RunStrategyHalted) {
		strategy = string(computev1alpha1.RunStrategyAlways)
	}
	err := patchVM(ctx, dyn, vm, map[string]any{
		"metadata": map[string]any{"annotations": map[string]any{annotationLastRunStrategy: nil}},
		"spec":     map[string]any{"runStrategy": strategy},
	})
	return func(phase, _ string) bool { return phase == string(computev1alpha1.VirtualMachineRunning) }, "starting", err
}

func restartVM(ctx context.Context, _ dynamic.Interface, kube kubernetes.Interface, vm *unstructured.Unstructured) (func(string, string) bool, string, error) {
	if s, _, _ := unstructured.NestedString(vm.Object, "spec", "runStrategy"); s == string(computev1alpha1.RunStrategyHalted) {
		return nil, "", fmt.Errorf("%s is stopped (runStrategy Halted): use strata vm start", vm.GetName())
	}
	pods := kube.CoreV1().Pods(vm.GetNamespace())
	podName, _, _ := unstructured.NestedString(vm.Object, "status", "launcherPod")
	if podName == "" {
		podName = virtualmachine.LauncherPodName(vm.GetName())
	}
	pod, err := pods.Get(ctx, podName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, "", fmt.Errorf("%s has no launcher pod to restart (kubectl describe vm %s -n %s)", vm.GetName(), vm.GetName(), vm.GetNamespace())
	}
	if err != nil {
		return nil, "", err
	}
	old := string(pod.UID)
	err = pods.Delete(ctx, pod.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &pod.UID}})
	return func(phase, uid string) bool {
		return phase == string(computev1alpha1.VirtualMachineRunning) && uid != "" && uid != old
	}, "restarting", err
}
