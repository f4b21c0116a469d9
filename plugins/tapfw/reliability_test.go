package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tapfw/tapfw/pkg/netfilter"
	"github.com/tapfw/tapfw/pkg/nft"
	"github.com/tapfw/tapfw/pkg/testnet"
)

// Reliability: crashes at every step converge, concurrent calls
// equal serial ones and lose nothing of anyone, a busy lock changes nothing,
// and a tap without chains passes no traffic.

// relConf is a tap's config without a host section, so that the last DEL
// takes tapfw's shared chains and sets away too.
func relConf(i int, bridge, extra string) []byte {
	return []byte(fmt.Sprintf(`{"cniVersion":"1.0.0","name":"rel","type":"tapfw","bridge":%q,
	"mac":"02:00:00:00:%02x:%02x","ips":["198.51.100.%d"],"ipsets":{"admins":["203.0.113.0/28"]},
	"rules":{"in":[{"action":"ACCEPT","proto":"tcp","dport":"22","source":"+admins"},{"action":"ACCEPT","proto":"udp","dport":"9000"}],
	"out":[{"action":"DROP","proto":"tcp","dport":"25","log":true}]}%s}`, bridge, i/256, i%256, 1+i%254, extra))
}

func relCall(command string, i int, tap, bridge string, env ...string) testnet.Call {
	return testnet.Call{Command: command, ContainerID: fmt.Sprintf("vm%d", i), IfName: tap, Config: relConf(i, bridge, ""), Env: env}
}

// tapfwTraces lists the lines of a state that are tapfw's.
func tapfwTraces(state string) []string {
	var out []string
	for _, l := range strings.Split(state, "\n") {
		if strings.Contains(l, "TFW-") || strings.Contains(l, "tfw-") || strings.Contains(l, "tfw6-") || strings.HasPrefix(l, "l2 ") || strings.HasPrefix(l, "inet ") || strings.HasPrefix(l, "hlp ") || strings.Contains(l, " tapfw") {
			out = append(out, l)
		}
	}
	return out
}

func killed(err error) bool { return err != nil && strings.Contains(err.Error(), "signal: killed") }

// faultRuns counts the calls killed by TAPFW_FAULT in this run of the
// tests, for the log.
var faultRuns struct {
	sync.Mutex
	n int
}

// TestCrashConverges kills ADD and DEL with SIGKILL after each step that
// changes the kernel (TAPFW_FAULT), then runs the calls again: each
// converges to the state a clean run gives, byte for byte.
func TestCrashConverges(t *testing.T) {
	testnet.NeedKernel(t)
	forEachBackendMode(t, func(t *testing.T, be testBackend) {
		// Each backend's steps; at least as many kills as a run reaches
		// with the iptables backend's eight steps (20) or the nftables
		// backend's four, whose one transaction leaves fewer in-between
		// states (8).
		steps, least := netfilter.FaultSteps, 20
		if be.nftables() {
			steps, least = nft.FaultSteps, 8
		}
		injected := 0
		for _, step := range steps {
			for n := 1; n <= 4; n++ {
				spec := fmt.Sprintf("%s:%d", step, n)
				reached := false
				for _, sc := range []string{"first ADD", "ADD", "change", "DEL", "last DEL"} {
					if crashOnce(t, be, sc, spec) {
						reached = true
						injected++
					}
				}
				if !reached {
					break
				}
			}
		}
		t.Logf("%s: %d calls killed at %d fault points; every one converged", be.name, injected, len(steps))
		faultRuns.Lock()
		faultRuns.n += injected
		faultRuns.Unlock()
		if injected < least {
			t.Errorf("only %d faults were injected", injected)
		}
	})
}

