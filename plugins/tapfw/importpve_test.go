package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tapfw/tapfw/pkg/config"
	"github.com/tapfw/tapfw/pkg/testnet"
)

// import-pve on the sample tree (testdata/pve-tree): the files it writes,
// what it reports and its exit status; then the written configs
// installed on a sandbox host, where real packets get the verdicts the
// Proxmox VE rules describe.

// importSample runs import-pve on the sample tree into a new folder.
func importSample(t *testing.T) (string, int, string) {
	t.Helper()
	out := t.TempDir()
	code, stdout, stderr := runCLI("import-pve", "--pve-dir", "../../testdata/pve-tree", "--node", "pve1", "--out", out)
	if !strings.Contains(stdout, "6 NIC files") {
		t.Errorf("stdout: %q", stdout)
	}
	return out, code, stderr
}

func TestImportPVECommand(t *testing.T) {
	out, code, stderr := importSample(t)
	if code != 3 {
		t.Errorf("exit %d, want 3 (items left out)", code)
	}
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	for _, l := range lines {
		if f := strings.SplitN(l, ":", 3); len(f) < 3 || !strings.Contains(f[0], "/") && !strings.HasSuffix(f[0], ".conf") {
			t.Errorf("not FILE:LINE: reason: %q", l)
		}
	}
	if !strings.Contains(stderr, "firewall/100.fw:26: tapfw refuses it") {
		t.Errorf("stderr:\n%s", stderr)
	}
	for _, p := range []string{"tap100i0", "tap100i1", "tap100i2", "tap101i0", "veth200i0", "veth200i1"} {
		if _, _, err := config.MergeNIC(filepath.Join(out, "tapfw.conf"), filepath.Join(out, "nics", p+".json")); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
	// Bad arguments or an unreadable tree: exit 1, nothing written.
	for _, args := range [][]string{
		{"import-pve", "--pve-dir", "../../testdata/pve-tree", "--node", "pve1"},
		{"import-pve", "--pve-dir", "../../testdata/pve-tree", "--node", "nosuch", "--out", filepath.Join(out, "x")},
		{"import-pve", "--pve-dir", "../../testdata/pve-tree", "--node", "pve1", "--local-network", "x", "--out", filepath.Join(out, "x")},
	} {
		if code, _, _ := runCLI(args...); code != 1 {
			t.Errorf("%v: exit %d, want 1", args, code)
		}
	}
	if _, err := os.Stat(filepath.Join(out, "x")); !os.IsNotExist(err) {
		t.Errorf("a refused import wrote %s", filepath.Join(out, "x"))
	}
}

func TestImportPVETraffic(t *testing.T) { forEachBackend(t, testImportPVETraffic) }

func testImportPVETraffic(t *testing.T, be testBackend) {
	out, _, _ := importSample(t)
	h := newHostOn(t, be)
	guests := map[string]*testnet.NS{}
	for _, g := range []struct{ port, mac, ip string }{
		{"tap100i0", "bc:24:11:00:01:00", "192.0.2.100"},
		{"veth200i0", "bc:24:11:00:02:00", "192.0.2.200"},
		{"tap101i0", "bc:24:11:00:01:10", "192.0.2.101"},
	} {
		ns, err := testnet.NewNS("pve")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = ns.Close() })
		if err := testnet.AddPort(h.ns, "vmbr0", g.port, ns, g.mac, g.ip+"/24", ""); err != nil {
			t.Fatal(err)
		}
		data, _, err := config.MergeNIC(filepath.Join(out, "tapfw.conf"), filepath.Join(out, "nics", g.port+".json"))
		if err != nil {
			t.Fatal(err)
		}
		h.mustCall(testnet.Call{Command: "ADD", ContainerID: "qemu-" + g.port, IfName: g.port, Config: data})
		guests[g.port] = ns
	}
	serveTCP(t, []string{"22", "80", "5432"}, guests["tap100i0"], guests["veth200i0"], guests["tap101i0"])
	serveTCP(t, []string{"8006", "2222"}, h.ns)
	vm, ct, open := guests["tap100i0"], guests["veth200i0"], guests["tap101i0"]
	for _, p := range []struct {
		name string
		from *testnet.NS
		to   string
		want bool
	}{
		{"ct 200 to vm 100's web: ct 200's policy_out DROP", ct, "192.0.2.100:80", false},
		{"vm 101 (firewall off) to vm 100's web: the group webgroup", open, "192.0.2.100:80", true},
		{"vm 101 to vm 100's ssh: only +admins", open, "192.0.2.100:22", false},
		{"vm 101 to vm 100's postgres: a rule of net1 only", open, "192.0.2.100:5432", false},
		{"vm 100 to ct 200's web: ct 200's rule", vm, "192.0.2.200:80", true},
		{"vm 100 to ct 200's ssh: ct 200's policy_in DROP", vm, "192.0.2.200:22", false},
		{"ct 200 to vm 101 (firewall off): nothing filters it but ct 200's policy_out", ct, "192.0.2.101:22", false},
		{"vm 100 to vm 101's ssh: both let it", vm, "192.0.2.101:22", true},
		// The host: every address guarded, local_network in the
		// management set, which reaches the web interface.
		{"vm 101 (in local_network) to the host's web interface", open, "192.0.2.31:8006", true},
		{"vm 101 to another port of the host: the cluster's policy_in DROP", open, "192.0.2.31:2222", false},
	} {
		if got := testnet.TCPProbe(p.from, p.to, 700*time.Millisecond); got != p.want {
			t.Errorf("%s (%s): passed %v, want %v", p.name, p.to, got, p.want)
		}
	}
	if t.Failed() {
		t.Logf("installed:\n%s", be.state(t, h.ns))
	}
}

// TestLXCHooks: the QEMU scripts as LXC's lxc.net.0.script.up and
// script.down, which pass the container's name, "net", "up" or "down",
// the type and the host-side veth: the veth gets its firewall, and loses
// it.
func TestLXCHooks(t *testing.T) {
	testnet.NeedKernel(t)
	out, _, _ := importSample(t)
	h := newHost(t)
	ns, err := testnet.NewNS("lxc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ns.Close() })
	if err := testnet.AddPort(h.ns, "vmbr0", "veth200i0", ns, "bc:24:11:00:02:00", "192.0.2.200/24", ""); err != nil {
		t.Fatal(err)
	}
	scripts, err := filepath.Abs(qemuScriptDir)
	if err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(), "TAPFW_CONFIG="+filepath.Join(out, "tapfw.conf"), "TAPFW_NIC_DIR="+filepath.Join(out, "nics"),
		"TAPFW_BIN="+pluginBin, "TAPFW_LOCK="+filepath.Join(out, "tapfw.lock"))
	hook := func(script, phase string) {
		cmd := exec.Command("ip", "netns", "exec", h.ns.Name, filepath.Join(scripts, script), "ct200", "net", phase, "veth", "veth200i0")
		cmd.Env = env
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", script, err, b)
		}
	}
	hook("qemu-ifup", "up")
	if s := h.state(); !strings.Contains(s, "TFW-T-veth200i0-IN") {
		t.Errorf("after script.up, no chains for veth200i0:\n%s", s)
	}
	hook("qemu-ifdown", "down")
	if s := h.state(); strings.Contains(s, "veth200i0") {
		t.Errorf("after script.down, veth200i0 is still there:\n%s", s)
	}
}
