package cinder

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

// Microversion is a Block Storage API microversion, 3.N.
type Microversion struct{ Major, Minor int }

// The range served. 3.70 is cinderclient 9.1's maximum (Debian 12); the
// openstack CLI of Debian 12 asks for 3.0 unless told otherwise
// (--os-volume-api-version).
var (
	MinVersion = Microversion{3, 0}
	MaxVersion = Microversion{3, 70}
)

func (v Microversion) String() string { return fmt.Sprintf("%d.%d", v.Major, v.Minor) }

// AtLeast reports whether v >= 3.minor.
func (v Microversion) AtLeast(minor int) bool {
	return v.Major > 3 || v.Major == 3 && v.Minor >= minor
}

// ParseMicroversion parses "3.N" or "latest".
func ParseMicroversion(s string) (Microversion, error) {
	s = strings.TrimSpace(s)
	if strings.EqualFold(s, "latest") {
		return MaxVersion, nil
	}
	maj, min, ok := strings.Cut(s, ".")
	a, err1 := strconv.Atoi(maj)
	b, err2 := strconv.Atoi(min)
	if !ok || err1 != nil || err2 != nil || a < 0 || b < 0 {
		return Microversion{}, badRequest("API Version String %s is of invalid format. Must be of format MajorNum.MinorNum.", s)
	}
	return Microversion{a, b}, nil
}

// Negotiate picks the microversion of a request from its
// OpenStack-API-Version header ("volume 3.N", possibly among other
// services'), else 3.0. A version out of range is a 406 naming the range;
// on an error the version returned is the minimum, for the response
// headers.
func Negotiate(h http.Header) (Microversion, error) {
	want := ""
	for _, v := range h.Values("OpenStack-API-Version") {
		for _, part := range strings.Split(v, ",") {
			f := strings.Fields(part)
			if len(f) == 2 && (strings.EqualFold(f[0], "volume") || strings.EqualFold(f[0], "block-storage")) {
				want = f[1]
			}
		}
	}
	if want == "" {
		return MinVersion, nil
	}
	v, err := ParseMicroversion(want)
	if err != nil {
		return MinVersion, err
	}
	if v.Major != 3 || v.Minor < MinVersion.Minor || v.Minor > MaxVersion.Minor {
		return MinVersion, &Error{http.StatusNotAcceptable, fmt.Sprintf(
			"Version %s is not supported by the API. Minimum is %s and maximum is %s.", v, MinVersion, MaxVersion)}
	}
	return v, nil
}
