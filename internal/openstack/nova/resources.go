package nova

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/crypto/ssh"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	computev1 "github.com/strata-cloud/strata/api/compute/v1alpha1"
)

func (h *handler) routes(api *http.ServeMux) {
	v := h.prefix + "/v2.1"
	// Servers.
	api.HandleFunc("GET "+v+"/servers", h.serve(readAccess, func(rq *request) (int, any, error) { return h.listServers(rq, false) }))
	api.HandleFunc("GET "+v+"/servers/detail", h.serve(readAccess, func(rq *request) (int, any, error) { return h.listServers(rq, true) }))
	api.HandleFunc("POST "+v+"/servers", h.serve(writeAccess, h.createServer))
	api.HandleFunc("GET "+v+"/servers/{id}", h.serve(readAccess, h.showServer))
	api.HandleFunc("PUT "+v+"/servers/{id}", h.serve(writeAccess, h.updateServer))
	api.HandleFunc("DELETE "+v+"/servers/{id}", h.serve(writeAccess, h.deleteServer))
	api.HandleFunc("POST "+v+"/servers/{id}/action", h.action)
	h.metadataRoutes(api, v)
	h.volumeAttachmentRoutes(api, v)
	api.HandleFunc("GET "+v+"/servers/{id}/ips", h.serve(readAccess, h.serverIPs))
	api.HandleFunc("GET "+v+"/servers/{id}/ips/{network}", h.serve(readAccess, h.serverIPs))
	api.HandleFunc("GET "+v+"/servers/{id}/os-interface", h.serve(readAccess, h.serverInterfaces))
	api.HandleFunc("GET "+v+"/servers/{id}/os-interface/{port}", h.serve(readAccess, h.serverInterfaces))
	api.HandleFunc("GET "+v+"/servers/{id}/os-instance-actions", h.serve(readAccess, func(rq *request) (int, any, error) {
		if _, err := rq.server(rq.r.PathValue("id")); err != nil {
			return 0, nil, err
		}
		return http.StatusOK, map[string]any{"instanceActions": []any{}}, nil
	}))

	// Flavors.
	api.HandleFunc("GET "+v+"/flavors", h.serve(readAccess, func(rq *request) (int, any, error) { return h.listFlavors(rq, false) }))
	api.HandleFunc("GET "+v+"/flavors/detail", h.serve(readAccess, func(rq *request) (int, any, error) { return h.listFlavors(rq, true) }))
	api.HandleFunc("GET "+v+"/flavors/{id}", h.serve(readAccess, func(rq *request) (int, any, error) {
		f, err := h.flavor(rq, rq.r.PathValue("id"))
		if err != nil {
			return 0, nil, err
		}
		return http.StatusOK, map[string]any{"flavor": FlavorToNova(f, rq.mv, rq.links(), true)}, nil
	}))
	api.HandleFunc("POST "+v+"/flavors", h.serve(adminAccess, h.createFlavor))
	api.HandleFunc("PUT "+v+"/flavors/{id}", h.serve(adminAccess, h.updateFlavor))
	api.HandleFunc("DELETE "+v+"/flavors/{id}", h.serve(adminAccess, func(rq *request) (int, any, error) {
		f, err := h.flavor(rq, rq.r.PathValue("id"))
		if err != nil {
			return 0, nil, err
		}
		uid := f.UID
		if err := h.c.Delete(rq.ctx, f, client.Preconditions{UID: &uid}); err != nil {
			return 0, nil, flavorErr(err, rq.r.PathValue("id"))
		}
		return http.StatusAccepted, nil, nil
	}))
	h.extraSpecRoutes(api, v)
	api.HandleFunc("GET "+v+"/flavors/{id}/os-flavor-access", h.serve(adminAccess, func(rq *request) (int, any, error) {
		f, err := h.flavor(rq, rq.r.PathValue("id"))
		if err != nil {
			return 0, nil, err
		}
		if f.Spec.IsPublic == nil || *f.Spec.IsPublic {
			return 0, nil, notFound("Access list not available for public flavors.")
		}
		return http.StatusOK, map[string]any{"flavor_access": []any{}}, nil
	}))
	api.HandleFunc("POST "+v+"/flavors/{id}/action", h.serve(adminAccess, func(rq *request) (int, any, error) {
		if _, err := h.flavor(rq, rq.r.PathValue("id")); err != nil {
			return 0, nil, err
		}
		return 0, nil, notImplemented("Flavor access lists are not supported: a private flavor is for admins only here.")
	}))

	// Key pairs.
	api.HandleFunc("GET "+v+"/os-keypairs", h.serve(readAccess, h.listKeyPairs))
	api.HandleFunc("POST "+v+"/os-keypairs", h.serve(writeAccess, h.createKeyPair))
	api.HandleFunc("GET "+v+"/os-keypairs/{name}", h.serve(readAccess, func(rq *request) (int, any, error) {
		kp, err := h.keyPair(rq, rq.r.PathValue("name"))
		if err != nil {
			return 0, nil, err
		}
		return http.StatusOK, map[string]any{"keypair": KeyPairToNova(kp, rq.mv, rq.id.UserID, true)}, nil
	}))
	api.HandleFunc("DELETE "+v+"/os-keypairs/{name}", h.serve(writeAccess, func(rq *request) (int, any, error) {
		kp, err := h.keyPair(rq, rq.r.PathValue("name"))
		if err != nil {
			return 0, nil, err
		}
		uid := kp.UID
		if err := h.c.Delete(rq.ctx, kp, client.Preconditions{UID: &uid}); err != nil {
			if apierrors.IsNotFound(err) {
				return 0, nil, h.keyPairNotFound(rq, rq.r.PathValue("name"))
			}
			return 0, nil, err
		}
		if rq.mv.AtLeast(2) {
			return http.StatusNoContent, nil, nil
		}
		return http.StatusAccepted, nil, nil
	}))

	// Limits, quotas, zones, hosts.
	api.HandleFunc("GET "+v+"/limits", h.serve(readAccess, h.limits))
	api.HandleFunc("GET "+v+"/os-quota-sets/{project}", h.serve(readAccess, func(rq *request) (int, any, error) { return h.quotaSet(rq, "") }))
	api.HandleFunc("GET "+v+"/os-quota-sets/{project}/detail", h.serve(readAccess, func(rq *request) (int, any, error) { return h.quotaSet(rq, "detail") }))
	api.HandleFunc("GET "+v+"/os-quota-sets/{project}/defaults", h.serve(readAccess, func(rq *request) (int, any, error) { return h.quotaSet(rq, "defaults") }))
	api.HandleFunc("PUT "+v+"/os-quota-sets/{project}", h.serve(adminAccess, func(rq *request) (int, any, error) {
		return 0, nil, notImplemented("Quotas are the project's Kubernetes ResourceQuotas: change them with kubectl.")
	}))
	api.HandleFunc("GET "+v+"/os-availability-zone", h.serve(readAccess, func(rq *request) (int, any, error) {
		return http.StatusOK, map[string]any{"availabilityZoneInfo": []any{map[string]any{
			"zoneName": "nova", "zoneState": map[string]bool{"available": true}, "hosts": nil}}}, nil
	}))
	api.HandleFunc("GET "+v+"/os-availability-zone/detail", h.serve(adminAccess, h.zoneDetail))
	api.HandleFunc("GET "+v+"/os-hypervisors", h.serve(adminAccess, func(rq *request) (int, any, error) { return h.hypervisors(rq, false) }))
	api.HandleFunc("GET "+v+"/os-hypervisors/detail", h.serve(adminAccess, func(rq *request) (int, any, error) { return h.hypervisors(rq, true) }))
	api.HandleFunc("GET "+v+"/os-hypervisors/{id}", h.serve(adminAccess, h.hypervisor))
	api.HandleFunc("GET "+v+"/os-services", h.serve(adminAccess, h.services))
	api.HandleFunc("GET "+v+"/os-server-groups", h.serve(readAccess, func(rq *request) (int, any, error) {
		return http.StatusOK, map[string]any{"server_groups": []any{}}, nil
	}))
	api.HandleFunc("GET "+v+"/extensions", h.serve(readAccess, func(rq *request) (int, any, error) {
		return http.StatusOK, map[string]any{"extensions": []any{}}, nil
	}))
	api.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, notFound("The resource could not be found."))
	})
}

