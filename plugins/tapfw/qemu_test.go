package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/tapfw/tapfw/pkg/inspect"
	"github.com/tapfw/tapfw/pkg/testnet"
)

// The tests here run the real qemu-system-x86_64 with the repository's
// scripts/qemu-ifup and scripts/qemu-ifdown, inside a sandbox namespace, as
// a hypervisor would: QEMU creates the tap, the ifup script puts it on its
// bridge and installs its firewall, `quit` on the monitor runs the
// downscript. QEMU starts paused (-S) with no ROM, display or disk, so a VM
// costs a fraction of a second.

const (
	qemuBinary = "qemu-system-x86_64"
	// qemuScriptDir holds qemu-ifup and qemu-ifdown, relative to this package.
	qemuScriptDir = "../../scripts"
	// qemuTimeout bounds every wait for QEMU: a tap coming up, QEMU exiting.
	qemuTimeout = 10 * time.Second
)

// qemuBase is the base config the NIC files are merged over: a host
// firewall, a named set it uses, and defaults the NIC files may override.
const qemuBase = `{
	"name": "lab",
	"policyIn": "REJECT",
	"policyOut": "REJECT",
	"ipsets": {"admins": ["198.51.100.0/28"]},
	"host": {
		"ips": ["192.0.2.31"],
		"rules": {"in": [{"action": "ACCEPT", "proto": "tcp", "dport": "22", "source": "+admins", "comment": "ssh from admins"}]}
	}
}`

func needQEMU(t *testing.T) {
	t.Helper()
	testnet.NeedKernel(t)
	if _, err := exec.LookPath(qemuBinary); err != nil {
		t.Skipf("%s not installed", qemuBinary)
	}
}

// qemuHost is a sandbox hypervisor for QEMU: a host namespace with bridges,
// and a folder with the base config, the NIC files and the plugin's lock.
type qemuHost struct {
	*host
	dir     string
	scripts string
	env     []string // TAPFW_* for QEMU, its scripts and direct plugin calls
}

