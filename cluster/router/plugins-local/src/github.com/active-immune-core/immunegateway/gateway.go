// Package immunegateway is the platform gateway's own logic on the local cluster's router (Traefik),
// the counterpart of the local stack's HAProxy gateway frontend (immune_suite/targets/local/gateway.py).
//
// A Traefik local plugin (Yaegi-interpreted; standard library only). The Pulumi program declares it as
// traefik.io/v1alpha1 Middleware objects (spec.plugin.immunegateway) and attaches them to HTTPRoute
// immune-core-platform with Gateway API ExtensionRef filters (docs/infra.md "The platform gateway").
// Two modes:
//
//   - "api" (the /api/immune/* rule): a request without "Authorization: Bearer <token>" is answered
//     401 (WWW-Authenticate: Bearer) here and never forwarded; the token itself is the core's to check.
//     Every response carries X-Immune-Served-By: "<colour>/<instance>" of the core pod that answered
//     (its X-Immune-Color and X-Immune-Instance headers), or "gateway" when the gateway answered itself
//     (this 401, the rate limiter's 429, "no available server").
//   - "health" (the GET /health rule, rewritten to the stable Service's /health/ready): the core's
//     readiness as the gateway's aggregated health. 200 {"status":"up","services":{"immune_core":
//     {"status":"up","colour":..,"instance":..}}} when a Ready stable pod answered 200 (Traefik only
//     routes to Ready endpoints of the Service's EndpointSlices); otherwise 503 {"status":"degraded",
//     "services":{"immune_core":{"status":"down","upstream_status":N}}} (N: the core's own 503, or the
//     router's 503 when no stable pod is Ready).
package immunegateway

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
)

// Config is the Middleware's spec.plugin.immunegateway object.
type Config struct {
	// Mode is "api" or "health".
	Mode string `json:"mode,omitempty"`
	// Service is the core's name in the aggregated health ("immune_core").
	Service string `json:"service,omitempty"`
}

// CreateConfig returns the defaults (Traefik calls it before decoding the Middleware's settings).
func CreateConfig() *Config {
	return &Config{Mode: "api", Service: "immune_core"}
}

// Gateway is one configured instance of the plugin.
type Gateway struct {
	next    http.Handler
	mode    string
	service string
	name    string
}

// New builds the handler; an unknown mode is a configuration error (the router logs it and the route
// answers 500 rather than forwarding unchecked).
func New(_ context.Context, next http.Handler, config *Config, name string) (http.Handler, error) {
	if config.Mode != "api" && config.Mode != "health" {
		return nil, fmt.Errorf("immunegateway %s: mode must be api or health, not %q", name, config.Mode)
	}
	if config.Service == "" {
		return nil, fmt.Errorf("immunegateway %s: service is empty", name)
	}
	return &Gateway{next: next, mode: config.Mode, service: config.Service, name: name}, nil
}

const servedBy = "X-Immune-Served-By"

func (g *Gateway) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if g.mode == "health" {
		g.health(w, req)
		return
	}
	if !hasBearer(req.Header.Get("Authorization")) {
		w.Header().Set("WWW-Authenticate", "Bearer")
		writeJSON(w, http.StatusUnauthorized, map[string]any{
			"error":   "unauthorized",
			"message": "the gateway needs an Authorization: Bearer <token> header",
		})
		return
	}
	g.next.ServeHTTP(&tagging{ResponseWriter: w}, req)
}

// hasBearer: scheme "Bearer" (case-insensitive, RFC 6750 section 2.1) and a non-empty credential.
func hasBearer(value string) bool {
	scheme, token, found := strings.Cut(strings.TrimSpace(value), " ")
	return found && strings.EqualFold(scheme, "bearer") && strings.TrimSpace(token) != ""
}

func writeJSON(w http.ResponseWriter, status int, body map[string]any) {
	// No HTML escaping: the message names "<token>" as the local stack's gateway does.
	var buf bytes.Buffer
	encoder := json.NewEncoder(&buf)
	encoder.SetEscapeHTML(false)
	payload := []byte(`{"error":"internal"}`)
	if err := encoder.Encode(body); err != nil {
		status = http.StatusInternalServerError
	} else {
		payload = bytes.TrimSpace(buf.Bytes())
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set(servedBy, "gateway")
	w.WriteHeader(status)
	_, _ = w.Write(payload)
}

// tagging sets X-Immune-Served-By when the status line is written: by then the upstream's headers
// (the core's X-Immune-* or none at all) are in place.
type tagging struct {
	http.ResponseWriter
	done bool
}

func (t *tagging) tag() {
	if t.done {
		return
	}
	t.done = true
	h := t.Header()
	if instance := h.Get("X-Immune-Instance"); instance != "" {
		h.Set(servedBy, h.Get("X-Immune-Color")+"/"+instance)
	} else if h.Get(servedBy) == "" {
		h.Set(servedBy, "gateway")
	}
}

func (t *tagging) WriteHeader(status int) {
	t.tag()
	t.ResponseWriter.WriteHeader(status)
}

func (t *tagging) Write(b []byte) (int, error) {
	t.tag()
	return t.ResponseWriter.Write(b)
}

// Flush keeps streamed answers streaming through the wrapper.
func (t *tagging) Flush() {
	t.tag()
	if f, ok := t.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// recorder keeps the upstream's answer to /health/ready (small JSON) for the aggregation.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }

func (r *recorder) WriteHeader(status int) {
	if r.status == 0 {
		r.status = status
	}
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.body.Write(b)
}

func (g *Gateway) health(w http.ResponseWriter, req *http.Request) {
	rec := &recorder{header: http.Header{}}
	g.next.ServeHTTP(rec, req)
	instance := rec.header.Get("X-Immune-Instance")
	if rec.status == http.StatusOK && instance != "" {
		writeJSON(w, http.StatusOK, map[string]any{
			"status": "up",
			"services": map[string]any{g.service: map[string]any{
				"status":   "up",
				"colour":   rec.header.Get("X-Immune-Color"),
				"instance": instance,
			}},
		})
		return
	}
	upstream := rec.status
	if upstream == 0 {
		upstream = http.StatusBadGateway
	}
	writeJSON(w, http.StatusServiceUnavailable, map[string]any{
		"status": "degraded",
		"services": map[string]any{g.service: map[string]any{
			"status":          "down",
			"upstream_status": upstream,
		}},
	})
}