// Flavors.

func flavorErr(err error, id string) error {
	if apierrors.IsNotFound(err) {
		return notFound("Flavor %s could not be found.", id)
	}
	return err
}

// flavor finds a flavor by ID (its name) or UID; a private one is only
// an admin's.
func (h *handler) flavor(rq *request, id string) (*computev1.Flavor, error) {
	f := &computev1.Flavor{}
	err := h.c.Get(rq.ctx, types.NamespacedName{Name: id}, f)
	if apierrors.IsNotFound(err) || (err == nil && f.Name == "") {
		var l computev1.FlavorList
		if err := h.c.List(rq.ctx, &l); err != nil {
			return nil, err
		}
		found := false
		for i := range l.Items {
			if string(l.Items[i].UID) == id {
				f, found = &l.Items[i], true
			}
		}
		if !found {
			return nil, notFound("Flavor %s could not be found.", id)
		}
	} else if err != nil {
		if apierrors.IsInvalid(err) || apierrors.IsBadRequest(err) {
			return nil, notFound("Flavor %s could not be found.", id)
		}
		return nil, err
	}
	if f.Spec.IsPublic != nil && !*f.Spec.IsPublic && !rq.admin {
		return nil, notFound("Flavor %s could not be found.", id)
	}
	return f, nil
}

