package main

import (
	"bytes"
	"crypto/sha512"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tapfw/tapfw/pkg/testnet"
)

// The plugin as a real runtime runs it: cnitool (libcni) executes the
// network lists of testdata/cni/, the reference bridge plugin with
// host-local IPAM first, tapfw chained after it. The runtime's "host" is a
// sandbox namespace; every cnitool run happens inside it, in a private mount
// namespace whose /var/lib/cni (libcni's cache) is a per-test temp dir.

const (
	cniBinDir  = "../../bin/cni"
	cniConfDir = "../../testdata/cni"
	// cniDropWait is how long a probe that should be dropped gets.
	cniDropWait = 400 * time.Millisecond
	// cniUpWait bounds how long a fresh attachment may take to carry traffic.
	cniUpWait = 10 * time.Second
)

// cniRuntime runs cnitool against one sandbox host.
type cniRuntime struct {
	t       *testing.T
	host    *host
	cnitool string
	confDir string // NETCONFPATH: the conflists, dataDir rewritten
	cniPath string // CNI_PATH: bridge, host-local and tapfw
	cache   string // bind-mounted over /var/lib/cni for each run
	lock    string // TAPFW_LOCK
	bridges map[string]string
}

func needCNITools(t *testing.T) {
	t.Helper()
	testnet.NeedKernel(t)
	for _, b := range []string{"cnitool", "bridge", "host-local"} {
		if fi, err := os.Stat(filepath.Join(cniBinDir, b)); err != nil || fi.Mode()&0o111 == 0 {
			t.Skipf("bin/cni/%s missing: run scripts/deps.sh", b)
		}
	}
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Skip("unshare (util-linux) missing")
	}
}

