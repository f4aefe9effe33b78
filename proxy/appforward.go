package proxy

import (
	"bufio"
	"io"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// apiTokenHeaderCanonical is apiTokenHeader as a key of http.Header.
const apiTokenHeaderCanonical = "Dapr-Api-Token"

// forward delivers a plain invocation to an HTTP/1.1 app on the calling
// goroutine: the request is written straight from the mesh's request and
// the app's answer straight to the mesh's response writer, without the
// reverse proxy's copy of the request, its header maps and its query
// re-encoding, which cost the callee's sidecar about a seventh of its CPU
// per call. It does what the reverse proxy does to a call it carries: it
// drops hop-by-hop headers (keeping "Te: trailers") and X-Forwarded-* and
// Forwarded, sets the app's address as Host and the app's API token, and
// passes the app's status, headers, body and trailers back, flushing a
// body of unknown length as it comes. It reports false, having done
// nothing, for a call it does not carry (see directable); the reverse
// proxy takes those.
func (a *appChannel) forward(w http.ResponseWriter, r *http.Request) bool {
	if a.inline == nil || !directable(r) || !a.inline.simple(r, true) {
		return false
	}
	resp, err := a.inline.roundTrip(r, a.token, true)
	if err != nil {
		a.proxyError(w, r, err)
		return true
	}
	if err := copyResponse(w, resp); err != nil {
		// The app's answer broke off: reset the stream rather than
		// pass a truncated body as a complete one (as the reverse
		// proxy does).
		panic(http.ErrAbortHandler)
	}
	return true
}

// copyResponse writes resp to w as net/http's reverse proxy does: the
// headers but the hop-by-hop ones (and those Connection names), trailers
// announced and then sent, the body flushed after every read when its
// length is not known or it is an event stream. It closes resp's body. An
// error is one reading the body; a failed write to w (the caller gone)
// ends the copy quietly.
func copyResponse(w http.ResponseWriter, resp *http.Response) error {
	defer resp.Body.Close()
	h := w.Header()
	for k, vv := range resp.Header {
		if !hopByHop(k) {
			h[k] = vv
		}
	}
	dropConnectionNamed(h, resp.Header["Connection"])
	announced := len(resp.Trailer)
	if announced > 0 {
		keys := make([]string, 0, announced)
		for k := range resp.Trailer {
			keys = append(keys, k)
		}
		h["Trailer"] = []string{strings.Join(keys, ", ")}
	}
	w.WriteHeader(resp.StatusCode)
	if resp.Body != http.NoBody {
		flush := resp.ContentLength < 0 || eventStream(resp.Header.Get("Content-Type"))
		if err := copyBody(w, resp.Body, flush); err != nil {
			return err
		}
	}
	_ = resp.Body.Close() // fills resp.Trailer
	if len(resp.Trailer) > 0 {
		if f, ok := w.(http.Flusher); ok {
			f.Flush() // an HTTP/1.1 answer goes chunked, so trailers can follow
		}
		prefix := http.TrailerPrefix // trailers not announced
		if announced == len(resp.Trailer) {
			prefix = ""
		}
		for k, vv := range resp.Trailer {
			h[prefix+k] = vv
		}
	}
	return nil
}

// dropConnectionNamed deletes from h the headers a Connection header's
// values name (they belong to that connection only).
func dropConnectionNamed(h http.Header, connection []string) {
	for _, v := range connection {
		for _, tok := range strings.Split(v, ",") {
			if tok = textproto.TrimString(tok); tok != "" {
				delete(h, http.CanonicalHeaderKey(tok))
			}
		}
	}
}

// eventStream reports whether a Content-Type is text/event-stream.
func eventStream(ct string) bool {
	if i := strings.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	return strings.EqualFold(textproto.TrimString(ct), "text/event-stream")
}

// copyBody copies body to w, flushing after every read when flush is set.
func copyBody(w http.ResponseWriter, body io.Reader, flush bool) error {
	bp := copyBuffers.Get().(*[]byte)
	defer copyBuffers.Put(bp)
	buf := *bp
	for {
		n, rerr := body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return nil // the caller went away; nobody reads the rest
			}
			if flush {
				if f, ok := w.(http.Flusher); ok {
					f.Flush()
				}
			}
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}

// directable reports whether forward may carry r: no Connection header
// (an HTTP/2 request has none), no trailers announced by the caller, and a
// query string the reverse proxy would pass unchanged.
func directable(r *http.Request) bool {
	if len(r.Header["Connection"]) > 0 || len(r.Trailer) > 0 {
		return false
	}
	return cleanQuery(r.URL.RawQuery)
}

// cleanQuery reports whether the reverse proxy would pass q as it is: no
// semicolon, no malformed escape, not more parameters than url.ParseQuery
// takes.
func cleanQuery(q string) bool {
	if q == "" {
		return true
	}
	if strings.Count(q, "&") >= 10000 {
		return false
	}
	for i := 0; i < len(q); {
		switch q[i] {
		case ';':
			return false
		case '%':
			if i+2 >= len(q) || !isHex(q[i+1]) || !isHex(q[i+2]) {
				return false
			}
			i += 3
		default:
			i++
		}
	}
	return true
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// hopByHop reports whether a header (in canonical form) belongs to one
// connection only and is not passed on by a proxy.
func hopByHop(k string) bool {
	switch k {
	case "Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade":
		return true
	}
	return false
}

// forwardedFor reports the headers a reverse proxy set with Rewrite drops
// (X-Forwarded-* and Forwarded): they describe the connection it received.
func forwardedFor(k string) bool {
	switch k {
	case "Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto":
		return true
	}
	return false
}

// writeAppRequest writes req to the app as HTTP/1.1 with body (len(body)
// is the length announced), Host the app's address. With direct set, req
// is the mesh's own request, and the headers a proxy does not pass on
// (hop-by-hop ones, X-Forwarded-* and Forwarded) are left out, "Te:
// trailers" kept, and the app's API token (when token is not empty) put in
// place of any the caller sent; otherwise req was prepared by the reverse
// proxy and its headers are written as they are. As net/http does, line
// breaks in header values are written as spaces.
func writeAppRequest(bw *bufio.Writer, req *http.Request, host string, body []byte, token string, direct bool) error {
	bw.WriteString(req.Method)
	bw.WriteByte(' ')
	writeRequestURI(bw, req.URL.RequestURI())
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	bw.WriteString(host)
	bw.WriteString("\r\n")
	if ua := req.Header.Get("User-Agent"); ua != "" {
		writeHeaderLine(bw, "User-Agent", ua)
	}
	for k, vv := range req.Header {
		switch k {
		case "Host", "Content-Length", "User-Agent":
			continue
		case apiTokenHeaderCanonical:
			if direct {
				continue
			}
		default:
			if direct && (hopByHop(k) || forwardedFor(k)) || k == "Transfer-Encoding" || k == "Trailer" {
				continue
			}
		}
		if !httpguts.ValidHeaderFieldName(k) {
			continue // as net/http's Header.Write does
		}
		for _, v := range vv {
			writeHeaderLine(bw, k, v)
		}
	}
	if direct {
		if httpguts.HeaderValuesContainsToken(req.Header["Te"], "trailers") {
			bw.WriteString("Te: trailers\r\n")
		}
		if token != "" {
			writeHeaderLine(bw, apiTokenHeaderCanonical, token)
		}
	}
	if len(body) > 0 || req.Method == http.MethodPost || req.Method == http.MethodPut || req.Method == http.MethodPatch {
		bw.WriteString("Content-Length: ")
		var num [20]byte
		bw.Write(strconv.AppendInt(num[:0], int64(len(body)), 10))
		bw.WriteString("\r\n")
	}
	bw.WriteString("\r\n")
	_, err := bw.Write(body)
	return err
}

// writeRequestURI writes a request line's target with spaces and control
// bytes percent-encoded: a query can hold a raw space (url.ParseRequestURI
// takes one), which written as it is would end the target early and leave
// the app a request line it cannot read.
func writeRequestURI(bw *bufio.Writer, uri string) {
	for i := 0; i < len(uri); i++ {
		if c := uri[i]; c <= ' ' || c == 0x7f {
			const hex = "0123456789ABCDEF"
			bw.WriteString(uri[:i])
			for ; i < len(uri); i++ {
				if c := uri[i]; c <= ' ' || c == 0x7f {
					bw.Write([]byte{'%', hex[c>>4], hex[c&15]})
				} else {
					bw.WriteByte(c)
				}
			}
			return
		}
	}
	bw.WriteString(uri)
}

// writeHeaderLine writes "k: v\r\n", line breaks in v as spaces and
// surrounding blanks trimmed, as net/http's Header.Write does.
func writeHeaderLine(bw *bufio.Writer, k, v string) {
	bw.WriteString(k)
	bw.WriteString(": ")
	if strings.ContainsAny(v, "\r\n") {
		v = strings.NewReplacer("\r", " ", "\n", " ").Replace(v)
	}
	v = textproto.TrimString(v)
	bw.WriteString(v)
	bw.WriteString("\r\n")
}
