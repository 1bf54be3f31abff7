package objectstore

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Serve writes an object's content as a GET response, headers already
// set: the whole of it (200), one byte range (206, sent with sendfile), or
// what http.ServeContent makes of several ranges; conditional headers must
// have been handled (they are ignored here).
func Serve(w http.ResponseWriter, r *http.Request, rd *Reader) {
	size := rd.Size()
	spec := r.Header.Get("Range")
	if spec == "" {
		w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
		w.WriteHeader(http.StatusOK)
		rd.WriteTo(w)
		return
	}
	start, n, ok := singleRange(spec, size)
	if !ok {
		for _, k := range []string{"If-Match", "If-None-Match", "If-Modified-Since", "If-Unmodified-Since", "If-Range"} {
			r.Header.Del(k)
		}
		http.ServeContent(w, r, "", time.Time{}, rd)
		return
	}
	w.Header().Set("Content-Range", "bytes "+strconv.FormatInt(start, 10)+"-"+strconv.FormatInt(start+n-1, 10)+"/"+strconv.FormatInt(size, 10))
	w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
	w.WriteHeader(http.StatusPartialContent)
	rd.Seek(start, 0)
	rd.copyRange(w, n)
}

// singleRange parses one satisfiable "bytes=a-b", "bytes=a-" or
// "bytes=-n" range; anything else is left to http.ServeContent.
func singleRange(spec string, size int64) (start, n int64, ok bool) {
	s, found := strings.CutPrefix(spec, "bytes=")
	if !found || strings.Contains(s, ",") {
		return 0, 0, false
	}
	a, b, found := strings.Cut(strings.TrimSpace(s), "-")
	if !found {
		return 0, 0, false
	}
	if a == "" {
		k, err := strconv.ParseInt(b, 10, 64)
		if err != nil || k <= 0 || size == 0 {
			return 0, 0, false
		}
		k = min(k, size)
		return size - k, k, true
	}
	first, err := strconv.ParseInt(a, 10, 64)
	if err != nil || first < 0 || first >= size {
		return 0, 0, false
	}
	last := size - 1
	if b != "" {
		l, err := strconv.ParseInt(b, 10, 64)
		if err != nil || l < first {
			return 0, 0, false
		}
		last = min(l, size-1)
	}
	return first, last - first + 1, true
}
