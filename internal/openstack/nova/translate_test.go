package nova

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	computev1 "github.com/strata-cloud/strata/api/compute/v1alpha1"
	storagev1 "github.com/strata-cloud/strata/api/storage/v1alpha1"
)

func TestNegotiate(t *testing.T) {
	for _, tc := range []struct {
		name    string
		headers map[string]string
		want    string
		code    int
	}{
		{"none", nil, "2.1", 0},
		{"new header", map[string]string{"OpenStack-API-Version": "compute 2.60"}, "2.60", 0},
		{"among others", map[string]string{"OpenStack-API-Version": "volume 3.50, compute 2.47"}, "2.47", 0},
		{"legacy header", map[string]string{"X-OpenStack-Nova-API-Version": "2.19"}, "2.19", 0},
		{"new header wins", map[string]string{"OpenStack-API-Version": "compute 2.30", "X-OpenStack-Nova-API-Version": "2.19"}, "2.30", 0},
		{"latest", map[string]string{"OpenStack-API-Version": "compute latest"}, MaxVersion.String(), 0},
		{"too high", map[string]string{"OpenStack-API-Version": "compute 2.999"}, "2.1", http.StatusNotAcceptable},
		{"major 3", map[string]string{"X-OpenStack-Nova-API-Version": "3.0"}, "2.1", http.StatusNotAcceptable},
		{"too low", map[string]string{"X-OpenStack-Nova-API-Version": "2.0"}, "2.1", http.StatusNotAcceptable},
		{"garbage", map[string]string{"X-OpenStack-Nova-API-Version": "two"}, "2.1", http.StatusBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			for k, v := range tc.headers {
				h.Set(k, v)
			}
			got, err := Negotiate(h)
			if got.String() != tc.want {
				t.Errorf("version %s, want %s", got, tc.want)
			}
			code := 0
			if err != nil {
				code = toError(err).Code
			}
			if code != tc.code {
				t.Errorf("error %v, want code %d", err, tc.code)
			}
		})
	}
}

func vmWith(phase computev1.VirtualMachinePhase, mutate func(*computev1.VirtualMachine)) *computev1.VirtualMachine {
	vm := &computev1.VirtualMachine{
		ObjectMeta: metav1.ObjectMeta{Name: "vm", Namespace: "p1", UID: "u1", Annotations: map[string]string{}},
		Spec:       computev1.VirtualMachineSpec{Flavor: "small", Image: "img", RunStrategy: computev1.RunStrategyAlways},
		Status:     computev1.VirtualMachineStatus{Phase: phase},
	}
	if mutate != nil {
		mutate(vm)
	}
	return vm
}

func ready(status metav1.ConditionStatus, at time.Time) func(*computev1.VirtualMachine) {
	return func(vm *computev1.VirtualMachine) {
		vm.Status.Conditions = append(vm.Status.Conditions, metav1.Condition{Type: "Ready", Status: status, Reason: "R", Message: "m", LastTransitionTime: metav1.NewTime(at)})
	}
}

