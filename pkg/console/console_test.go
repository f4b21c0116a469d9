package console

import (
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tapfw/tapfw/pkg/config"
	"github.com/tapfw/tapfw/pkg/explain"
	"github.com/tapfw/tapfw/pkg/inspect"
	"github.com/tapfw/tapfw/pkg/model"
	"github.com/tapfw/tapfw/pkg/netfilter"
	"github.com/tapfw/tapfw/pkg/nflog"
)

// fakeHost is a host whose "kernel" is the last config applied to it:
// Apply validates as tapfw apply does (the config package's checks of
// the host-wide parts) and can fail on demand after validating.
type fakeHost struct {
	mu      sync.Mutex
	reads   int    // calls of Taps
	kernel  string // the config last applied
	applies int
	fail    error
	taps    []inspect.Tap
}

func (f *fakeHost) Backend() string { return "fake" }

func (f *fakeHost) Taps() ([]inspect.Tap, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reads++
	return f.taps, nil
}

func (f *fakeHost) Tap(name string) (inspect.Tap, []inspect.Rule, error) {
	for _, t := range f.taps {
		if t.Name == name {
			return t, []inspect.Rule{{Direction: "in", Number: 1, Kind: "rule", Action: "ACCEPT", Match: "tcp dport 22", Comment: "ssh <b>", Families: []string{"ipv4"}}}, nil
		}
	}
	return inspect.Tap{}, nil, ErrNotFound
}

func (f *fakeHost) Explain(q Query) (Explained, error) {
	if q.Dst != "" && !strings.HasPrefix(q.Dst, "192.0.2.") {
		return Explained{}, &Refused{fmt.Errorf("--dst: %q is not an address", q.Dst)}
	}
	return Explained{Packet: explain.Packet{Family: 4, Proto: q.Proto, DPort: uint16(q.DPort)}, Result: explain.Result{Verdict: "DROP"},
		Text: fmt.Sprintf("packet to %s port %d\nDROP by the policy", q.Tap, q.DPort)}, nil
}

func (f *fakeHost) Apply(base string, data []byte, dryRun bool) ([]string, error) {
	_, conf, err := config.MergeBase(base, data)
	if err == nil {
		_, err = config.ResolveHostWide(conf, model.Limits{SetName: 20, GroupName: 20})
	}
	if err != nil {
		return nil, &Refused{err}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if string(data) == f.kernel {
		return []string{"nothing to change"}, nil
	}
	if dryRun {
		return []string{"would change the config"}, nil
	}
	if f.fail != nil {
		return nil, f.fail
	}
	f.kernel, f.applies = string(data), f.applies+1
	return []string{"changed the config"}, nil
}

func (f *fakeHost) Check(base string, data []byte) error {
	_, conf, err := config.MergeBase(base, data)
	if err == nil {
		_, err = config.ResolveHostWide(conf, model.Limits{SetName: 20, GroupName: 20})
	}
	if err != nil {
		return &Refused{err}
	}
	return nil
}

func (f *fakeHost) state() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.kernel
}

const (
	token    = "0123456789abcdef0123456789abcdef"
	baseConf = `{
  "logTarget": "NFLOG",
  "ipsets": {"admins": ["192.0.2.10"]},
  "securityGroups": {"web": {"in": [{"action": "ACCEPT", "proto": "tcp", "dport": "80"}]}},
  "host": {"ips": ["192.0.2.1"], "rules": {"in": [{"action": "ACCEPT", "macro": "SSH", "source": "+admins"}]}}
}
`
)

// env is a console on a fake host, served without a socket.
type env struct {
	t    *testing.T
	s    *Server
	h    http.Handler
	host *fakeHost
	conf string
}

