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

// clientHandler serves the browser client at / with a Content-Security-Policy
// that allows only the client's own scripts and styles and connections back
// to this server (HTTP API and /ws).
func clientHandler() http.Handler {
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
	files := http.FileServerFS(sub)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		h := w.Header()
		h.Set("Content-Security-Policy", clientCSP(r.Host))
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		// Revalidate on every load, so a new server's client is picked up at
		// once; an unchanged file answers 304.
		h.Set("Cache-Control", "no-cache")
		if etag, ok := etags[path.Clean(r.URL.Path)]; ok {
			h.Set("ETag", etag)
		}
		files.ServeHTTP(w, r)
	})
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