// newQEMUHost makes a host with bridge vmbr0 (newHost) plus the given extra
// bridges, and writes qemuBase as its base config.
func newQEMUHost(t *testing.T, be testBackend, bridges ...string) *qemuHost {
	t.Helper()
	needQEMU(t)
	scripts, err := filepath.Abs(qemuScriptDir)
	if err != nil {
		t.Fatal(err)
	}
	h := newHostOn(t, be)
	for _, br := range bridges {
		if err := testnet.AddBridge(h.ns, br, ""); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	q := &qemuHost{host: h, dir: dir, scripts: scripts, env: []string{
		"TAPFW_CONFIG=" + filepath.Join(dir, "tapfw.conf"),
		"TAPFW_NIC_DIR=" + filepath.Join(dir, "nics"),
		"TAPFW_BIN=" + pluginBin,
		// One lock for this sandbox's netfilter, shared by all its QEMUs.
		"TAPFW_LOCK=" + filepath.Join(dir, "tapfw.lock"),
	}}
	q.env = append(q.env, be.env...)
	if err := os.Mkdir(filepath.Join(dir, "nics"), 0o755); err != nil {
		t.Fatal(err)
	}
	q.write("tapfw.conf", qemuBase)
	return q
}

func (q *qemuHost) write(name, content string) {
	q.t.Helper()
	if err := os.WriteFile(filepath.Join(q.dir, name), []byte(content), 0o644); err != nil {
		q.t.Fatal(err)
	}
}

// writeNIC writes the NIC file of tap.
func (q *qemuHost) writeNIC(tap, content string) {
	q.t.Helper()
	q.write(filepath.Join("nics", tap+".json"), content)
}

// qemuNIC is one NIC of a VM: its tap and the guest's MAC.
type qemuNIC struct{ tap, mac string }

// qemuVM is a running QEMU with its monitor on stdin/stdout.
type qemuVM struct {
	t       *testing.T
	name    string
	cmd     *exec.Cmd
	monitor io.WriteCloser
	stdout  qemuBuffer
	stderr  qemuBuffer
	started time.Time
	done    chan struct{} // closed when QEMU has exited
	err     error         // Wait's result, set before done is closed
}

// qemuBuffer is a bytes.Buffer that QEMU's output copier and the test may
// use at once.
type qemuBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *qemuBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *qemuBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// qemuArgs is the command line of a paused VM with the given NICs, run in
// the host namespace with the repository's scripts.
func (q *qemuHost) qemuArgs(nics []qemuNIC) []string {
	args := []string{"netns", "exec", q.ns.Name, qemuBinary,
		"-S", "-display", "none", "-nodefaults", "-accel", "tcg", "-m", "64", "-monitor", "stdio"}
	for i, n := range nics {
		args = append(args,
			"-netdev", fmt.Sprintf("tap,id=n%d,ifname=%s,script=%s,downscript=%s", i, n.tap,
				filepath.Join(q.scripts, "qemu-ifup"), filepath.Join(q.scripts, "qemu-ifdown")),
			"-device", fmt.Sprintf("virtio-net-pci,netdev=n%d,mac=%s,romfile=", i, n.mac))
	}
	return args
}

// startVM starts QEMU (`ip netns exec` execs it, so the process is QEMU's
// own). The test's cleanup quits it, or kills it when it does not quit.
func (q *qemuHost) startVM(name string, extraEnv []string, nics ...qemuNIC) *qemuVM {
	q.t.Helper()
	vm := &qemuVM{t: q.t, name: name, done: make(chan struct{})}
	vm.cmd = exec.Command("ip", q.qemuArgs(nics)...)
	vm.cmd.Env = append(append(os.Environ(), q.env...), extraEnv...)
	vm.cmd.Stdout, vm.cmd.Stderr = &vm.stdout, &vm.stderr
	var err error
	if vm.monitor, err = vm.cmd.StdinPipe(); err != nil {
		q.t.Fatal(err)
	}
	vm.started = time.Now()
	if err := vm.cmd.Start(); err != nil {
		q.t.Fatalf("starting %s: %v", name, err)
	}
	go func() {
		vm.err = vm.cmd.Wait()
		close(vm.done)
	}()
	// Registered after newHost's, so it runs before the namespace goes.
	q.t.Cleanup(vm.stop)
	return vm
}

// exited reports whether QEMU has exited.
func (vm *qemuVM) exited() bool {
	select {
	case <-vm.done:
		return true
	default:
		return false
	}
}

// wait waits up to d for QEMU to exit and reports whether it did.
func (vm *qemuVM) wait(d time.Duration) bool {
	select {
	case <-vm.done:
		return true
	case <-time.After(d):
		return false
	}
}

// sendQuit writes `quit` on the monitor: QEMU runs the downscripts and exits.
func (vm *qemuVM) sendQuit() {
	_, _ = io.WriteString(vm.monitor, "quit\n")
}

// quit quits QEMU and waits for it; it fails the test if QEMU does not exit
// in time or exits with an error.
func (vm *qemuVM) quit() {
	vm.t.Helper()
	start := time.Now()
	vm.sendQuit()
	vm.waitExit()
	vm.checkCleanExit()
	vm.t.Logf("%s: quit took %v", vm.name, time.Since(start).Round(time.Millisecond))
}

// checkCleanExit fails the test if QEMU exited with an error or a script
// complained (the scripts' messages start with "tapfw").
func (vm *qemuVM) checkCleanExit() {
	vm.t.Helper()
	if stderr := vm.stderr.String(); vm.err != nil || strings.Contains(stderr, "tapfw") {
		vm.t.Errorf("%s: quit: QEMU exited with %v; stderr:\n%s", vm.name, vm.err, stderr)
	}
}

// waitExit waits, bounded, for QEMU to exit; the test stops if it does not.
func (vm *qemuVM) waitExit() {
	vm.t.Helper()
	if !vm.wait(qemuTimeout) {
		vm.t.Fatalf("%s: QEMU still running after %v; stderr:\n%s", vm.name, qemuTimeout, vm.stderr.String())
	}
}

// stop is the cleanup: a clean quit first, then kill.
func (vm *qemuVM) stop() {
	if vm.exited() {
		return
	}
	vm.sendQuit()
	if vm.wait(5 * time.Second) {
		return
	}
	vm.t.Errorf("%s: QEMU ignored quit; killing it", vm.name)
	_ = vm.cmd.Process.Kill()
	if !vm.wait(5 * time.Second) {
		vm.t.Errorf("%s: QEMU (pid %d) survived SIGKILL", vm.name, vm.cmd.Process.Pid)
	}
}

// qemuLink is what the tests need to know of a link in the host namespace.
type qemuLink struct {
	exists bool
	up     bool
	master string // the bridge it is on, "" for none
}

func (q *qemuHost) link(name string) qemuLink {
	q.t.Helper()
	var l qemuLink
	err := q.ns.Do(func() error {
		link, err := netlink.LinkByName(name)
		if errors.As(err, new(netlink.LinkNotFoundError)) {
			return nil
		}
		if err != nil {
			return err
		}
		l.exists = true
		l.up = link.Attrs().Flags&net.FlagUp != 0
		if idx := link.Attrs().MasterIndex; idx != 0 {
			m, err := netlink.LinkByIndex(idx)
			if err != nil {
				return err
			}
			l.master = m.Attrs().Name
		}
		return nil
	})
	if err != nil {
		q.t.Fatalf("link %s: %v", name, err)
	}
	return l
}

// waitAttached polls, bounded, until tap is up on bridge. It stops the test
// if QEMU (vm) exits first.
func (q *qemuHost) waitAttached(vm *qemuVM, tap, bridge string) {
	q.t.Helper()
	deadline := time.Now().Add(qemuTimeout)
	for {
		l := q.link(tap)
		if l.up && l.master == bridge {
			q.t.Logf("%s: %s up on %s %v after start", vm.name, tap, bridge, time.Since(vm.started).Round(time.Millisecond))
			return
		}
		if vm.exited() {
			q.t.Fatalf("%s: QEMU exited (%v) before %s was up on %s; stderr:\n%s", vm.name, vm.err, tap, bridge, vm.stderr.String())
		}
		if time.Now().After(deadline) {
			q.t.Fatalf("%s: %s not up on %s after %v (link %+v); stderr:\n%s", vm.name, tap, bridge, qemuTimeout, l, vm.stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// qemuConfig is the config the scripts send for tap: `tapfw qemu-config TAP`
// with the same environment.
func (q *qemuHost) qemuConfig(tap string) []byte {
	q.t.Helper()
	cmd := exec.Command(pluginBin, "qemu-config", tap)
	cmd.Env = append(os.Environ(), q.env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		q.t.Fatalf("tapfw qemu-config %s: %v: %s", tap, err, stderr.String())
	}
	return out
}

// check runs CNI CHECK for tap as the ifup script's ADD left it.
func (q *qemuHost) check(tap string) {
	q.t.Helper()
	q.mustCall(testnet.Call{Command: "CHECK", ContainerID: "qemu-" + tap, IfName: tap,
		Config: q.qemuConfig(tap), Env: q.env})
}

// noTrace asserts that nothing of tap is left: no link, no rule, no set.
func (q *qemuHost) noTrace(tap string) {
	q.t.Helper()
	if l := q.link(tap); l.exists {
		q.t.Errorf("%s still exists after QEMU exited: %+v", tap, l)
	}
	if state := q.be.state(q.t, q.ns); strings.Contains(state, tap) {
		q.t.Errorf("the installed state still mentions %s:\n%s", tap, qemuLines(state, tap))
	}
	for _, set := range strings.Fields(q.run("ipset", "list", "-n")) {
		if set == "tfw-t-"+tap {
			q.t.Errorf("ipset %s remains", set)
		}
	}
}

// qemuLines returns the lines of text that contain sub.
func qemuLines(text, sub string) string {
	var b strings.Builder
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, sub) {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

// qemuChain returns the rules ("-A CHAIN ...") of chain in iptables-save output.
func qemuChain(save, chain string) []string {
	var rules []string
	for _, l := range strings.Split(save, "\n") {
		if strings.HasPrefix(l, "-A "+chain+" ") {
			rules = append(rules, l)
		}
	}
	return rules
}

// qemuCount counts the rules of chain that contain every one of subs.
func qemuCount(save, chain string, subs ...string) int {
	n := 0
rules:
	for _, r := range qemuChain(save, chain) {
		for _, s := range subs {
			if !strings.Contains(r+" ", s) {
				continue rules
			}
		}
		n++
	}
	return n
}

// qemuLastTarget is the "-j ..." end of chain's last rule, "" if it has none.
func qemuLastTarget(t *testing.T, save, chain string) string {
	t.Helper()
	rules := qemuChain(save, chain)
	if len(rules) == 0 {
		t.Errorf("chain %s is missing or empty", chain)
		return ""
	}
	last := rules[len(rules)-1]
	if i := strings.LastIndex(last, " -j "); i >= 0 {
		return last[i+1:]
	}
	return last
}

func TestQEMUSingleNIC(t *testing.T) { forEachBackend(t, testQEMUSingleNIC) }

func testQEMUSingleNIC(t *testing.T, be testBackend) {
	q := newQEMUHost(t, be)
	const tap, mac = "tap110i0", "1e:0b:85:27:8d:65"
	// policyIn from the NIC file wins over the base's; policyOut is the base's.
	q.writeNIC(tap, `{"bridge":"vmbr0","mac":"`+mac+`","ips":["192.0.2.200"],"policyIn":"DROP",
		"rules":{"in":[{"action":"ACCEPT","proto":"tcp","dport":"22","comment":"ssh"}]}}`)

	vm := q.startVM("vm110", nil, qemuNIC{tap, mac})
	q.waitAttached(vm, tap, "vmbr0")
	start := time.Now()
	q.check(tap)
	t.Logf("CHECK took %v", time.Since(start).Round(time.Millisecond))

	shown := q.showJSON(tap)
	ssh := 0
	for _, r := range shown.RuleList {
		switch {
		case r.Kind == "policy" && r.Direction == "in" && r.Action != "DROP":
			t.Errorf("policy to the VM: %s, want the NIC file's DROP", r.Action)
		case r.Kind == "policy" && r.Direction == "out" && r.Action != "REJECT":
			t.Errorf("policy from the VM: %s, want the base config's REJECT", r.Action)
		case r.Direction == "in" && r.Number == 1 && r.Action == "ACCEPT" && strings.Contains(r.Match, "dport 22"):
			ssh++
		}
	}
	if ssh != 1 {
		t.Errorf("the NIC file's ssh rule is there %d times, want 1: %+v", ssh, shown.RuleList)
	}
	if shown.ContainerID != "qemu-"+tap || shown.IfName != tap || !shown.Attached {
		t.Errorf("the tap does not record the QEMU attachment: %+v", shown.Tap)
	}
	if !slices.Contains(shown.IPs, "192.0.2.200") {
		t.Errorf("the VM's IP is not among its addresses: %v", shown.IPs)
	}
	// The base config's host firewall and named set are installed.
	if n := q.hostSSHFromAdmins(); n != 1 {
		t.Errorf("the host firewall has %d ssh-from-admins rules, want 1", n)
	}
	if !q.setHas("admins", "198.51.100.0/28") {
		t.Error("the base config's set admins is not installed")
	}
	if !q.setHas("host", "192.0.2.31") {
		t.Error("the host's IP is not in its set")
	}
	if t.Failed() {
		t.Logf("installed:\n%s", q.be.state(t, q.ns))
	}

	vm.quit()
	q.noTrace(tap)
}

// TestQEMUNICFileGoneBeforeQuit: the downscript needs only the tap's name,
// so deleting a VM's NIC file (and the base config) while it runs still
// leaves no trace after quit.
func TestQEMUNICFileGoneBeforeQuit(t *testing.T) {
	forEachBackend(t, testQEMUNICFileGoneBeforeQuit)
}

func testQEMUNICFileGoneBeforeQuit(t *testing.T, be testBackend) {
	q := newQEMUHost(t, be)
	const tap, mac = "tap110i0", "1e:0b:85:27:8d:65"
	q.writeNIC(tap, `{"bridge":"vmbr0","mac":"`+mac+`","ips":["192.0.2.200"]}`)
	vm := q.startVM("vm110", nil, qemuNIC{tap, mac})
	q.waitAttached(vm, tap, "vmbr0")
	q.check(tap)
	for _, f := range []string{"tapfw.conf", filepath.Join("nics", tap+".json")} {
		if err := os.Remove(filepath.Join(q.dir, f)); err != nil {
			t.Fatal(err)
		}
	}
	vm.quit()
	q.noTrace(tap)
}

func TestQEMUTwoVMsTwoNICs(t *testing.T) { forEachBackend(t, testQEMUTwoVMsTwoNICs) }

func testQEMUTwoVMsTwoNICs(t *testing.T, be testBackend) {
	q := newQEMUHost(t, be, "vmbr1")
	type nic struct {
		qemuNIC
		bridge, ip string
	}
	vms := []struct {
		name string
		nics []nic
	}{
		{"vm200", []nic{
			{qemuNIC{"tap200i0", "02:00:00:00:20:00"}, "vmbr0", "192.0.2.210"},
			{qemuNIC{"tap200i1", "02:00:00:00:20:01"}, "vmbr1", "198.51.100.210"},
		}},
		{"vm201", []nic{
			{qemuNIC{"tap201i0", "02:00:00:00:20:10"}, "vmbr0", "192.0.2.211"},
			{qemuNIC{"tap201i1", "02:00:00:00:20:11"}, "vmbr1", "198.51.100.211"},
		}},
	}
	var all []nic
	for _, v := range vms {
		for _, n := range v.nics {
			q.writeNIC(n.tap, `{"bridge":"`+n.bridge+`","mac":"`+n.mac+`","ips":["`+n.ip+`"],
				"rules":{"in":[{"action":"ACCEPT","proto":"icmp","icmpType":"echo-request"}]}}`)
			all = append(all, n)
		}
	}

	// Both QEMUs start at once, so their ifup scripts run side by side and
	// meet at the plugin's lock.
	running := make([]*qemuVM, len(vms))
	for i, v := range vms {
		var nics []qemuNIC
		for _, n := range v.nics {
			nics = append(nics, n.qemuNIC)
		}
		running[i] = q.startVM(v.name, nil, nics...)
	}
	for i, v := range vms {
		for _, n := range v.nics {
			q.waitAttached(running[i], n.tap, n.bridge)
		}
	}
	for _, n := range all {
		q.check(n.tap)
	}
	// Each tap is dispatched to its chains once each way, and attached.
	taps := q.listJSON()
	for _, n := range all {
		if got := q.dispatchCount(n.tap); got != q.be.dispatchPerTap() {
			t.Errorf("%d dispatch rules or elements for %s, want %d", got, n.tap, q.be.dispatchPerTap())
		}
		if !slices.ContainsFunc(taps, func(x inspect.Tap) bool { return x.Name == n.tap && x.Attached && x.Bridge == n.bridge }) {
			t.Errorf("list lacks %s attached on %s: %+v", n.tap, n.bridge, taps)
		}
	}
	// The host firewall both VMs' ADDs carried is there once.
	if got := q.hostSSHFromAdmins(); got != 1 {
		t.Errorf("the host firewall has %d ssh-from-admins rules, want 1", got)
	}
	if t.Failed() {
		t.Logf("installed:\n%s", q.be.state(t, q.ns))
	}

	// Both quit at once too: the downscripts meet at the lock.
	start := time.Now()
	for _, vm := range running {
		vm.sendQuit()
	}
	for _, vm := range running {
		vm.waitExit()
		vm.checkCleanExit()
	}
	t.Logf("both quit in %v", time.Since(start).Round(time.Millisecond))
	for _, n := range all {
		q.noTrace(n.tap)
	}
	for _, br := range []string{"vmbr0", "vmbr1"} {
		if ports := q.run("ip", "-o", "link", "show", "master", br); ports != "" {
			t.Errorf("%s still has ports:\n%s", br, ports)
		}
	}
}

func TestQEMUBadConfigRefusesNIC(t *testing.T) {
	needQEMU(t)
	forEachBackend(t, testQEMUBadConfigRefusesNIC)
}

func testQEMUBadConfigRefusesNIC(t *testing.T, be testBackend) {
	// A variable the backend reads, with a bad value: the plugin fails.
	badVar := "TAPFW_IPTABLES"
	if be.nftables() {
		badVar = "TAPFW_MARKS"
	}
	const tap, mac = "tap110i0", "1e:0b:85:27:8d:65"
	cases := []struct {
		name string
		nic  string
		env  []string
		says []string // what QEMU's stderr must mention
	}{
		// qemu-config validates every value: the script refuses the NIC
		// before it touches the tap.
		{"bad mac", `{"bridge":"vmbr0","mac":"zz"}`, nil,
			[]string{tap, "no usable config", `mac: "zz" is not an Ethernet MAC address`}},
		{"tap names another", `{"bridge":"vmbr0","mac":"` + mac + `","tap":"tap111i0"}`, nil,
			[]string{tap, "no usable config", "leave the field out"}},
		{"no such bridge", `{"bridge":"vmbr9","mac":"` + mac + `"}`, nil,
			[]string{tap, "vmbr9", "cannot put " + tap + " on bridge"}},
		{"no bridge", `{"mac":"` + mac + `"}`, nil,
			[]string{tap, "bridge: required"}},
		{"no NIC file", "", nil,
			[]string{tap, "no usable config"}},
		// The tap is on the bridge when the plugin fails: the script must
		// take it off again.
		{"plugin fails", `{"bridge":"vmbr0","mac":"` + mac + `"}`, []string{badVar + "=bogus"},
			[]string{tap, "firewall not installed", badVar}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			q := newQEMUHost(t, be)
			if c.nic != "" {
				q.writeNIC(tap, c.nic)
			}
			before := q.state()
			vm := q.startVM("vm110", c.env, qemuNIC{tap, mac})
			vm.waitExit()
			stderr := vm.stderr.String()
			t.Logf("QEMU refused the NIC after %v:\n%s", time.Since(vm.started).Round(time.Millisecond), stderr)
			var exitErr *exec.ExitError
			if !errors.As(vm.err, &exitErr) {
				t.Errorf("QEMU exited with %v, want a non-zero status", vm.err)
			}
			for _, s := range append([]string{"qemu-ifup", "failed"}, c.says...) {
				if !strings.Contains(stderr, s) {
					t.Errorf("QEMU's stderr does not mention %q", s)
				}
			}
			if after := q.state(); after != before {
				t.Errorf("the refused NIC changed netfilter:\n--- before\n%s\n--- after\n%s", before, after)
			}
			q.noTrace(tap)
			if ports := q.run("ip", "-o", "link", "show", "master", "vmbr0"); ports != "" {
				t.Errorf("vmbr0 still has ports:\n%s", ports)
			}

			// QEMU deletes its tap on exit, which would hide a tap the
			// script left on the bridge. The script alone, on a tap that
			// outlives it, must leave it down and off the bridge.
			q.run("ip", "tuntap", "add", "mode", "tap", tap)
			q.run("ip", "link", "set", tap, "up")
			cmd := exec.Command("ip", "netns", "exec", q.ns.Name, filepath.Join(q.scripts, "qemu-ifup"), tap)
			cmd.Env = append(append(os.Environ(), q.env...), c.env...)
			if out, err := cmd.CombinedOutput(); err == nil {
				t.Errorf("qemu-ifup alone succeeded:\n%s", out)
			}
			if l := q.link(tap); l.up || l.master != "" {
				t.Errorf("after the failed qemu-ifup the tap is %+v, want down and on no bridge", l)
			}
			if after := q.state(); after != before {
				t.Errorf("the failed qemu-ifup changed netfilter:\n--- before\n%s\n--- after\n%s", before, after)
			}
			q.run("ip", "link", "delete", tap)
		})
	}
}
