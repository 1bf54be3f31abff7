package nova

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	computev1 "github.com/strata-cloud/strata/api/compute/v1alpha1"
	"github.com/strata-cloud/strata/internal/controller/virtualmachine"
	"github.com/strata-cloud/strata/internal/vm/launcher"
	"github.com/strata-cloud/strata/internal/vm/launcherimage"
)

// now is the clock, for tests.
var now = time.Now

// actions this API takes, and the access each needs.
var actions = map[string]access{
	"os-start": writeAccess, "os-stop": writeAccess, "reboot": writeAccess,
	"pause": writeAccess, "unpause": writeAccess,
	"resize": writeAccess, "confirmResize": writeAccess, "revertResize": writeAccess,
	"migrate": adminAccess, "os-migrateLive": adminAccess,
	"os-getConsoleOutput": writeAccess, "createImage": writeAccess,
}

// notSupported are Nova's actions Strata does not do.
var notSupported = map[string]bool{
	"lock": true, "unlock": true, "suspend": true, "resume": true, "shelve": true, "unshelve": true,
	"shelveOffload": true, "rebuild": true, "rescue": true, "unrescue": true, "addSecurityGroup": true,
	"removeSecurityGroup": true, "changePassword": true, "trigger_crash_dump": true, "evacuate": true,
	"os-resetState": true, "injectNetworkInfo": true, "resetNetwork": true, "createBackup": true,
	"addFloatingIp": true, "removeFloatingIp": true, "os-getVNCConsole": true, "os-getSPICEConsole": true,
	"os-getSerialConsole": true, "os-getRDPConsole": true, "restore": true, "forceDelete": true,
}

func (h *handler) action(w http.ResponseWriter, r *http.Request) {
	// The access depends on the action: peek at the body first.
	rq := &request{r: r}
	outer, err := rq.rawBody()
	if err != nil {
		writeError(w, err)
		return
	}
	if len(outer) != 1 {
		writeError(w, badRequest("Malformed request body: one action per request"))
		return
	}
	var name string
	var arg json.RawMessage
	for k, v := range outer {
		name, arg = k, v
	}
	need, ok := actions[name]
	if !ok {
		if notSupported[name] {
			h.serve(writeAccess, func(*request) (int, any, error) {
				return 0, nil, notImplemented("The %s action is not supported by this cloud.", name)
			})(w, r)
			return
		}
		h.serve(readAccess, func(*request) (int, any, error) {
			return 0, nil, badRequest("There is no such action: %s", name)
		})(w, r)
		return
	}
	h.serve(need, func(rq *request) (int, any, error) {
		vm, err := rq.server(rq.r.PathValue("id"))
		if err != nil {
			return 0, nil, err
		}
		return h.doAction(rq, vm, name, arg)
	})(w, r)
}

func stateConflict(vm *computev1.VirtualMachine, action string) error {
	st := ServerState(vm)
	state := st.VMState
	if st.TaskState != "" {
		return conflict("Cannot '%s' instance %s while it is in task_state %s", action, vm.UID, st.TaskState)
	}
	return conflict("Cannot '%s' instance %s while it is in vm_state %s", action, vm.UID, state)
}

func (h *handler) patchVM(rq *request, vm *computev1.VirtualMachine, mutate func(*computev1.VirtualMachine) error) error {
	out := &computev1.VirtualMachine{}
	return h.retryUpdate(rq.ctx, out, client.ObjectKeyFromObject(vm), func() error {
		if out.UID != vm.UID {
			return notFound("Instance %s could not be found.", vm.UID)
		}
		if out.Annotations == nil {
			out.Annotations = map[string]string{}
		}
		return mutate(out)
	})
}

