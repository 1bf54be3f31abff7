// Package glance is Strata's OpenStack Image API (Glance v2) over the
// storage.strata.io Image kind: a Glance image is an Image, its bytes an
// OCI artifact in Strata's registry; nothing else is stored.
//
// IDs are the Images' metadata.uid, or the UUID the creator asked for
// (kept in the annotation storage.strata.io/glance-id). A Glance name lives
// in the annotation storage.strata.io/name, and becomes the Image's
// metadata.name when it is a DNS label not yet used in the namespace, so
// that kubectl and VirtualMachine spec.image can use it; else the Image
// gets a generated name (img-1a2b3c4d). The other Glance attributes
// (visibility, protected, tags, custom properties, min_ram, the declared
// formats, the MD5 and SHA-512 of uploads) are annotations too; min_disk
// and a "description" property are the spec's minDiskGiB and description.
//
// A caller sees its project's images and the public and community ones of
// every project; another project's private or shared image is 404.
package glance