func newEnv(t *testing.T, opt Options) *env {
	t.Helper()
	dir := t.TempDir()
	e := &env{t: t, host: &fakeHost{taps: []inspect.Tap{{Name: "tap100i0", Bridge: "vmbr0", MAC: "02:00:00:00:01:00", IPs: []string{"192.0.2.100"},
		Rules: map[string]int{"in": 1, "out": 0}, Traffic: map[string]*inspect.Verdicts{"in": {Accepted: netfilter.Counter{Packets: 5, Bytes: 300}}}, Attached: true}}},
		conf: filepath.Join(dir, "tapfw.conf")}
	if err := os.WriteFile(e.conf, []byte(baseConf), 0o644); err != nil {
		t.Fatal(err)
	}
	e.host.kernel = baseConf
	opt.Config, opt.Token = e.conf, token
	if opt.Log == nil {
		opt.Log = func(uint16) (LogConn, error) { return nil, errors.New("no log in this test") }
	}
	s, err := New(e.host, opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	e.s, e.h = s, s.Handler()
	return e
}

// req is one request: its auth is a Bearer token, a session cookie or
// none.
type req struct {
	method, path, body string
	bearer             string
	cookie             *http.Cookie
	form               url.Values
	header             map[string]string
}

func (e *env) do(r req) *httptest.ResponseRecorder {
	e.t.Helper()
	body := r.body
	if r.form != nil {
		body = r.form.Encode()
	}
	hr := httptest.NewRequest(r.method, r.path, strings.NewReader(body))
	if r.form != nil {
		hr.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if r.bearer != "" {
		hr.Header.Set("Authorization", "Bearer "+r.bearer)
	}
	if r.cookie != nil {
		hr.AddCookie(r.cookie)
	}
	for k, v := range r.header {
		hr.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	e.h.ServeHTTP(w, hr)
	return w
}

// login logs in with the form and returns the session cookie and the
// CSRF token of its pages.
func (e *env) login() (*http.Cookie, string) {
	e.t.Helper()
	w := e.do(req{method: "POST", path: "/login", form: url.Values{"token": {token}}})
	if w.Code != http.StatusSeeOther {
		e.t.Fatalf("login: %d %s", w.Code, w.Body)
	}
	var c *http.Cookie
	for _, k := range w.Result().Cookies() {
		if k.Name == cookieName {
			c = k
		}
	}
	if c == nil || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode {
		e.t.Fatalf("login cookie %+v: want HttpOnly, SameSite=Strict", c)
	}
	page := e.do(req{method: "GET", path: "/host", cookie: c})
	m := regexp.MustCompile(`name="csrf" value="([0-9a-f]+)"`).FindStringSubmatch(page.Body.String())
	if m == nil {
		e.t.Fatalf("no CSRF token on the host page:\n%s", page.Body)
	}
	return c, m[1]
}

// snapshot is the file and the fake kernel, for "nothing changed".
func (e *env) snapshot() string {
	data, err := os.ReadFile(e.conf)
	if err != nil {
		e.t.Fatal(err)
	}
	_, prevErr := os.Stat(e.conf + config.PrevSuffix)
	return string(data) + "\n--kernel--\n" + e.host.state() + fmt.Sprintf("\n--prev: %v", prevErr == nil)
}

func (e *env) unchanged(before, what string) {
	e.t.Helper()
	if after := e.snapshot(); after != before {
		e.t.Errorf("%s changed the file or the kernel:\n%s", what, after)
	}
}

// TestAuth: without the token, or with a wrong one, every page and API
// call answers 401 with nothing of the host's; a change made with a
// session cookie needs its CSRF token; and none of the refused requests
// changes the file or the kernel.
func TestAuth(t *testing.T) {
	e := newEnv(t, Options{})
	before := e.snapshot()
	routes := []req{{method: "GET", path: "/"}, {method: "GET", path: "/taps/tap100i0"}, {method: "GET", path: "/explain?tap=tap100i0&dir=in"},
		{method: "GET", path: "/host"}, {method: "GET", path: "/sets"}, {method: "GET", path: "/groups"}, {method: "GET", path: "/log"},
		{method: "GET", path: "/chart"}, {method: "GET", path: "/chart.svg"}, {method: "GET", path: "/rule?target=host&dir=in"},
		{method: "GET", path: "/api/taps"}, {method: "GET", path: "/api/taps/tap100i0"}, {method: "GET", path: "/api/explain?tap=tap100i0&dir=in"},
		{method: "GET", path: "/api/host"}, {method: "GET", path: "/api/sets/admins"}, {method: "GET", path: "/api/groups/web"},
		{method: "PUT", path: "/api/host", body: `{}`}, {method: "PUT", path: "/api/sets/admins", body: `[]`}, {method: "PUT", path: "/api/groups/web", body: `null`},
		{method: "POST", path: "/preview", form: url.Values{"op": {"section"}, "target": {"host"}}},
		{method: "POST", path: "/apply", form: url.Values{"config": {"{}"}}}}
	for _, r := range routes {
		for _, bad := range []string{"", "wrong-token-wrong-token"} {
			r.bearer = bad
			w := e.do(r)
			if w.Code != http.StatusUnauthorized {
				t.Errorf("%s %s with token %q: %d, want 401", r.method, r.path, bad, w.Code)
			}
			if strings.Contains(w.Body.String(), "tap100i0") || strings.Contains(w.Body.String(), "192.0.2.") {
				t.Errorf("%s %s without the token shows the host's data:\n%s", r.method, r.path, w.Body)
			}
		}
		r.bearer = ""
		r.cookie = &http.Cookie{Name: cookieName, Value: strings.Repeat("ab", 32)}
		if w := e.do(r); w.Code != http.StatusUnauthorized {
			t.Errorf("%s %s with a made-up session: %d, want 401", r.method, r.path, w.Code)
		}
	}
	if w := e.do(req{method: "POST", path: "/login", form: url.Values{"token": {"nope"}}}); w.Code != http.StatusUnauthorized || len(w.Result().Cookies()) != 0 {
		t.Errorf("a wrong login: %d, cookies %v", w.Code, w.Result().Cookies())
	}
	if w := e.do(req{method: "GET", path: "/api/taps", bearer: token}); w.Code != http.StatusOK {
		t.Errorf("the API with the token: %d", w.Code)
	}

	c, csrf := e.login()
	if w := e.do(req{method: "GET", path: "/", cookie: c}); w.Code != http.StatusOK || !strings.Contains(w.Body.String(), "tap100i0") {
		t.Errorf("the taps page with a session: %d\n%s", w.Code, w.Body)
	}
	edit := url.Values{"op": {"section"}, "target": {"set:admins"}, "json": {`["192.0.2.11"]`}, "version": {versionOf([]byte(baseConf))}, "back": {"/sets"}}
	for _, tok := range []string{"", "0000", strings.Repeat("0", len(csrf))} {
		f := url.Values{}
		for k, v := range edit {
			f[k] = v
		}
		if tok != "" {
			f.Set(csrfField, tok)
		}
		for _, path := range []string{"/preview", "/apply"} {
			if w := e.do(req{method: "POST", path: path, form: f, cookie: c}); w.Code != http.StatusForbidden {
				t.Errorf("POST %s with CSRF token %q: %d, want 403", path, tok, w.Code)
			}
		}
	}
	if w := e.do(req{method: "PUT", path: "/api/sets/admins", body: `["192.0.2.11"]`, cookie: c}); w.Code != http.StatusForbidden {
		t.Errorf("PUT with a cookie and no CSRF token: %d, want 403", w.Code)
	}
	e.unchanged(before, "the refused requests")

	// A session ends at logout.
	if w := e.do(req{method: "POST", path: "/logout", cookie: c, form: url.Values{csrfField: {csrf}}}); w.Code != http.StatusSeeOther {
		t.Errorf("logout: %d", w.Code)
	}
	if w := e.do(req{method: "GET", path: "/", cookie: c}); w.Code != http.StatusUnauthorized {
		t.Errorf("after logout: %d, want 401", w.Code)
	}
}

// TestReadOnly: a read-only console shows everything and refuses every
// change with 403.
func TestReadOnly(t *testing.T) {
	e := newEnv(t, Options{ReadOnly: true})
	before := e.snapshot()
	c, csrf := e.login()
	for _, r := range []req{
		{method: "PUT", path: "/api/host", body: `{"ips":["192.0.2.2"]}`, bearer: token},
		{method: "PUT", path: "/api/sets/admins", body: `[]`, bearer: token},
		{method: "PUT", path: "/api/groups/web", body: `null`, bearer: token},
		{method: "POST", path: "/preview", cookie: c, form: url.Values{csrfField: {csrf}, "op": {"section"}, "target": {"host"}, "version": {versionOf([]byte(baseConf))}}},
		{method: "POST", path: "/apply", cookie: c, form: url.Values{csrfField: {csrf}, "config": {"{}\n"}, "version": {versionOf([]byte(baseConf))}}},
	} {
		if w := e.do(r); w.Code != http.StatusForbidden {
			t.Errorf("read-only %s %s: %d, want 403", r.method, r.path, w.Code)
		}
	}
	e.unchanged(before, "a read-only console")
	page := e.do(req{method: "GET", path: "/host", cookie: c}).Body.String()
	if strings.Contains(page, "add a rule") || !strings.Contains(page, "read-only") {
		t.Errorf("the read-only host page offers edits:\n%s", page)
	}
}

// TestPut: a PUT replaces one part of the config, applies it and keeps
// the previous file; a refused one answers 4xx naming the field and
// changes nothing.
func TestPut(t *testing.T) {
	e := newEnv(t, Options{})
	put := func(path, body string, header map[string]string) *httptest.ResponseRecorder {
		return e.do(req{method: "PUT", path: path, body: body, bearer: token, header: header})
	}
	get := func(path string) string {
		w := e.do(req{method: "GET", path: path, bearer: token})
		if w.Code != http.StatusOK {
			t.Fatalf("GET %s: %d %s", path, w.Code, w.Body)
		}
		return strings.TrimSpace(w.Body.String())
	}
	host := get("/api/host")
	var h config.Host
	if err := json.Unmarshal([]byte(host), &h); err != nil || len(h.Rules.In) != 1 {
		t.Fatalf("GET /api/host: %s (%v)", host, err)
	}
	before := e.snapshot()
	for _, bad := range []struct{ path, body, field string }{
		{"/api/host", `{"rules":{"in":[{"action":"ACCEPT","proto":"tcp","dport":"99999"}]}}`, "host.rules.in[0].dport"},
		{"/api/host", `{"rules":{"in":[{"action":"ACCEPT","comment":"<script>alert(1)</script>"}]}}`, "host.rules.in[0].comment"},
		{"/api/host", `{"ips":["192.0.2.1"],"bogus":true}`, "host.bogus"},
		{"/api/host", `{"ips":["<b>"]}`, "host.ips"},
		{"/api/host", `{"ips":`, "host"},
		{"/api/sets/admins", `["192.0.2.300"]`, "ipsets.admins"},
		{"/api/sets/a%3Cb%3E", `["192.0.2.3"]`, ""},
		{"/api/groups/web", `{"in":[{"action":"JUMP"}]}`, "securityGroups.web.in[0].action"},
		{"/api/groups/web", `[1]`, "securityGroups.web"},
	} {
		w := put(bad.path, bad.body, nil)
		var ae apiError
		_ = json.Unmarshal(w.Body.Bytes(), &ae)
		if w.Code != http.StatusBadRequest || !strings.HasPrefix(ae.Field, bad.field) || ae.Error == "" {
			t.Errorf("PUT %s %s: %d %s, want 400 naming %s", bad.path, bad.body, w.Code, w.Body, bad.field)
		}
	}
	if w := put("/api/host", `{}`, map[string]string{"If-Match": `"0123"`}); w.Code != http.StatusConflict {
		t.Errorf("PUT with a stale If-Match: %d, want 409", w.Code)
	}
	if w := put("/api/host", strings.Repeat(" ", maxBody+1), nil); w.Code != http.StatusRequestEntityTooLarge {
		t.Errorf("an oversize PUT: %d, want 413", w.Code)
	}
	e.host.fail = errors.New("the kernel said no")
	if w := put("/api/sets/admins", `["192.0.2.12"]`, nil); w.Code != http.StatusInternalServerError {
		t.Errorf("PUT the kernel refuses: %d, want 500", w.Code)
	}
	e.host.fail = nil
	e.unchanged(before, "the refused PUTs")

	etag := e.do(req{method: "GET", path: "/api/sets/admins", bearer: token}).Header().Get("ETag")
	w := put("/api/sets/admins", `["192.0.2.10", "198.51.100.0/24"]`, map[string]string{"If-Match": etag})
	if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), "changed the config") {
		t.Fatalf("PUT /api/sets/admins: %d %s", w.Code, w.Body)
	}
	if got := get("/api/sets/admins"); !strings.Contains(got, "198.51.100.0/24") {
		t.Errorf("the set after PUT: %s", got)
	}
	prev, _ := os.ReadFile(e.conf + config.PrevSuffix)
	now, _ := os.ReadFile(e.conf)
	if string(prev) != baseConf || e.host.state() != string(now) {
		t.Errorf("previous file %q, kernel %q, file %q", prev, e.host.state(), now)
	}
	// Everything else stays as it was written, in its order.
	if i, j := strings.Index(string(now), `"logTarget"`), strings.Index(string(now), `"host"`); i < 0 || j < i {
		t.Errorf("the file's keys moved:\n%s", now)
	}
	for path, body := range map[string]string{"/api/groups/web": "null", "/api/groups/db": `{"in":[{"action":"ACCEPT","proto":"tcp","dport":"5432"}]}`, "/api/host": "null"} {
		if w := put(path, body, nil); w.Code != http.StatusOK {
			t.Errorf("PUT %s %s: %d %s", path, body, w.Code, w.Body)
		}
		if got := get(path); got != strings.TrimSpace(body) && !strings.Contains(got, "5432") {
			t.Errorf("GET %s after PUT %s: %s", path, body, got)
		}
	}
}

// TestPageEdit: a page edit previews, then applies; a stale or refused
// one changes nothing.
func TestPageEdit(t *testing.T) {
	e := newEnv(t, Options{})
	c, csrf := e.login()
	version := versionOf([]byte(baseConf))
	post := func(path string, f url.Values) *httptest.ResponseRecorder {
		f.Set(csrfField, csrf)
		return e.do(req{method: "POST", path: path, form: f, cookie: c})
	}
	before := e.snapshot()
	add := url.Values{"op": {"rule-add"}, "target": {"host"}, "dir": {"in"}, "action": {"ACCEPT"}, "proto": {"tcp"}, "dport": {"8006"}, "comment": {"web gui"}, "version": {version}, "back": {"/host"}}
	w := post("/preview", add)
	if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), "would change the config") {
		t.Fatalf("preview: %d\n%s", w.Code, w.Body)
	}
	candidate, sig := previewed(t, w.Body.String())
	e.unchanged(before, "a preview")

	bad := url.Values{}
	for k, v := range add {
		bad[k] = v
	}
	bad.Set("comment", `<img src=x onerror=alert(1)>`)
	if w := post("/preview", bad); w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), "host.rules.in[1].comment") || strings.Contains(w.Body.String(), "<img") {
		t.Errorf("a rule with markup: %d\n%s", w.Code, w.Body)
	}
	// A form that makes a set or group refuses to replace one.
	for _, f := range []url.Values{{"op": {"set-entries"}, "new": {"1"}, "kind": {"set"}, "name": {"admins"}, "entries": {"192.0.2.99"}},
		{"op": {"section"}, "new": {"1"}, "kind": {"group"}, "name": {"web"}, "json": {"{}"}}} {
		f.Set("version", version)
		if w := post("/preview", f); w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), "there is one already") {
			t.Errorf("a new %s named as one there is: %d\n%s", f.Get("kind"), w.Code, w.Body)
		}
	}
	bad.Set("comment", "ok")
	bad.Set("version", "stale")
	if w := post("/preview", bad); w.Code != http.StatusConflict {
		t.Errorf("a stale preview: %d, want 409", w.Code)
	}
	// Only the file the preview showed is applied.
	for _, f := range []url.Values{
		{"config": {candidate}, "version": {version}},
		{"config": {strings.Replace(candidate, "8006", "8007", 1)}, "version": {version}, "sig": {sig}},
		{"config": {candidate}, "version": {"stale"}, "sig": {sig}},
	} {
		if w := post("/apply", f); w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), "not the one the preview showed") {
			t.Errorf("applying %v: %d, want 400\n%s", f, w.Code, w.Body)
		}
	}
	e.unchanged(before, "the refused edits")
	// Another edit of the file since the preview: 409.
	if err := os.WriteFile(e.conf, []byte(baseConf+" "), 0o644); err != nil {
		t.Fatal(err)
	}
	if w := post("/apply", url.Values{"config": {candidate}, "version": {version}, "sig": {sig}}); w.Code != http.StatusConflict {
		t.Errorf("a stale apply: %d, want 409\n%s", w.Code, w.Body)
	}
	if err := os.WriteFile(e.conf, []byte(baseConf), 0o644); err != nil {
		t.Fatal(err)
	}
	e.unchanged(before, "the stale apply")

	// A browser ends a textarea's lines with CRLF; the file keeps LF.
	w = post("/apply", url.Values{"config": {strings.ReplaceAll(candidate, "\n", "\r\n")}, "version": {version}, "sig": {sig}, "back": {"/host"}})
	if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), "changed the config") {
		t.Fatalf("apply: %d\n%s", w.Code, w.Body)
	}
	var conf config.NetConf
	data, _ := os.ReadFile(e.conf)
	if err := json.Unmarshal(data, &conf); err != nil || strings.Contains(string(data), "\r") || len(conf.Host.Rules.In) != 2 || conf.Host.Rules.In[1].DPort != "8006" {
		t.Fatalf("the file after apply: %s (%v)", data, err)
	}
	// Moving, editing and removing rules, and the settings.
	steps := []struct {
		f     url.Values
		check func(config.NetConf) bool
	}{
		{url.Values{"op": {"rule-up"}, "target": {"host"}, "dir": {"in"}, "index": {"2"}}, func(c config.NetConf) bool { return c.Host.Rules.In[0].DPort == "8006" }},
		{url.Values{"op": {"rule-edit"}, "target": {"host"}, "dir": {"in"}, "index": {"1"}, "action": {"DROP"}, "proto": {"udp"}, "dport": {"161"}}, func(c config.NetConf) bool {
			return c.Host.Rules.In[0].Action == "DROP" && c.Host.Rules.In[0].Proto == "udp"
		}},
		{url.Values{"op": {"rule-remove"}, "target": {"host"}, "dir": {"in"}, "index": {"1"}}, func(c config.NetConf) bool { return len(c.Host.Rules.In) == 1 }},
		{url.Values{"op": {"rule-add"}, "target": {"group:web"}, "dir": {"out"}, "group": {""}, "action": {"ACCEPT"}, "proto": {"udp"}, "dport": {"53"}}, func(c config.NetConf) bool {
			return len(c.SecurityGroups["web"].Out) == 1
		}},
		{url.Values{"op": {"host-settings"}, "target": {"host"}, "ips": {"192.0.2.1, 192.0.2.2"}, "managementPorts": {"8006"}, "tcpFlags": {"on"}}, func(c config.NetConf) bool {
			return len(c.Host.IPs) == 2 && c.Host.TCPFlags && c.Host.NoSmurfs != nil && !*c.Host.NoSmurfs && len(c.Host.Rules.In) == 1
		}},
		{url.Values{"op": {"set-entries"}, "target": {"set:admins"}, "entries": {"192.0.2.10\n192.0.2.20"}}, func(c config.NetConf) bool { return len(c.IPSets["admins"]) == 2 }},
		{url.Values{"op": {"set-entries"}, "new": {"1"}, "kind": {"set"}, "name": {"office"}, "entries": {"198.51.100.0/24"}}, func(c config.NetConf) bool {
			return len(c.IPSets["office"]) == 1 && len(c.IPSets["admins"]) == 2
		}},
		{url.Values{"op": {"section"}, "new": {"1"}, "kind": {"group"}, "name": {"db"}, "json": {"{}"}}, func(c config.NetConf) bool {
			_, ok := c.SecurityGroups["db"]
			return ok && len(c.SecurityGroups["web"].In) == 1
		}},
	}
	for i, st := range steps {
		data, _ := os.ReadFile(e.conf)
		st.f.Set("version", versionOf(data))
		w := post("/preview", st.f)
		if w.Code != http.StatusOK {
			t.Fatalf("step %d preview: %d\n%s", i, w.Code, w.Body)
		}
		cand, sig := previewed(t, w.Body.String())
		if w := post("/apply", url.Values{"config": {cand}, "version": {versionOf(data)}, "sig": {sig}}); w.Code != http.StatusOK {
			t.Fatalf("step %d apply: %d\n%s", i, w.Code, w.Body)
		}
		data, _ = os.ReadFile(e.conf)
		var c config.NetConf
		if err := json.Unmarshal(data, &c); err != nil || !st.check(c) {
			t.Errorf("step %d (%v): the file is\n%s", i, st.f, data)
		}
	}
}

