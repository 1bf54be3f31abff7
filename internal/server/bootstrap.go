package server

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	storagev1 "k8s.io/api/storage/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextensionsclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	bootstrapapi "k8s.io/cluster-bootstrap/token/api"

	"github.com/strata-cloud/strata/api/crds"
	storagev1alpha1 "github.com/strata-cloud/strata/api/storage/v1alpha1"
	"github.com/strata-cloud/strata/internal/agent"
	"github.com/strata-cloud/strata/internal/pki"
)

// bootstrap creates what every Strata cluster needs beyond upstream's own
// bootstrap policy: Strata's CRDs (established before the server reports
// ready), the apiserver's kubelet-client binding, and the public
// cluster-info that joining nodes verify against the CA hash.
func bootstrap(ctx context.Context, config *rest.Config, cluster *pki.Cluster, cfg Config, advertise net.IP) error {
	if err := installCRDs(ctx, config); err != nil {
		return err
	}
	client, err := kubernetes.NewForConfig(config)
	if err != nil {
		return err
	}
	if err := apply(ctx, "clusterrolebinding strata:kube-apiserver-kubelet-client", func() error {
		_, err := client.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: "strata:kube-apiserver-kubelet-client"},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "system:kubelet-api-admin"},
			Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: pki.KubeletClientUser}},
		}, metav1.CreateOptions{})
		return err
	}); err != nil {
		return err
	}
	// Each node's network agent programs routes to every other node's pods,
	// so nodes read all Node objects (the Node authorizer alone allows
	// only their own).
	if err := apply(ctx, "clusterrole strata:node-network", func() error {
		return ensureClusterRole(ctx, client, &rbacv1.ClusterRole{
			ObjectMeta: metav1.ObjectMeta{Name: "strata:node-network"},
			Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"get", "list", "watch"}}},
		})
	}); err != nil {
		return err
	}
	// Each node enforces NetworkPolicy for its pods against peers anywhere.
	if err := apply(ctx, "clusterrole strata:node-network-policy", func() error {
		return ensureClusterRole(ctx, client, &rbacv1.ClusterRole{
			ObjectMeta: metav1.ObjectMeta{Name: "strata:node-network-policy"},
			Rules: []rbacv1.PolicyRule{
				{APIGroups: []string{""}, Resources: []string{"pods", "namespaces"}, Verbs: []string{"get", "list", "watch"}},
				{APIGroups: []string{"networking.k8s.io"}, Resources: []string{"networkpolicies"}, Verbs: []string{"get", "list", "watch"}},
			},
		})
	}); err != nil {
		return err
	}
	// A VM migrates between the agents of two nodes: the source's drives it
	// and reports progress, the target's checks each stream against it.
	if err := apply(ctx, "clusterrole strata:node-vm-migration", func() error {
		return ensureClusterRole(ctx, client, &rbacv1.ClusterRole{
			ObjectMeta: metav1.ObjectMeta{Name: "strata:node-vm-migration"},
			Rules: []rbacv1.PolicyRule{
				{APIGroups: []string{"compute.strata.io"}, Resources: []string{"virtualmachinemigrations"}, Verbs: []string{"get", "list", "watch"}},
				{APIGroups: []string{"compute.strata.io"}, Resources: []string{"virtualmachinemigrations/status"}, Verbs: []string{"patch"}},
				// Cluster DNS answers <vm>.<namespace>.vm.<domain>.
				{APIGroups: []string{"compute.strata.io"}, Resources: []string{"virtualmachines"}, Verbs: []string{"get", "list", "watch"}},
			},
		})
	}); err != nil {
		return err
	}
	// Each node's agent wires the tenant networks of its pods and VMs
	// (bridges, routers, floating IPs, security groups) and reports where
	// each Port is bound and whether it is up.
	if err := apply(ctx, "clusterrole strata:node-tenant-network", func() error {
		return ensureClusterRole(ctx, client, &rbacv1.ClusterRole{
			ObjectMeta: metav1.ObjectMeta{Name: "strata:node-tenant-network"},
			Rules: []rbacv1.PolicyRule{
				{APIGroups: []string{"networking.strata.io"}, Resources: []string{"networks", "subnets", "ports", "routers", "floatingips", "securitygroups"}, Verbs: []string{"get", "list", "watch"}},
				{APIGroups: []string{"networking.strata.io"}, Resources: []string{"ports/status"}, Verbs: []string{"update", "patch"}},
			},
		})
	}); err != nil {
		return err
	}
	// Each node's agent realises the Volumes and VolumeSnapshots placed on
	// it: finalizers on the objects, their status.
	if err := apply(ctx, "clusterrole strata:node-volumes", func() error {
		return ensureClusterRole(ctx, client, &rbacv1.ClusterRole{
			ObjectMeta: metav1.ObjectMeta{Name: "strata:node-volumes"},
			Rules: []rbacv1.PolicyRule{
				{APIGroups: []string{"storage.strata.io"}, Resources: []string{"volumes", "volumesnapshots"}, Verbs: []string{"get", "list", "watch", "patch"}},
				{APIGroups: []string{"storage.strata.io"}, Resources: []string{"volumes/status", "volumesnapshots/status"}, Verbs: []string{"patch"}},
				// Volumes from Images: the node fetches the Image's artifact.
				{APIGroups: []string{"storage.strata.io"}, Resources: []string{"images"}, Verbs: []string{"get"}},
			},
		})
	}); err != nil {
		return err
	}
	if err := bootstrapStorageClass(ctx, client); err != nil {
		return err
	}
	// Joining nodes: a bootstrap token may request a node client
	// certificate, which the controller-manager's approver then approves;
	// nodes may renew their own.
	for _, b := range []struct{ name, role, group string }{
		{"strata:node-bootstrapper", "system:node-bootstrapper", pki.BootstrapTokenGroup},
		{"strata:node-autoapprove-bootstrap", "system:certificates.k8s.io:certificatesigningrequests:nodeclient", pki.BootstrapTokenGroup},
		{"strata:node-autoapprove-renewal", "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient", "system:nodes"},
		{"strata:node-network", "strata:node-network", "system:nodes"},
		{"strata:node-network-policy", "strata:node-network-policy", "system:nodes"},
		{"strata:node-vm-migration", "strata:node-vm-migration", "system:nodes"},
		{"strata:node-tenant-network", "strata:node-tenant-network", "system:nodes"},
		{"strata:node-volumes", "strata:node-volumes", "system:nodes"},
		// kube-proxy runs inside each node's agent with the node's identity.
		{"strata:node-proxier", "system:node-proxier", "system:nodes"},
	} {
		if err := apply(ctx, "clusterrolebinding "+b.name, func() error {
			_, err := client.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
				ObjectMeta: metav1.ObjectMeta{Name: b.name},
				RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: b.role},
				Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.GroupKind, Name: b.group}},
			}, metav1.CreateOptions{})
			return err
		}); err != nil {
			return err
		}
	}
	// A joining node checks that no live node already has its name.
	if err := apply(ctx, "role kube-node-lease/strata:node-join", func() error {
		_, err := client.RbacV1().Roles(corev1.NamespaceNodeLease).Create(ctx, &rbacv1.Role{
			ObjectMeta: metav1.ObjectMeta{Name: "strata:node-join", Namespace: corev1.NamespaceNodeLease},
			Rules:      []rbacv1.PolicyRule{{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, Verbs: []string{"get"}}},
		}, metav1.CreateOptions{})
		return err
	}); err != nil {
		return err
	}
	if err := apply(ctx, "rolebinding kube-node-lease/strata:node-join", func() error {
		_, err := client.RbacV1().RoleBindings(corev1.NamespaceNodeLease).Create(ctx, &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: "strata:node-join", Namespace: corev1.NamespaceNodeLease},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "strata:node-join"},
			Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.GroupKind, Name: pki.BootstrapTokenGroup}},
		}, metav1.CreateOptions{})
		return err
	}); err != nil {
		return err
	}
	if err := bootstrapLoadBalancers(ctx, client, cfg); err != nil {
		return err
	}
	return publishClusterInfo(ctx, client, cluster, cfg, advertise)
}

