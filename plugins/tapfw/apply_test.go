package main

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tapfw/tapfw/pkg/netfilter"
	"github.com/tapfw/tapfw/pkg/nft"
	"github.com/tapfw/tapfw/pkg/testnet"
)

// tapfw apply on a running host: three QEMU taps share a security group
// and a named set from the base config, each has its NIC file, and a
// client VM attached through CNI keeps its own rules. Real packets
// decide every verdict.

// applyHost is a sandbox host with the files apply reads.
type applyHost struct {
	*host
	dir, base, nics string
	vms             []*l2vm
	client          *l2vm
}

// applyVM makes a guest namespace on a new port of vmbr0.
func (h *host) applyVM(port, mac, ip4 string) *l2vm {
	h.t.Helper()
	n, err := testnet.NewNS("ap")
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { _ = n.Close() })
	if err := testnet.AddPort(h.ns, "vmbr0", port, n, mac, ip4+"/24", ""); err != nil {
		h.t.Fatal(err)
	}
	hw, _ := net.ParseMAC(mac)
	return &l2vm{ns: n, port: port, mac: hw, ip4: net.ParseIP(ip4)}
}

// The base config: group web (in: 80), set admins, whose members reach
// 2222 on every VM.
const applyBase = `{"securityGroups":{"web":{"in":[%s]}},"ipsets":{"admins":[%s]},"policyIn":"DROP","policyOut":"ACCEPT"%s}`

func newApplyHost(t *testing.T, be testBackend) *applyHost {
	h := &applyHost{host: newHostOn(t, be), dir: t.TempDir()}
	h.base, h.nics = filepath.Join(h.dir, "tapfw.conf"), filepath.Join(h.dir, "nics")
	if err := os.Mkdir(h.nics, 0o755); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		h.vms = append(h.vms, h.applyVM(fmt.Sprintf("tap12%di0", i), fmt.Sprintf("02:00:00:00:01:2%d", i), fmt.Sprintf("192.0.2.2%d", i)))
	}
	h.client = h.applyVM("tap129i0", "02:00:00:00:01:29", "192.0.2.30")
	serveTCP(t, []string{"80", "2222", "8080", "9090"}, h.vms[0].ns, h.vms[1].ns, h.vms[2].ns)
	h.writeBase(`{"action":"ACCEPT","proto":"tcp","dport":"80"}`, `"192.0.2.30"`, "")
	for _, vm := range h.vms {
		h.writeNIC(vm, "")
		h.ifup(vm)
	}
	// The client is a CNI attachment with its own rules, which apply
	// leaves alone.
	h.mustCall(testnet.Call{Command: "ADD", ContainerID: "cni-client", IfName: h.client.port, Config: []byte(fmt.Sprintf(
		`{"cniVersion":"1.0.0","name":"cni","type":"tapfw","bridge":"vmbr0","mac":%q,"ips":[%q],"policyIn":"ACCEPT","policyOut":"ACCEPT"}`,
		h.client.mac, h.client.ip4))})
	return h
}

func (h *applyHost) write(path, data string) {
	h.t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		h.t.Fatal(err)
	}
}

func (h *applyHost) writeBase(web, admins, extra string) {
	h.t.Helper()
	h.write(h.base, fmt.Sprintf(applyBase, web, admins, extra))
}

// writeNIC writes vm's NIC file: group web, and 2222 from the admins,
// then extra rules of its own.
func (h *applyHost) writeNIC(vm *l2vm, extra string) {
	h.t.Helper()
	h.write(filepath.Join(h.nics, vm.port+".json"), fmt.Sprintf(
		`{"bridge":"vmbr0","mac":%q,"ips":[%q],"groups":["web"],"rules":{"in":[{"action":"ACCEPT","proto":"tcp","dport":"2222","source":"+admins"}%s]}}`,
		vm.mac, vm.ip4, extra))
}

func (h *applyHost) env() []string {
	return append(append([]string(nil), h.be.env...), "TAPFW_CONFIG="+h.base, "TAPFW_NIC_DIR="+h.nics)
}

// ifup attaches vm's tap as the QEMU script does: qemu-config, then ADD.
func (h *applyHost) ifup(vm *l2vm) {
	h.t.Helper()
	cmd := exec.Command(pluginBin, "qemu-config", vm.port)
	cmd.Env = append(os.Environ(), h.env()...)
	conf, err := cmd.Output()
	if err != nil {
		h.t.Fatalf("qemu-config %s: %v", vm.port, err)
	}
	h.mustCall(testnet.Call{Command: "ADD", ContainerID: "qemu-" + vm.port, IfName: vm.port, Config: conf})
}