// crashOnce runs one scenario with the fault spec and reports whether the
// fault fired (the call was killed).
func crashOnce(t *testing.T, be testBackend, scenario, spec string) bool {
	t.Helper()
	env := be.env
	h := newHost(t, "tap110i0", "tap111i0")
	// Someone else's rules make both backends' filter tables exist, so the
	// empty state is the one tapfw must return to.
	h.run("iptables-nft", "-A", "INPUT", "-s", "203.0.113.99/32", "-j", "ACCEPT")
	h.run("iptables-legacy", "-A", "INPUT", "-s", "203.0.113.99/32", "-j", "ACCEPT")
	h.run("ip6tables-nft", "-A", "INPUT", "-s", "2001:db8:ffff::99/128", "-j", "ACCEPT")
	h.run("ip6tables-legacy", "-A", "INPUT", "-s", "2001:db8:ffff::99/128", "-j", "ACCEPT")
	fault := append(append([]string{}, env...), "TAPFW_FAULT="+spec)
	a := relCall("ADD", 0, "tap110i0", "vmbr0", env...)
	b := relCall("ADD", 1, "tap111i0", "vmbr0", env...)
	with := func(c testnet.Call, command string, e []string) testnet.Call {
		c.Command, c.Env = command, e
		return c
	}
	empty := h.state()
	var want string // the state the retried calls must reach
	var victim testnet.Call
	switch scenario {
	case "first ADD": // on a fresh host
		victim, want = with(a, "ADD", fault), ""
	case "ADD":
		h.mustCall(a)
		victim, want = with(b, "ADD", fault), h.state()
	case "change": // a new address: the tap's set is rebuilt aside and swapped
		h.mustCall(a)
		victim, want = with(a, "ADD", fault), ""
		victim.Args = "IgnoreUnknown=1;IP=198.51.100.77"
	case "DEL":
		h.mustCall(a)
		want = h.state()
		h.mustCall(b)
		victim = with(b, "DEL", fault)
	case "last DEL":
		h.mustCall(a)
		victim, want = with(a, "DEL", fault), ""
	}
	victim.Bin = pluginBin
	_, err := testnet.CallPlugin(h.ns, victim)
	if err != nil && !killed(err) {
		t.Fatalf("%s %s: %v", scenario, spec, err)
	}
	fired := killed(err)
	retry := with(victim, victim.Command, env)
	if victim.Command == "ADD" {
		// ADD again converges; CHECK agrees; then DEL leaves the state
		// before the ADD.
		h.mustCall(retry)
		h.mustCall(with(retry, "CHECK", env))
		if s := h.state(); strings.Contains(s, "tfw-x-") {
			t.Errorf("%s killed at %s: a temporary set is left after the retry:\n%s", scenario, spec, s)
		}
		h.mustCall(with(retry, "DEL", env))
	} else {
		h.mustCall(retry)
		h.mustCall(retry)
	}
	got := h.state()
	if want == "" {
		if tr := tapfwTraces(got); len(tr) > 0 {
			t.Errorf("%s killed at %s: after the retries tapfw left:\n%s", scenario, spec, strings.Join(tr, "\n"))
		}
		if got != empty {
			t.Errorf("%s killed at %s: the state differs from the empty host", scenario, spec)
		}
	} else if got != want {
		t.Errorf("%s killed at %s: after the retries the state differs from a clean run:\n got %s\nwant %s", scenario, spec, got, want)
	}
	if scenario == "ADD" || scenario == "DEL" {
		h.mustCall(with(a, "CHECK", env))
	}
	return fired
}

// normalize makes a state comparable whatever order calls ran in: chain
// declarations and ipsets (listed in creation order), and the rules of
// chains whose order does not decide anything (the trie nodes, whose leaves
// and edges are disjoint, and the per-bridge member groups) are sorted;
// every other chain keeps its order.
func normalize(t *testing.T, state string) string {
	t.Helper()
	free := regexp.MustCompile(`^-A (TFW-D[IOH]\S*|TFW-FORWARD|TFW-ROUTED|TFW-UNMANAGED-IN|TFW-UNMANAGED-OUT) `)
	var fixed, sortable []string
	for _, l := range strings.Split(state, "\n") {
		if strings.HasPrefix(l, "l2 ") || strings.HasPrefix(l, "inet ") {
			// nft lists map and set elements in hash order, several to a
			// line: compare them one by one.
			l = strings.Replace(strings.TrimRight(l, ", }"), "elements = { ", "", 1)
		}
		// The nftables tables list chains in the order they were made:
		// their lines are compared as a set (CHECK holds each chain's
		// order).
		if free.MatchString(l) || strings.HasPrefix(l, ":") || strings.HasPrefix(l, "create ") || strings.HasPrefix(l, "add ") || strings.HasPrefix(l, "l2 ") || strings.HasPrefix(l, "inet ") {
			sortable = append(sortable, l)
		} else {
			fixed = append(fixed, l)
		}
	}
	sort.Strings(sortable)
	return strings.Join(fixed, "\n") + "\n" + strings.Join(sortable, "\n")
}

// routedLast checks that TFW-FORWARD ends with its routed tails, in each
// table of state, whatever order the bridges came in.
func routedLast(t *testing.T, state string) {
	t.Helper()
	var fwd []string
	flush := func() {
		n := len(fwd)
		if n > 0 && (n < 2 || !strings.Contains(fwd[n-2], `"@tapfw: routed from a port #`) || !strings.Contains(fwd[n-1], `"@tapfw: routed #`)) {
			t.Errorf("TFW-FORWARD does not end with the routed tails:\n%s", strings.Join(fwd, "\n"))
		}
		fwd = nil
	}
	for _, l := range strings.Split(state, "\n") {
		switch {
		case strings.HasPrefix(l, "-A TFW-FORWARD "):
			fwd = append(fwd, l)
		case l == "COMMIT":
			flush()
		}
	}
	flush()
}

