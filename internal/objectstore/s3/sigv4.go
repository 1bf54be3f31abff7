package s3

import (
	"bufio"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/strata-cloud/strata/internal/openstack/auth"
)

// SigV4 constants.
const (
	algorithm       = "AWS4-HMAC-SHA256"
	amzDateFormat   = "20060102T150405Z"
	unsignedPayload = "UNSIGNED-PAYLOAD"
	streamingSigned = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
	// Newer SDKs: aws-chunked without chunk signatures, with a checksum trailer.
	streamingUnsignedTrailer = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
	streamingSignedTrailer   = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
	emptySHA256              = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
	maxSkew                  = 15 * time.Minute
	maxPresignExpiry         = 7 * 24 * time.Hour
)

// credential is the parsed Credential of a request: the access key and
// its scope (date/region/service/aws4_request).
type credential struct {
	access, date, region, service string
}

func (c credential) scope() string {
	return c.date + "/" + c.region + "/" + c.service + "/aws4_request"
}

func parseCredential(s string) (credential, bool) {
	parts := strings.Split(s, "/")
	if len(parts) != 5 || parts[4] != "aws4_request" || parts[0] == "" {
		return credential{}, false
	}
	return credential{access: parts[0], date: parts[1], region: parts[2], service: parts[3]}, true
}

// signingKey derives the SigV4 key for one day, region and service.
func signingKey(secret string, c credential) []byte {
	k := hmacSHA256([]byte("AWS4"+secret), c.date)
	k = hmacSHA256(k, c.region)
	k = hmacSHA256(k, c.service)
	return hmacSHA256(k, "aws4_request")
}

func hmacSHA256(key []byte, data string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(data))
	return m.Sum(nil)
}

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// uriEncode encodes s as SigV4 wants: every byte but A-Z a-z 0-9 - _ . ~
// percent-encoded (upper-case hex), and '/' too unless keepSlash.
func uriEncode(s string, keepSlash bool) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == '~' || c == '/' && keepSlash {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "%%%02X", c)
	}
	return b.String()
}

// canonicalQuery sorts and re-encodes the query, leaving out skip.
func canonicalQuery(raw, skip string) string {
	type kv struct{ k, v string }
	var kvs []kv
	for _, p := range strings.Split(raw, "&") {
		if p == "" {
			continue
		}
		k, v, _ := strings.Cut(p, "=")
		k, _ = url.PathUnescape(k)
		v, _ = url.PathUnescape(v)
		if k == skip {
			continue
		}
		kvs = append(kvs, kv{uriEncode(k, false), uriEncode(v, false)})
	}
	sort.Slice(kvs, func(i, j int) bool {
		if kvs[i].k != kvs[j].k {
			return kvs[i].k < kvs[j].k
		}
		return kvs[i].v < kvs[j].v
	})
	parts := make([]string, len(kvs))
	for i, p := range kvs {
		parts[i] = p.k + "=" + p.v
	}
	return strings.Join(parts, "&")
}

// canonicalHeaders renders the signed headers' values.
func canonicalHeaders(r *http.Request, signed []string) string {
	var b strings.Builder
	for _, h := range signed {
		var vals []string
		switch h {
		case "host":
			vals = []string{r.Host}
		default:
			vals = append([]string(nil), r.Header.Values(h)...)
			if len(vals) == 0 {
				switch h {
				case "content-length":
					if r.ContentLength >= 0 {
						vals = []string{strconv.FormatInt(r.ContentLength, 10)}
					}
				case "transfer-encoding":
					vals = r.TransferEncoding
				}
			}
		}
		for i, v := range vals {
			vals[i] = strings.Join(strings.Fields(v), " ")
		}
		b.WriteString(h + ":" + strings.Join(vals, ",") + "\n")
	}
	return b.String()
}

// canonicalURIs are the path encodings a client may have signed: the
// decoded path re-encoded by SigV4's rules (what the SDKs do), and the
// path exactly as sent.
func canonicalURIs(r *http.Request) []string {
	uris := []string{uriEncode(r.URL.Path, true)}
	raw := r.RequestURI
	if i := strings.IndexByte(raw, '?'); i >= 0 {
		raw = raw[:i]
	}
	if strings.HasPrefix(raw, "/") && raw != uris[0] {
		uris = append(uris, raw)
	}
	if uris[0] == "" {
		uris[0] = "/"
	}
	return uris
}

