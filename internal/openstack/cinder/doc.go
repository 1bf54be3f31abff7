// Package cinder is Strata's OpenStack Block Storage API (Cinder v3) over
// the storage.strata.io kinds: a volume is a Volume, a snapshot a
// VolumeSnapshot; nothing is stored but those objects (and annotations on
// them).
//
// A volume's or snapshot's ID is its object's metadata.uid; its Cinder
// name is the object's name when that is a free DNS label, otherwise the
// object gets a generated name and keeps the Cinder name in an annotation.
// Routes are Prefix/v3/{project_id}/... (the catalog's $(project_id)s) and,
// as Cinder 3.67 allows, Prefix/v3/...; a project in the path must be the
// token's. A caller sees and changes only its project's namespace;
// another project's volume is 404.
package cinder