// trieShape checks that every trie node keeps its order: exact leaves,
// then wildcard edges, then the miss rule last.
func trieShape(t *testing.T, state string) {
	t.Helper()
	rank := func(l string) int {
		switch {
		case strings.Contains(l, "no tap #"):
			return 2
		case strings.Contains(l, "@dispatch:"):
			return 1
		}
		return 0
	}
	last := map[string]int{}
	for _, l := range strings.Split(state, "\n") {
		if l == "*filter" { // the next table
			last = map[string]int{}
		}
		f := strings.Fields(l)
		if len(f) < 2 || f[0] != "-A" || !strings.HasPrefix(f[1], "TFW-D") {
			continue
		}
		r := rank(l)
		if r < last[f[1]] {
			t.Errorf("trie node %s out of order at %q", f[1], l)
		}
		last[f[1]] = r
	}
}

const concurrency = 64

// concurrentHost is a host with 4 bridges and 64 taps spread over them.
func concurrentHost(t *testing.T) (*host, []string, []string) {
	h := newHost(t)
	bridges := []string{"vmbr0", "vmbr1", "vmbr2", "vmbr3"}
	for _, br := range bridges[1:] {
		if err := testnet.AddBridge(h.ns, br, ""); err != nil {
			t.Fatal(err)
		}
	}
	taps := make([]string, concurrency)
	for i := range taps {
		taps[i] = fmt.Sprintf("tap%di0", 200+i)
		h.run("ip", "tuntap", "add", "mode", "tap", taps[i])
		h.run("ip", "link", "set", taps[i], "master", bridges[i%len(bridges)], "up")
	}
	return h, taps, bridges
}

// TestConcurrentCalls: 64 ADDs at once (the first ADD on a fresh host among
// them) give the ruleset serial ADDs give; then 64 CHECK-then-DEL pairs at
// once all succeed and leave nothing; with and without another program
// changing iptables at the same time, whose rules survive.
func TestConcurrentCalls(t *testing.T) {
	testnet.NeedKernel(t)
	forEachBackendMode(t, func(t *testing.T, be testBackend) {
		for _, foreign := range []bool{false, true} {
			name := "alone"
			if foreign {
				name = "foreign-writer"
			}
			t.Run(name, func(t *testing.T) { concurrentRun(t, be, foreign) })
		}
	})
}