// publishClusterInfo writes kube-public/cluster-info, readable without
// credentials, as kubeadm does: the bootstrap signer signs it with each
// bootstrap token so a joining node can trust it. Beside the kubeconfig it
// holds the registry's port, which joining nodes use as their mirror.
func publishClusterInfo(ctx context.Context, client kubernetes.Interface, cluster *pki.Cluster, cfg Config, advertise net.IP) error {
	host := loopbackFor(cfg.BindAddress)
	if advertise != nil {
		host = advertise.String()
	}
	kubeconfig, err := pki.Kubeconfig(fmt.Sprintf("https://%s", joinHostPort(host, cfg.APIPort)), "", cluster.CA.CertPEM(), nil, nil)
	if err != nil {
		return err
	}
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: bootstrapapi.ConfigMapClusterInfo, Namespace: metav1.NamespacePublic},
		Data: map[string]string{
			bootstrapapi.KubeConfigKey: string(kubeconfig),
			agent.RegistryPortKey:      strconv.Itoa(cfg.RegistryPort),
			OpenStackPortKey:           openStackPortValue(cfg),
			agent.ClusterCIDRKey:       cfg.ClusterCIDR,
			agent.ClusterDNSKey:        clusterDNS(cfg.ServiceCIDR).String(),
		},
	}
	if err := apply(ctx, "configmap kube-public/cluster-info", func() error {
		existing, err := client.CoreV1().ConfigMaps(metav1.NamespacePublic).Get(ctx, cm.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			_, err = client.CoreV1().ConfigMaps(metav1.NamespacePublic).Create(ctx, cm, metav1.CreateOptions{})
			return err
		}
		if err != nil {
			return err
		}
		// Only our keys: the bootstrap signer owns the signatures.
		same := true
		for k, v := range cm.Data {
			same = same && existing.Data[k] == v
		}
		if same {
			return nil
		}
		existing = existing.DeepCopy()
		if existing.Data == nil {
			existing.Data = map[string]string{}
		}
		for k, v := range cm.Data {
			existing.Data[k] = v
		}
		_, err = client.CoreV1().ConfigMaps(metav1.NamespacePublic).Update(ctx, existing, metav1.UpdateOptions{})
		return err
	}); err != nil {
		return err
	}
	role := &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "strata:bootstrap-signer-clusterinfo", Namespace: metav1.NamespacePublic},
		Rules: []rbacv1.PolicyRule{{
			APIGroups: []string{""}, Resources: []string{"configmaps"},
			ResourceNames: []string{bootstrapapi.ConfigMapClusterInfo}, Verbs: []string{"get"},
		}},
	}
	if err := apply(ctx, "role kube-public/"+role.Name, func() error {
		_, err := client.RbacV1().Roles(metav1.NamespacePublic).Create(ctx, role, metav1.CreateOptions{})
		return err
	}); err != nil {
		return err
	}
	return apply(ctx, "rolebinding kube-public/"+role.Name, func() error {
		_, err := client.RbacV1().RoleBindings(metav1.NamespacePublic).Create(ctx, &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: role.Name, Namespace: metav1.NamespacePublic},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: role.Name},
			Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: "system:anonymous"}},
		}, metav1.CreateOptions{})
		return err
	})
}

