package e2e

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

func TestAPIResources(t *testing.T) {
	t.Parallel()
	s := sharedServer(t)
	names := strings.Fields(s.MustKubectl("api-resources", "-o", "name"))
	for _, want := range []string{
		"pods", "configmaps", "secrets", "namespaces", "services", "serviceaccounts",
		"deployments.apps", "replicasets.apps", "statefulsets.apps",
		"jobs.batch", "cronjobs.batch",
		"roles.rbac.authorization.k8s.io", "rolebindings.rbac.authorization.k8s.io",
		"clusterroles.rbac.authorization.k8s.io",
		"customresourcedefinitions.apiextensions.k8s.io",
		"flavors.compute.strata.io",
	} {
		if !slices.Contains(names, want) {
			t.Errorf("kubectl api-resources lacks %s", want)
		}
	}

	// Strata's kinds as kubectl sees them: short names, version, scope.
	rows := strings.Split(strings.TrimSpace(s.MustKubectl("api-resources", "--api-group=compute.strata.io", "--no-headers")), "\n")
	wantRows := [][]string{
		{"flavors", "flv", "compute.strata.io/v1alpha1", "false", "Flavor"},
		{"keypairs", "kp", "compute.strata.io/v1alpha1", "true", "KeyPair"},
		{"virtualmachinemigrations", "vmmigration,vmmigrations,vmim", "compute.strata.io/v1alpha1", "true", "VirtualMachineMigration"},
		{"virtualmachinepools", "vmpool,vmpools", "compute.strata.io/v1alpha1", "true", "VirtualMachinePool"},
		{"virtualmachines", "vm,vms", "compute.strata.io/v1alpha1", "true", "VirtualMachine"},
	}
	if len(rows) != len(wantRows) {
		t.Fatalf("api-resources --api-group=compute.strata.io:\n%s\nwant %d kinds", strings.Join(rows, "\n"), len(wantRows))
	}
	for i, want := range wantRows {
		if row := strings.Fields(rows[i]); !slices.Equal(row, want) {
			t.Errorf("api-resources --api-group=compute.strata.io row %d = %q, want %q", i, row, want)
		}
	}
	if row := strings.Fields(s.MustKubectl("api-resources", "--api-group=storage.strata.io", "--no-headers")); !slices.Equal(row, []string{
		"images", "vmimage,vmimages", "storage.strata.io/v1alpha1", "true", "Image",
		"volumes", "vol", "storage.strata.io/v1alpha1", "true", "Volume",
		"volumesnapshots", "volsnap", "storage.strata.io/v1alpha1", "true", "VolumeSnapshot",
	}) {
		t.Errorf("api-resources --api-group=storage.strata.io = %q", row)
	}
}

func TestKubectlVersion(t *testing.T) {
	t.Parallel()
	s := sharedServer(t)
	var v struct {
		ServerVersion struct {
			GitVersion string `json:"gitVersion"`
			Major      string `json:"major"`
			Minor      string `json:"minor"`
		} `json:"serverVersion"`
	}
	out := s.MustKubectl("version", "-o", "json")
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("kubectl version -o json: %v\n%s", err, out)
	}
	if v.ServerVersion.GitVersion != "v1.37.2" || v.ServerVersion.Major != "1" || v.ServerVersion.Minor != "37" {
		t.Errorf("server version = %+v, want v1.37.2 (1, 37)", v.ServerVersion)
	}
}

func TestExplain(t *testing.T) {
	t.Parallel()
	s := sharedServer(t)
	for _, tc := range []struct {
		field string
		want  []string
	}{
		{"deployment.spec.replicas", []string{"Deployment", "replicas", "<integer>", "Number of desired pods"}},
		{"flavors.spec.vcpus", []string{"Flavor", "compute.strata.io", "vcpus", "<integer>", "number of virtual CPUs"}},
		{"flavors.spec", []string{"vcpus", "ramMiB", "diskGiB", "extraSpecs"}},
	} {
		t.Run(tc.field, func(t *testing.T) {
			out := s.For(t).MustKubectl("explain", tc.field)
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("kubectl explain %s lacks %q:\n%s", tc.field, w, out)
				}
			}
		})
	}
}
