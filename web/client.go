package web

import (
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"io/fs"
	"net/http"
	"path"
	"strings"
)

// clientFiles is the browser client: plain HTML, CSS and JavaScript modules,
// served as they are (no build step).
//
//go:embed client
var clientFiles embed.FS

// client serves the browser client's files with a Content-Security-Policy
// that allows only the client's own scripts and styles and connections back
// to this server (HTTP API and /ws). It answers GET and HEAD of the paths it
// has; the API answers the rest.
type client struct {
	files http.Handler
	// etags holds every file's ETag by path ("/" is index.html's); it is
	// also the list of paths served.
	etags map[string]string
}

func newClient() *client {
	sub, err := fs.Sub(clientFiles, "client")
	if err != nil {
		panic(err) // the directory is embedded at build time
	}
	// Embedded files have no modification time; an ETag of their content
	// lets browsers revalidate cheaply.
	etags := map[string]string{}
	err = fs.WalkDir(sub, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(sub, p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		etags["/"+p] = `"` + base64.RawURLEncoding.EncodeToString(sum[:12]) + `"`
		return nil
	})
	if err != nil {
		panic(err)
	}
	etags["/"] = etags["/index.html"]
	return &client{files: http.FileServerFS(sub), etags: etags}
}

// has reports whether the client serves urlPath.
func (c *client) has(urlPath string) bool {
	_, ok := c.etags[path.Clean(urlPath)]
	return ok
}

func (c *client) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", clientCSP(r.Host))
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	// Revalidate on every load, so a new server's client is picked up at
	// once; an unchanged file answers 304.
	h.Set("Cache-Control", "no-cache")
	if etag, ok := c.etags[path.Clean(r.URL.Path)]; ok {
		h.Set("ETag", etag)
	}
	c.files.ServeHTTP(w, r)
}

// clientCSP is the client's policy. connect-src names the WebSocket
// origins of host explicitly: 'self' covers ws: and wss: only in browsers
// that implement CSP level 3.
func clientCSP(host string) string {
	connect := "'self'"
	if host != "" && !strings.ContainsAny(host, " ;,'\"") {
		connect += " ws://" + host + " wss://" + host
	}
	return "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
		"connect-src " + connect + "; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
}