func stringToSign(amzDate string, c credential, canonicalRequest string) string {
	return algorithm + "\n" + amzDate + "\n" + c.scope() + "\n" + sha256Hex(canonicalRequest)
}

// authError is an S3 error from authentication.
type authError struct {
	status  int
	code    string
	message string
}

func (e *authError) Error() string { return e.code + ": " + e.message }

var (
	errAccessDenied = func(msg string) *authError { return &authError{http.StatusForbidden, "AccessDenied", msg} }
	errSigMismatch  = &authError{http.StatusForbidden, "SignatureDoesNotMatch", "The request signature we calculated does not match the signature you provided. Check your key and signing method."}
	errUnknownKey   = &authError{http.StatusForbidden, "InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist in our records."}
	errSkewed       = &authError{http.StatusForbidden, "RequestTimeTooSkewed", "The difference between the request time and the current time is too large."}
	errMalformed    = func(msg string) *authError {
		return &authError{http.StatusBadRequest, "AuthorizationHeaderMalformed", msg}
	}
	errAuthQuery = func(msg string) *authError {
		return &authError{http.StatusBadRequest, "AuthorizationQueryParametersError", msg}
	}
)

// authenticated is the outcome of a verified request.
type authenticated struct {
	id auth.Identity
	// body is the payload to read: verified against the signed SHA-256,
	// or decoded from aws-chunked.
	body io.Reader
	// size is the payload's decoded length, -1 if unknown.
	size int64
}

