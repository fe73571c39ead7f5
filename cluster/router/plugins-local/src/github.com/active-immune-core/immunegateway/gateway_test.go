package immunegateway

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// core stands in for the upstream handler inside the router (a real HTTP handler, no mock of the
// plugin): it counts what reached it and answers like the core's /health/ready.
type core struct {
	hits   int
	status int
}

func (c *core) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	c.hits++
	if c.status != 0 {
		w.Header().Set("X-Immune-Color", "blue")
		w.Header().Set("X-Immune-Instance", "immune-core-blue-1")
		w.WriteHeader(c.status)
		_, _ = w.Write([]byte(`{"ready":true}`))
		return
	}
	w.WriteHeader(http.StatusServiceUnavailable) // the router's "no available server"
	_, _ = w.Write([]byte("no available server"))
}

func handler(t *testing.T, mode string, next http.Handler) http.Handler {
	t.Helper()
	cfg := CreateConfig()
	cfg.Mode = mode
	h, err := New(context.Background(), next, cfg, "test")
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func serve(h http.Handler, auth string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodGet, "/api/v1/threats", nil)
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func TestNoBearerIsRefusedAndNotForwarded(t *testing.T) {
	for _, auth := range []string{"", "Basic dXNlcjpwdw==", "Bearer", "Bearer   "} {
		c := &core{status: 200}
		rec := serve(handler(t, "api", c), auth)
		if rec.Code != 401 || c.hits != 0 || rec.Header().Get("WWW-Authenticate") != "Bearer" ||
			rec.Header().Get(servedBy) != "gateway" {
			t.Fatalf("%q: status %d hits %d headers %v", auth, rec.Code, c.hits, rec.Header())
		}
		if !strings.Contains(rec.Body.String(), "Authorization: Bearer <token>") {
			t.Fatalf("body %s", rec.Body.String())
		}
	}
}

func TestBearerIsForwardedAndTaggedWithThePod(t *testing.T) {
	c := &core{status: 200}
	rec := serve(handler(t, "api", c), "bearer abc")
	if rec.Code != 200 || c.hits != 1 || rec.Header().Get(servedBy) != "blue/immune-core-blue-1" {
		t.Fatalf("status %d hits %d headers %v", rec.Code, c.hits, rec.Header())
	}
	empty := &core{}
	rec = serve(handler(t, "api", empty), "Bearer abc")
	if rec.Code != 503 || rec.Header().Get(servedBy) != "gateway" {
		t.Fatalf("no pod: status %d headers %v", rec.Code, rec.Header())
	}
}

func TestHealthFollowsTheCoresReadiness(t *testing.T) {
	cases := []struct {
		core   *core
		status int
		state  string
	}{
		{&core{status: 200}, 200, "up"},
		{&core{status: 503}, 503, "down"},
		{&core{}, 503, "down"},
	}
	for _, tc := range cases {
		rec := serve(handler(t, "health", tc.core), "")
		var body struct {
			Status   string
			Services map[string]map[string]any
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
			t.Fatal(err)
		}
		if rec.Code != tc.status || body.Services["immune_core"]["status"] != tc.state {
			t.Fatalf("core %d: got %d %s", tc.core.status, rec.Code, rec.Body.String())
		}
	}
}

func TestUnknownModeIsRefused(t *testing.T) {
	if _, err := New(context.Background(), &core{}, &Config{Mode: "open", Service: "x"}, "bad"); err == nil {
		t.Fatal("mode open was accepted")
	}
}