func concurrentRun(t *testing.T, be testBackend, foreign bool) {
	// 64 CHECKs and 64 DELs queue on the lock at once; under
	// iptables-nft with a foreign writer each takes a second or more (its
	// restores retry while the writer's transactions change the ruleset),
	// so the last in the queue waits minutes on a busy machine.
	env := append([]string{"TAPFW_LOCK_TIMEOUT=600s"}, be.env...)
	// The foreign program writes with iptables; under the nftables
	// backend, iptables-nft's writes are nftables transactions racing
	// tapfw's.
	mode := be.mode
	if mode == "" {
		mode = "nft"
	}
	ipt := "iptables-" + mode

	// Serial reference.
	ref, taps, bridges := concurrentHost(t)
	for i, tap := range taps {
		ref.mustCall(relCall("ADD", i, tap, bridges[i%4], env...))
	}

	h, _, _ := concurrentHost(t)
	h.run(ipt, "-N", "FOREIGN")
	h.run(ipt, "-A", "FOREIGN", "-s", "203.0.113.7/32", "-j", "DROP")
	h.run(ipt, "-A", "FORWARD", "-d", "203.0.113.8/32", "-j", "FOREIGN")
	h.run("ip6tables-"+mode, "-A", "FORWARD", "-d", "2001:db8:ffff::8/128", "-j", "ACCEPT")
	h.run("ipset", "create", "foreign", "hash:ip")
	h.run("ipset", "add", "foreign", "203.0.113.9")
	before := h.state()

	stop := make(chan struct{})
	var writer sync.WaitGroup
	var writes int
	// paused holds the foreign writer while the test reads the whole
	// state: `nft list` restarts its dump whenever the ruleset changes,
	// and a writer that never stops can keep it from ever finishing.
	var paused sync.Mutex
	if foreign {
		writer.Add(1)
		go func() {
			defer writer.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				paused.Lock()
				for _, op := range []string{"-A", "-D"} {
					if _, err := h.ns.Run(ipt, "-w", op, "FORWARD", "-s", "203.0.113.10/32", "-j", "ACCEPT"); err != nil {
						paused.Unlock()
						t.Errorf("foreign %s: %v", op, err)
						return
					}
				}
				paused.Unlock()
				writes++
				// Ten changes a second is a very busy foreign program; a
				// writer with no pause starves iptables-nft's restores,
				// which start over whenever the ruleset changed under
				// them, for minutes on a loaded machine.
				time.Sleep(100 * time.Millisecond)
			}
		}()
	}

	run := func(calls func(i int) []testnet.Call) {
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range taps {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				for _, c := range calls(i) {
					c.Bin = pluginBin
					if out, err := testnet.CallPlugin(h.ns, c); err != nil {
						t.Errorf("%s %s: %v %s", c.Command, c.IfName, err, out)
					}
				}
			}()
		}
		close(start)
		wg.Wait()
	}
	run(func(i int) []testnet.Call { return []testnet.Call{relCall("ADD", i, taps[i], bridges[i%4], env...)} })
	if t.Failed() {
		t.FailNow()
	}
	paused.Lock()
	added := h.state()
	paused.Unlock()
	if !be.nftables() {
		trieShape(t, added)
		routedLast(t, added)
	}
	// The foreign program's rules are part of both; drop them from the
	// comparison by reading our chains and sets only.
	if got, want := normalize(t, strings.Join(tapfwTraces(added), "\n")), normalize(t, strings.Join(tapfwTraces(ref.state()), "\n")); got != want {
		t.Errorf("%d concurrent ADDs differ from serial ADDs:\n got %s\nwant %s", concurrency, got, want)
	}
	run(func(i int) []testnet.Call {
		return []testnet.Call{relCall("CHECK", i, taps[i], bridges[i%4], env...), relCall("DEL", i, taps[i], bridges[i%4], env...)}
	})
	close(stop)
	writer.Wait()
	after := h.state()
	if tr := tapfwTraces(after); len(tr) > 0 {
		t.Errorf("after %d concurrent DELs tapfw left:\n%s", concurrency, strings.Join(tr, "\n"))
	}
	if after != before {
		t.Errorf("the foreign chain, rule or set changed:\nbefore %s\nafter %s", before, after)
	}
	if foreign {
		t.Logf("%s: the foreign program made %d add/delete pairs meanwhile", be.name, writes)
		if writes == 0 {
			t.Errorf("the foreign program never ran")
		}
	}
}

// TestBusyLockChangesNothing: a held tapfw lock, or (legacy) a held xtables
// lock, gives CNI code 11 and leaves the kernel as it was.
func TestBusyLockChangesNothing(t *testing.T) {
	testnet.NeedKernel(t)
	run(t, busyLockRun, iptablesLegacy, nftablesBE)
}

// busyLockRun: with the tapfw lock held (and, for iptables-legacy, the
// xtables lock), ADD and DEL give up with code 11 and change nothing.
func busyLockRun(t *testing.T, be testBackend) {
	h := newHost(t, "tap110i0", "tap111i0")
	dir := t.TempDir()
	hold := func(path string) func() {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
			t.Fatal(err)
		}
		return func() { f.Close() }
	}
	lock := filepath.Join(dir, "tapfw.lock")
	xlock := filepath.Join(dir, "xtables.lock")
	base := []string{"TAPFW_LOCK=" + lock, "XTABLES_LOCKFILE=" + xlock}
	base = append(base, be.env...)
	h.mustCall(relCall("ADD", 0, "tap110i0", "vmbr0", base...))
	before := h.state()

	cases := []struct {
		name string
		file string
		env  []string
	}{
		{"tapfw lock", lock, []string{"TAPFW_LOCK_TIMEOUT=300ms"}},
	}
	if !be.nftables() {
		cases = append(cases, struct {
			name string
			file string
			env  []string
		}{"xtables lock", xlock, []string{"TAPFW_XTABLES_WAIT=1"}})
	}
	for _, c := range cases {
		release := hold(c.file)
		for _, command := range []string{"ADD", "DEL"} {
			i, tap := 1, "tap111i0"
			if command == "DEL" {
				i, tap = 0, "tap110i0"
			}
			start := time.Now()
			_, e := h.call(relCall(command, i, tap, "vmbr0", append(append([]string{}, base...), c.env...)...))
			if e == nil || e.Code != 11 {
				t.Errorf("%s held: %s: got %+v, want CNI error 11", c.name, command, e)
			}
			if got := h.state(); got != before {
				t.Errorf("%s held: %s changed the kernel:\nbefore %s\nafter %s", c.name, command, before, got)
			}
			t.Logf("%s held: %s gave code 11 after %v", c.name, command, time.Since(start).Round(time.Millisecond))
		}
		release()
	}
	h.mustCall(relCall("ADD", 1, "tap111i0", "vmbr0", base...))
}

