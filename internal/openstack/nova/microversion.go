package nova

import (
	"net/http"

	"github.com/strata-cloud/strata/internal/openstack/osapi"
)

// Microversion is a Compute API microversion, 2.N.
type Microversion = osapi.Version

// The range served. 2.96 is past every microversion the python clients
// of Debian 12 (novaclient 18, openstacksdk 0.101) ask for.
var (
	MinVersion = Microversion{Major: 2, Minor: 1}
	MaxVersion = Microversion{Major: 2, Minor: 96}
	versions   = osapi.Range{Min: MinVersion, Max: MaxVersion, Services: []string{"compute"}, Legacy: "X-OpenStack-Nova-API-Version"}
)

// ParseMicroversion parses "2.N" or "latest".
func ParseMicroversion(s string) (Microversion, error) { return versions.Parse(s) }

// Negotiate picks the microversion of a request from its headers:
// OpenStack-API-Version ("compute 2.N", possibly among other services')
// first, else X-OpenStack-Nova-API-Version, else 2.1. A version out of
// range is a 406 naming the range; on an error the version returned is
// the minimum, for the response headers.
func Negotiate(h http.Header) (Microversion, error) { return versions.Negotiate(h) }