func (h *handler) doAction(rq *request, vm *computev1.VirtualMachine, name string, arg json.RawMessage) (int, any, error) {
	st := ServerState(vm)
	if vm.DeletionTimestamp != nil {
		return 0, nil, stateConflict(vm, name)
	}
	switch name {
	case "os-stop":
		if vm.Spec.RunStrategy == computev1.RunStrategyHalted || st.Status == "SHUTOFF" && st.TaskState == "" {
			return 0, nil, stateConflict(vm, "stop")
		}
		return http.StatusAccepted, nil, h.patchVM(rq, vm, func(v *computev1.VirtualMachine) error {
			if s := v.Spec.RunStrategy; s != "" && s != computev1.RunStrategyHalted {
				v.Annotations[AnnotationLastRunStrategy] = string(s)
			}
			v.Spec.RunStrategy = computev1.RunStrategyHalted
			return nil
		})
	case "os-start":
		if vm.Spec.RunStrategy != computev1.RunStrategyHalted && vm.Status.Phase != computev1.VirtualMachineStopped {
			return 0, nil, stateConflict(vm, "start")
		}
		return http.StatusAccepted, nil, h.patchVM(rq, vm, func(v *computev1.VirtualMachine) error {
			s := computev1.RunStrategy(v.Annotations[AnnotationLastRunStrategy])
			if s == "" || s == computev1.RunStrategyHalted {
				s = computev1.RunStrategyAlways
			}
			delete(v.Annotations, AnnotationLastRunStrategy)
			v.Spec.RunStrategy = s
			return nil
		})
	case "reboot":
		var req struct {
			Type string `json:"type"`
		}
		if err := json.Unmarshal(arg, &req); err != nil || (strings.ToUpper(req.Type) != "SOFT" && strings.ToUpper(req.Type) != "HARD") {
			return 0, nil, badRequest("Invalid input for field/attribute type: it must be SOFT or HARD")
		}
		if vm.Spec.RunStrategy == computev1.RunStrategyHalted || st.Status == "SHUTOFF" || st.Status == "BUILD" || st.Status == "MIGRATING" {
			return 0, nil, stateConflict(vm, "reboot")
		}
		return http.StatusAccepted, nil, h.reboot(rq, vm)
	case "pause", "unpause":
		return h.pause(rq, vm, name == "pause")
	case "resize":
		var req struct {
			FlavorRef json.RawMessage `json:"flavorRef"`
		}
		_ = json.Unmarshal(arg, &req)
		var ref any
		if json.Unmarshal(req.FlavorRef, &ref) != nil || ref == nil {
			return 0, nil, badRequest("Invalid input for field/attribute resize. 'flavorRef' is a required property")
		}
		fr := fmt.Sprint(ref)
		if i := strings.LastIndex(fr, "/flavors/"); i >= 0 {
			fr = fr[i+len("/flavors/"):]
		}
		s, err := rq.load()
		if err != nil {
			return 0, nil, err
		}
		f := s.flavors[fr]
		if f == nil {
			return 0, nil, badRequest("Flavor %s could not be found.", fr)
		}
		if f.Name == vm.Spec.Flavor {
			return 0, nil, badRequest("When resizing, instances must change flavor!")
		}
		if vm.Annotations[AnnotationResizeFrom] != "" || (st.Status != "ACTIVE" && st.Status != "SHUTOFF") || st.TaskState != "" {
			return 0, nil, stateConflict(vm, "resize")
		}
		return http.StatusAccepted, nil, h.patchVM(rq, vm, func(v *computev1.VirtualMachine) error {
			v.Annotations[AnnotationResizeFrom] = v.Spec.Flavor
			v.Annotations[AnnotationResizeAt] = now().UTC().Format(time.RFC3339)
			v.Spec.Flavor = f.Name
			return nil
		})
	case "confirmResize", "revertResize":
		if vm.Annotations[AnnotationResizeFrom] == "" {
			return 0, nil, badRequest("Instance has not been resized.")
		}
		if name == "confirmResize" && st.Status != "VERIFY_RESIZE" {
			return 0, nil, stateConflict(vm, name)
		}
		code := http.StatusNoContent
		if name == "revertResize" {
			code = http.StatusAccepted
		}
		return code, nil, h.patchVM(rq, vm, func(v *computev1.VirtualMachine) error {
			if name == "revertResize" {
				v.Spec.Flavor = v.Annotations[AnnotationResizeFrom]
				v.Annotations[AnnotationRebootAt] = now().UTC().Format(time.RFC3339)
			}
			delete(v.Annotations, AnnotationResizeFrom)
			delete(v.Annotations, AnnotationResizeAt)
			return nil
		})
	case "migrate", "os-migrateLive":
		var req struct {
			Host *string `json:"host"`
		}
		if len(arg) > 0 && string(arg) != "null" {
			if err := json.Unmarshal(arg, &req); err != nil {
				return 0, nil, badRequest("Invalid input for field/attribute %s: %v", name, err)
			}
		}
		if st.Status != "ACTIVE" && st.Status != "PAUSED" {
			return 0, nil, stateConflict(vm, name)
		}
		if vols := vm.VolumeNames(); len(vols) > 0 {
			return 0, nil, badRequest("Migration pre-check error: the server has volumes (%s) on host %s; a host's volumes cannot move, so detach them first.",
				strings.Join(vols, ", "), vm.Status.NodeName)
		}
		m := &computev1.VirtualMachineMigration{
			ObjectMeta: metav1.ObjectMeta{Namespace: vm.Namespace, GenerateName: vm.Name + "-migration-"},
			Spec:       computev1.VirtualMachineMigrationSpec{VMName: vm.Name},
		}
		if req.Host != nil && *req.Host != "" {
			if *req.Host == vm.Status.NodeName {
				return 0, nil, badRequest("The target host is the server's own host.")
			}
			node := &corev1.Node{}
			if err := rq.h.c.Get(rq.ctx, types.NamespacedName{Name: *req.Host}, node); apierrors.IsNotFound(err) {
				return 0, nil, badRequest("Compute host %s could not be found.", *req.Host)
			}
			m.Spec.TargetNode = *req.Host
		}
		if err := rq.h.c.Create(rq.ctx, m); err != nil {
			return 0, nil, err
		}
		return http.StatusAccepted, nil, nil
	case "os-getConsoleOutput":
		return h.consoleOutput(rq, vm, arg)
	case "createImage":
		return 0, nil, notImplemented("Creating an image from a server is not supported by this cloud.")
	}
	return 0, nil, badRequest("There is no such action: %s", name)
}