// TestFailClosedTraffic proves with packets that a port named like a tap
// passes nothing while it has no chains: before its ADD, while its ADD is
// killed halfway, and after its DEL; and that failClosed:false opens it.
func TestFailClosedTraffic(t *testing.T) {
	testnet.NeedKernel(t)
	forEachBackendMode(t, failClosedRun)
}

func failClosedRun(t *testing.T, be testBackend) {
	h := newHost(t)
	env := be.env
	ports := []struct{ port, mac, ip string }{
		{"tap110i0", "02:00:00:00:01:10", "192.0.2.10"},
		{"tap111i0", "02:00:00:00:01:11", "192.0.2.11"},
		{"eth9", "02:00:00:00:01:12", "192.0.2.12"}, // an uplink: not named like a tap
	}
	ns := map[string]*testnet.NS{}
	for _, p := range ports {
		n, err := testnet.NewNS("fc")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = n.Close() })
		if err := testnet.AddPort(h.ns, "vmbr0", p.port, n, p.mac, p.ip+"/24", ""); err != nil {
			t.Fatal(err)
		}
		srv, err := testnet.TCPServe(n, p.ip+":22")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = srv.Close() })
		ns[p.port] = n
	}
	conf := func(i int, extra string) testnet.Call {
		p := ports[i]
		return testnet.Call{Command: "ADD", ContainerID: fmt.Sprintf("vm%d", i), IfName: p.port, Env: env,
			Config: []byte(fmt.Sprintf(`{"cniVersion":"1.0.0","name":"fc","type":"tapfw","bridge":"vmbr0","mac":%q,"ips":[%q],
			"policyOut":"ACCEPT","rules":{"in":[{"action":"ACCEPT","proto":"tcp","dport":"22"}]}%s}`, p.mac, p.ip, extra))}
	}
	type probe struct {
		from, to int
		want     bool
	}
	check := func(stage string, ps ...probe) {
		t.Helper()
		for _, p := range ps {
			got := testnet.TCPProbe(ns[ports[p.from].port], ports[p.to].ip+":22", 700*time.Millisecond)
			if got != p.want {
				t.Errorf("%s: %s -> %s: got %v, want %v", stage, ports[p.from].port, ports[p.to].port, got, p.want)
			}
		}
	}
	const a, b, up = 0, 1, 2

	// A bridge tapfw has never seen is not managed: it fails closed from
	// its first ADD on.
	check("no ADD yet", probe{a, b, true})
	h.mustCall(conf(a, ""))
	check("A added, B not", probe{a, up, true}, probe{up, a, true}, probe{b, up, false}, probe{up, b, false}, probe{a, b, false}, probe{b, a, false})

	// B's ADD killed after its sets were made, before its rules (with
	// nftables, whose one transaction has no such point: before it): B
	// has no chains and stays shut.
	victim := conf(b, "")
	step := "set-filled"
	if be.nftables() {
		step = "locked"
	}
	victim.Env = append(append([]string{}, env...), "TAPFW_FAULT="+step)
	victim.Bin = pluginBin
	if _, err := testnet.CallPlugin(h.ns, victim); !killed(err) {
		t.Fatalf("ADD with TAPFW_FAULT was not killed: %v", err)
	}
	check("B's ADD killed", probe{b, up, false}, probe{up, b, false}, probe{a, b, false})

	h.mustCall(conf(b, ""))
	check("B added", probe{b, up, true}, probe{a, b, true}, probe{b, a, true})

	// DEL: B is still a port of the bridge, without chains: shut again.
	del := conf(b, "")
	del.Command = "DEL"
	h.mustCall(del)
	check("B deleted", probe{b, up, false}, probe{a, b, false})

	// failClosed:false on the bridge (any ADD on it sets the option).
	h.mustCall(conf(a, `,"failClosed":false`))
	check("fail open", probe{b, up, true}, probe{up, b, true})
	h.mustCall(conf(a, ""))
	check("fail closed again", probe{b, up, false})

	// A prefix that matches no port leaves B open.
	h.mustCall(conf(a, `,"managedPrefix":"vnet"`))
	check("managedPrefix vnet", probe{b, up, true})
}