func (h *handler) listFlavors(rq *request, detail bool) (int, any, error) {
	var l computev1.FlavorList
	if err := h.c.List(rq.ctx, &l); err != nil {
		return 0, nil, err
	}
	q := rq.r.URL.Query()
	pub := strings.ToLower(q.Get("is_public"))
	minRAM, _ := strconv.ParseInt(q.Get("minRam"), 10, 64)
	minDisk, _ := strconv.ParseInt(q.Get("minDisk"), 10, 64)
	sort.Slice(l.Items, func(i, j int) bool { return l.Items[i].Name < l.Items[j].Name })
	var fs []*computev1.Flavor
	for i := range l.Items {
		f := &l.Items[i]
		public := f.Spec.IsPublic == nil || *f.Spec.IsPublic
		switch {
		case !rq.admin && !public:
			continue
		case rq.admin && (pub == "" || pub == "true" || pub == "1" || pub == "yes") && !public:
			continue
		case rq.admin && (pub == "false" || pub == "0" || pub == "no") && public:
			continue
		}
		if f.Spec.RAMMiB < minRAM || f.Spec.DiskGiB < minDisk {
			continue
		}
		fs = append(fs, f)
	}
	if m := q.Get("marker"); m != "" {
		at := -1
		for i, f := range fs {
			if f.Name == m {
				at = i
			}
		}
		if at < 0 {
			return 0, nil, badRequest("marker [%s] not found", m)
		}
		fs = fs[at+1:]
	}
	var next string
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			return 0, nil, badRequest("Invalid input for query parameters limit. Value: %s.", s)
		}
		if len(fs) > n {
			fs = fs[:n]
			if n > 0 {
				next = fs[n-1].Name
			}
		}
	}
	out := []any{}
	for _, f := range fs {
		out = append(out, FlavorToNova(f, rq.mv, rq.links(), detail))
	}
	resp := map[string]any{"flavors": out}
	if next != "" {
		path := "/flavors"
		if detail {
			path += "/detail"
		}
		q.Set("marker", next)
		resp["flavors_links"] = []map[string]string{{"rel": "next", "href": rq.url(path) + "?" + q.Encode()}}
	}
	return http.StatusOK, resp, nil
}

func (h *handler) createFlavor(rq *request) (int, any, error) {
	var req FlavorCreate
	if err := rq.body("flavor", &req); err != nil {
		return 0, nil, err
	}
	f, err := FlavorFromNova(req, rq.mv)
	if err != nil {
		return 0, nil, err
	}
	if err := h.c.Create(rq.ctx, f); err != nil {
		if apierrors.IsAlreadyExists(err) {
			return 0, nil, conflict("Flavor with ID %s already exists.", f.Name)
		}
		return 0, nil, err
	}
	return http.StatusOK, map[string]any{"flavor": FlavorToNova(f, rq.mv, rq.links(), true)}, nil
}

func (h *handler) updateFlavor(rq *request) (int, any, error) {
	if !rq.mv.AtLeast(55) {
		return 0, nil, &Error{Code: http.StatusMethodNotAllowed, Message: "Updating a flavor needs microversion 2.55."}
	}
	var req struct {
		Description *string `json:"description"`
	}
	if err := rq.body("flavor", &req); err != nil {
		return 0, nil, err
	}
	if req.Description == nil {
		return 0, nil, badRequest("Invalid input for field/attribute flavor. 'description' is a required property")
	}
	f, err := h.flavor(rq, rq.r.PathValue("id"))
	if err != nil {
		return 0, nil, err
	}
	out := &computev1.Flavor{}
	if err := h.retryUpdate(rq.ctx, out, client.ObjectKeyFromObject(f), func() error {
		out.Spec.Description = *req.Description
		return nil
	}); err != nil {
		return 0, nil, flavorErr(err, f.Name)
	}
	return http.StatusOK, map[string]any{"flavor": FlavorToNova(out, rq.mv, rq.links(), true)}, nil
}