// reboot restarts the guest: a new launcher pod (as `strata vm restart`).
func (h *handler) reboot(rq *request, vm *computev1.VirtualMachine) error {
	pod := &corev1.Pod{}
	if err := h.c.Get(rq.ctx, types.NamespacedName{Namespace: vm.Namespace, Name: virtualmachine.ActivePodName(vm)}, pod); err != nil {
		if apierrors.IsNotFound(err) {
			return conflict("Instance %s has no running guest to reboot.", vm.UID)
		}
		return err
	}
	if err := h.patchVM(rq, vm, func(v *computev1.VirtualMachine) error {
		v.Annotations[AnnotationRebootAt] = now().UTC().Format(time.RFC3339)
		return nil
	}); err != nil {
		return err
	}
	uid := pod.UID
	err := h.c.Delete(rq.ctx, pod, client.Preconditions{UID: &uid})
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil // it went already
	}
	return err
}

// pause stops (or resumes) the guest's CPUs through its QEMU, as `strata
// vm pause`, and marks the launcher pod.
func (h *handler) pause(rq *request, vm *computev1.VirtualMachine, pause bool) (int, any, error) {
	st := ServerState(vm)
	name, qmp, want, from := "pause", "stop", "paused", "ACTIVE"
	if !pause {
		name, qmp, want, from = "unpause", "cont", "running", "PAUSED"
	}
	if st.Status != from || st.TaskState != "" {
		return 0, nil, stateConflict(vm, name)
	}
	if h.cfg.Exec == nil {
		return 0, nil, notImplemented("Pausing servers is not available on this cloud.")
	}
	podName := virtualmachine.ActivePodName(vm)
	out, err := h.cfg.Exec(rq.ctx, vm.Namespace, podName, virtualmachine.LauncherContainer,
		[]string{launcherimage.LauncherPath, launcher.QMPCommand, qmp})
	if err != nil {
		return 0, nil, conflict("Cannot %s instance %s: %v", name, vm.UID, err)
	}
	if got := runStateOf(out); got != want {
		return 0, nil, conflict("Cannot %s instance %s: its QEMU reports %q", name, vm.UID, got)
	}
	var value any // null removes the annotation
	if pause {
		value = "true"
	}
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]any{virtualmachine.AnnotationPaused: value}}})
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: vm.Namespace, Name: podName}}
	if err := h.c.Patch(rq.ctx, pod, client.RawPatch(types.MergePatchType, patch)); err != nil {
		return 0, nil, fmt.Errorf("the guest is %s, but marking its launcher pod failed: %w", want, err)
	}
	return http.StatusAccepted, nil, nil
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

// ConsoleLength parses os-getConsoleOutput's length: an integer, a string
// of one, or -1, null or absent for all (returned as -1).
func ConsoleLength(arg json.RawMessage) (int64, error) {
	var req struct {
		Length json.RawMessage `json:"length"`
	}
	if len(arg) > 0 && string(arg) != "null" {
		if err := json.Unmarshal(arg, &req); err != nil {
			return 0, badRequest("Invalid input for field/attribute os-getConsoleOutput: %v", err)
		}
	}
	if len(req.Length) == 0 || string(req.Length) == "null" {
		return -1, nil
	}
	s := strings.Trim(string(req.Length), `"`)
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < -1 {
		return 0, badRequest("Invalid input for field/attribute length. Value: %s.", s)
	}
	return n, nil
}

func (h *handler) consoleOutput(rq *request, vm *computev1.VirtualMachine, arg json.RawMessage) (int, any, error) {
	n, err := ConsoleLength(arg)
	if err != nil {
		return 0, nil, err
	}
	if h.cfg.Logs == nil {
		return 0, nil, notImplemented("Console output is not available on this cloud.")
	}
	if n == 0 {
		return http.StatusOK, map[string]any{"output": ""}, nil
	}
	out, err := h.cfg.Logs(rq.ctx, vm.Namespace, virtualmachine.ActivePodName(vm), max(n, 0))
	if err != nil {
		if apierrors.IsNotFound(err) || apierrors.IsBadRequest(err) {
			return 0, nil, conflict("Instance %s has no console output now: it is not running.", vm.UID)
		}
		return 0, nil, err
	}
	return http.StatusOK, map[string]any{"output": out}, nil
}