// newCNIRuntime makes the sandbox host and the runtime's directories, and
// copies each conflist with its host-local dataDir moved into a temp dir.
func newCNIRuntime(t *testing.T, be testBackend, conflists ...string) *cniRuntime {
	t.Helper()
	needCNITools(t)
	ns, err := testnet.NewNS("ch")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ns.Close() })
	tmp := t.TempDir()
	r := &cniRuntime{
		t:       t,
		host:    &host{t: t, ns: ns, be: be},
		confDir: filepath.Join(tmp, "net.d"),
		cniPath: filepath.Join(tmp, "bin"),
		cache:   filepath.Join(tmp, "cache"),
		lock:    filepath.Join(tmp, "tapfw.lock"),
		bridges: map[string]string{},
	}
	data := filepath.Join(tmp, "ipam")
	for _, d := range []string{r.confDir, r.cniPath, r.cache, data} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bins, err := filepath.Abs(cniBinDir)
	if err != nil {
		t.Fatal(err)
	}
	r.cnitool = filepath.Join(bins, "cnitool")
	for name, target := range map[string]string{
		"bridge":     filepath.Join(bins, "bridge"),
		"host-local": filepath.Join(bins, "host-local"),
		"tapfw":      pluginBin,
	} {
		if err := os.Symlink(target, filepath.Join(r.cniPath, name)); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range conflists {
		raw, err := os.ReadFile(filepath.Join(cniConfDir, f))
		if err != nil {
			t.Fatal(err)
		}
		var list struct {
			Name    string           `json:"name"`
			Plugins []map[string]any `json:"plugins"`
		}
		if err := json.Unmarshal(raw, &list); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		var conf map[string]any
		_ = json.Unmarshal(raw, &conf)
		ipam, ok := list.Plugins[0]["ipam"].(map[string]any)
		if !ok || list.Plugins[0]["type"] != "bridge" || ipam["dataDir"] == nil {
			t.Fatalf("%s: the first plugin is not bridge with an ipam.dataDir", f)
		}
		ipam["dataDir"] = data
		r.bridges[list.Name], _ = list.Plugins[0]["bridge"].(string)
		conf["plugins"] = list.Plugins
		out, err := json.MarshalIndent(conf, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(r.confDir, f), out, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// The mount point for the cache. It is the only thing written outside
	// temp dirs, and stays empty: cnitool writes into r.cache mounted on it.
	if err := os.MkdirAll("/var/lib/cni", 0o755); err != nil {
		t.Fatal(err)
	}
	return r
}

// cniBindScript mounts the cache over /var/lib/cni in the private mount
// namespace unshare made, then runs cnitool inside the host namespace.
const cniBindScript = `cache=$1; shift; mount --bind "$cache" /var/lib/cni && exec ip netns exec "$@"`

// run runs cnitool with args; env adds KEY=VALUE (CNI_ARGS, CAP_ARGS).
// It returns cnitool's stdout (the result) and stderr (its errors and the
// plugins' stderr).
func (r *cniRuntime) run(env []string, args ...string) (stdout, stderr string, err error) {
	cmd := exec.Command("unshare", append([]string{"-m", "--propagation", "private",
		"sh", "-c", cniBindScript, "sh", r.cache, r.host.ns.Name, r.cnitool}, args...)...)
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "CNI_") || strings.HasPrefix(k, "TAPFW_") || k == "CAP_ARGS" || k == "NETCONFPATH" {
			continue
		}
		cmd.Env = append(cmd.Env, kv)
	}
	cmd.Env = append(cmd.Env, "NETCONFPATH="+r.confDir, "CNI_PATH="+r.cniPath, "TAPFW_LOCK="+r.lock)
	cmd.Env = append(cmd.Env, r.host.be.env...)
	cmd.Env = append(cmd.Env, env...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	if err := cmd.Run(); err != nil {
		return o.String(), e.String(), fmt.Errorf("cnitool %s: %w: stdout %s stderr %s",
			strings.Join(args, " "), err, strings.TrimSpace(o.String()), strings.TrimSpace(e.String()))
	}
	return o.String(), e.String(), nil
}

func (r *cniRuntime) mustRun(env []string, args ...string) (stdout, stderr string) {
	r.t.Helper()
	stdout, stderr, err := r.run(env, args...)
	if err != nil {
		r.t.Fatal(err)
	}
	return stdout, stderr
}

// cniAttachment is one container on a network, as cnitool's ADD reported it.
type cniAttachment struct {
	name string
	ns   *testnet.NS
	id   string // CNI_CONTAINERID cnitool derived from the netns path
	veth string // host side: the port tapfw firewalls
	ip   net.IP
	mac  net.HardwareAddr
}

// cnitoolContainerID is how cnitool names a container: from its netns path.
func cnitoolContainerID(netnsPath string) string {
	s := sha512.Sum512([]byte(netnsPath))
	return fmt.Sprintf("cnitool-%x", s[:10])
}

// add makes a container namespace and runs "cnitool add network" for it.
func (r *cniRuntime) add(network, name string, env ...string) *cniAttachment {
	r.t.Helper()
	ns, err := testnet.NewNS(name)
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() { _ = ns.Close() })
	out, _ := r.mustRun(env, "add", network, ns.Path)
	var res struct {
		Interfaces []struct{ Name, Mac, Sandbox string }
		IPs        []struct {
			Address   string
			Interface *int
		}
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		r.t.Fatalf("add %s: result %q: %v", name, out, err)
	}
	a := &cniAttachment{name: name, ns: ns, id: cnitoolContainerID(ns.Path)}
	for _, itf := range res.Interfaces {
		switch {
		case itf.Sandbox == ns.Path && itf.Name == "eth0":
			a.mac, _ = net.ParseMAC(itf.Mac)
		case itf.Sandbox == "" && itf.Name != r.bridges[network]:
			a.veth = itf.Name
		}
	}
	if len(res.IPs) > 0 {
		a.ip, _, _ = net.ParseCIDR(res.IPs[0].Address)
	}
	if a.veth == "" || a.mac == nil || a.ip.To4() == nil {
		r.t.Fatalf("add %s: result lacks the host veth, the container's MAC or its IPv4 address:\n%s", name, out)
	}
	if got, err := testnet.LinkMAC(ns, "eth0"); err != nil || got.String() != a.mac.String() {
		r.t.Fatalf("add %s: eth0 in the container has MAC %v (%v), result says %v", name, got, err, a.mac)
	}
	// libcni cached the result in the temp dir, not on the real /var/lib/cni.
	file := fmt.Sprintf("results/%s-%s-eth0", network, a.id)
	if _, err := os.Stat(filepath.Join(r.cache, file)); err != nil {
		r.t.Fatalf("add %s: no cached result in the temp cache: %v", name, err)
	}
	if _, err := os.Stat(filepath.Join("/var/lib/cni", file)); !errors.Is(err, os.ErrNotExist) {
		r.t.Fatalf("add %s: cnitool wrote to the real /var/lib/cni (%v)", name, err)
	}
	return a
}

func (a *cniAttachment) addr(port int) string { return fmt.Sprintf("%s:%d", a.ip, port) }

// cniServe starts TCP servers on the given ports in the container.
func cniServe(t *testing.T, a *cniAttachment, ports ...int) {
	t.Helper()
	for _, p := range ports {
		s, err := testnet.TCPServe(a.ns, fmt.Sprintf("0.0.0.0:%d", p))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
	}
}

