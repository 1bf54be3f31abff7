package osapi

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

// Version is an API microversion, Major.Minor.
type Version struct{ Major, Minor int }

func (v Version) String() string { return fmt.Sprintf("%d.%d", v.Major, v.Minor) }

// AtLeast reports whether v >= v.Major.minor: a service's versions share
// their major number.
func (v Version) AtLeast(minor int) bool { return v.Minor >= minor }

// Range is the microversions a service serves and how a request names
// one.
type Range struct {
	Min, Max Version
	// Services are the names a request's OpenStack-API-Version header
	// uses for this service ("compute 2.60").
	Services []string
	// Legacy is the service's older header, if any
	// (X-OpenStack-Nova-API-Version), read when the other is absent.
	Legacy string
}

// Parse parses "Major.Minor" or "latest" (r.Max).
func (r Range) Parse(s string) (Version, error) {
	s = strings.TrimSpace(s)
	if strings.EqualFold(s, "latest") {
		return r.Max, nil
	}
	maj, min, ok := strings.Cut(s, ".")
	a, err1 := strconv.Atoi(maj)
	b, err2 := strconv.Atoi(min)
	if !ok || err1 != nil || err2 != nil || a < 0 || b < 0 {
		return Version{}, BadRequest("API Version String %s is of invalid format. Must be of format MajorNum.MinorNum.", s)
	}
	return Version{a, b}, nil
}

// Negotiate picks the microversion of a request from its headers:
// OpenStack-API-Version (this service's entry, possibly among other
// services'), else the Legacy header, else r.Min. A version out of range
// is a 406 naming the range; on an error the version returned is r.Min,
// for the response headers.
func (r Range) Negotiate(h http.Header) (Version, error) {
	want := ""
	for _, v := range h.Values("OpenStack-API-Version") {
		for _, part := range strings.Split(v, ",") {
			f := strings.Fields(part)
			if len(f) == 2 && r.names(f[0]) {
				want = f[1]
			}
		}
	}
	if want == "" && r.Legacy != "" {
		want = strings.TrimSpace(h.Get(r.Legacy))
	}
	if want == "" {
		return r.Min, nil
	}
	v, err := r.Parse(want)
	if err != nil {
		return r.Min, err
	}
	if v.Major != r.Min.Major || v.Minor < r.Min.Minor || v.Minor > r.Max.Minor {
		return r.Min, Errorf(http.StatusNotAcceptable, "Version %s is not supported by the API. Minimum is %s and maximum is %s.", v, r.Min, r.Max)
	}
	return v, nil
}

func (r Range) names(service string) bool {
	for _, s := range r.Services {
		if strings.EqualFold(s, service) {
			return true
		}
	}
	return false
}