func (h *handler) extraSpecRoutes(api *http.ServeMux, v string) {
	base := v + "/flavors/{id}/os-extra_specs"
	api.HandleFunc("GET "+base, h.serve(readAccess, func(rq *request) (int, any, error) {
		f, err := h.flavor(rq, rq.r.PathValue("id"))
		if err != nil {
			return 0, nil, err
		}
		es := f.Spec.ExtraSpecs
		if es == nil {
			es = map[string]string{}
		}
		return http.StatusOK, map[string]any{"extra_specs": es}, nil
	}))
	api.HandleFunc("GET "+base+"/{key}", h.serve(readAccess, func(rq *request) (int, any, error) {
		f, err := h.flavor(rq, rq.r.PathValue("id"))
		if err != nil {
			return 0, nil, err
		}
		k := rq.r.PathValue("key")
		val, ok := f.Spec.ExtraSpecs[k]
		if !ok {
			return 0, nil, notFound("Flavor %s has no extra specs with key %s.", f.Name, k)
		}
		return http.StatusOK, map[string]string{k: val}, nil
	}))
	update := func(rq *request, fn func(map[string]string) error) (*computev1.Flavor, error) {
		f, err := h.flavor(rq, rq.r.PathValue("id"))
		if err != nil {
			return nil, err
		}
		out := &computev1.Flavor{}
		err = h.retryUpdate(rq.ctx, out, client.ObjectKeyFromObject(f), func() error {
			if out.Spec.ExtraSpecs == nil {
				out.Spec.ExtraSpecs = map[string]string{}
			}
			return fn(out.Spec.ExtraSpecs)
		})
		return out, flavorErr(err, f.Name)
	}
	valid := func(es map[string]string) error {
		for k, v := range es {
			if len(k) < 1 || len(k) > 255 || len(v) > 255 {
				return badRequest("Invalid input for field/attribute extra_specs: keys are 1 to 255 characters, values at most 255")
			}
		}
		return nil
	}
	api.HandleFunc("POST "+base, h.serve(adminAccess, func(rq *request) (int, any, error) {
		var es map[string]any
		if err := rq.body("extra_specs", &es); err != nil {
			return 0, nil, err
		}
		str := map[string]string{}
		for k, v := range es {
			str[k] = fmt.Sprint(v)
		}
		if err := valid(str); err != nil {
			return 0, nil, err
		}
		_, err := update(rq, func(cur map[string]string) error {
			for k, v := range str {
				cur[k] = v
			}
			return nil
		})
		return http.StatusOK, map[string]any{"extra_specs": str}, err
	}))
	api.HandleFunc("PUT "+base+"/{key}", h.serve(adminAccess, func(rq *request) (int, any, error) {
		outer, err := rq.rawBody()
		if err != nil {
			return 0, nil, err
		}
		k := rq.r.PathValue("key")
		raw, ok := outer[k]
		if len(outer) != 1 || !ok {
			return 0, nil, badRequest("Request body and URI mismatch")
		}
		var val any
		_ = json.Unmarshal(raw, &val)
		s := fmt.Sprint(val)
		if err := valid(map[string]string{k: s}); err != nil {
			return 0, nil, err
		}
		_, err = update(rq, func(cur map[string]string) error { cur[k] = s; return nil })
		return http.StatusOK, map[string]string{k: s}, err
	}))
	api.HandleFunc("DELETE "+base+"/{key}", h.serve(adminAccess, func(rq *request) (int, any, error) {
		k := rq.r.PathValue("key")
		_, err := update(rq, func(cur map[string]string) error {
			if _, ok := cur[k]; !ok {
				return notFound("Flavor %s has no extra specs with key %s.", rq.r.PathValue("id"), k)
			}
			delete(cur, k)
			return nil
		})
		return http.StatusAccepted, nil, err
	}))
}

// Key pairs.

func (h *handler) keyPairs(rq *request) ([]computev1.KeyPair, error) {
	var l computev1.KeyPairList
	if err := h.c.List(rq.ctx, &l, client.InNamespace(rq.ns)); err != nil {
		return nil, err
	}
	sort.Slice(l.Items, func(i, j int) bool { return DisplayName(&l.Items[i]) < DisplayName(&l.Items[j]) })
	return l.Items, nil
}