// previewed is the file a preview page would apply, and its signature.
func previewed(t *testing.T, page string) (config, sig string) {
	t.Helper()
	c := regexp.MustCompile(`(?s)<textarea name="config"[^>]*>(.*?)</textarea>`).FindStringSubmatch(page)
	g := regexp.MustCompile(`name="sig" value="([0-9a-f]+)"`).FindStringSubmatch(page)
	if c == nil || g == nil {
		t.Fatalf("no new config or signature in the preview:\n%s", page)
	}
	return html.UnescapeString(c[1]), g[1]
}

// TestPages: every page renders with the host's data, escaped, and the
// API answers as the CLI's --json.
func TestPages(t *testing.T) {
	e := newEnv(t, Options{})
	c, _ := e.login()
	for path, want := range map[string]string{
		"/":                                     "tap100i0",
		"/?part=rows":                           "192.0.2.100",
		"/taps/tap100i0":                        "tcp dport 22",
		"/explain?tap=tap100i0&dir=in&dport=22": "DROP by the policy",
		"/host":                                 "&#43;admins",
		"/sets":                                 "192.0.2.10",
		"/groups":                               "dport",
		"/rule?target=host&dir=in&index=1":      `value="SSH"`,
		"/log":                                  "no log in this test",
		"/chart":                                "chart.svg",
	} {
		w := e.do(req{method: "GET", path: path, cookie: c})
		if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), want) {
			t.Errorf("GET %s: %d, want %q in\n%s", path, w.Code, want, w.Body)
		}
		if strings.Contains(w.Body.String(), "<b>") {
			t.Errorf("GET %s: unescaped markup from the host", path)
		}
	}
	for path, code := range map[string]int{"/taps/tap999": 404, "/taps/a%3Cb": 400, "/explain?tap=tap100i0&dir=sideways": 400,
		"/explain?tap=tap100i0&dir=in&dst=%3Cscript%3E": 400, "/rule?target=host&dir=in&index=9": 404, "/rule?target=nothing&dir=in": 400} {
		w := e.do(req{method: "GET", path: path, cookie: c})
		if w.Code != code || strings.Contains(w.Body.String(), "<script>") {
			t.Errorf("GET %s: %d, want %d (escaped)\n%s", path, w.Code, code, w.Body)
		}
	}
	var taps []inspect.Tap
	w := e.do(req{method: "GET", path: "/api/taps", bearer: token})
	if err := json.Unmarshal(w.Body.Bytes(), &taps); err != nil || len(taps) != 1 || taps[0].Traffic["in"].Accepted.Packets != 5 {
		t.Errorf("/api/taps: %s (%v)", w.Body, err)
	}
	w = e.do(req{method: "GET", path: "/api/explain?tap=tap100i0&dir=in&dport=22", bearer: token})
	var ex struct {
		Packet  explain.Packet `json:"packet"`
		Verdict string
	}
	if err := json.Unmarshal(w.Body.Bytes(), &ex); err != nil || ex.Verdict != "DROP" || ex.Packet.DPort != 22 {
		t.Errorf("/api/explain: %s (%v)", w.Body, err)
	}
	for path, code := range map[string]int{"/api/taps/tap999": 404, "/api/taps/a%3Cb": 400, "/api/explain?tap=tap100i0&dir=in&sport=70000": 400, "/api/sets/none": 200} {
		if w := e.do(req{method: "GET", path: path, bearer: token}); w.Code != code {
			t.Errorf("GET %s: %d, want %d: %s", path, w.Code, code, w.Body)
		}
	}
	if w := e.do(req{method: "GET", path: "/static/console.js", cookie: c}); w.Code != 200 || !strings.Contains(w.Body.String(), "data-refresh") {
		t.Errorf("the script: %d", w.Code)
	}
	if csp := w.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("no CSP: %q", csp)
	}
}