// apply runs tapfw apply with args and returns its stdout, stderr and
// whether it succeeded.
func (h *applyHost) apply(args ...string) (stdout, stderr string, ok bool) {
	h.t.Helper()
	argv := append([]string{"netns", "exec", h.ns.Name, "env"}, h.env()...)
	argv = append(append(argv, pluginBin, "apply", "--config", h.base), args...)
	cmd := exec.Command("ip", argv...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	return o.String(), e.String(), err == nil
}

func (h *applyHost) mustApply(args ...string) string {
	h.t.Helper()
	out, errOut, ok := h.apply(args...)
	if !ok {
		h.t.Fatalf("tapfw apply %s: %s%s", strings.Join(args, " "), out, errOut)
	}
	return out
}

// reach checks, from the client, which ports of which VMs pass.
func (h *applyHost) reach(step string, want map[string][]bool) {
	h.t.Helper()
	for port, per := range want {
		for i, w := range per {
			addr := net.JoinHostPort(h.vms[i].ip4.String(), port)
			if got := testnet.TCPProbe(h.client.ns, addr, 700*time.Millisecond); got != w {
				h.t.Errorf("%s: client to %s (%s): passed %v, want %v", step, addr, h.vms[i].port, got, w)
			}
		}
	}
}

func wantLines(t *testing.T, step, out string, lines ...string) {
	t.Helper()
	for _, l := range lines {
		if !strings.Contains(out, l+"\n") {
			t.Errorf("%s: output lacks %q:\n%s", step, l, out)
		}
	}
}

// setElements are the lines of a state that hold set elements.
var setElements = regexp.MustCompile(`(?m)^(add tfw\S*-s-.*|.*elements = \{.*\}.*)\n`)

func TestApply(t *testing.T) { forEachBackend(t, testApply) }

func testApply(t *testing.T, be testBackend) {
	h := newApplyHost(t, be)
	all, none := []bool{true, true, true}, []bool{false, false, false}
	h.reach("ifup", map[string][]bool{"80": all, "2222": all, "8080": none})
	if out := h.mustApply("--nics", h.nics); out != "nothing to change\n" {
		t.Errorf("apply of the files installed:\n%s", out)
	}

	// The group gains a rule: all three taps follow at once; a session
	// to 80 opened before flows on.
	web80, web8080 := `{"action":"ACCEPT","proto":"tcp","dport":"80"}`, `{"action":"ACCEPT","proto":"tcp","dport":"8080"}`
	for _, p := range []string{"5080", "5082"} {
		echoServe(t, h.vms[0].ns, "[::]:"+p)
	}
	allow := func(port string) string { return `,{"action":"ACCEPT","proto":"tcp","dport":"` + port + `"}` }
	h.writeBase(web80+","+web8080+allow("5080")+allow("5082"), `"192.0.2.30"`, "")
	before := h.state()
	out := h.mustApply("--dry-run")
	wantLines(t, "dry run", out, "would change securityGroups.web: rules in")
	if after := h.state(); after != before {
		t.Errorf("a dry run changed the kernel")
	}
	wantLines(t, "group gains a rule", h.mustApply(), "changed securityGroups.web: rules in")
	h.reach("group gains 8080", map[string][]bool{"80": all, "8080": all})
	at0 := func(port string) string { return net.JoinHostPort(h.vms[0].ip4.String(), port) }
	s5080 := openSession(t, "client to vm0:5080", h.client.ns, at0("5080"))
	s5082 := openSession(t, "client to vm0:5082", h.client.ns, at0("5082"))

	// The group loses 5080: the live session it allowed is cut at its
	// next packet; one still allowed flows on.
	h.writeBase(web80+","+web8080+allow("5082"), `"192.0.2.30"`, "")
	wantLines(t, "group loses 5080", h.mustApply(), "changed securityGroups.web: rules in", "cut 1 connection the new rules do not allow")
	flows(t, "the group loses 5080", []*session{s5082}, []*session{s5080})

	// With keepEstablished in the base config, a session whose rule goes
	// flows on; a new one meets the rules.
	h.writeBase(web80+","+web8080+allow("5082"), `"192.0.2.30"`, `,"keepEstablished":true`)
	for _, vm := range h.vms {
		h.ifup(vm)
	}
	s5082 = openSession(t, "client to vm0:5082, kept", h.client.ns, at0("5082"))
	h.writeBase(web80+","+web8080, `"192.0.2.30"`, `,"keepEstablished":true`)
	h.mustApply("--nics", h.nics)
	flows(t, "keepEstablished", []*session{s5082}, nil)
	if testnet.TCPProbe(h.client.ns, at0("5082"), 700*time.Millisecond) {
		t.Error("keepEstablished: a new connection to 5082 passes without its rule")
	}
	h.writeBase(web8080, `"192.0.2.30"`, "")
	wantLines(t, "group loses 80", h.mustApply(), "changed securityGroups.web: rules in")
	h.reach("group loses 80", map[string][]bool{"80": none, "8080": all})

	// The set loses and gains the client: its rules follow, and no rule
	// changes.
	before = h.state()
	wantLines(t, "before the set changes", h.mustApply(), "nothing to change")
	h.writeBase(web8080, `"192.0.2.99"`, "")
	wantLines(t, "set loses the client", h.mustApply(), "changed ipsets.admins (IPv4) now holds 192.0.2.99")
	h.reach("set loses the client", map[string][]bool{"2222": none})
	after := h.state()
	if setElements.ReplaceAllString(after, "") != setElements.ReplaceAllString(before, "") || after == before {
		t.Errorf("the set change changed more than the set, or nothing:\n%s", diffLines(before, after))
	}
	h.writeBase(web8080, `"192.0.2.30"`, "")
	h.mustApply()
	h.reach("set gains the client", map[string][]bool{"2222": all})

	// A NIC file changes: only its tap follows. Another's file goes: it
	// is left as it is, and said so.
	h.writeNIC(h.vms[1], `,{"action":"ACCEPT","proto":"tcp","dport":"9090"}`)
	if err := os.Remove(filepath.Join(h.nics, h.vms[2].port+".json")); err != nil {
		t.Fatal(err)
	}
	out = h.mustApply("--nics", h.nics)
	wantLines(t, "NIC files", out, "changed tap "+h.vms[1].port+": its firewall")
	if !strings.Contains(out, "left tap "+h.vms[2].port+": no NIC file") || strings.Contains(out, h.vms[0].port) || strings.Contains(out, h.client.port) {
		t.Errorf("NIC files: %s", out)
	}
	h.reach("NIC file gains 9090", map[string][]bool{"9090": {false, true, false}, "8080": all, "2222": all})
	// The CNI client's own rules stay: it still reaches out.
	if !testnet.TCPProbe(h.client.ns, net.JoinHostPort(h.vms[0].ip4.String(), "8080"), time.Second) {
		t.Error("the CNI client lost its way out")
	}

	// A host section in the base config guards the host; taken out, the
	// host firewall goes with it.
	serveTCP(t, []string{"9922", "9923"}, h.ns)
	toHost := func(port string) bool {
		return testnet.TCPProbe(h.client.ns, net.JoinHostPort("192.0.2.31", port), 700*time.Millisecond)
	}
	h.writeBase(web8080, `"192.0.2.30"`, `,"host":{"ips":["192.0.2.31"],"rules":{"in":[{"action":"ACCEPT","proto":"tcp","dport":"9922","comment":"apply host rule"}]}}`)
	wantLines(t, "host section added", h.mustApply("--nics", h.nics), "changed host: rules in", "changed host: addresses (IPv4) now holds 192.0.2.31")
	if !toHost("9922") || toHost("9923") {
		t.Errorf("with the host section: 9922 passes %v, 9923 %v; want only 9922", toHost("9922"), toHost("9923"))
	}
	h.writeBase(web8080, `"192.0.2.30"`, "")
	wantLines(t, "host section removed", h.mustApply("--nics", h.nics), "changed host: rules in", "changed host: addresses (IPv4) now holds nothing")
	if !toHost("9923") || strings.Contains(h.state(), "apply host rule") {
		t.Errorf("without the host section: 9923 passes %v; the state:\n%s", toHost("9923"), h.state())
	}

	// Bad files change nothing and name the field.
	before = h.state()
	good, _ := os.ReadFile(h.base)
	for _, bad := range []struct {
		name, base, nic, field string
	}{
		{"bad set entry", fmt.Sprintf(applyBase, web8080, `"not-an-address"`, ""), "", "ipsets"},
		{"bad group rule", fmt.Sprintf(applyBase, `{"action":"ACCEPT","proto":"tcp","dport":"99999"}`, `"192.0.2.30"`, ""), "", "securityGroups"},
		{"NIC file with groups of its own", string(good), `{"bridge":"vmbr0","mac":"02:00:00:00:01:20","ips":["192.0.2.20"],"securityGroups":{"web":{"in":[]}}}`, "securityGroups: differs"},
		{"NIC file with a bad rule", string(good), `{"bridge":"vmbr0","mac":"02:00:00:00:01:20","ips":["192.0.2.20"],"rules":{"in":[{"action":"JUMP"}]}}`, "rules"},
	} {
		h.write(h.base, bad.base)
		nic := filepath.Join(h.nics, h.vms[0].port+".json")
		goodNIC, _ := os.ReadFile(nic)
		if bad.nic != "" {
			h.write(nic, bad.nic)
		}
		out, errOut, ok := h.apply("--nics", h.nics)
		if ok || !strings.Contains(errOut, bad.field) || !strings.Contains(errOut, "nothing changed") {
			t.Errorf("%s: ok %v, stdout %q, stderr %q", bad.name, ok, out, errOut)
		}
		if after := h.state(); after != before {
			t.Errorf("%s: the kernel changed:\n%s", bad.name, diffLines(before, after))
		}
		h.write(nic, string(goodNIC))
	}
	h.write(h.base, string(good))
	h.mustApply("--nics", h.nics)
}

// diffLines lists the lines only one of a and b has.
func diffLines(a, b string) string {
	in := func(s string) map[string]bool {
		m := map[string]bool{}
		for _, l := range strings.Split(s, "\n") {
			m[l] = true
		}
		return m
	}
	ina, inb := in(a), in(b)
	var out []string
	for _, l := range strings.Split(a, "\n") {
		if !inb[l] {
			out = append(out, "- "+l)
		}
	}
	for _, l := range strings.Split(b, "\n") {
		if !ina[l] {
			out = append(out, "+ "+l)
		}
	}
	return strings.Join(out, "\n")
}

// A host of QEMU taps without guests, for the crash and race tests: each
// tap exists on vmbr0, its NIC file is written, and the base config has
// a host section, a group every tap uses and a named set.
type quietHost struct {
	*applyHost
	taps []string
}

// quietBase is the base config, version v: v changes the group's rules,
// the set's entries and the host's rules.
func quietBase(v int) string {
	return fmt.Sprintf(`{"securityGroups":{"web":{"in":[{"action":"ACCEPT","proto":"tcp","dport":"%d"}]}},
	"ipsets":{"admins":["203.0.113.%d"]},"policyIn":"DROP",
	"host":{"ips":["192.0.2.31"],"rules":{"in":[{"action":"ACCEPT","proto":"tcp","dport":"%d","source":"+admins"}]}}}`, 8000+v, v, 9000+v)
}

func newQuietHost(t *testing.T, be testBackend, n int) *quietHost {
	h := &quietHost{applyHost: &applyHost{host: newHostOn(t, be), dir: t.TempDir()}}
	h.base, h.nics = filepath.Join(h.dir, "tapfw.conf"), filepath.Join(h.dir, "nics")
	if err := os.Mkdir(h.nics, 0o755); err != nil {
		t.Fatal(err)
	}
	h.write(h.base, quietBase(1))
	for i := range n {
		tap := fmt.Sprintf("tap%di0", 200+i)
		h.run("ip", "tuntap", "add", "mode", "tap", tap)
		h.run("ip", "link", "set", tap, "master", "vmbr0", "up")
		h.taps = append(h.taps, tap)
		h.nicVersion(i, 1)
	}
	return h
}

// nicVersion writes tap i's NIC file, version v.
func (h *quietHost) nicVersion(i, v int) {
	h.write(filepath.Join(h.nics, h.taps[i]+".json"), fmt.Sprintf(
		`{"bridge":"vmbr0","mac":"02:00:00:00:02:%02x","ips":["198.51.100.%d"],"groups":["web"],"rules":{"in":[{"action":"ACCEPT","proto":"udp","dport":"%d"}]}}`,
		i, 10+i, 5000+v))
}

func (h *quietHost) ifupTap(i int, env ...string) error {
	tap := h.taps[i]
	cmd := exec.Command(pluginBin, "qemu-config", tap)
	cmd.Env = append(os.Environ(), h.env()...)
	conf, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("qemu-config %s: %w", tap, err)
	}
	_, err = testnet.CallPlugin(h.ns, testnet.Call{Bin: pluginBin, Command: "ADD", ContainerID: "qemu-" + tap, IfName: tap, Config: conf,
		Env: append(append([]string(nil), h.be.env...), env...)})
	return err
}

