package cinder

import (
	"net/http"
	"sort"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	storagev1 "github.com/strata-cloud/strata/api/storage/v1alpha1"
	"github.com/strata-cloud/strata/internal/openstack/osapi"
)

func (h *handler) otherRoutes(api *http.ServeMux, v string) {
	// Volume types.
	api.HandleFunc("GET "+v+"/types", h.serve(readAccess, func(rq *request) (int, any, error) {
		out := []any{}
		for _, t := range Types {
			out = append(out, TypeToCinder(t))
		}
		return http.StatusOK, map[string]any{"volume_types": out}, nil
	}))
	api.HandleFunc("GET "+v+"/types/default", h.serve(readAccess, func(rq *request) (int, any, error) {
		return http.StatusOK, map[string]any{"volume_type": TypeToCinder(DefaultType)}, nil
	}))
	typeOf := func(rq *request) (*VolumeType, error) {
		t := FindType(rq.r.PathValue("id"))
		if t == nil {
			return nil, notFound("Volume type %s could not be found.", rq.r.PathValue("id"))
		}
		return t, nil
	}
	api.HandleFunc("GET "+v+"/types/{id}", h.serve(readAccess, func(rq *request) (int, any, error) {
		t, err := typeOf(rq)
		if err != nil {
			return 0, nil, err
		}
		return http.StatusOK, map[string]any{"volume_type": TypeToCinder(*t)}, nil
	}))
	api.HandleFunc("GET "+v+"/types/{id}/extra_specs", h.serve(readAccess, func(rq *request) (int, any, error) {
		t, err := typeOf(rq)
		if err != nil {
			return 0, nil, err
		}
		return http.StatusOK, map[string]any{"extra_specs": TypeToCinder(*t)["extra_specs"]}, nil
	}))
	fixedTypes := h.serve(adminAccess, func(rq *request) (int, any, error) {
		return 0, nil, notImplemented("Volume types are fixed here: __DEFAULT__ (raw files) and qcow2.")
	})
	api.HandleFunc("POST "+v+"/types", fixedTypes)
	api.HandleFunc("PUT "+v+"/types/{id}", fixedTypes)
	api.HandleFunc("DELETE "+v+"/types/{id}", fixedTypes)
	api.HandleFunc("POST "+v+"/types/{id}/extra_specs", fixedTypes)

	// Limits and quotas.
	api.HandleFunc("GET "+v+"/limits", h.serve(readAccess, func(rq *request) (int, any, error) {
		q, used, err := h.quota(rq, rq.ns)
		if err != nil {
			return 0, nil, err
		}
		return http.StatusOK, LimitsToCinder(q, used), nil
	}))
	api.HandleFunc("GET "+v+"/os-quota-sets/{project}", h.serve(readAccess, h.quotaSet))
	api.HandleFunc("GET "+v+"/os-quota-sets/{project}/defaults", h.serve(readAccess, func(rq *request) (int, any, error) {
		return http.StatusOK, map[string]any{"quota_set": QuotaSetToCinder(rq.r.PathValue("project"), Quota{-1, -1, -1}, nil)}, nil
	}))
	api.HandleFunc("PUT "+v+"/os-quota-sets/{project}", h.serve(adminAccess, func(rq *request) (int, any, error) {
		return 0, nil, notImplemented("Quotas are the project's Kubernetes ResourceQuotas: change them with kubectl.")
	}))
	api.HandleFunc("DELETE "+v+"/os-quota-sets/{project}", h.serve(adminAccess, func(rq *request) (int, any, error) {
		return 0, nil, notImplemented("Quotas are the project's Kubernetes ResourceQuotas: change them with kubectl.")
	}))

	// Zones, extensions, services.
	api.HandleFunc("GET "+v+"/os-availability-zone", h.serve(readAccess, func(rq *request) (int, any, error) {
		return http.StatusOK, map[string]any{"availabilityZoneInfo": []any{map[string]any{
			"zoneName": Zone, "zoneState": map[string]bool{"available": true}}}}, nil
	}))
	api.HandleFunc("GET "+v+"/extensions", h.serve(readAccess, func(rq *request) (int, any, error) {
		return http.StatusOK, map[string]any{"extensions": Extensions()}, nil
	}))
	api.HandleFunc("GET "+v+"/os-services", h.serve(adminAccess, h.services))
}