// TestChart: the chart draws each tap's packets a second from the
// samples, the busiest first.
func TestChart(t *testing.T) {
	h := newHistory(10)
	at := time.Unix(1000, 0)
	for i := range 4 {
		h.add([]inspect.Tap{
			{Name: "a", Traffic: map[string]*inspect.Verdicts{"in": {Accepted: netfilter.Counter{Packets: uint64(10 * i)}}}},
			{Name: "b", Traffic: map[string]*inspect.Verdicts{"out": {Dropped: netfilter.Counter{Packets: uint64(100 * i)}}}},
		}, at.Add(time.Duration(i)*2*time.Second))
	}
	lines, times := h.rates()
	if len(times) != 3 || len(lines) != 4 || lines[0].Tap != "b" || lines[1].What != "dropped" || lines[1].Rates[2] != 50 || lines[2].Rates[0] != 5 {
		t.Errorf("rates %+v at %v", lines, times)
	}
}

// fakeLog is an NFLOG group that has logged entries.
type fakeLog struct{ entries chan []nflog.Entry }

func (f *fakeLog) Receive(timeout time.Duration) ([]nflog.Entry, error) {
	select {
	case e := <-f.entries:
		return e, nil
	case <-time.After(timeout):
		return nil, nil
	}
}
func (f *fakeLog) Close() error { return nil }