func (h *quietHost) ifdownTap(i int, env ...string) error {
	tap := h.taps[i]
	_, err := testnet.CallPlugin(h.ns, testnet.Call{Bin: pluginBin, Command: "DEL", ContainerID: "qemu-" + tap, IfName: tap,
		Config: []byte(`{"cniVersion":"1.0.0","name":"qemu","type":"tapfw"}`), Env: append(append([]string(nil), h.be.env...), env...)})
	return err
}

// change writes version 2 of the base config and of every other NIC file.
func (h *quietHost) change() {
	h.write(h.base, quietBase(2))
	for i := range h.taps {
		if i%2 == 0 {
			h.nicVersion(i, 2)
		}
	}
}

// TestApplyCrashConverges kills apply with SIGKILL after each step that
// changes the kernel, then runs it again: the state is the one a clean
// apply gives.
func TestApplyCrashConverges(t *testing.T) {
	forEachBackend(t, func(t *testing.T, be testBackend) {
		ref := newQuietHost(t, be, 3)
		for i := range ref.taps {
			if err := ref.ifupTap(i); err != nil {
				t.Fatal(err)
			}
		}
		ref.change()
		ref.mustApply("--nics", ref.nics)
		want := normalize(t, ref.state())
		// The nftables backend's one transaction leaves apply two points
		// to die at (locked, committed).
		steps, least := netfilter.FaultSteps, 6
		if be.nftables() {
			steps, least = nft.FaultSteps, 2
		}
		kills := 0
		for _, step := range steps {
			for n := 1; n <= 3; n++ {
				h := newQuietHost(t, be, 3)
				for i := range h.taps {
					if err := h.ifupTap(i); err != nil {
						t.Fatal(err)
					}
				}
				h.change()
				argv := append([]string{"netns", "exec", h.ns.Name, "env"}, h.env()...)
				argv = append(argv, "TAPFW_FAULT="+fmt.Sprintf("%s:%d", step, n), pluginBin, "apply", "--config", h.base, "--nics", h.nics)
				err := exec.Command("ip", argv...).Run()
				fired := killed(err)
				if err != nil && !fired {
					t.Fatalf("apply with the fault at %s:%d: %v", step, n, err)
				}
				h.mustApply("--nics", h.nics)
				if got := normalize(t, h.state()); got != want {
					t.Errorf("apply killed at %s:%d: after the retry the state differs from a clean apply:\n%s", step, n, diffLines(want, got))
				}
				if out := h.mustApply("--nics", h.nics); out != "nothing to change\n" {
					t.Errorf("apply killed at %s:%d: a third apply still changes:\n%s", step, n, out)
				}
				if !fired {
					break
				}
				kills++
			}
		}
		t.Logf("%s: %d applies killed at %d fault points; every one converged", be.name, kills, len(steps))
		if kills < least {
			t.Errorf("only %d applies were killed", kills)
		}
	})
}

