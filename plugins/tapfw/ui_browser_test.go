package main

import (
	"flag"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tapfw/tapfw/pkg/testnet"
)

var updateScreenshots = flag.Bool("update-screenshots", false, "write TestUIBrowser's screenshots of the console into docs/")

// TestUIBrowser: a real browser drives the console against a sandbox
// host with taps and traffic. It logs in, sees a tap's counters move,
// explains a dropped probe and finds its drop in the log, guards the
// host and adds a host rule through the preview; then a real packet gets
// the new verdict, and the rule is in the config file.
func TestUIBrowser(t *testing.T) {
	testnet.NeedKernel(t)
	h := newApplyHost(t, nftablesBE)
	serveTCP(t, []string{"9923"}, h.ns)
	// Drops are logged to NFLOG group 5, which the console reads.
	h.writeBase(`{"action":"ACCEPT","proto":"tcp","dport":"80"}`, `"192.0.2.30"`, `,"logTarget":"NFLOG","nflogGroup":5,"logDropped":true`)
	h.mustApply("--nics", h.nics)
	u := h.startUI(8390, "--sample", "500ms")
	b, err := testnet.StartBrowser(h.ns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	p, err := b.NewPage()
	if err != nil {
		t.Fatal(err)
	}
	shots := t.TempDir()
	if *updateScreenshots {
		shots = filepath.Join("..", "..", "docs")
	}
	shot := func(name string) {
		t.Helper()
		if err := p.Screenshot(filepath.Join(shots, "console-"+name+".png"), 1280, 760); err != nil {
			t.Fatal(err)
		}
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%v\n%s", err, u.stderr)
		}
	}
	text := func(sel string) string {
		t.Helper()
		s, err := p.Text(sel)
		must(err)
		return s
	}
	vm0 := h.vms[0]

	// Logging in.
	must(p.Navigate(u.base + "/"))
	must(p.Fill("#token", u.token))
	must(p.Click("#login"))
	cell := `document.querySelector('tr[data-tap="` + vm0.port + `"] .in-accepted')`
	var before string
	must(p.Eval(cell+".innerText", &before))

	// The counters move under traffic, without a reload.
	for range 5 {
		if !testnet.TCPProbe(h.client.ns, net.JoinHostPort(vm0.ip4.String(), "80"), time.Second) {
			t.Fatal("the client does not reach port 80")
		}
	}
	must(p.WaitFor(cell+".innerText != "+jsString(before), 10*time.Second))
	// The chart has drawn the traffic when its image reloads.
	must(p.WaitFor(`document.querySelector('img.chart').complete && document.querySelector('img.chart').src.includes('?t=')`, 10*time.Second))
	shot("taps")

	// Explaining a dropped probe, which the log shows too.
	if testnet.TCPProbe(h.client.ns, net.JoinHostPort(vm0.ip4.String(), "9090"), 500*time.Millisecond) {
		t.Fatal("9090 passed; the test wants it dropped")
	}
	must(p.Navigate(u.base + "/explain"))
	must(p.Fill("#q-tap", vm0.port))
	must(p.Fill("#q-dir", "in"))
	must(p.Fill("#q-src", h.client.ip4.String()))
	must(p.Fill("#q-dport", "9090"))
	must(p.Click("#explain"))
	if v := text("#verdict"); v != "DROP" {
		t.Errorf("explain says %q for the probe to 9090:\n%s", v, text("main"))
	}
	shot("explain")
	must(p.Navigate(u.base + "/log"))
	must(p.WaitFor(`document.querySelector('#log').innerText.includes('policy: drop')`, 15*time.Second))
	shot("log")

	// Guarding the host: its address, previewed, then applied.
	toHost := func() bool {
		return testnet.TCPProbe(h.client.ns, net.JoinHostPort("192.0.2.31", "9923"), 700*time.Millisecond)
	}
	if !toHost() {
		t.Fatal("the host's 9923 is not open to begin with")
	}
	must(p.Navigate(u.base + "/host"))
	must(p.Fill(`textarea[name="ips"]`, "192.0.2.31"))
	must(p.Click("#preview-settings"))
	if s := text("#preview"); !strings.Contains(s, "would change host") {
		t.Errorf("the settings' preview:\n%s", s)
	}
	must(p.Click("#apply"))
	if s := text("#applied"); !strings.Contains(s, "changed host") || toHost() {
		t.Errorf("the host is not guarded after applying:\n%s", s)
	}

	// A host rule: added, previewed, applied; then a packet passes.
	must(p.Navigate(u.base + "/host"))
	must(p.Click("#add-host-in"))
	for sel, v := range map[string]string{"#r-action": "ACCEPT", "#r-proto": "tcp", "#r-dport": "9923", "#r-source": "192.0.2.0/24", "#r-comment": "console rule"} {
		must(p.Fill(sel, v))
	}
	must(p.Click("#preview-rule"))
	if s := text("#preview"); !strings.Contains(s, "would change host: rules in") {
		t.Errorf("the rule's preview:\n%s", s)
	}
	shot("preview")
	if toHost() {
		t.Error("a preview let the packet through")
	}
	must(p.Click("#apply"))
	if s := text("#applied"); !strings.Contains(s, "changed host: rules in") {
		t.Errorf("applying the rule:\n%s", s)
	}
	if !toHost() {
		t.Error("the new host rule does not let 9923 through")
	}
	data, _ := os.ReadFile(h.base)
	if strings.Contains(string(data), "\r") || !strings.Contains(string(data), `"comment": "console rule"`) || !strings.Contains(string(data), `"dport": "9923"`) {
		t.Errorf("the rule is not in the config file:\n%s", data)
	}
	must(p.Navigate(u.base + "/host"))
	shot("host")
	if out := h.mustApply(); !strings.Contains(out, "nothing to change") {
		t.Errorf("tapfw apply after the console's edits: %s", out)
	}
}

// jsString quotes s for JavaScript.
func jsString(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `'`, `\'`, "\n", `\n`)
	return "'" + r.Replace(s) + "'"
}