// verify checks a request's SigV4 signature (header or presigned query)
// and returns the caller's identity and the payload reader.
func (h *handler) verify(r *http.Request) (authenticated, *authError) {
	q := r.URL.Query()
	authz := r.Header.Get("Authorization")
	var (
		cred                 credential
		signedHeaders, sig   string
		amzDate, payloadHash string
		presigned            bool
	)
	switch {
	case strings.HasPrefix(authz, algorithm+" "):
		fields := map[string]string{}
		for _, f := range strings.Split(strings.TrimPrefix(authz, algorithm+" "), ",") {
			k, v, _ := strings.Cut(strings.TrimSpace(f), "=")
			fields[k] = v
		}
		var ok bool
		if cred, ok = parseCredential(fields["Credential"]); !ok {
			return authenticated{}, errMalformed("The authorization header is malformed; the Credential is mal-formed.")
		}
		signedHeaders, sig = fields["SignedHeaders"], fields["Signature"]
		if signedHeaders == "" || sig == "" {
			return authenticated{}, errMalformed("The authorization header is malformed.")
		}
		amzDate = r.Header.Get("X-Amz-Date")
		if amzDate == "" {
			if d, err := http.ParseTime(r.Header.Get("Date")); err == nil {
				amzDate = d.UTC().Format(amzDateFormat)
			}
		}
		payloadHash = r.Header.Get("X-Amz-Content-Sha256")
		if payloadHash == "" {
			return authenticated{}, &authError{http.StatusBadRequest, "InvalidRequest", "Missing required header for this request: x-amz-content-sha256"}
		}
	case q.Get("X-Amz-Algorithm") != "":
		if q.Get("X-Amz-Algorithm") != algorithm {
			return authenticated{}, errAuthQuery("X-Amz-Algorithm only supports \"AWS4-HMAC-SHA256\"")
		}
		presigned = true
		var ok bool
		if cred, ok = parseCredential(q.Get("X-Amz-Credential")); !ok {
			return authenticated{}, errAuthQuery("Error parsing the X-Amz-Credential parameter.")
		}
		signedHeaders, sig, amzDate = q.Get("X-Amz-SignedHeaders"), q.Get("X-Amz-Signature"), q.Get("X-Amz-Date")
		payloadHash = q.Get("X-Amz-Content-Sha256")
		if payloadHash == "" {
			payloadHash = unsignedPayload
		}
	case strings.HasPrefix(authz, "AWS "):
		return authenticated{}, &authError{http.StatusBadRequest, "InvalidRequest", "The authorization mechanism you have provided is not supported. Please use AWS4-HMAC-SHA256."}
	default:
		return authenticated{}, errAccessDenied("Anonymous access is not allowed.")
	}
	t, err := time.Parse(amzDateFormat, amzDate)
	if err != nil {
		return authenticated{}, errAccessDenied("AWS authentication requires a valid Date or x-amz-date header")
	}
	if !strings.HasPrefix(amzDate, cred.date) {
		return authenticated{}, errMalformed("The authorization header is malformed; the credential date does not match the request date.")
	}
	now := h.now()
	if presigned {
		exp, err := strconv.Atoi(q.Get("X-Amz-Expires"))
		if err != nil || exp < 0 || time.Duration(exp)*time.Second > maxPresignExpiry {
			return authenticated{}, errAuthQuery("X-Amz-Expires must be a number of seconds between 0 and 604800.")
		}
		if now.After(t.Add(time.Duration(exp) * time.Second)) {
			return authenticated{}, errAccessDenied("Request has expired")
		}
		if t.After(now.Add(maxSkew)) {
			return authenticated{}, errAccessDenied("Request is not valid yet")
		}
	} else if d := now.Sub(t); d > maxSkew || d < -maxSkew {
		return authenticated{}, errSkewed
	}

	secret, id, err := h.creds.EC2Credential(r.Context(), cred.access)
	if errors.Is(err, auth.ErrUnauthorized) {
		return authenticated{}, errUnknownKey
	}
	if err != nil {
		return authenticated{}, &authError{http.StatusInternalServerError, "InternalError", "We encountered an internal error. Please try again."}
	}
	key := signingKey(secret, cred)
	signed := strings.Split(signedHeaders, ";")
	skip := ""
	if presigned {
		skip = "X-Amz-Signature"
	}
	headers := canonicalHeaders(r, signed)
	query := canonicalQuery(r.URL.RawQuery, skip)
	ok := false
	for _, uri := range canonicalURIs(r) {
		creq := r.Method + "\n" + uri + "\n" + query + "\n" + headers + "\n" + signedHeaders + "\n" + payloadHash
		want := hex.EncodeToString(hmacSHA256(key, stringToSign(amzDate, cred, creq)))
		if hmac.Equal([]byte(want), []byte(sig)) {
			ok = true
			break
		}
	}
	if !ok {
		return authenticated{}, errSigMismatch
	}

	a := authenticated{id: id, body: r.Body, size: r.ContentLength}
	switch payloadHash {
	case unsignedPayload:
	case streamingSigned, streamingUnsignedTrailer, streamingSignedTrailer:
		n, err := strconv.ParseInt(r.Header.Get("X-Amz-Decoded-Content-Length"), 10, 64)
		if err != nil {
			return authenticated{}, &authError{http.StatusLengthRequired, "MissingContentLength", "You must provide the x-amz-decoded-content-length HTTP header."}
		}
		a.size = n
		a.body = &chunkedReader{
			r:       bufio.NewReaderSize(r.Body, 64<<10),
			signed:  payloadHash != streamingUnsignedTrailer,
			trailer: payloadHash != streamingSigned,
			key:     key, cred: cred, amzDate: amzDate, prev: sig,
			h: sha256.New(),
		}
	default:
		want, err := hex.DecodeString(payloadHash)
		if err != nil || len(want) != sha256.Size {
			return authenticated{}, &authError{http.StatusBadRequest, "InvalidArgument", "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, STREAMING-AWS4-HMAC-SHA256-PAYLOAD, or a valid sha256 value."}
		}
		a.body = &sha256Reader{r: r.Body, h: sha256.New(), want: want}
	}
	return a, nil
}

// errContentSHA256 is what a payload reader returns at the end of a body
// that does not hash to the signed x-amz-content-sha256.
var errContentSHA256 = &authError{http.StatusBadRequest, "XAmzContentSHA256Mismatch", "The provided 'x-amz-content-sha256' header does not match what was computed."}

// sha256Reader passes a body through and fails at its end when it does
// not hash to want (before the store commits anything).
type sha256Reader struct {
	r    io.Reader
	h    hash.Hash
	want []byte
}