func (h *handler) keyPairNotFound(rq *request, name string) error {
	return notFound("Keypair %s not found for user %s", name, rq.id.UserID)
}

func (h *handler) keyPair(rq *request, name string) (*computev1.KeyPair, error) {
	kps, err := h.keyPairs(rq)
	if err != nil {
		return nil, err
	}
	s := &snapshot{keypairs: kps}
	if kp := s.keypair(name); kp != nil {
		return kp, nil
	}
	return nil, h.keyPairNotFound(rq, name)
}

func (h *handler) listKeyPairs(rq *request) (int, any, error) {
	kps, err := h.keyPairs(rq)
	if err != nil {
		return 0, nil, err
	}
	q := rq.r.URL.Query()
	if m := q.Get("marker"); m != "" && rq.mv.AtLeast(35) {
		at := -1
		for i := range kps {
			if DisplayName(&kps[i]) == m {
				at = i
			}
		}
		if at < 0 {
			return 0, nil, badRequest("marker [%s] not found", m)
		}
		kps = kps[at+1:]
	}
	if s := q.Get("limit"); s != "" && rq.mv.AtLeast(35) {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			return 0, nil, badRequest("Invalid input for query parameters limit. Value: %s.", s)
		}
		if len(kps) > n {
			kps = kps[:n]
		}
	}
	out := []any{}
	for i := range kps {
		out = append(out, map[string]any{"keypair": KeyPairToNova(&kps[i], rq.mv, rq.id.UserID, false)})
	}
	return http.StatusOK, map[string]any{"keypairs": out}, nil
}

func (h *handler) createKeyPair(rq *request) (int, any, error) {
	var req struct {
		Name      *string `json:"name"`
		PublicKey *string `json:"public_key"`
		Type      *string `json:"type"`
		UserID    *string `json:"user_id"`
	}
	if err := rq.body("keypair", &req); err != nil {
		return 0, nil, err
	}
	if req.Name == nil {
		return 0, nil, badRequest("Invalid input for field/attribute keypair. 'name' is a required property")
	}
	name := *req.Name
	if !ValidKeyPairName(name) {
		return 0, nil, badRequest("Keypair data is invalid: Keypair name contains unsafe characters")
	}
	if req.Type != nil {
		if !rq.mv.AtLeast(2) {
			return 0, nil, badRequest("Additional properties are not allowed ('type' was unexpected)")
		}
		if *req.Type != "ssh" {
			return 0, nil, badRequest("Invalid input for field/attribute type. Value: %s. Only ssh key pairs are supported here.", *req.Type)
		}
	}
	if req.UserID != nil && *req.UserID != "" && *req.UserID != rq.id.UserID {
		return 0, nil, badRequest("Key pairs belong to the project here, not to a user: user_id cannot name another user.")
	}
	kps, err := h.keyPairs(rq)
	if err != nil {
		return 0, nil, err
	}
	taken := func(n string) bool {
		for i := range kps {
			if kps[i].Name == n {
				return true
			}
		}
		return false
	}
	for i := range kps {
		if DisplayName(&kps[i]) == name {
			return 0, nil, conflict("Key pair '%s' already exists.", name)
		}
	}
	var public, private string
	if req.PublicKey == nil || *req.PublicKey == "" {
		if rq.mv.AtLeast(92) {
			return 0, nil, badRequest("Invalid input for field/attribute keypair. 'public_key' is a required property")
		}
		if public, private, err = GenerateKeyPair(name); err != nil {
			return 0, nil, err
		}
	} else {
		public = strings.TrimSpace(*req.PublicKey)
		if _, _, _, _, err := ssh.ParseAuthorizedKey([]byte(public)); err != nil {
			return 0, nil, badRequest("Keypair data is invalid: failed to generate fingerprint")
		}
	}
	kp := &computev1.KeyPair{
		ObjectMeta: metav1.ObjectMeta{Namespace: rq.ns, Name: KubeName(name, "keypair", 63, taken)},
		Spec:       computev1.KeyPairSpec{PublicKey: public},
	}
	if kp.Name != name {
		kp.Annotations = map[string]string{AnnotationName: name}
	}
	if err := h.c.Create(rq.ctx, kp); err != nil {
		if apierrors.IsAlreadyExists(err) {
			return 0, nil, conflict("Key pair '%s' already exists.", name)
		}
		return 0, nil, err
	}
	out := KeyPairToNova(kp, rq.mv, rq.id.UserID, false)
	out["user_id"] = rq.id.UserID
	if private != "" {
		out["private_key"] = private
	}
	code := http.StatusOK
	if rq.mv.AtLeast(2) {
		code = http.StatusCreated
	}
	return code, map[string]any{"keypair": out}, nil
}