// TestLog: the log page shows the lines of the group the config names,
// in the config's words.
func TestLog(t *testing.T) {
	fl := &fakeLog{entries: make(chan []nflog.Entry, 1)}
	var bound []uint16
	e := newEnv(t, Options{Sample: 50 * time.Millisecond, Log: func(g uint16) (LogConn, error) { bound = append(bound, g); return fl, nil }})
	fl.entries <- []nflog.Entry{{Time: time.Now(), Prefix: "tfw:tap100i0:in:drop", Packet: "ipv4 192.0.2.9 > 192.0.2.100 proto 6 ttl 64"}}
	c, _ := e.login()
	deadline := time.Now().Add(5 * time.Second)
	for {
		body := e.do(req{method: "GET", path: "/log?part=lines", cookie: c}).Body.String()
		if strings.Contains(body, "policy: drop") && strings.Contains(body, "192.0.2.9 &gt; 192.0.2.100") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the log shows no line:\n%s", body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(bound) == 0 || bound[0] != 0 {
		t.Errorf("bound groups %v, want 0", bound)
	}
}

// TestLoadToken: a missing token file is made, mode 0600; one others may
// read is refused.
func TestLoadToken(t *testing.T) {
	p := filepath.Join(t.TempDir(), "token")
	tok, created, err := LoadToken(p)
	if err != nil || !created || len(tok) != 64 {
		t.Fatalf("LoadToken: %q %v %v", tok, created, err)
	}
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", fi.Mode())
	}
	again, created, err := LoadToken(p)
	if err != nil || created || again != tok {
		t.Errorf("reading it again: %q %v %v", again, created, err)
	}
	_ = os.Chmod(p, 0o644)
	if _, _, err := LoadToken(p); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("a readable token file: %v", err)
	}
}

