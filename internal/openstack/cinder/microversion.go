package cinder

import (
	"net/http"

	"github.com/strata-cloud/strata/internal/openstack/osapi"
)

// Microversion is a Block Storage API microversion, 3.N.
type Microversion = osapi.Version

// The range served. 3.70 is cinderclient 9.1's maximum (Debian 12); the
// openstack CLI of Debian 12 asks for 3.0 unless told otherwise
// (--os-volume-api-version).
var (
	MinVersion = Microversion{Major: 3, Minor: 0}
	MaxVersion = Microversion{Major: 3, Minor: 70}
	versions   = osapi.Range{Min: MinVersion, Max: MaxVersion, Services: []string{"volume", "block-storage"}}
)

// ParseMicroversion parses "3.N" or "latest".
func ParseMicroversion(s string) (Microversion, error) { return versions.Parse(s) }

// Negotiate picks the microversion of a request from its
// OpenStack-API-Version header ("volume 3.N", possibly among other
// services'), else 3.0. A version out of range is a 406 naming the range;
// on an error the version returned is the minimum, for the response
// headers.
func Negotiate(h http.Header) (Microversion, error) { return versions.Negotiate(h) }
