package cli

import (
	"context"
	"fmt"
	"net/url"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/remotecommand"

	"github.com/spf13/cobra"

	"github.com/strata-cloud/strata/internal/controller/virtualmachine"
)

// vmTarget is the flags of a command on one VM's launcher.
type vmTarget struct{ dataDir, namespace string }

func (v *vmTarget) addFlags(cmd *cobra.Command) {
	cmd.Flags().StringVar(&v.dataDir, "data-dir", defaultDataDir(), "the server's data directory (its admin kubeconfig)")
	cmd.Flags().StringVarP(&v.namespace, "namespace", "n", "default", "namespace (project) of the VM")
}

// launcherPod is a VM's running launcher pod and the clients to reach it.
type launcherPod struct {
	rc   *rest.Config
	kube kubernetes.Interface
	pod  *corev1.Pod
}

// runningLauncher finds the running launcher pod of VM name.
func (v *vmTarget) runningLauncher(ctx context.Context, name string) (*launcherPod, error) {
	rc, err := adminRESTConfig(v.dataDir)
	if err != nil {
		return nil, err
	}
	kube, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, err
	}
	pod, err := kube.CoreV1().Pods(v.namespace).Get(ctx, virtualmachine.LauncherPodName(name), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("virtual machine %q in namespace %s is not running: it has no launcher pod (kubectl get vm %s -n %s)", name, v.namespace, name, v.namespace)
	}
	if err != nil {
		return nil, err
	}
	if pod.DeletionTimestamp != nil {
		return nil, fmt.Errorf("virtual machine %q in namespace %s is stopping: its launcher pod %s is terminating", name, v.namespace, pod.Name)
	}
	if pod.Status.Phase != corev1.PodRunning {
		return nil, fmt.Errorf("virtual machine %q in namespace %s is not running: its launcher pod %s is %s", name, v.namespace, pod.Name, pod.Status.Phase)
	}
	return &launcherPod{rc: rc, kube: kube, pod: pod}, nil
}

// stream runs an attach or exec (the subresource, with its options) on
// the launcher pod.
func (l *launcherPod) stream(ctx context.Context, subresource string, params runtime.Object, opts remotecommand.StreamOptions) error {
	u := l.kube.CoreV1().RESTClient().Post().Resource("pods").Namespace(l.pod.Namespace).Name(l.pod.Name).
		SubResource(subresource).VersionedParams(params, scheme.ParameterCodec).URL()
	ex, err := newStreamExecutor(l.rc, u)
	if err != nil {
		return err
	}
	return ex.StreamWithContext(ctx, opts)
}

// newStreamExecutor speaks WebSocket and falls back to SPDY when the
// server cannot upgrade, as kubectl does.
func newStreamExecutor(rc *rest.Config, u *url.URL) (remotecommand.Executor, error) {
	spdy, err := remotecommand.NewSPDYExecutor(rc, "POST", u)
	if err != nil {
		return nil, err
	}
	// WebSocket needs GET (RFC 6455 4.1).
	ws, err := remotecommand.NewWebSocketExecutor(rc, "GET", u.String())
	if err != nil {
		return nil, err
	}
	return remotecommand.NewFallbackExecutor(ws, spdy, func(err error) bool {
		return httpstream.IsUpgradeFailure(err) || httpstream.IsHTTPSProxyError(err)
	})
}
