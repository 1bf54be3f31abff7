package server

import (
	"bytes"
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/remotecommand"

	"github.com/strata-cloud/strata/internal/controller/virtualmachine"
)

// launcherPods gives Nova a server's console (its launcher container's
// log) and a way to run a command in the launcher (pause and unpause).
type launcherPods struct {
	rc   *rest.Config
	kube kubernetes.Interface
}

func newLauncherPods(rc *rest.Config) (*launcherPods, error) {
	kube, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, err
	}
	return &launcherPods{rc: rc, kube: kube}, nil
}

// Logs returns the last tailLines lines (all for tailLines <= 0) of the
// launcher container's log.
func (l *launcherPods) Logs(ctx context.Context, namespace, pod string, tailLines int64) (string, error) {
	opts := &corev1.PodLogOptions{Container: virtualmachine.LauncherContainer}
	if tailLines > 0 {
		opts.TailLines = &tailLines
	}
	out, err := l.kube.CoreV1().Pods(namespace).GetLogs(pod, opts).DoRaw(ctx)
	return string(out), err
}

// Exec runs command in container of pod and returns its standard output.
func (l *launcherPods) Exec(ctx context.Context, namespace, pod, container string, command []string) (string, error) {
	u := l.kube.CoreV1().RESTClient().Post().Resource("pods").Namespace(namespace).Name(pod).SubResource("exec").
		VersionedParams(&corev1.PodExecOptions{Container: container, Command: command, Stdout: true, Stderr: true}, scheme.ParameterCodec).URL()
	ex, err := remotecommand.NewSPDYExecutor(l.rc, "POST", u)
	if err != nil {
		return "", err
	}
	var stdout, stderr bytes.Buffer
	if err := ex.StreamWithContext(ctx, remotecommand.StreamOptions{Stdout: &stdout, Stderr: &stderr}); err != nil {
		return stdout.String(), fmt.Errorf("%s: %w: %s", strings.Join(command, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}
