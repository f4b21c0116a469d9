package testnet

import (
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

// HostState is what of the machine's own network the tests must leave
// alone, read in the namespace TestMain runs in (the host's): anything of
// tapfw's in its iptables and ip6tables (both backends), its ipsets and its
// nftables tables, and its links and routes. Reading changes nothing.
func HostState() string {
	var b strings.Builder
	for _, c := range [][]string{
		{"iptables-nft-save"}, {"ip6tables-nft-save"}, {"iptables-legacy-save"}, {"ip6tables-legacy-save"},
		{"ipset", "list", "-n"}, {"nft", "list", "tables"},
	} {
		out, err := exec.Command(c[0], c[1:]...).Output()
		if err != nil {
			continue // not installed, or nothing there
		}
		for _, line := range strings.Split(string(out), "\n") {
			if strings.Contains(strings.ToLower(line), "tfw") || strings.Contains(line, "tapfw") {
				fmt.Fprintf(&b, "%s: %s\n", c[0], line)
			}
		}
	}
	for _, c := range [][]string{{"ip", "-o", "link", "show"}, {"ip", "route", "show"}, {"ip", "-6", "route", "show"}} {
		out, err := exec.Command(c[0], c[1:]...).Output()
		if err != nil {
			continue
		}
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			if c[1] == "-o" {
				// "2: eth0: <...> ...": the name is what a test could add.
				if f := strings.Fields(line); len(f) > 1 {
					line = f[1]
				}
			}
			fmt.Fprintf(&b, "%s: %s\n", strings.Join(c, " "), volatile.ReplaceAllString(line, ""))
		}
	}
	return b.String()
}

// volatile is what of a route changes by itself.
var volatile = regexp.MustCompile(` expires \d+sec`)

// GuardHost runs the tests and fails the run when they changed HostState:
// every test works in namespaces of its own, and a goroutine that escapes
// one (NS.Do's threads are not inherited) would otherwise change the
// machine's own firewall unseen. For TestMain: os.Exit(GuardHost(m)).
func GuardHost(m *testing.M) int {
	if os.Geteuid() != 0 || !inHostNetns() {
		// A test binary re-run inside a sandbox (pkg/explain's kernel
		// check does that) is there to change it.
		return m.Run()
	}
	before := HostState()
	code := m.Run()
	if after := HostState(); after != before {
		fmt.Fprintf(os.Stderr, "FAIL: the tests changed the host's own network (only sandbox namespaces may change)\n--- before\n%s--- after\n%s", before, after)
		if code == 0 {
			code = 1
		}
	}
	return code
}

// inHostNetns says whether this process is in init's network namespace.
func inHostNetns() bool {
	self, err1 := os.Readlink("/proc/self/ns/net")
	host, err2 := os.Readlink("/proc/1/ns/net")
	return err1 == nil && err2 == nil && self == host
}