// cniWaitTCP retries a probe that must pass until it does: a new bridge port
// and the first ARP exchange take a moment.
func cniWaitTCP(t *testing.T, from, to *cniAttachment, port int) {
	t.Helper()
	deadline := time.Now().Add(cniUpWait)
	for !testnet.TCPProbe(from.ns, to.addr(port), cniDropWait) {
		if time.Now().After(deadline) {
			t.Fatalf("%s -> %s tcp %d: no connection within %v; the network itself does not work", from.name, to.name, port, cniUpWait)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func cniExpectTCP(t *testing.T, from, to *cniAttachment, port int, pass bool) {
	t.Helper()
	if got := testnet.TCPProbe(from.ns, to.addr(port), cniDropWait); got != pass {
		t.Errorf("%s -> %s tcp %d: got %s, want %s", from.name, to.name, port, passDrop(got), passDrop(pass))
	}
}

var cniSaveCounters = regexp.MustCompile(`\[\d+:\d+\]`)

// cniForeignState is the host's netfilter and ipset state without anything of
// tapfw's (every tapfw chain, rule and set name holds "TFW-", "tfw-" or "tfw6-").
func cniForeignState(h *host) string {
	var keep []string
	for _, l := range strings.Split(cniSaveCounters.ReplaceAllString(h.state(), "[0:0]"), "\n") {
		if !strings.Contains(l, "TFW-") && !strings.Contains(l, "tfw-") && !strings.Contains(l, "tfw6-") && !strings.HasPrefix(l, "l2 ") && !strings.HasPrefix(l, "inet ") && !strings.HasPrefix(l, "hlp ") &&
			l != "table bridge tapfw" && l != "table inet tapfw" && l != "table inet tapfw-helpers" {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n")
}

// cniNoTrace fails when the host's netfilter or ipset state mentions any of
// the attachments' veths or container IDs.
func cniNoTrace(t *testing.T, h *host, when string, as ...*cniAttachment) {
	t.Helper()
	s := h.state()
	for _, a := range as {
		for _, what := range []string{a.veth, a.id} {
			if strings.Contains(s, what) {
				t.Errorf("%s: %s's %s is still in iptables/ipset:\n%s", when, a.name, what, s)
			}
		}
	}
}

func TestCnitoolChained(t *testing.T) { forEachBackend(t, testCnitoolChained) }

func testCnitoolChained(t *testing.T, be testBackend) {
	const network = "tapfw-chained"
	r := newCNIRuntime(t, be, network+".conflist")
	h := r.host

	// Foreign rules, a foreign chain and set: tapfw must leave them alone.
	h.run("iptables", "-A", "INPUT", "-s", "203.0.113.9", "-j", "ACCEPT")
	h.run("ip6tables", "-A", "INPUT", "-s", "2001:db8:ffff::9", "-j", "ACCEPT")
	h.run("iptables", "-N", "FOREIGN")
	h.run("iptables", "-A", "FOREIGN", "-s", "203.0.113.10", "-j", "DROP")
	h.run("ipset", "create", "foreign", "hash:ip")
	h.run("ipset", "add", "foreign", "203.0.113.11")
	foreign := cniForeignState(h)
	if !strings.Contains(foreign, "203.0.113.9") || !strings.Contains(foreign, "FOREIGN") {
		t.Fatalf("foreign rules not in the snapshot:\n%s", foreign)
	}

	c1, c2, c3 := r.add(network, "c1"), r.add(network, "c2"), r.add(network, "c3")
	s := h.state()
	for _, a := range []*cniAttachment{c1, c2, c3} {
		if !strings.HasPrefix(a.ip.String(), "192.0.2.") || a.ip.To4()[3] < 100 {
			t.Errorf("%s got %s, not from host-local's 192.0.2.100+", a.name, a.ip)
		}
		record := "net=" + network + " cid=" + a.id + " if=eth0"
		for _, want := range []string{h.dispatchText(a.veth, record), h.recordText(a.veth, record), h.macText(a.veth, a.mac.String()), h.tapAddrText(a.veth, a.ip.String())} {
			if !strings.Contains(s, want) {
				t.Errorf("%s: installed state lacks %q", a.name, want)
			}
		}
		if in := h.tapRules(a.veth, "in"); !strings.Contains(in, h.dportText("80")) {
			t.Errorf("%s: its IN chain lacks tcp port 80:\n%s", a.name, in)
		}
		cniServe(t, a, 80, 22)
	}
	if t.Failed() {
		t.Fatalf("state:\n%s", s)
	}
	if got := cniForeignState(h); got != foreign {
		t.Errorf("ADD changed foreign rules:\n--- before\n%s\n--- after\n%s", foreign, got)
	}

	// Traffic between containers: first the allowed probe proves the
	// network works, then the drops.
	cniWaitTCP(t, c1, c2, 80)
	cniWaitTCP(t, c2, c1, 80)
	cniExpectTCP(t, c1, c2, 22, false)
	cniExpectTCP(t, c3, c1, 22, false)
	cniExpectTCP(t, c3, c2, 80, true)

	// Anti-spoofing, with udp 5000 (allowed in) to c2: a genuine frame from
	// c1 arrives; one with a forged source IP, one with a forged source MAC
	// do not. A second genuine frame, sent after the forged ones, arrives,
	// so the forged ones had their chance.
	udp, err := testnet.UDPListen(c2.ns, "0.0.0.0:5000")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = udp.Close() })
	frame := func(srcMAC string, srcIP string, sport uint16, payload string) {
		t.Helper()
		mac, _ := net.ParseMAC(srcMAC)
		f := testnet.Frame{SrcMAC: mac, DstMAC: c2.mac, SrcIP: net.ParseIP(srcIP), DstIP: c2.ip,
			SrcPort: sport, DstPort: 5000, Payload: []byte(payload)}
		if err := testnet.SendFrame(c1.ns, "eth0", f); err != nil {
			t.Fatal(err)
		}
	}
	frame(c1.mac.String(), c1.ip.String(), 40001, "genuine-1")
	if !udp.Got([]byte("genuine-1"), 2*time.Second) {
		t.Fatal("a genuine udp 5000 frame from c1 did not reach c2; the network itself does not work")
	}
	frame(c1.mac.String(), "192.0.2.250", 40002, "forged-ip")
	frame("02:00:00:00:00:99", c1.ip.String(), 40003, "forged-mac")
	frame(c1.mac.String(), c1.ip.String(), 40004, "genuine-2")
	if !udp.Got([]byte("genuine-2"), 2*time.Second) {
		t.Error("the second genuine frame did not arrive")
	}
	if udp.Got([]byte("forged-ip"), cniDropWait) {
		t.Error("a frame from c1 with a forged source IP reached c2")
	}
	if udp.Got([]byte("forged-mac"), cniDropWait) {
		t.Error("a frame from c1 with a forged source MAC reached c2")
	}

	// CHECK passes for each, then fails for c1 once its chain is tampered with.
	for _, a := range []*cniAttachment{c1, c2, c3} {
		if _, _, err := r.run(nil, "check", network, a.ns.Path); err != nil {
			t.Errorf("check %s: %v", a.name, err)
		}
	}
	says := h.tamperTapRule(c1.veth)
	_, out, err := r.run(nil, "check", network, c1.ns.Path)
	if err == nil {
		t.Errorf("check c1 passed after %s", says)
	} else if !strings.Contains(out, says) {
		t.Errorf("check c1 after tampering does not say %q: %s", says, out)
	}
	// With nftables c2 has c1's rules, so its chains are c1's: a profile
	// changed by hand is every user's drift, until an ADD puts it right.
	if _, out, err := r.run(nil, "check", network, c2.ns.Path); be.nftables() != (err != nil) {
		t.Errorf("check c2 after tampering with c1's chain: %v %s", err, out)
	} else if be.nftables() && !strings.Contains(out, says) {
		t.Errorf("check c2 after tampering with the profile it shares with c1 does not say %q: %s", says, out)
	}

	// DEL c1: nothing of it remains; c2 and c3 are untouched.
	r.mustRun(nil, "del", network, c1.ns.Path)
	cniNoTrace(t, h, "after del c1", c1)
	if out, err := h.ns.Run("ip", "link", "show", c1.veth); err == nil {
		t.Errorf("c1's veth survived del: %s", out)
	}
	s = h.state()
	for _, a := range []*cniAttachment{c2, c3} {
		if !strings.Contains(s, "cid="+a.id) {
			t.Errorf("del c1 removed %s's firewall", a.name)
		}
	}
	cniExpectTCP(t, c3, c2, 80, true)
	cniExpectTCP(t, c3, c2, 22, false)

	// The runtime loses track of c3: its cached result goes. cnitool gc
	// DELs what the cache still knows (c2), then calls each plugin's GC
	// with no valid attachment: only tapfw's own GC can find c3.
	stale, err := filepath.Glob(filepath.Join(r.cache, "results", network+"-"+c3.id+"-*"))
	if err != nil || len(stale) == 0 {
		t.Fatalf("no cached result of c3 to remove (%v)", err)
	}
	for _, f := range stale {
		if err := os.Remove(f); err != nil {
			t.Fatal(err)
		}
	}
	_, out = r.mustRun(nil, "gc", network, c1.ns.Path)
	t.Logf("cnitool gc stderr: %s", strings.TrimSpace(out))
	cniNoTrace(t, h, "after gc", c2, c3)
	if s := h.state(); strings.Contains(s, "net="+network) || strings.Contains(s, "tfw-t-") || strings.Contains(s, "tfw6-t-") {
		t.Errorf("after gc, an attachment of %s remains:\n%s", network, s)
	}
	if !strings.Contains(out, c3.veth) {
		t.Errorf("tapfw's gc did not report removing c3's %s: %s", c3.veth, out)
	}
	// c3 was not DELed (its veth is still there, the bridge plugin has no
	// GC): its firewall went through tapfw's GC alone.
	if _, err := h.ns.Run("ip", "link", "show", c3.veth); err != nil {
		t.Errorf("c3's veth is gone: it was DELed, so this did not test tapfw's GC: %v", err)
	}
	if _, err := h.ns.Run("ip", "link", "show", c2.veth); err == nil {
		t.Errorf("c2's veth survived gc: libcni did not DEL it")
	}

	if got := cniForeignState(h); got != foreign {
		t.Errorf("foreign rules changed:\n--- before\n%s\n--- after\n%s", foreign, got)
	}
}

func TestCnitoolRuntimeRules(t *testing.T) { forEachBackend(t, testCnitoolRuntimeRules) }

func testCnitoolRuntimeRules(t *testing.T, be testBackend) {
	const network = "tapfw-runtime"
	r := newCNIRuntime(t, be, network+".conflist")
	h := r.host

	// A's rules come as the runtime's capability args (runtimeConfig),
	// B's as CNI_ARGS; the network list itself has none.
	envA := []string{`CAP_ARGS={"tapfwRules":{"in":[{"action":"ACCEPT","proto":"tcp","dport":"80"}]}}`}
	envB := []string{`CNI_ARGS=IgnoreUnknown=1;TAPFW_RULES={"in":[{"action":"ACCEPT","proto":"tcp","dport":"22"}]}`}
	a := r.add(network, "ra", envA...)
	b := r.add(network, "rb", envB...)
	s := h.state()
	for _, c := range []struct {
		a          *cniAttachment
		has, hasNt string
	}{{a, "80", "22"}, {b, "22", "80"}} {
		in := h.tapRules(c.a.veth, "in")
		if !strings.Contains(in, h.dportText(c.has)) || strings.Contains(in, h.dportText(c.hasNt)) {
			t.Errorf("%s's IN chain: want tcp port %s and not %s:\n%s", c.a.name, c.has, c.hasNt, in)
		}
	}
	if t.Failed() {
		t.Fatalf("state:\n%s", s)
	}
	cniServe(t, a, 80, 22)
	cniServe(t, b, 80, 22)

	cniWaitTCP(t, b, a, 80)
	cniWaitTCP(t, a, b, 22)
	cniExpectTCP(t, b, a, 22, false)
	cniExpectTCP(t, a, b, 80, false)

	if _, _, err := r.run(envA, "check", network, a.ns.Path); err != nil {
		t.Errorf("check a: %v", err)
	}
	if _, _, err := r.run(envB, "check", network, b.ns.Path); err != nil {
		t.Errorf("check b: %v", err)
	}
	// CHECK compares with the rules it is given: without A's capability
	// args the list has no rules, and A's tcp 80 rule is drift.
	if _, out, err := r.run(nil, "check", network, a.ns.Path); err == nil {
		t.Error("check a without its runtime rules passed")
	} else if !strings.Contains(out, h.tapChainWord(a.veth)) {
		t.Errorf("check a without its runtime rules does not name its chain: %s", out)
	}

	r.mustRun(envA, "del", network, a.ns.Path)
	r.mustRun(envB, "del", network, b.ns.Path)
	cniNoTrace(t, h, "after del", a, b)
	if s := h.state(); strings.Contains(s, "tfw-t-") || strings.Contains(s, "tfw6-t-") || strings.Contains(s, "net="+network) {
		t.Errorf("after del, an attachment remains:\n%s", s)
	}
}