// TestApplyRaces runs apply twice while 16 ADDs and 16 DELs of QEMU taps
// race it: the end state is the one the same calls in serial order give.
func TestApplyRaces(t *testing.T) {
	forEachBackend(t, func(t *testing.T, be testBackend) {
		const n = 32
		// Taps 0-15 are up before and go down during the race; 16-31 come
		// up during it. The files change before the race.
		run := func(h *quietHost, race bool) {
			for i := range n / 2 {
				if err := h.ifupTap(i); err != nil {
					t.Fatal(err)
				}
			}
			h.change()
			env := []string{"TAPFW_LOCK_TIMEOUT=600s"}
			var calls []func() error
			for i := range n / 2 {
				calls = append(calls, func() error { return h.ifdownTap(i, env...) }, func() error { return h.ifupTap(n/2+i, env...) })
			}
			apply := func() error {
				if out, errOut, ok := h.apply("--nics", h.nics); !ok {
					return fmt.Errorf("apply: %s%s", out, errOut)
				}
				return nil
			}
			calls = append(calls[:n/2], append([]func() error{apply}, append(calls[n/2:], apply)...)...)
			if !race {
				for _, c := range calls {
					if err := c(); err != nil {
						t.Fatal(err)
					}
				}
				return
			}
			errs := make(chan error, len(calls))
			for _, c := range calls {
				go func() { errs <- c() }()
			}
			for range calls {
				if err := <-errs; err != nil {
					t.Error(err)
				}
			}
		}
		ref := newQuietHost(t, be, n)
		run(ref, false)
		h := newQuietHost(t, be, n)
		run(h, true)
		if got, want := normalize(t, h.state()), normalize(t, ref.state()); got != want {
			t.Errorf("after the race the state differs from the serial order:\n%s", diffLines(want, got))
		}
		// Whatever the order, one more apply finds nothing to change.
		if out := h.mustApply("--nics", h.nics); !strings.HasPrefix(out, "nothing to change\n") {
			t.Errorf("apply after the race:\n%s", out)
		}
	})
}