// Quotas and limits.

// Quota is a project's limits and usage; -1 is unlimited.
type Quota struct {
	Instances, Cores, RAMMiB, KeyPairs int64
}

// Quota keys of a namespace's ResourceQuotas that bound servers.
const (
	quotaVMs      = "count/virtualmachines.compute.strata.io"
	quotaKeyPairs = "count/keypairs.compute.strata.io"
)

// QuotaFromResourceQuotas is the tightest limit the ResourceQuotas set on
// instances (a VM count), cores (requests.cpu or cpu, whole CPUs), RAM
// (requests.memory or memory, MiB) and key pairs; -1 where none does.
func QuotaFromResourceQuotas(rqs []corev1.ResourceQuota) Quota {
	q := Quota{-1, -1, -1, -1}
	tighten := func(cur *int64, v int64) {
		if *cur < 0 || v < *cur {
			*cur = v
		}
	}
	for _, r := range rqs {
		for name, v := range r.Spec.Hard {
			switch string(name) {
			case quotaVMs:
				tighten(&q.Instances, v.Value())
			case quotaKeyPairs:
				tighten(&q.KeyPairs, v.Value())
			case "requests.cpu", "cpu":
				tighten(&q.Cores, v.MilliValue()/1000)
			case "requests.memory", "memory":
				tighten(&q.RAMMiB, v.Value()/(1<<20))
			}
		}
	}
	return q
}

// usage is what a namespace's servers and key pairs use.
func (h *handler) usage(rq *request, ns string) (Quota, []corev1.ResourceQuota, error) {
	var quotas corev1.ResourceQuotaList
	if err := h.c.List(rq.ctx, &quotas, client.InNamespace(ns)); err != nil {
		return Quota{}, nil, err
	}
	var vms computev1.VirtualMachineList
	var kps computev1.KeyPairList
	if err := h.c.List(rq.ctx, &vms, client.InNamespace(ns)); err != nil {
		return Quota{}, nil, err
	}
	if err := h.c.List(rq.ctx, &kps, client.InNamespace(ns)); err != nil {
		return Quota{}, nil, err
	}
	u := Quota{Instances: int64(len(vms.Items)), KeyPairs: int64(len(kps.Items))}
	var flavors computev1.FlavorList
	_ = h.c.List(rq.ctx, &flavors)
	byName := map[string]*computev1.Flavor{}
	for i := range flavors.Items {
		byName[flavors.Items[i].Name] = &flavors.Items[i]
	}
	for _, vm := range vms.Items {
		switch {
		case vm.Status.VCPUs > 0:
			u.Cores += int64(vm.Status.VCPUs)
			u.RAMMiB += vm.Status.MemoryMiB
		case vm.Spec.Resources != nil:
			u.Cores += int64(vm.Spec.Resources.VCPUs)
			u.RAMMiB += vm.Spec.Resources.MemoryMiB
		case byName[vm.Spec.Flavor] != nil:
			u.Cores += int64(byName[vm.Spec.Flavor].Spec.VCPUs)
			u.RAMMiB += byName[vm.Spec.Flavor].Spec.RAMMiB
		}
	}
	return u, quotas.Items, nil
}

// LimitsToNova is GET /limits' absolute limits.
func LimitsToNova(q, used Quota, mv Microversion) map[string]any {
	abs := map[string]any{
		"maxServerMeta": 128, "maxImageMeta": 128, "maxTotalKeypairs": q.KeyPairs,
		"maxServerGroups": -1, "maxServerGroupMembers": -1,
		"maxTotalCores": q.Cores, "maxTotalInstances": q.Instances, "maxTotalRAMSize": q.RAMMiB,
		"totalCoresUsed": used.Cores, "totalInstancesUsed": used.Instances, "totalRAMUsed": used.RAMMiB,
		"totalServerGroupsUsed": 0,
	}
	if !mv.AtLeast(36) {
		abs["maxSecurityGroups"], abs["maxSecurityGroupRules"], abs["maxTotalFloatingIps"] = -1, -1, -1
		abs["totalSecurityGroupsUsed"], abs["totalFloatingIpsUsed"] = 0, 0
	}
	if !mv.AtLeast(57) {
		abs["maxPersonality"], abs["maxPersonalitySize"] = 5, 10240
	}
	return map[string]any{"limits": map[string]any{"rate": []any{}, "absolute": abs}}
}