// leaderLeases are the leases the in-process components elect leaders on.
var leaderLeases = []string{"kube-controller-manager", "kube-scheduler", strataControllersLease}

// releaseStaleLeases deletes the leader leases of a previous run of this
// server. With embedded etcd this process is the only possible holder, so a
// lease that exists now was left by a run that crashed; without this,
// controllers and the scheduler would idle until it expires (15 s).
func releaseStaleLeases(ctx context.Context, client kubernetes.Interface) error {
	for _, name := range leaderLeases {
		err := client.CoordinationV1().Leases(metav1.NamespaceSystem).Delete(ctx, name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("release stale lease kube-system/%s: %w", name, err)
		}
	}
	return nil
}

// installCRDs creates or updates Strata's CRDs and waits until each is
// Established, so that the server is ready only when its kinds are served.
func installCRDs(ctx context.Context, config *rest.Config) error {
	all, err := crds.All()
	if err != nil {
		return err
	}
	client, err := apiextensionsclient.NewForConfig(config)
	if err != nil {
		return err
	}
	api := client.ApiextensionsV1().CustomResourceDefinitions()
	for _, crd := range all {
		if err := apply(ctx, "crd "+crd.Name, func() error {
			existing, err := api.Get(ctx, crd.Name, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				_, err = api.Create(ctx, crd, metav1.CreateOptions{})
				return err
			}
			if err != nil {
				return err
			}
			updated := existing.DeepCopy()
			updated.Spec = crd.Spec
			updated.Labels, updated.Annotations = crd.Labels, crd.Annotations
			_, err = api.Update(ctx, updated, metav1.UpdateOptions{})
			return err
		}); err != nil {
			return err
		}
	}
	for _, crd := range all {
		err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
			got, err := api.Get(ctx, crd.Name, metav1.GetOptions{})
			if err != nil {
				return false, nil
			}
			for _, c := range got.Status.Conditions {
				if c.Type == apiextensionsv1.Established && c.Status == apiextensionsv1.ConditionTrue {
					return true, nil
				}
			}
			return false, nil
		})
		if err != nil {
			return fmt.Errorf("crd %s not established: %w", crd.Name, err)
		}
	}
	return nil
}