// Extensions is GET /extensions: the extended attributes and resources
// this API has.
func Extensions() []any {
	var out []any
	for _, e := range [][2]string{
		{"os-availability-zone", "AvailabilityZones"},
		{"os-extended-snapshot-attributes", "ExtendedSnapshotAttributes"},
		{"os-vol-host-attr", "VolumeHostAttribute"},
		{"os-vol-tenant-attr", "VolumeTenantAttribute"},
		{"os-vol-image-meta", "VolumeImageMetadata"},
		{"os-quota-sets", "Quotas"},
		{"os-types-extra-specs", "TypesExtraSpecs"},
		{"os-volume-actions", "VolumeActions"},
		{"os-services", "Services"},
	} {
		out = append(out, map[string]any{"alias": e[0], "name": e[1], "description": e[1] + " (Strata)",
			"namespace": "https://docs.openstack.org/", "updated": "2023-01-01T00:00:00+00:00", "links": []any{}})
	}
	return out
}

// quota is a namespace's quota and usage.
func (h *handler) quota(rq *request, ns string) (Quota, Quota, error) {
	var quotas corev1.ResourceQuotaList
	if err := h.c.List(rq.ctx, &quotas, client.InNamespace(ns)); err != nil {
		return Quota{}, Quota{}, err
	}
	var vols storagev1.VolumeList
	var snaps storagev1.VolumeSnapshotList
	if err := h.c.List(rq.ctx, &vols, client.InNamespace(ns)); err != nil {
		return Quota{}, Quota{}, err
	}
	if err := h.c.List(rq.ctx, &snaps, client.InNamespace(ns)); err != nil {
		return Quota{}, Quota{}, err
	}
	return QuotaFromResourceQuotas(quotas.Items), Usage(vols.Items, snaps.Items), nil
}

// projectNamespace is the namespace of a project named in a path: the
// caller's own, or for an admin the namespace of that name.
func (h *handler) projectNamespace(rq *request, project string) (string, error) {
	if project == rq.id.ProjectID || project == rq.ns {
		return rq.ns, nil
	}
	if !rq.admin {
		return "", forbidden("Policy doesn't allow volume_extension:quotas:show to be performed.")
	}
	ns := &corev1.Namespace{}
	if err := h.c.Get(rq.ctx, types.NamespacedName{Name: project}, ns); err != nil {
		if apierrors.IsNotFound(err) {
			return "", notFound("Project %s could not be found.", project)
		}
		return "", err
	}
	if h.cfg.Projects != nil {
		if id, err := h.cfg.Projects.ProjectID(rq.ctx, project); err != nil || id != project {
			return "", notFound("Project %s could not be found.", project)
		}
	}
	return project, nil
}

func (h *handler) quotaSet(rq *request) (int, any, error) {
	project := rq.r.PathValue("project")
	ns, err := h.projectNamespace(rq, project)
	if err != nil {
		return 0, nil, err
	}
	q, used, err := h.quota(rq, ns)
	if err != nil {
		return 0, nil, err
	}
	if osapi.Truthy(rq.r.URL.Query().Get("usage")) {
		return http.StatusOK, map[string]any{"quota_set": QuotaSetToCinder(project, q, &used)}, nil
	}
	return http.StatusOK, map[string]any{"quota_set": QuotaSetToCinder(project, q, nil)}, nil
}

// ServicesToCinder is GET /os-services: a scheduler, and a cinder-volume
// per node (up when Ready, disabled when cordoned).
func ServicesToCinder(nodes []corev1.Node) []any {
	out := []any{map[string]any{"binary": "cinder-scheduler", "host": "strata", "zone": Zone, "status": "enabled",
		"state": "up", "updated_at": nil, "disabled_reason": nil}}
	sort.Slice(nodes, func(i, j int) bool { return nodes[i].Name < nodes[j].Name })
	for i := range nodes {
		n := &nodes[i]
		state, status := "down", "enabled"
		var reason any
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
				state = "up"
			}
		}
		if n.Spec.Unschedulable {
			status, reason = "disabled", "cordoned"
		}
		out = append(out, map[string]any{"binary": "cinder-volume", "host": n.Name + "@" + Backend, "zone": Zone,
			"status": status, "state": state, "updated_at": nil, "disabled_reason": reason,
			"frozen": false, "cluster": nil, "replication_status": "disabled", "active_backend_id": nil})
	}
	return out
}

func (h *handler) services(rq *request) (int, any, error) {
	var nodes corev1.NodeList
	if err := h.c.List(rq.ctx, &nodes); err != nil {
		return 0, nil, err
	}
	out := ServicesToCinder(nodes.Items)
	q := rq.r.URL.Query()
	if b, host := q.Get("binary"), q.Get("host"); b != "" || host != "" {
		var f []any
		for _, s := range out {
			m := s.(map[string]any)
			if (b == "" || m["binary"] == b) && (host == "" || m["host"] == host) {
				f = append(f, s)
			}
		}
		out = f
	}
	if out == nil {
		out = []any{}
	}
	return http.StatusOK, map[string]any{"services": out}, nil
}