// TestDiff: a preview shows the file's changed lines with their context.
func TestDiff(t *testing.T) {
	a := "{\n  \"a\": 1,\n  \"b\": 2,\n  \"c\": 3,\n  \"d\": 4,\n  \"e\": 5,\n  \"f\": 6\n}\n"
	b := strings.Replace(a, `"e": 5`, `"e": 50`, 1)
	got := strings.Join(diff(a, b), "\n")
	want := strings.Join([]string{"  ...", `    "c": 3,`, `    "d": 4,`, `-   "e": 5,`, `+   "e": 50,`, `    "f": 6`, "  }"}, "\n")
	if got != want {
		t.Errorf("diff:\n%s\nwant:\n%s", got, want)
	}
	if d := diff(a, a); len(d) != 0 {
		t.Errorf("no change: %q", d)
	}
}

// TestDiffLarge: a set of 100,000 entries with one changed diffs in its
// middle only; a change of the whole of it is not drawn.
func TestDiffLarge(t *testing.T) {
	var a, b strings.Builder
	for i := range 100000 {
		fmt.Fprintf(&a, "    %q,\n", fmt.Sprint(i))
		if i == 500 {
			fmt.Fprintf(&b, "    %q,\n", "changed")
		} else {
			fmt.Fprintf(&b, "    %q,\n", fmt.Sprint(i))
		}
	}
	if d := diff(a.String(), b.String()); len(d) != 8 || d[3] != `-     "500",` {
		t.Errorf("one line in 100,000: %q", d)
	}
	if d := diff(a.String(), strings.ReplaceAll(a.String(), `"`, "'")); len(d) != 1 || d[0] != diffTooLarge {
		t.Errorf("every line changed: %d lines", len(d))
	}
}

