package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tapfw/tapfw/pkg/config"
	"github.com/tapfw/tapfw/pkg/inspect"
	"github.com/tapfw/tapfw/pkg/testnet"
)

// tapfw ui on a sandbox host: the console's server is the plugin binary,
// run in the host's namespace and listening on its loopback; the test's
// requests are dialed inside that namespace.

// uiServer is a running tapfw ui.
type uiServer struct {
	t      *testing.T
	ns     *testnet.NS
	base   string // http://127.0.0.1:PORT
	token  string
	client *http.Client
	stderr *bytes.Buffer
}

// startUI runs tapfw ui on port of the host's loopback with the apply
// host's base config, and waits until it answers.
func (h *applyHost) startUI(port int, args ...string) *uiServer {
	h.t.Helper()
	tokenFile := filepath.Join(h.dir, fmt.Sprintf("ui-%d.token", port))
	argv := append([]string{"netns", "exec", h.ns.Name, "env"}, h.env()...)
	argv = append(argv, pluginBin, "ui", "--listen", fmt.Sprintf("127.0.0.1:%d", port), "--config", h.base, "--token-file", tokenFile)
	cmd := exec.Command("ip", append(argv, args...)...)
	u := &uiServer{t: h.t, ns: h.ns, base: fmt.Sprintf("http://127.0.0.1:%d", port), stderr: &bytes.Buffer{}}
	cmd.Stderr = u.stderr
	if err := cmd.Start(); err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				h.t.Errorf("tapfw ui did not stop cleanly on SIGTERM: %v\n%s", err, u.stderr)
			}
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			h.t.Errorf("tapfw ui did not stop on SIGTERM\n%s", u.stderr)
		}
	})
	u.client = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DialContext: h.ns.DialContext},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if data, err := os.ReadFile(tokenFile); err == nil && len(data) > 0 {
			if resp, err := u.client.Get(u.base + "/login"); err == nil {
				resp.Body.Close()
				u.token = strings.TrimSpace(string(data))
				return u
			}
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("tapfw ui did not start:\n%s", u.stderr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// call is one request to the console; auth is "bearer", "wrong", "" or
// a session cookie's value (with csrf, its token).
type call struct {
	method, path, body string
	auth, csrf         string
	form               url.Values
	header             map[string]string
}

func (u *uiServer) do(c call) (int, string) {
	u.t.Helper()
	body := c.body
	if c.form != nil {
		if c.csrf != "" {
			c.form.Set("csrf", c.csrf)
		}
		body = c.form.Encode()
	}
	req, err := http.NewRequest(c.method, u.base+c.path, strings.NewReader(body))
	if err != nil {
		u.t.Fatal(err)
	}
	if c.form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	switch c.auth {
	case "":
	case "bearer":
		req.Header.Set("Authorization", "Bearer "+u.token)
	case "wrong":
		req.Header.Set("Authorization", "Bearer "+strings.Repeat("f", len(u.token)))
	default:
		req.AddCookie(&http.Cookie{Name: "tapfw_session", Value: c.auth})
	}
	for k, v := range c.header {
		req.Header.Set(k, v)
	}
	resp, err := u.client.Do(req)
	if err != nil {
		u.t.Fatalf("%s %s: %v\n%s", c.method, c.path, err, u.stderr)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(data)
}

// login logs in with the form and returns the session and its CSRF token.
func (u *uiServer) login() (session, csrf string) {
	u.t.Helper()
	resp, err := u.client.PostForm(u.base+"/login", url.Values{"token": {u.token}})
	if err != nil {
		u.t.Fatal(err)
	}
	resp.Body.Close()
	for _, c := range resp.Cookies() {
		if c.Name == "tapfw_session" {
			session = c.Value
		}
	}
	_, page := u.do(call{method: "GET", path: "/host", auth: session})
	m := regexp.MustCompile(`name="csrf" value="([0-9a-f]+)"`).FindStringSubmatch(page)
	if session == "" || m == nil {
		u.t.Fatalf("login: session %q, page\n%s", session, page)
	}
	return session, m[1]
}

// TestUI: the console's API answers what the CLI's --json does; a PUT
// changes the host as apply does, and real packets follow; and every
// refused request (no token, a wrong one, no CSRF token, a bad or
// oversize value, a read-only console) leaves the file and the kernel as
// they were.
func TestUI(t *testing.T) {
	testnet.NeedKernel(t)
	forEachBackend(t, func(t *testing.T, be testBackend) {
		h := newApplyHost(t, be)
		u := h.startUI(8390)
		vm0 := h.vms[0]

		// The API is the CLI's --json.
		taps := uiTaps(t, u)
		var cli []inspect.Tap
		if err := json.Unmarshal([]byte(h.mustOp("list", "--json")), &cli); err != nil {
			t.Fatal(err)
		}
		if got, want := tapsWithoutCounters(taps), tapsWithoutCounters(cli); got != want {
			t.Errorf("GET /api/taps:\n%s\ntapfw list --json:\n%s", got, want)
		}
		q := "tap=" + vm0.port + "&dir=in&src=192.0.2.30&dport=9090"
		code, ex := u.do(call{method: "GET", path: "/api/explain?" + q, auth: "bearer"})
		exCLI := h.mustOp("explain", "--tap", vm0.port, "--dir", "in", "--src", "192.0.2.30", "--dport", "9090", "--json")
		if code != 200 || !jsonEqual(ex, exCLI) || !strings.Contains(ex, `"Verdict": "DROP"`) {
			t.Errorf("GET /api/explain: %d\n%s\ntapfw explain --json:\n%s", code, ex, exCLI)
		}
		code, show := u.do(call{method: "GET", path: "/api/taps/" + vm0.port, auth: "bearer"})
		if code != 200 || !strings.Contains(show, `"ruleList"`) || !strings.Contains(show, "2222") {
			t.Errorf("GET /api/taps/%s: %d\n%s", vm0.port, code, show)
		}

		// Refused requests change nothing.
		ro := h.startUI(8391, "--read-only")
		session, csrf := u.login()
		before := h.uiSnapshot()
		for _, r := range []struct {
			u    *uiServer
			c    call
			code int
		}{
			{u, call{method: "PUT", path: "/api/sets/admins", body: `[]`}, 401},
			{u, call{method: "PUT", path: "/api/sets/admins", body: `[]`, auth: "wrong"}, 401},
			{u, call{method: "PUT", path: "/api/sets/admins", body: `[]`, auth: session}, 403},
			{u, call{method: "POST", path: "/apply", auth: session, form: url.Values{"config": {"{}"}, "version": {"none"}}}, 403},
			{u, call{method: "PUT", path: "/api/sets/admins", body: `["192.0.2.300"]`, auth: "bearer"}, 400},
			{u, call{method: "PUT", path: "/api/groups/web", body: `{"in":[{"action":"ACCEPT","comment":"<script>x</script>"}]}`, auth: "bearer"}, 400},
			{u, call{method: "PUT", path: "/api/host", body: `{"ips":["192.0.2.31"],"rules":{"in":[{"action":"ACCEPT","proto":"tcp","dport":"22:1"}]}}`, auth: "bearer"}, 400},
			{u, call{method: "PUT", path: "/api/sets/admins", body: "[" + strings.Repeat(`"192.0.2.30",`, 400000) + `"192.0.2.30"]`, auth: "bearer"}, 413},
			{u, call{method: "POST", path: "/preview", auth: session, csrf: csrf, form: url.Values{"op": {"set-entries"}, "target": {"set:admins"}, "entries": {"192.0.2.1"}, "version": {"stale"}}}, 409},
			{ro, call{method: "PUT", path: "/api/sets/admins", body: `[]`, auth: "bearer"}, 403},
		} {
			code, body := r.u.do(r.c)
			if code != r.code {
				t.Errorf("%s %s: %d, want %d\n%s", r.c.method, r.c.path, code, r.code, body)
			}
			if after := h.uiSnapshot(); after != before {
				t.Fatalf("%s %s (%d) changed the file or the kernel:\n%s", r.c.method, r.c.path, code, diffLines(before, after))
			}
		}

		// A PUT is an apply: the set loses the client, whose packets to
		// 2222 stop, and gets it back.
		to2222 := func() bool {
			return testnet.TCPProbe(h.client.ns, net.JoinHostPort(vm0.ip4.String(), "2222"), 700*time.Millisecond)
		}
		if !to2222() {
			t.Fatal("the admin does not reach 2222 to begin with")
		}
		orig, _ := os.ReadFile(h.base)
		code, out := u.do(call{method: "PUT", path: "/api/sets/admins", body: `[]`, auth: "bearer"})
		if code != 200 || !strings.Contains(out, "changed ipsets.admins") {
			t.Fatalf("PUT /api/sets/admins []: %d %s", code, out)
		}
		if to2222() {
			t.Error("the client still reaches 2222 after it left admins")
		}
		prev, _ := os.ReadFile(h.base + config.PrevSuffix)
		if code, got := u.do(call{method: "GET", path: "/api/sets/admins", auth: "bearer"}); code != 200 || strings.TrimSpace(got) != "[]" || string(prev) != string(orig) {
			t.Errorf("after the PUT: GET %d %s; the previous file kept: %v", code, got, string(prev) == string(orig))
		}
		if code, out := u.do(call{method: "PUT", path: "/api/sets/admins", body: `["192.0.2.30"]`, auth: "bearer"}); code != 200 || !to2222() {
			t.Errorf("PUT the client back: %d %s; reaches 2222: %v", code, out, to2222())
		}
		if out := h.mustApply(); !strings.Contains(out, "nothing to change") {
			t.Errorf("tapfw apply after the console's: %s", out)
		}
	})
}

func uiTaps(t *testing.T, u *uiServer) []inspect.Tap {
	t.Helper()
	code, body := u.do(call{method: "GET", path: "/api/taps", auth: "bearer"})
	var taps []inspect.Tap
	if err := json.Unmarshal([]byte(body), &taps); code != 200 || err != nil {
		t.Fatalf("GET /api/taps: %d %v\n%s", code, err, body)
	}
	return taps
}

// tapsWithoutCounters is taps as JSON, their counters left out: they
// move between two reads.
func tapsWithoutCounters(taps []inspect.Tap) string {
	for i := range taps {
		taps[i].Traffic = nil
	}
	b, _ := json.MarshalIndent(taps, "", "  ")
	return string(b)
}

func jsonEqual(a, b string) bool {
	var x, y any
	if json.Unmarshal([]byte(a), &x) != nil || json.Unmarshal([]byte(b), &y) != nil {
		return false
	}
	xs, _ := json.Marshal(x)
	ys, _ := json.Marshal(y)
	return string(xs) == string(ys)
}

// uiSnapshot is the base config file and the kernel's state, for
// "nothing changed".
func (h *applyHost) uiSnapshot() string {
	data, _ := os.ReadFile(h.base)
	_, err := os.Stat(h.base + config.PrevSuffix)
	return fmt.Sprintf("%s\n-- previous kept: %v\n%s", data, err == nil, h.state())
}