func (s *sha256Reader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	s.h.Write(p[:n])
	if err == io.EOF && !hmac.Equal(s.h.Sum(nil), s.want) {
		return n, errContentSHA256
	}
	return n, err
}

// chunkedReader decodes an aws-chunked body ("hex-size;chunk-signature=
// sig\r\n data \r\n", ..., a 0-size chunk, optional trailers), verifying
// each chunk's signature (chained from the seed signature) when signed.
// Bytes are passed on before their chunk's signature is checked; a bad
// signature fails the read at the chunk's end, so nothing is committed.
type chunkedReader struct {
	r       *bufio.Reader
	signed  bool
	trailer bool
	key     []byte
	cred    credential
	amzDate string
	prev    string // the previous signature
	h       hash.Hash

	left    int64  // bytes left in the current chunk
	sig     string // the current chunk's signature
	inChunk bool
	done    bool
}

var errChunkSignature = &authError{http.StatusForbidden, "SignatureDoesNotMatch", "The chunk signature we calculated does not match the signature you provided."}

func errChunkFormat(what string) error {
	return &authError{http.StatusBadRequest, "IncompleteBody", "malformed aws-chunked body: " + what}
}

func (c *chunkedReader) Read(p []byte) (int, error) {
	for c.left == 0 {
		if c.done {
			return 0, io.EOF
		}
		if c.inChunk {
			if err := c.endChunk(); err != nil {
				return 0, err
			}
		}
		if err := c.startChunk(); err != nil {
			return 0, err
		}
		if c.done {
			return 0, io.EOF
		}
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.r.Read(p)
	c.left -= int64(n)
	if c.signed {
		c.h.Write(p[:n])
	}
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

func (c *chunkedReader) line() (string, error) {
	l, err := c.r.ReadString('\n')
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return "", err
	}
	return strings.TrimRight(l, "\r\n"), nil
}

// endChunk consumes the CRLF after a chunk's data and checks its signature.
func (c *chunkedReader) endChunk() error {
	l, err := c.line()
	if err != nil {
		return err
	}
	if l != "" {
		return errChunkFormat("chunk longer than its size")
	}
	c.inChunk = false
	return c.checkSig()
}

func (c *chunkedReader) checkSig() error {
	if !c.signed || c.sig == "" && c.trailer {
		c.h.Reset()
		return nil
	}
	sts := "AWS4-HMAC-SHA256-PAYLOAD\n" + c.amzDate + "\n" + c.cred.scope() + "\n" + c.prev + "\n" + emptySHA256 + "\n" + hex.EncodeToString(c.h.Sum(nil))
	want := hex.EncodeToString(hmacSHA256(c.key, sts))
	c.h.Reset()
	if !hmac.Equal([]byte(want), []byte(c.sig)) {
		return errChunkSignature
	}
	c.prev = c.sig
	return nil
}

// startChunk reads a chunk header; a 0-size chunk ends the body.
func (c *chunkedReader) startChunk() error {
	l, err := c.line()
	if err != nil {
		return err
	}
	size, ext, _ := strings.Cut(l, ";")
	n, err := strconv.ParseInt(strings.TrimSpace(size), 16, 64)
	if err != nil || n < 0 {
		return errChunkFormat("bad chunk size")
	}
	c.sig = ""
	for _, e := range strings.Split(ext, ";") {
		if k, v, ok := strings.Cut(e, "="); ok && strings.TrimSpace(k) == "chunk-signature" {
			c.sig = strings.TrimSpace(v)
		}
	}
	if c.signed && !c.trailer && c.sig == "" {
		return errChunkSignature
	}
	if n > 0 {
		c.left, c.inChunk = n, true
		return nil
	}
	// The last chunk: its signature covers no data.
	if err := c.checkSig(); err != nil {
		return err
	}
	// Trailers (x-amz-checksum-*, x-amz-trailer-signature) up to an empty
	// line; without trailers, the final CRLF.
	for {
		l, err := c.line()
		if err == io.ErrUnexpectedEOF && !c.trailer {
			break
		}
		if err != nil {
			return err
		}
		if l == "" {
			break
		}
	}
	c.done = true
	return nil
}
