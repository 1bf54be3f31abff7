package cli

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	computev1alpha1 "github.com/strata-cloud/strata/api/compute/v1alpha1"
	"github.com/strata-cloud/strata/internal/controller/virtualmachinepool"
	"github.com/strata-cloud/strata/internal/server"
)

// poolResource is how kubectl names a pool in its messages.
const poolResource = "virtualmachinepool.compute.strata.io"

// The vmpool subcommands are `kubectl rollout undo|status|history` for
// VirtualMachinePools, whose revisions are ControllerRevisions.
func newVMPoolCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "vmpool", Short: "Roll back, watch and list the rollouts of VirtualMachinePools"}
	var dataDir, namespace string
	cmd.PersistentFlags().StringVar(&dataDir, "data-dir", defaultDataDir(), "the server's data directory (its admin kubeconfig)")
	cmd.PersistentFlags().StringVarP(&namespace, "namespace", "n", "default", "namespace (project) of the pool")

	// sub is a `vmpool VERB NAME` command: run gets the admin client and
	// a context bounded by *timeout (0: unbounded).
	sub := func(use, short string, timeout *time.Duration, run func(ctx context.Context, c client.Client, out io.Writer, name string) error) *cobra.Command {
		return &cobra.Command{
			Use: use + " NAME", Short: short, Args: cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				c, err := adminClient(dataDir)
				if err != nil {
					return err
				}
				ctx := cmd.Context()
				if *timeout > 0 {
					var cancel context.CancelFunc
					ctx, cancel = context.WithTimeout(ctx, *timeout)
					defer cancel()
				}
				return run(ctx, c, cmd.OutOrStdout(), args[0])
			},
		}
	}
	requestTimeout := 30 * time.Second

	var toRevision int64
	rollback := sub("rollback", "Roll a pool back to its previous template (or --to-revision N); its VMs are then replaced as in any rollout", &requestTimeout,
		func(ctx context.Context, c client.Client, out io.Writer, name string) error {
			return rollbackPool(ctx, c, out, namespace, name, toRevision)
		})
	rollback.Flags().Int64Var(&toRevision, "to-revision", 0, "the revision to roll back to (strata vmpool history NAME); 0 is the previous one")

	var timeout time.Duration
	var watch bool
	status := sub("status", "Show a pool's rollout, and wait until it completes (like kubectl rollout status)", &timeout,
		func(ctx context.Context, c client.Client, out io.Writer, name string) error {
			return waitRollout(ctx, c, out, namespace, name, watch)
		})
	status.Flags().DurationVar(&timeout, "timeout", 0, "how long to wait (0: until the rollout completes)")
	status.Flags().BoolVarP(&watch, "watch", "w", true, "wait until the rollout completes")

	history := sub("history", "List a pool's revisions (like kubectl rollout history)", &requestTimeout,
		func(ctx context.Context, c client.Client, out io.Writer, name string) error {
			_, revs, err := poolAndRevisions(ctx, c, namespace, name)
			if err != nil {
				return err
			}
			return printHistory(out, name, revs)
		})
	cmd.AddCommand(rollback, status, history)
	return cmd
}

// adminClient is a client of the server in dataDir, as its admin.
func adminClient(dataDir string) (client.Client, error) {
	path := server.AdminKubeconfig(dataDir)
	restConfig, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w (is `strata server --data-dir %s` initialised?)", path, err, dataDir)
	}
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return nil, err
	}
	if err := computev1alpha1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	return client.New(restConfig, client.Options{Scheme: scheme})
}

// getPool reads a pool, saying so when there is none.
func getPool(ctx context.Context, c client.Client, namespace, name string) (*computev1alpha1.VirtualMachinePool, error) {
	pool := &computev1alpha1.VirtualMachinePool{}
	err := c.Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, pool)
	if apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("virtualmachinepools.compute.strata.io %q not found in namespace %s", name, namespace)
	}
	return pool, err
}

// poolAndRevisions reads a pool and its ControllerRevisions, oldest first.
func poolAndRevisions(ctx context.Context, c client.Client, namespace, name string) (*computev1alpha1.VirtualMachinePool, []*appsv1.ControllerRevision, error) {
	pool, err := getPool(ctx, c, namespace, name)
	if err != nil {
		return nil, nil, err
	}
	revs, err := virtualmachinepool.Revisions(ctx, c, pool)
	if err != nil {
		return nil, nil, err
	}
	return pool, revs, nil
}

// rollbackPool copies a revision's template into the pool's spec; the
// controller then rolls the VMs to it.
func rollbackPool(ctx context.Context, c client.Client, out io.Writer, namespace, name string, toRevision int64) error {
	pool, revs, err := poolAndRevisions(ctx, c, namespace, name)
	if err != nil {
		return err
	}
	currentHash := virtualmachinepool.TemplateHash(&pool.Spec.Template)
	target, err := virtualmachinepool.RollbackTarget(revs, currentHash, toRevision)
	if err != nil {
		return err
	}
	if target.Labels[computev1alpha1.PoolRevisionLabel] == currentHash {
		fmt.Fprintf(out, "%s/%s skipped rollback (current template already matches revision %d)\n", poolResource, name, target.Revision)
		return nil
	}
	tmpl, err := virtualmachinepool.Template(target)
	if err != nil {
		return err
	}
	pool.Spec.Template = *tmpl
	if err := c.Update(ctx, pool); err != nil {
		return fmt.Errorf("roll back %s/%s to revision %d: %w", poolResource, name, target.Revision, err)
	}
	fmt.Fprintf(out, "%s/%s rolled back\n", poolResource, name)
	return nil
}

// waitRollout prints the rollout's progress until it completes (or once,
// without watch).
func waitRollout(ctx context.Context, c client.Client, out io.Writer, namespace, name string, watch bool) error {
	last := ""
	err := wait.PollUntilContextCancel(ctx, time.Second, true, func(ctx context.Context) (bool, error) {
		pool, err := getPool(ctx, c, namespace, name)
		if err != nil {
			return false, err
		}
		msg, done, err := virtualmachinepool.RolloutStatus(pool)
		if err != nil {
			return false, err
		}
		if msg != last {
			fmt.Fprintln(out, msg)
			last = msg
		}
		return done || !watch, nil
	})
	if err != nil && ctx.Err() != nil {
		return fmt.Errorf("timed out waiting for the rollout of virtualmachinepool %q to finish", name)
	}
	return err
}

// printHistory lists revisions as kubectl rollout history does, with each
// revision's image and size.
func printHistory(out io.Writer, name string, revs []*appsv1.ControllerRevision) error {
	fmt.Fprintf(out, "%s/%s\n", poolResource, name)
	w := tabwriter.NewWriter(out, 0, 8, 2, ' ', 0)
	fmt.Fprintln(w, "REVISION\tNAME\tIMAGE\tSIZE")
	for _, r := range revs {
		t, err := virtualmachinepool.Template(r)
		if err != nil {
			return err
		}
		size := t.Spec.Flavor
		if res := t.Spec.Resources; res != nil {
			size = fmt.Sprintf("%d vCPU, %d MiB", res.VCPUs, res.MemoryMiB)
		}
		fmt.Fprintf(w, "%d\t%s\t%s\t%s\n", r.Revision, r.Name, t.Spec.Image, size)
	}
	return w.Flush()
}