func TestServerState(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC)
	both := func(fs ...func(*computev1.VirtualMachine)) func(*computev1.VirtualMachine) {
		return func(vm *computev1.VirtualMachine) {
			for _, f := range fs {
				f(vm)
			}
		}
	}
	halted := func(vm *computev1.VirtualMachine) { vm.Spec.RunStrategy = computev1.RunStrategyHalted }
	ran := func(vm *computev1.VirtualMachine) { vm.Status.NodeName = "n1" }
	ann := func(k, v string) func(*computev1.VirtualMachine) {
		return func(vm *computev1.VirtualMachine) { vm.Annotations[k] = v }
	}
	paused := func(vm *computev1.VirtualMachine) {
		vm.Status.Conditions = append(vm.Status.Conditions, metav1.Condition{Type: "Paused", Status: metav1.ConditionTrue})
	}
	deleting := func(vm *computev1.VirtualMachine) { vm.DeletionTimestamp = &metav1.Time{Time: t0} }
	for _, tc := range []struct {
		name string
		vm   *computev1.VirtualMachine
		want State
	}{
		{"new", vmWith("", nil), State{"BUILD", "building", "scheduling", 0}},
		{"pending", vmWith(computev1.VirtualMachinePending, nil), State{"BUILD", "building", "scheduling", 0}},
		{"provisioning", vmWith(computev1.VirtualMachineProvisioning, nil), State{"BUILD", "building", "spawning", 0}},
		{"running", vmWith(computev1.VirtualMachineRunning, nil), State{"ACTIVE", "active", "", 1}},
		{"paused", vmWith(computev1.VirtualMachineRunning, paused), State{"PAUSED", "paused", "", 3}},
		{"stopping", vmWith(computev1.VirtualMachineRunning, halted), State{"ACTIVE", "active", "powering-off", 1}},
		{"stopped", vmWith(computev1.VirtualMachineStopped, halted), State{"SHUTOFF", "stopped", "", 4}},
		{"starting", vmWith(computev1.VirtualMachineStopped, nil), State{"SHUTOFF", "stopped", "powering-on", 4}},
		{"starting, pending again", vmWith(computev1.VirtualMachinePending, ran), State{"SHUTOFF", "stopped", "powering-on", 4}},
		{"guest off, manual", vmWith(computev1.VirtualMachineStopped, func(vm *computev1.VirtualMachine) { vm.Spec.RunStrategy = computev1.RunStrategyManual }), State{"SHUTOFF", "stopped", "", 4}},
		{"migrating", vmWith(computev1.VirtualMachineMigrating, nil), State{"MIGRATING", "active", "migrating", 1}},
		{"error", vmWith(computev1.VirtualMachineError, nil), State{"ERROR", "error", "", 0}},
		{"error deleting", vmWith(computev1.VirtualMachineError, deleting), State{"ERROR", "error", "deleting", 0}},
		{"deleting", vmWith(computev1.VirtualMachineRunning, deleting), State{"ACTIVE", "active", "deleting", 1}},
		{"rebooting", vmWith(computev1.VirtualMachineRunning, both(ready("True", t0), ann(AnnotationRebootAt, t0.Add(time.Second).Format(time.RFC3339)))),
			State{"HARD_REBOOT", "active", "rebooting_hard", 1}},
		{"rebooting, down", vmWith(computev1.VirtualMachinePending, both(ran, ready("False", t0.Add(2*time.Second)), ann(AnnotationRebootAt, t0.Format(time.RFC3339)))),
			State{"HARD_REBOOT", "active", "rebooting_hard", 4}},
		{"rebooted", vmWith(computev1.VirtualMachineRunning, both(ready("True", t0.Add(5*time.Second)), ann(AnnotationRebootAt, t0.Format(time.RFC3339)))),
			State{"ACTIVE", "active", "", 1}},
		{"resizing", vmWith(computev1.VirtualMachineProvisioning, both(ran, ready("False", t0), ann(AnnotationResizeFrom, "tiny"), ann(AnnotationResizeAt, t0.Format(time.RFC3339)))),
			State{"RESIZE", "active", "resize_migrating", 4}},
		{"resized", vmWith(computev1.VirtualMachineRunning, both(ready("True", t0.Add(time.Minute)), ann(AnnotationResizeFrom, "tiny"), ann(AnnotationResizeAt, t0.Format(time.RFC3339)))),
			State{"VERIFY_RESIZE", "resized", "", 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := ServerState(tc.vm); got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestServerToNovaByMicroversion(t *testing.T) {
	vm := vmWith(computev1.VirtualMachineRunning, func(vm *computev1.VirtualMachine) {
		vm.Status.NodeName, vm.Status.VCPUs, vm.Status.MemoryMiB = "n1", 1, 512
		vm.Annotations[AnnotationName] = "My Server"
		vm.Annotations[AnnotationMetadata] = `{"a":"b"}`
		vm.Spec.UserData = "#cloud-config\n"
	})
	f := &computev1.Flavor{ObjectMeta: metav1.ObjectMeta{Name: "small"}, Spec: computev1.FlavorSpec{VCPUs: 1, RAMMiB: 512, DiskGiB: 5}}
	l := Links{API: "https://h/compute/v2.1", Bookmark: "https://h/compute"}
	in := ServerInfo{ProjectID: "p1", Flavor: f, ImageID: "img-id", KeyName: "k", MV: Microversion{Major: 2, Minor: 1}, Links: l,
		Addresses: []Address{{Network: "net", IP: "10.0.0.5", MAC: "fa:16:3e:00:00:01"}, {Network: "net", IP: "fd00::5"}}}
	s := ServerToNova(vm, in)
	if s["name"] != "My Server" || s["status"] != "ACTIVE" || s["id"] != "u1" || s["key_name"] != "k" {
		t.Errorf("basic fields: %v", s)
	}
	if fl := s["flavor"].(map[string]any); fl["id"] != "small" {
		t.Errorf("2.1 flavor %v", fl)
	}
	if _, ok := s["OS-EXT-SRV-ATTR:host"]; ok {
		t.Error("host shown to a non-admin")
	}
	if _, ok := s["description"]; ok {
		t.Error("description before 2.19")
	}
	addrs := s["addresses"].(map[string][]map[string]any)["net"]
	if len(addrs) != 2 || addrs[0]["OS-EXT-IPS-MAC:mac_addr"] != "fa:16:3e:00:00:01" || addrs[1]["version"] != 6 {
		t.Errorf("addresses %v", addrs)
	}
	if md := s["metadata"].(map[string]string); md["a"] != "b" {
		t.Errorf("metadata %v", md)
	}
	in.MV, in.Admin = Microversion{Major: 2, Minor: 96}, true
	s = ServerToNova(vm, in)
	fl := s["flavor"].(map[string]any)
	if fl["original_name"] != "small" || fl["vcpus"] != int32(1) || fl["disk"] != int64(5) {
		t.Errorf("2.47 flavor %v", fl)
	}
	if s["OS-EXT-SRV-ATTR:host"] != "n1" || s["OS-EXT-SRV-ATTR:user_data"] != "I2Nsb3VkLWNvbmZpZwo=" {
		t.Errorf("admin fields %v", s)
	}
	for _, k := range []string{"description", "tags", "locked", "locked_reason", "pinned_availability_zone", "trusted_image_certificates"} {
		if _, ok := s[k]; !ok {
			t.Errorf("%s missing at 2.96", k)
		}
	}
	vm.Status.Phase = computev1.VirtualMachineError
	vm.Status.Conditions = []metav1.Condition{{Type: "Ready", Status: "False", Reason: "ImageNotFound", Message: "image gone"}}
	s = ServerToNova(vm, in)
	if f, ok := s["fault"].(map[string]any); !ok || !strings.Contains(f["message"].(string), "image gone") {
		t.Errorf("fault %v", s["fault"])
	}
}

func TestParseServerCreate(t *testing.T) {
	v21, v237, v219 := Microversion{Major: 2, Minor: 1}, Microversion{Major: 2, Minor: 37}, Microversion{Major: 2, Minor: 19}
	for _, tc := range []struct {
		name string
		body string
		mv   Microversion
		err  string // substring of the 400's message; "" for success
		want func(ServerCreate) bool
	}{
		{"minimal 2.1", `{"name":"a","flavorRef":"small","imageRef":"img"}`, v21, "", func(s ServerCreate) bool {
			return s.Name == "a" && s.FlavorRef == "small" && s.ImageRef == "img" && s.NetworkMode == "" && len(s.Networks) == 0
		}},
		{"numeric flavor", `{"name":"a","flavorRef":1,"imageRef":"img"}`, v21, "", func(s ServerCreate) bool { return s.FlavorRef == "1" }},
		{"flavor link", `{"name":"a","flavorRef":"http://h/compute/v2.1/flavors/big","imageRef":"img"}`, v21, "", func(s ServerCreate) bool { return s.FlavorRef == "big" }},
		{"no name", `{"flavorRef":"small","imageRef":"img"}`, v21, "'name' is a required property", nil},
		{"blank name", `{"name":" a","flavorRef":"small","imageRef":"img"}`, v21, "name", nil},
		{"no flavor", `{"name":"a","imageRef":"img"}`, v21, "flavorRef", nil},
		{"no image", `{"name":"a","flavorRef":"small"}`, v21, "imageRef", nil},
		{"image by bdm", `{"name":"a","flavorRef":"small","block_device_mapping_v2":[{"source_type":"image","uuid":"img","boot_index":0,"destination_type":"local"}]}`, v21, "", func(s ServerCreate) bool { return s.ImageRef == "img" }},
		{"data volume bdm", `{"name":"a","flavorRef":"small","imageRef":"img","block_device_mapping_v2":[{"source_type":"volume","uuid":"v","boot_index":1}]}`, v21, "", func(s ServerCreate) bool {
			return s.ImageRef == "img" && s.BootVolume == nil && len(s.Volumes) == 1 && s.Volumes[0].VolumeID == "v"
		}},
		{"boot from volume", `{"name":"a","flavorRef":"small","imageRef":"","block_device_mapping_v2":[{"source_type":"volume","destination_type":"volume","uuid":"v","boot_index":"0","delete_on_termination":true}]}`, v21, "", func(s ServerCreate) bool {
			return s.ImageRef == "" && s.BootVolume != nil && s.BootVolume.VolumeID == "v" && s.BootVolume.DeleteOnTermination && !s.BootVolume.New
		}},
		{"boot from new volume", `{"name":"a","flavorRef":"small","imageRef":"img","block_device_mapping_v2":[{"source_type":"image","destination_type":"volume","uuid":"img","boot_index":0,"volume_size":"5"}]}`, v21, "", func(s ServerCreate) bool {
			return s.ImageRef == "" && s.BootVolume != nil && s.BootVolume.New && s.BootVolume.ImageID == "img" && s.BootVolume.Size == 5
		}},
		{"image to volume without size", `{"name":"a","flavorRef":"small","block_device_mapping_v2":[{"source_type":"image","destination_type":"volume","uuid":"img","boot_index":0}]}`, v21, "non-zero size", nil},
		{"snapshot bdm", `{"name":"a","flavorRef":"small","block_device_mapping_v2":[{"source_type":"snapshot","destination_type":"volume","uuid":"s","boot_index":0}]}`, v21, "snapshot", nil},
		{"swap bdm", `{"name":"a","flavorRef":"small","imageRef":"img","block_device_mapping_v2":[{"source_type":"blank","destination_type":"local","guest_format":"swap","boot_index":-1,"volume_size":1}]}`, v21, "swap", nil},
		{"two boot disks", `{"name":"a","flavorRef":"small","block_device_mapping_v2":[{"source_type":"volume","uuid":"a","boot_index":0},{"source_type":"volume","uuid":"b","boot_index":0}]}`, v21, "Boot sequence", nil},
		{"volume without uuid", `{"name":"a","flavorRef":"small","block_device_mapping_v2":[{"source_type":"volume","boot_index":0}]}`, v21, "uuid", nil},
		{"networks required", `{"name":"a","flavorRef":"small","imageRef":"img"}`, v237, "'networks' is a required property", nil},
		{"auto", `{"name":"a","flavorRef":"small","imageRef":"img","networks":"auto"}`, v237, "", func(s ServerCreate) bool { return s.NetworkMode == "auto" }},
		{"auto before 2.37", `{"name":"a","flavorRef":"small","imageRef":"img","networks":"auto"}`, v21, "networks", nil},
		{"bad mode", `{"name":"a","flavorRef":"small","imageRef":"img","networks":"some"}`, v237, "networks", nil},
		{"network", `{"name":"a","flavorRef":"small","imageRef":"img","networks":[{"uuid":"n1","fixed_ip":"10.0.0.9"}]}`, v237, "", func(s ServerCreate) bool {
			return len(s.Networks) == 1 && s.Networks[0].UUID == "n1" && s.Networks[0].FixedIP == "10.0.0.9"
		}},
		{"two networks", `{"name":"a","flavorRef":"small","imageRef":"img","networks":[{"uuid":"n1"},{"uuid":"n2"}]}`, v237, "Only one network", nil},
		{"empty network", `{"name":"a","flavorRef":"small","imageRef":"img","networks":[{}]}`, v237, "Bad networks format", nil},
		{"user data", `{"name":"a","flavorRef":"small","imageRef":"img","user_data":"aGVsbG8="}`, v21, "", func(s ServerCreate) bool { return s.UserData == "hello" }},
		{"bad user data", `{"name":"a","flavorRef":"small","imageRef":"img","user_data":"!!"}`, v21, "base 64", nil},
		{"binary user data", `{"name":"a","flavorRef":"small","imageRef":"img","user_data":"/w=="}`, v21, "UTF-8", nil},
		{"groups", `{"name":"a","flavorRef":"small","imageRef":"img","security_groups":[{"name":"web"}]}`, v21, "", func(s ServerCreate) bool { return len(s.SecurityGroups) == 1 && s.SecurityGroups[0] == "web" }},
		{"two servers", `{"name":"a","flavorRef":"small","imageRef":"img","max_count":2}`, v21, "Only one server", nil},
		{"zone", `{"name":"a","flavorRef":"small","imageRef":"img","availability_zone":"elsewhere"}`, v21, "availability zone", nil},
		{"description before 2.19", `{"name":"a","flavorRef":"small","imageRef":"img","description":"d"}`, v21, "description", nil},
		{"description", `{"name":"a","flavorRef":"small","imageRef":"img","description":"d"}`, v219, "", func(s ServerCreate) bool { return s.Description == "d" }},
		{"not an object", `[1]`, v21, "server", nil},
		{"bad metadata", `{"name":"a","flavorRef":"small","imageRef":"img","metadata":{"":"x"}}`, v21, "metadata", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseServerCreate(json.RawMessage(tc.body), tc.mv)
			if tc.err != "" {
				if err == nil || toError(err).Code != 400 || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want a 400 with %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !tc.want(got) {
				t.Errorf("got %+v", got)
			}
		})
	}
}

func TestBuildVM(t *testing.T) {
	sc := ServerCreate{Name: "My VM", UserData: "x", Metadata: map[string]string{"k": "v"}}
	vm := BuildVM(sc, Placement{Namespace: "p1", KubeName: "server-1", Flavor: "small", Image: "img", Port: "server-1-net", KeyPair: "kp", UserID: "alice"})
	if vm.Name != "server-1" || vm.Annotations[AnnotationName] != "My VM" || vm.Annotations[AnnotationUserID] != "alice" {
		t.Errorf("meta %+v", vm.ObjectMeta)
	}
	if vm.Spec.Flavor != "small" || vm.Spec.Image != "img" || vm.Spec.UserData != "x" || vm.Spec.KeyPairs[0] != "kp" ||
		len(vm.Spec.Networks) != 1 || vm.Spec.Networks[0].Port != "server-1-net" || vm.Spec.RunStrategy != computev1.RunStrategyAlways {
		t.Errorf("spec %+v", vm.Spec)
	}
	if Metadata(vm)["k"] != "v" {
		t.Errorf("metadata %v", vm.Annotations)
	}
	vm = BuildVM(ServerCreate{Name: "web"}, Placement{KubeName: "web", Network: "net"})
	if _, ok := vm.Annotations[AnnotationName]; ok || vm.Spec.Networks[0].Network != "net" {
		t.Errorf("plain %+v", vm)
	}
	if vm = BuildVM(ServerCreate{Name: "web"}, Placement{KubeName: "web"}); len(vm.Spec.Networks) != 0 {
		t.Errorf("pod network %+v", vm.Spec.Networks)
	}
}

func TestKubeName(t *testing.T) {
	taken := func(n string) bool { return n == "used" }
	for name, want := range map[string]string{"web-1": "web-1", "Web": "server-", "used": "server-", "a_b": "server-", strings.Repeat("a", 57): "server-"} {
		if got := KubeName(name, "server", 56, taken); !strings.HasPrefix(got, want) || (want == "server-" && len(got) != len("server-")+8) {
			t.Errorf("KubeName(%q) = %q, want %q...", name, got, want)
		}
	}
}

func TestFlavorFromNova(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		mv         Microversion
		err        string
	}{
		{"ok", `{"name":"m1.small","ram":512,"vcpus":1,"disk":1}`, Microversion{Major: 2, Minor: 1}, ""},
		{"strings", `{"name":"m1.small","ram":"512","vcpus":1,"disk":"1","swap":"","OS-FLV-EXT-DATA:ephemeral":null,"rxtx_factor":1.0}`, Microversion{Major: 2, Minor: 1}, ""},
		{"bad ram", `{"name":"m1.small","ram":"lots","vcpus":1,"disk":1}`, Microversion{Major: 2, Minor: 1}, "ram"},
		{"auto id", `{"name":"m1.small","ram":512,"vcpus":1,"disk":1,"id":"auto"}`, Microversion{Major: 2, Minor: 1}, ""},
		{"id is name", `{"name":"m1.small","ram":512,"vcpus":1,"disk":1,"id":"m1.small"}`, Microversion{Major: 2, Minor: 1}, ""},
		{"other id", `{"name":"m1.small","ram":512,"vcpus":1,"disk":1,"id":"42"}`, Microversion{Major: 2, Minor: 1}, "ID is its name"},
		{"upper case", `{"name":"M1","ram":512,"vcpus":1,"disk":1}`, Microversion{Major: 2, Minor: 1}, "DNS"},
		{"no ram", `{"name":"m1","vcpus":1,"disk":1}`, Microversion{Major: 2, Minor: 1}, "'ram' is a required property"},
		{"zero vcpus", `{"name":"m1","ram":512,"vcpus":0,"disk":1}`, Microversion{Major: 2, Minor: 1}, "vcpus"},
		{"description early", `{"name":"m1","ram":512,"vcpus":1,"disk":1,"description":"d"}`, Microversion{Major: 2, Minor: 54}, "description"},
		{"description", `{"name":"m1","ram":512,"vcpus":1,"disk":1,"description":"d","os-flavor-access:is_public":false}`, Microversion{Major: 2, Minor: 55}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var req FlavorCreate
			if err := json.Unmarshal([]byte(tc.body), &req); err != nil {
				t.Fatal(err)
			}
			f, err := FlavorFromNova(req, tc.mv)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			out := FlavorToNova(f, tc.mv, Links{}, true)
			if out["id"] != f.Name || out["ram"] != int64(512) || out["vcpus"] != int32(1) {
				t.Errorf("round trip %v", out)
			}
		})
	}
	f := &computev1.Flavor{ObjectMeta: metav1.ObjectMeta{Name: "f"}, Spec: computev1.FlavorSpec{VCPUs: 1, RAMMiB: 64}}
	if FlavorToNova(f, Microversion{Major: 2, Minor: 1}, Links{}, true)["swap"] != "" || FlavorToNova(f, Microversion{Major: 2, Minor: 75}, Links{}, true)["swap"] != int64(0) {
		t.Error("swap is \"\" before 2.75 and 0 since")
	}
	if _, ok := FlavorToNova(f, Microversion{Major: 2, Minor: 61}, Links{}, true)["extra_specs"]; !ok {
		t.Error("extra_specs at 2.61")
	}
}

func TestKeyPairs(t *testing.T) {
	pub, priv, err := GenerateKeyPair("k1")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(pub, "ssh-ed25519 ") || !strings.HasSuffix(pub, " k1") || !strings.Contains(priv, "OPENSSH PRIVATE KEY") {
		t.Errorf("key pair %q %q", pub, priv)
	}
	fp := Fingerprint(pub)
	if len(fp) != 47 || strings.Count(fp, ":") != 15 {
		t.Errorf("fingerprint %q", fp)
	}
	if Fingerprint("nonsense") != "" {
		t.Error("fingerprint of nonsense")
	}
	kp := &computev1.KeyPair{ObjectMeta: metav1.ObjectMeta{Name: "keypair-1", Annotations: map[string]string{AnnotationName: "my key"}}, Spec: computev1.KeyPairSpec{PublicKey: pub}}
	out := KeyPairToNova(kp, Microversion{Major: 2, Minor: 1}, "alice", false)
	if out["name"] != "my key" || out["fingerprint"] != fp {
		t.Errorf("keypair %v", out)
	}
	if _, ok := out["type"]; ok {
		t.Error("type before 2.2")
	}
	if out = KeyPairToNova(kp, Microversion{Major: 2, Minor: 2}, "alice", true); out["type"] != "ssh" || out["user_id"] != "alice" {
		t.Errorf("keypair detail %v", out)
	}
	for name, ok := range map[string]bool{"k": true, "my key": true, "a.b-c_d@e": true, "": false, " k": false, "k/1": false, "k\n": false} {
		if ValidKeyPairName(name) != ok {
			t.Errorf("ValidKeyPairName(%q) != %v", name, ok)
		}
	}
}

func TestQuotaFromResourceQuotas(t *testing.T) {
	rq := func(hard map[string]string) corev1.ResourceQuota {
		l := corev1.ResourceList{}
		for k, v := range hard {
			l[corev1.ResourceName(k)] = resource.MustParse(v)
		}
		return corev1.ResourceQuota{Spec: corev1.ResourceQuotaSpec{Hard: l}}
	}
	if q := QuotaFromResourceQuotas(nil); q != (Quota{-1, -1, -1, -1}) {
		t.Errorf("none: %+v", q)
	}
	q := QuotaFromResourceQuotas([]corev1.ResourceQuota{
		rq(map[string]string{quotaVMs: "10", "requests.cpu": "8", "requests.memory": "16Gi"}),
		rq(map[string]string{quotaVMs: "5", "cpu": "2500m", quotaKeyPairs: "3"}),
	})
	if q != (Quota{Instances: 5, Cores: 2, RAMMiB: 16384, KeyPairs: 3}) {
		t.Errorf("got %+v", q)
	}
	set := QuotaSetToNova("p1", q, &Quota{Instances: 1}, Microversion{Major: 2, Minor: 57})
	if set["instances"].(map[string]int64)["in_use"] != 1 || set["cores"].(map[string]int64)["limit"] != 2 {
		t.Errorf("detail %v", set)
	}
	if _, ok := set["injected_files"]; ok {
		t.Error("injected_files since 2.57")
	}
	if _, ok := QuotaSetToNova("p1", q, nil, Microversion{Major: 2, Minor: 1})["floating_ips"]; !ok {
		t.Error("floating_ips before 2.36")
	}
	abs := LimitsToNova(q, Quota{Instances: 1, Cores: 1, RAMMiB: 512}, Microversion{Major: 2, Minor: 1})["limits"].(map[string]any)["absolute"].(map[string]any)
	if abs["maxTotalInstances"] != int64(5) || abs["totalRAMUsed"] != int64(512) || abs["maxPersonality"] != 5 {
		t.Errorf("limits %v", abs)
	}
}

func TestConsoleLength(t *testing.T) {
	for body, want := range map[string]int64{`{}`: -1, `null`: -1, `{"length":null}`: -1, `{"length":10}`: 10, `{"length":"20"}`: 20, `{"length":-1}`: -1, `{"length":0}`: 0} {
		got, err := ConsoleLength(json.RawMessage(body))
		if err != nil || got != want {
			t.Errorf("%s: %d %v, want %d", body, got, err, want)
		}
	}
	for _, body := range []string{`{"length":"x"}`, `{"length":-5}`} {
		if _, err := ConsoleLength(json.RawMessage(body)); err == nil {
			t.Errorf("%s: no error", body)
		}
	}
}

func TestAddressesToNova(t *testing.T) {
	out := AddressesToNova([]Address{{Network: "pod", IP: "10.42.0.5"}})
	if a := out["pod"]; len(a) != 1 || a[0]["version"] != 4 || a[0]["OS-EXT-IPS:type"] != "fixed" {
		t.Errorf("%v", out)
	}
	if _, ok := out["pod"][0]["OS-EXT-IPS-MAC:mac_addr"]; ok {
		t.Error("mac without one")
	}
}

func TestParseBlockDevices(t *testing.T) {
	for _, tc := range []struct {
		name  string
		bdms  string
		image string
		boot  *BlockDevice
		vols  []BlockDevice
		err   string
	}{
		{"none", `[]`, "", nil, nil, ""},
		{"image", `[{"source_type":"image","uuid":"i","boot_index":0}]`, "i", nil, nil, ""},
		{"image, second", `[{"source_type":"image","uuid":"i","boot_index":1,"destination_type":"local"}]`, "", nil, nil, "other than the boot disk"},
		{"existing root and data", `[{"source_type":"volume","uuid":"r","boot_index":0},{"source_type":"volume","destination_type":"volume","uuid":"d","boot_index":-1,"delete_on_termination":"true"}]`,
			"", &BlockDevice{VolumeID: "r"}, []BlockDevice{{VolumeID: "d", DeleteOnTermination: true}}, ""},
		{"boot-from-volume N", `[{"uuid":"i","boot_index":"0","source_type":"image","destination_type":"volume","volume_size":8,"delete_on_termination":false}]`,
			"", &BlockDevice{New: true, ImageID: "i", Size: 8}, nil, ""},
		{"blank data", `[{"source_type":"blank","destination_type":"volume","volume_size":2,"boot_index":null}]`, "", nil, []BlockDevice{{New: true, Size: 2}}, ""},
		{"blank boot", `[{"source_type":"blank","destination_type":"volume","volume_size":2,"boot_index":0}]`, "", nil, nil, "blank volume cannot be the boot disk"},
		{"blank no size", `[{"source_type":"blank","destination_type":"volume"}]`, "", nil, nil, "volume_size"},
		{"ephemeral", `[{"source_type":"blank","destination_type":"local","volume_size":1}]`, "", nil, nil, "ephemeral"},
		{"bad boot index", `[{"source_type":"volume","uuid":"v","boot_index":"x"}]`, "", nil, nil, "boot_index"},
		{"bad size", `[{"source_type":"image","destination_type":"volume","uuid":"i","volume_size":-1}]`, "", nil, nil, "volume_size"},
		{"bad dot", `[{"source_type":"volume","uuid":"v","delete_on_termination":"maybe"}]`, "", nil, nil, "delete_on_termination"},
		{"unknown", `[{"source_type":"floppy","uuid":"v"}]`, "", nil, nil, "not supported"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var bdms []map[string]any
			if err := json.Unmarshal([]byte(tc.bdms), &bdms); err != nil {
				t.Fatal(err)
			}
			image, boot, vols, err := ParseBlockDevices(bdms)
			if tc.err != "" {
				if err == nil || toError(err).Code != 400 || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want a 400 with %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if image != tc.image || (boot == nil) != (tc.boot == nil) || boot != nil && *boot != *tc.boot || len(vols) != len(tc.vols) {
				t.Fatalf("got %q %+v %+v", image, boot, vols)
			}
			for i := range vols {
				if vols[i] != tc.vols[i] {
					t.Errorf("volume %d: %+v, want %+v", i, vols[i], tc.vols[i])
				}
			}
		})
	}
	many := make([]map[string]any, maxVolumes+1)
	for i := range many {
		many[i] = map[string]any{"source_type": "volume", "uuid": fmt.Sprint(i), "boot_index": -1}
	}
	if _, _, _, err := ParseBlockDevices(many); err == nil || toError(err).Code != 403 {
		t.Errorf("17 volumes: %v", err)
	}
}

func TestServerVolumesAndAttachmentBodies(t *testing.T) {
	vol := func(name, uid, node string, owner string) *storagev1.Volume {
		v := &storagev1.Volume{ObjectMeta: metav1.ObjectMeta{Name: name, UID: types.UID(uid)}, Spec: storagev1.VolumeSpec{Node: node},
			Status: storagev1.VolumeStatus{Phase: storagev1.VolumeAvailable}}
		if owner != "" {
			v.OwnerReferences = []metav1.OwnerReference{{Kind: "VirtualMachine", UID: types.UID(owner)}}
		}
		return v
	}
	vols := map[string]*storagev1.Volume{"r": vol("r", "r-id", "n1", ""), "a": vol("a", "a-id", "n1", "u1"), "b": vol("b", "b-id", "n1", ""), "c": vol("c", "c-id", "n1", "")}
	vm := vmWith(computev1.VirtualMachineRunning, func(vm *computev1.VirtualMachine) {
		vm.Spec.Image, vm.Spec.RootVolume = "", "r"
		vm.Spec.Volumes = []computev1.VirtualMachineVolume{{Volume: "a"}, {Volume: "gone"}, {Volume: "b"}}
		vm.Status.NodeName = "n1"
		vm.Status.Volumes = []computev1.VirtualMachineVolumeStatus{{Volume: "a", Phase: computev1.VolumeAttached, Target: "vdc"},
			{Volume: "c", Phase: computev1.VolumeDetaching, Target: "vdd"}}
	})
	got := ServerVolumes(vm, vols)
	want := []struct {
		id, dev string
		dot     bool
	}{{"r-id", "/dev/vda", false}, {"a-id", "/dev/vdc", true}, {"b-id", "", false}, {"c-id", "/dev/vdd", false}}
	if len(got) != len(want) {
		t.Fatalf("got %+v", got)
	}
	for i, w := range want {
		if got[i].VolumeID != w.id || got[i].Device != w.dev || got[i].DeleteOnTermination != w.dot || got[i].ServerID != "u1" {
			t.Errorf("%d: %+v, want %+v", i, got[i], w)
		}
	}
	for _, tc := range []struct {
		mv      Microversion
		created bool
		keys    string
	}{
		{Microversion{Major: 2, Minor: 1}, false, "device id serverId volumeId"},
		{Microversion{Major: 2, Minor: 70}, false, "device id serverId tag volumeId"},
		{Microversion{Major: 2, Minor: 79}, true, "delete_on_termination device id serverId tag volumeId"},
		{Microversion{Major: 2, Minor: 89}, false, "attachment_id bdm_uuid delete_on_termination device serverId tag volumeId"},
		{Microversion{Major: 2, Minor: 89}, true, "delete_on_termination device id serverId tag volumeId"},
	} {
		if k := strings.Join(sortedKeys(VolumeAttachmentToNova(got[1], tc.mv, tc.created)), " "); k != tc.keys {
			t.Errorf("%s created=%v: %s, want %s", tc.mv, tc.created, k, tc.keys)
		}
	}
	if va := VolumesAttached(got, Microversion{Major: 2, Minor: 1}); len(va) != 4 || len(va[0].(map[string]any)) != 1 {
		t.Errorf("volumes_attached at 2.1 %v", va)
	}
	if va := VolumesAttached(nil, Microversion{Major: 2, Minor: 3}); va == nil || len(va) != 0 {
		t.Errorf("no volumes: %v", va)
	}

	// AttachCheck.
	free := vol("f", "f-id", "n1", "")
	far := vol("x", "x-id", "n2", "")
	unplaced := vol("u", "u-id", "", "")
	busy := vol("y", "y-id", "n1", "")
	busy.Status.Attachments = []storagev1.VolumeAttachment{{Kind: "Pod", Name: "db-0"}}
	creating := vol("k", "k-id", "n1", "")
	creating.Status.Phase = storagev1.VolumeCreating
	other := []computev1.VirtualMachine{{ObjectMeta: metav1.ObjectMeta{UID: "u2"}, Spec: computev1.VirtualMachineSpec{Volumes: []computev1.VirtualMachineVolume{{Volume: "o"}}}}}
	stopped := vm.DeepCopy()
	stopped.Status.NodeName = ""
	full := vm.DeepCopy()
	for i := len(full.Spec.Volumes); i < maxVolumes; i++ {
		full.Spec.Volumes = append(full.Spec.Volumes, computev1.VirtualMachineVolume{Volume: fmt.Sprint("v", i)})
	}
	for _, tc := range []struct {
		name string
		vm   *computev1.VirtualMachine
		v    *storagev1.Volume
		code int
	}{
		{"free", vm, free, 0},
		{"unplaced", vm, unplaced, 0},
		{"root again", vm, vols["r"], 409},
		{"data again", vm, vols["a"], 409},
		{"another VM's", vm, vol("o", "o-id", "n1", ""), 409},
		{"a pod's", vm, busy, 409},
		{"creating", vm, creating, 400},
		{"other node", vm, far, 400},
		{"other node than its volumes, not placed yet", stopped, far, 400},
		{"full", full, free, 403},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := AttachCheck(tc.vm, tc.v, other, vols)
			code := 0
			if err != nil {
				code = toError(err).Code
			}
			if code != tc.code {
				t.Errorf("%v, want code %d", err, tc.code)
			}
		})
	}
}
