// Package osapi is the plumbing the OpenStack faces built in the style of
// Nova (Compute and Block Storage) share: their fault bodies
// ({"itemNotFound": {"code": 404, "message": …}}), JSON request bodies
// wrapped in a resource key, the role gate every call passes (reader ⊂
// member ⊂ admin on the token's project), microversion negotiation, and
// the Kubernetes writes they retry on a lost race. Each service keeps its
// own words: its service type, its version range and how it maps the
// Kubernetes API's refusals it knows about.
package osapi