// QuotaSetToNova is an os-quota-sets body; with used, the detail form.
func QuotaSetToNova(project string, q Quota, used *Quota, mv Microversion) map[string]any {
	set := map[string]any{"id": project}
	put := func(k string, limit, inUse int64) {
		if used == nil {
			set[k] = limit
		} else {
			set[k] = map[string]int64{"limit": limit, "in_use": inUse, "reserved": 0}
		}
	}
	var u Quota
	if used != nil {
		u = *used
	}
	put("instances", q.Instances, u.Instances)
	put("cores", q.Cores, u.Cores)
	put("ram", q.RAMMiB, u.RAMMiB)
	put("key_pairs", q.KeyPairs, u.KeyPairs)
	put("metadata_items", 128, 0)
	put("server_groups", -1, 0)
	put("server_group_members", -1, 0)
	if !mv.AtLeast(57) {
		put("injected_files", 5, 0)
		put("injected_file_content_bytes", 10240, 0)
		put("injected_file_path_bytes", 255, 0)
	}
	if !mv.AtLeast(36) {
		for _, k := range []string{"floating_ips", "fixed_ips", "security_groups", "security_group_rules"} {
			put(k, -1, 0)
		}
	}
	return set
}

func (h *handler) limits(rq *request) (int, any, error) {
	used, quotas, err := h.usage(rq, rq.ns)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, LimitsToNova(QuotaFromResourceQuotas(quotas), used, rq.mv), nil
}