// TestTapsShared: requests within a second share one read of the taps
// (the sampler's too), an edit makes the next request read again, and
// the page refreshes every 2 s, or ten times as long as a read takes.
func TestTapsShared(t *testing.T) {
	e := newEnv(t, Options{Sample: time.Hour})
	c, _ := e.login()
	e.host.mu.Lock()
	first := e.host.reads
	e.host.mu.Unlock()
	for _, path := range []string{"/", "/?part=rows", "/explain", "/api/taps"} {
		e.do(req{method: "GET", path: path, cookie: c, bearer: map[bool]string{true: token}[strings.HasPrefix(path, "/api")]})
	}
	e.host.mu.Lock()
	reads := e.host.reads - first
	e.host.mu.Unlock()
	if reads > 1 {
		t.Errorf("four requests read the taps %d times", reads)
	}
	if w := e.do(req{method: "PUT", path: "/api/sets/admins", body: `["192.0.2.12"]`, bearer: token}); w.Code != http.StatusOK {
		t.Fatalf("PUT: %d %s", w.Code, w.Body)
	}
	e.do(req{method: "GET", path: "/api/taps", bearer: token})
	e.host.mu.Lock()
	if n := e.host.reads - first - reads; n != 1 {
		t.Errorf("after an edit, the taps were read %d times, want 1", n)
	}
	e.host.mu.Unlock()
	if got := e.s.refreshEvery(); got != 2*time.Second {
		t.Errorf("refresh every %v for a fast read", got)
	}
	e.s.taps.mu.Lock()
	e.s.taps.took, e.s.taps.at = 400*time.Millisecond, time.Now()
	e.s.taps.mu.Unlock()
	if got := e.s.refreshEvery(); got != 4*time.Second {
		t.Errorf("refresh every %v for a read of 400ms, want 4s", got)
	}
	if body := e.do(req{method: "GET", path: "/", cookie: c}).Body.String(); !strings.Contains(body, `data-every="4000"`) {
		t.Errorf("the taps page does not refresh every 4000 ms:\n%s", body)
	}
}
