package s3

import (
	"encoding/hex"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Sign signs r with SigV4 in its Authorization header, as an S3 client
// does, for tests and benchmarks. payloadHash is the hex SHA-256 of the
// body or UNSIGNED-PAYLOAD; every header already set on r is signed.
func Sign(r *http.Request, access, secret, region, payloadHash string, t time.Time) {
	amzDate := t.UTC().Format(amzDateFormat)
	r.Header.Set("X-Amz-Date", amzDate)
	r.Header.Set("X-Amz-Content-Sha256", payloadHash)
	c := credential{access: access, date: amzDate[:8], region: region, service: "s3"}
	signed := []string{"host"}
	for k := range r.Header {
		if lk := strings.ToLower(k); lk != "authorization" && lk != "user-agent" {
			signed = append(signed, lk)
		}
	}
	if r.ContentLength > 0 && r.Header.Get("Content-Length") == "" {
		r.Header.Set("Content-Length", strconv.FormatInt(r.ContentLength, 10))
		signed = append(signed, "content-length")
	}
	sort.Strings(signed)
	sh := strings.Join(signed, ";")
	creq := r.Method + "\n" + uriEncode(r.URL.Path, true) + "\n" + canonicalQuery(r.URL.RawQuery, "") + "\n" + canonicalHeaders(r, signed) + "\n" + sh + "\n" + payloadHash
	sig := hex.EncodeToString(hmacSHA256(signingKey(secret, c), stringToSign(amzDate, c, creq)))
	r.Header.Set("Authorization", algorithm+" Credential="+access+"/"+c.scope()+", SignedHeaders="+sh+", Signature="+sig)
}

// Presign returns u (an http(s) URL of an object) with SigV4 query
// authentication valid for expires.
func Presign(method, u, access, secret, region string, t time.Time, expires time.Duration) (string, error) {
	pu, err := url.Parse(u)
	if err != nil {
		return "", err
	}
	amzDate := t.UTC().Format(amzDateFormat)
	c := credential{access: access, date: amzDate[:8], region: region, service: "s3"}
	q := pu.Query()
	q.Set("X-Amz-Algorithm", algorithm)
	q.Set("X-Amz-Credential", access+"/"+c.scope())
	q.Set("X-Amz-Date", amzDate)
	q.Set("X-Amz-Expires", strconv.Itoa(int(expires/time.Second)))
	q.Set("X-Amz-SignedHeaders", "host")
	pu.RawQuery = strings.ReplaceAll(q.Encode(), "+", "%20")
	creq := method + "\n" + uriEncode(pu.Path, true) + "\n" + canonicalQuery(pu.RawQuery, "") + "\nhost:" + pu.Host + "\n\nhost\n" + unsignedPayload
	sig := hex.EncodeToString(hmacSHA256(signingKey(secret, c), stringToSign(amzDate, c, creq)))
	pu.RawQuery += "&X-Amz-Signature=" + sig
	return pu.String(), nil
}