// projectNamespace is the namespace of a project named in a path: the
// caller's own, or for an admin the namespace of that name.
func (h *handler) projectNamespace(rq *request, project string) (string, error) {
	if project == rq.id.ProjectID || project == rq.ns {
		return rq.ns, nil
	}
	if !rq.admin {
		return "", forbidden("Policy doesn't allow os_compute_api:os-quota-sets:show to be performed.")
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

func (h *handler) quotaSet(rq *request, form string) (int, any, error) {
	project := rq.r.PathValue("project")
	if form == "defaults" {
		return http.StatusOK, map[string]any{"quota_set": QuotaSetToNova(project, Quota{-1, -1, -1, -1}, nil, rq.mv)}, nil
	}
	ns, err := h.projectNamespace(rq, project)
	if err != nil {
		return 0, nil, err
	}
	used, quotas, err := h.usage(rq, ns)
	if err != nil {
		return 0, nil, err
	}
	q := QuotaFromResourceQuotas(quotas)
	if form == "detail" {
		return http.StatusOK, map[string]any{"quota_set": QuotaSetToNova(project, q, &used, rq.mv)}, nil
	}
	return http.StatusOK, map[string]any{"quota_set": QuotaSetToNova(project, q, nil, rq.mv)}, nil
}

// Hosts: a node is a hypervisor and a nova-compute service.

func nodeUp(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func nodeIP(n *corev1.Node) string {
	for _, a := range n.Status.Addresses {
		if a.Type == corev1.NodeInternalIP {
			return a.Address
		}
	}
	return ""
}

func (h *handler) nodes(rq *request) ([]corev1.Node, error) {
	var l corev1.NodeList
	if err := h.c.List(rq.ctx, &l); err != nil {
		return nil, err
	}
	sort.Slice(l.Items, func(i, j int) bool { return l.Items[i].Name < l.Items[j].Name })
	return l.Items, nil
}

// HypervisorToNova is a node as a hypervisor; vms are the VMs on it.
func HypervisorToNova(n *corev1.Node, index int, vms []computev1.VirtualMachine, mv Microversion, detail bool) map[string]any {
	var id any = index + 1
	if mv.AtLeast(53) {
		id = string(n.UID)
	}
	state, status := "down", "enabled"
	if nodeUp(n) {
		state = "up"
	}
	if n.Spec.Unschedulable {
		status = "disabled"
	}
	out := map[string]any{"id": id, "hypervisor_hostname": n.Name, "state": state, "status": status}
	if !detail {
		return out
	}
	out["host_ip"], out["hypervisor_type"], out["hypervisor_version"] = nodeIP(n), "QEMU", 1
	out["service"] = map[string]any{"host": n.Name, "id": id, "disabled_reason": nil}
	if mv.AtLeast(88) {
		out["uptime"] = nil
		return out
	}
	var vcpusUsed, memUsed int64
	running := 0
	for _, vm := range vms {
		if vm.Status.NodeName == n.Name && vm.Status.LauncherPod != "" {
			vcpusUsed += int64(vm.Status.VCPUs)
			memUsed += vm.Status.MemoryMiB
			running++
		}
	}
	cpu := n.Status.Capacity.Cpu().Value()
	mem := n.Status.Capacity.Memory().Value() / (1 << 20)
	disk := n.Status.Capacity.StorageEphemeral().Value() / (1 << 30)
	out["vcpus"], out["memory_mb"], out["local_gb"] = cpu, mem, disk
	out["vcpus_used"], out["memory_mb_used"], out["local_gb_used"] = vcpusUsed, memUsed, 0
	out["free_ram_mb"], out["free_disk_gb"], out["disk_available_least"] = mem-memUsed, disk, disk
	out["current_workload"], out["running_vms"], out["cpu_info"] = 0, running, "{}"
	return out
}

func (h *handler) allVMs(rq *request) []computev1.VirtualMachine {
	var vms computev1.VirtualMachineList
	_ = h.c.List(rq.ctx, &vms)
	return vms.Items
}

func (h *handler) hypervisors(rq *request, detail bool) (int, any, error) {
	nodes, err := h.nodes(rq)
	if err != nil {
		return 0, nil, err
	}
	var vms []computev1.VirtualMachine
	if detail {
		vms = h.allVMs(rq)
	}
	out := []any{}
	match := rq.r.URL.Query().Get("hypervisor_hostname_pattern")
	for i := range nodes {
		if match != "" && !strings.Contains(nodes[i].Name, match) {
			continue
		}
		out = append(out, HypervisorToNova(&nodes[i], i, vms, rq.mv, detail))
	}
	return http.StatusOK, map[string]any{"hypervisors": out}, nil
}

func (h *handler) hypervisor(rq *request) (int, any, error) {
	nodes, err := h.nodes(rq)
	if err != nil {
		return 0, nil, err
	}
	id := rq.r.PathValue("id")
	for i := range nodes {
		if string(nodes[i].UID) == id || strconv.Itoa(i+1) == id || nodes[i].Name == id {
			return http.StatusOK, map[string]any{"hypervisor": HypervisorToNova(&nodes[i], i, h.allVMs(rq), rq.mv, true)}, nil
		}
	}
	return 0, nil, notFound("Hypervisor with ID %s could not be found.", id)
}

func (h *handler) services(rq *request) (int, any, error) {
	nodes, err := h.nodes(rq)
	if err != nil {
		return 0, nil, err
	}
	q := rq.r.URL.Query()
	out := []any{}
	for i := range nodes {
		n := &nodes[i]
		if b := q.Get("binary"); b != "" && b != "nova-compute" {
			continue
		}
		if host := q.Get("host"); host != "" && host != n.Name {
			continue
		}
		var id any = i + 1
		if rq.mv.AtLeast(53) {
			id = string(n.UID)
		}
		state, status := "down", "enabled"
		if nodeUp(n) {
			state = "up"
		}
		if n.Spec.Unschedulable {
			status = "disabled"
		}
		updated := n.CreationTimestamp
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady && c.LastHeartbeatTime.After(updated.Time) {
				updated = c.LastHeartbeatTime
			}
		}
		s := map[string]any{"id": id, "binary": "nova-compute", "host": n.Name, "zone": "nova",
			"status": status, "state": state, "updated_at": nilIfEmpty(novaTime(updated)), "disabled_reason": nil}
		if rq.mv.AtLeast(11) {
			s["forced_down"] = false
		}
		out = append(out, s)
	}
	return http.StatusOK, map[string]any{"services": out}, nil
}

func (h *handler) zoneDetail(rq *request) (int, any, error) {
	nodes, err := h.nodes(rq)
	if err != nil {
		return 0, nil, err
	}
	hosts := map[string]any{}
	for i := range nodes {
		up := nodeUp(&nodes[i])
		hosts[nodes[i].Name] = map[string]any{"nova-compute": map[string]any{
			"available": up && !nodes[i].Spec.Unschedulable, "active": up, "updated_at": nil}}
	}
	return http.StatusOK, map[string]any{"availabilityZoneInfo": []any{map[string]any{
		"zoneName": "nova", "zoneState": map[string]bool{"available": true}, "hosts": hosts}}}, nil
}