// apply runs fn until it succeeds, treating AlreadyExists as success and
// retrying transient errors (the apiserver may still be starting).
// ensureClusterRole creates role, or brings an existing one's rules up to
// date: a data dir from an older Strata keeps its roles, and a new rule in
// one must still reach the cluster.
func ensureClusterRole(ctx context.Context, client kubernetes.Interface, role *rbacv1.ClusterRole) error {
	_, err := client.RbacV1().ClusterRoles().Create(ctx, role, metav1.CreateOptions{})
	if !apierrors.IsAlreadyExists(err) {
		return err
	}
	have, err := client.RbacV1().ClusterRoles().Get(ctx, role.Name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	if equality.Semantic.DeepEqual(have.Rules, role.Rules) {
		return nil
	}
	have = have.DeepCopy()
	have.Rules = role.Rules
	_, err = client.RbacV1().ClusterRoles().Update(ctx, have, metav1.UpdateOptions{})
	return err
}

func apply(ctx context.Context, what string, fn func() error) error {
	var last error
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 2*time.Minute, true, func(context.Context) (bool, error) {
		last = fn()
		switch {
		case last == nil, apierrors.IsAlreadyExists(last):
			return true, nil
		case apierrors.IsInvalid(last), apierrors.IsBadRequest(last), apierrors.IsForbidden(last):
			return false, last
		}
		return false, nil
	})
	if err != nil {
		if last != nil {
			err = last
		}
		return fmt.Errorf("bootstrap %s: %w", what, err)
	}
	return nil
}

// bootstrapStorageClass creates the default StorageClass `strata`, whose
// claims the volume provisioner makes into Volumes on the node of their
// first pod. An existing class is left as its administrator made it
// (StorageClasses are immutable but for metadata, and one may have
// removed the default annotation on purpose).
func bootstrapStorageClass(ctx context.Context, client kubernetes.Interface) error {
	return apply(ctx, "storageclass "+storagev1alpha1.DefaultStorageClass, func() error {
		wait := storagev1.VolumeBindingWaitForFirstConsumer
		reclaim := corev1.PersistentVolumeReclaimDelete
		expand := true
		_, err := client.StorageV1().StorageClasses().Create(ctx, &storagev1.StorageClass{
			ObjectMeta: metav1.ObjectMeta{
				Name:        storagev1alpha1.DefaultStorageClass,
				Annotations: map[string]string{"storageclass.kubernetes.io/is-default-class": "true"},
			},
			Provisioner:          storagev1alpha1.Provisioner,
			ReclaimPolicy:        &reclaim,
			VolumeBindingMode:    &wait,
			AllowVolumeExpansion: &expand,
		}, metav1.CreateOptions{})
		return err
	})
}
