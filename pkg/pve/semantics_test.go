package pve

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/tapfw/tapfw/pkg/ruleset"
)

// importFiles converts a tree of the given files (path: content) for
// node pve1; cluster.fw is "[OPTIONS]\nenable: 1" unless given.
func importFiles(t *testing.T, files map[string]string) *Result {
	t.Helper()
	dir := t.TempDir()
	if _, ok := files["firewall/cluster.fw"]; !ok {
		files["firewall/cluster.fw"] = "[OPTIONS]\nenable: 1\n"
	}
	if err := os.MkdirAll(filepath.Join(dir, "nodes", "pve1"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, content := range files {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tree, probs, err := Load(dir, "pve1")
	if err != nil {
		t.Fatal(err)
	}
	r := Convert(tree, Options{LocalNetwork: "192.0.2.0/24", Limits: ruleset.Limits})
	r.Problems = append(probs, r.Problems...)
	return r
}

// hasProblem reports whether a problem starts with prefix and holds
// text.
func hasProblem(r *Result, prefix, text string) bool {
	for _, p := range r.Problems {
		if s := p.String(); strings.HasPrefix(s, prefix) && strings.Contains(s, text) {
			return true
		}
	}
	return false
}

func wantField(t *testing.T, nic map[string]any, key string, want any) {
	t.Helper()
	if got := nic[key]; !reflect.DeepEqual(got, want) {
		t.Errorf("%s = %#v, want %#v", key, got, want)
	}
}

// TestDHCPDefault: Proxmox VE lets DHCP through unless dhcp: 0.
func TestDHCPDefault(t *testing.T) {
	r := importFiles(t, map[string]string{
		"firewall/100.fw":                 "[OPTIONS]\nenable: 1\n",
		"firewall/101.fw":                 "[OPTIONS]\nenable: 1\ndhcp: 0\n",
		"nodes/pve1/qemu-server/100.conf": "net0: virtio=BC:24:11:00:01:00,bridge=vmbr0,firewall=1\n",
		"nodes/pve1/qemu-server/101.conf": "net0: virtio=BC:24:11:00:01:01,bridge=vmbr0,firewall=1\n",
	})
	wantField(t, r.NICs["tap100i0"], "dhcp", true)
	wantField(t, r.NICs["tap101i0"], "dhcp", false)
}

// TestIPFilter: an ipfilter-netN set turns the NIC's IP filter on by
// itself; a container's configured addresses join the set's, a VM's
// ipconfig addresses never do.
func TestIPFilter(t *testing.T) {
	r := importFiles(t, map[string]string{
		"firewall/100.fw": "[OPTIONS]\nenable: 1\n\n[IPSET ipfilter-net0]\n192.0.2.10\n",
		"firewall/101.fw": "[OPTIONS]\nenable: 1\nipfilter: 1\n",
		"firewall/200.fw": "[OPTIONS]\nenable: 1\n\n[IPSET ipfilter-net0]\n192.0.2.50\n",
		"nodes/pve1/qemu-server/100.conf": "ipconfig0: ip=192.0.2.99/24\nnet0: virtio=BC:24:11:00:01:00,bridge=vmbr0,firewall=1\n" +
			"net1: virtio=BC:24:11:00:01:01,bridge=vmbr0,firewall=1\nipconfig1: ip=192.0.2.98/24\n",
		"nodes/pve1/qemu-server/101.conf": "ipconfig0: ip=192.0.2.11/24\nnet0: virtio=BC:24:11:00:01:10,bridge=vmbr0,firewall=1\n",
		"nodes/pve1/lxc/200.conf":         "net0: name=eth0,bridge=vmbr0,hwaddr=BC:24:11:00:02:00,ip=192.0.2.20/24,firewall=1\n",
	})
	wantField(t, r.NICs["tap100i0"], "ipFilter", true)
	wantField(t, r.NICs["tap100i0"], "ips", []string{"192.0.2.10"})
	// No set, no ipfilter option: no filter; the config's address is kept.
	wantField(t, r.NICs["tap100i1"], "ipFilter", false)
	wantField(t, r.NICs["tap100i1"], "ips", []string{"192.0.2.98"})
	// ipfilter: 1 without a set: a VM sends from its link-local address only.
	wantField(t, r.NICs["tap101i0"], "ipFilter", true)
	wantField(t, r.NICs["tap101i0"], "ips", nil)
	wantField(t, r.NICs["veth200i0"], "ipFilter", true)
	wantField(t, r.NICs["veth200i0"], "ips", []string{"192.0.2.50", "192.0.2.20"})
	for port, nic := range r.NICs {
		if err := Validate(r.Base, nic, port, ruleset.Limits); err != nil {
			t.Errorf("%s: %v", port, err)
		}
	}
}

// TestHostGroupIface: a host's "GROUP name -i IFACE" checks the group's
// rules for that interface only.
func TestHostGroupIface(t *testing.T) {
	r := importFiles(t, map[string]string{
		"firewall/cluster.fw": "[OPTIONS]\nenable: 1\n\n[group web]\nIN HTTP(ACCEPT)\nOUT ACCEPT -p tcp -dport 25\n",
		"nodes/pve1/host.fw":  "[RULES]\nGROUP web -i vmbr1\n|GROUP web -i vmbr2\nGROUP web\n",
	})
	rules := r.Base["host"].(map[string]any)["rules"].(map[string]any)
	in := rules["in"].([]map[string]any)[1:] // after IGMP
	want := []map[string]any{
		{"action": "ACCEPT", "macro": "HTTP", "iface": "vmbr1", "comment": "group web"},
		{"action": "ACCEPT", "macro": "HTTP", "iface": "vmbr2", "comment": "group web", "enable": false},
		{"group": "web"},
	}
	if !reflect.DeepEqual(in[:3], want) {
		t.Errorf("host in rules %v, want %v", in[:3], want)
	}
	out := rules["out"].([]map[string]any)[1:]
	if out[0]["iface"] != "vmbr1" || out[0]["dport"] != "25" {
		t.Errorf("host out rule %v, want the group's on vmbr1", out[0])
	}
	if len(r.Problems) != 0 {
		t.Errorf("problems: %v", r.Problems)
	}
}

// TestRuleAsPVE: rules convert as Proxmox VE reads them (names of
// /etc/services and /etc/protocols, ICMP type names and the old -dport
// form), and those it refuses are refused.
func TestRuleAsPVE(t *testing.T) {
	s := &scope{aliases: map[string]string{"dc/db": "dc-db"}, sets: map[string]string{"dc/web": "dc-web"}}
	for _, c := range []struct {
		line string
		want map[string]any // nil: refused
		host bool
	}{
		{line: "IN ACCEPT -p tcp -dport http-alt,ldaps,8000:8100", want: map[string]any{"proto": "tcp", "dport": "8080,636,8000:8100"}},
		{line: "IN ACCEPT -p tcp -dport imap"}, // an alias of imap2
		{line: "IN ACCEPT -p udp -sport domain", want: map[string]any{"proto": "udp", "sport": "53"}},
		{line: "IN ACCEPT -p icmp -dport echo-request", want: map[string]any{"proto": "icmp", "icmpType": "echo-request"}},
		{line: "IN ACCEPT -p icmp -dport 8", want: map[string]any{"proto": "icmp", "icmpType": "8"}},
		{line: "IN ACCEPT -p icmp -icmp-type 8"}, // -icmp-type takes names only
		{line: "IN ACCEPT -p icmp -icmp-type any", want: map[string]any{"proto": "icmp"}},
		{line: "IN ACCEPT -p icmp -icmp-type host-prohibited", want: map[string]any{"proto": "icmp", "icmpType": "3/10"}},
		{line: "IN ACCEPT -p icmpv6 -icmp-type neighbour-solicitation", want: map[string]any{"proto": "icmpv6", "icmpType": "neighbour-solicitation"}},
		{line: "IN ACCEPT -p icmpv6 -icmp-type host-prohibited"}, // an IPv4 name
		{line: "IN ACCEPT -p icmp -source 2001:db8::1"},
		{line: "IN ACCEPT -p gre", want: map[string]any{"proto": "47"}},
		{line: "IN ACCEPT -p 47", want: map[string]any{"proto": "47"}},
		{line: "IN ACCEPT -p 254"}, // no such protocol
		{line: "IN ACCEPT -p Tcp"},
		{line: "IN ACCEPT -p gre -dport 80"},
		{line: "IN ACCEPT -dport 80"},
		{line: "IN ACCEPT -source 192.0.2.1,192.0.2.0/28", want: map[string]any{"source": "192.0.2.1,192.0.2.0/28"}},
		{line: "IN ACCEPT -source 192.0.2.1-192.0.2.9", want: map[string]any{"source": "192.0.2.1-192.0.2.9"}},
		{line: "IN ACCEPT -source 192.0.2.1-192.0.2.9,192.0.2.20"},
		{line: "IN ACCEPT -source 192.0.2.1,2001:db8::1"},
		{line: "IN ACCEPT -source 192.0.2.1 -dest 2001:db8::1"},
		{line: "IN ACCEPT -source db,192.0.2.1"},
		{line: "IN ACCEPT -source +web,+web"},
		{line: "IN ACCEPT -source 192.0.2.1/24"},
		{line: "IN ACCEPT -source dc/db -dest +dc/web", want: map[string]any{"source": "dc-db", "dest": "+dc-web"}},
		{line: "IN ACCEPT -i eth0"},
		{line: "IN ACCEPT -log true"},
		{line: "IN ACCEPT -log INFO"},
		{line: "IN ACCEPT -log info", want: map[string]any{"log": "info"}},
		{line: "IN ACCEPT -i net0", want: map[string]any{}},
		{line: "IN ACCEPT -i eth0", want: map[string]any{"iface": "eth0"}, host: true},
	} {
		r, err := parseRule(c.line, 1)
		if err != nil {
			t.Fatalf("%s: %v", c.line, err)
		}
		s.host = c.host
		o, err := s.convertRule("x.fw", r, nil)
		if c.want == nil {
			if err == nil || !strings.Contains(err.Error(), "Proxmox VE skips it") {
				t.Errorf("%s: %v, want refused as Proxmox VE refuses it", c.line, err)
			}
			continue
		}
		c.want["action"] = "ACCEPT"
		if err != nil || !reflect.DeepEqual(o.fields, c.want) {
			t.Errorf("%s: %v %v, want %v", c.line, o.fields, err, c.want)
		}
	}
}

// TestHostImplicitRules: the host rules Proxmox VE adds of its own, in
// its order: IGMP first, then the rules, the host's connections to
// local_network's management ports (out), corosync, the policy.
func TestHostImplicitRules(t *testing.T) {
	r := importFiles(t, map[string]string{
		"firewall/cluster.fw": "[OPTIONS]\nenable: 1\npolicy_out: DROP\n",
		"nodes/pve1/host.fw":  "[RULES]\nOUT ACCEPT -p udp -dport 53\n",
		"corosync.conf":       "nodelist {\n node {\n ring0_addr: 192.0.2.1\n }\n}\n",
	})
	out := r.Base["host"].(map[string]any)["rules"].(map[string]any)["out"].([]map[string]any)
	var got []string
	for _, o := range out {
		got = append(got, fmt.Sprintf("%v %v %v %v", o["action"], o["proto"], o["dport"], o["dest"]))
	}
	want := []string{"ACCEPT igmp <nil> <nil>", "ACCEPT udp 53 <nil>", "ACCEPT tcp 8006,22,5900:5999,3128 192.0.2.0/24",
		"ACCEPT udp 5404:5405 +dc-corosync", "DROP <nil> <nil> <nil>"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("host out rules\n%q, want\n%q", got, want)
	}
	if err := Validate(r.Base, map[string]any{"bridge": "vmbr0", "macFilter": false, "ipFilter": false}, "", ruleset.Limits); err != nil {
		t.Error(err)
	}
}

// TestReported: what Proxmox VE does that tapfw cannot, and sections it
// does not read, are reported at their lines.
func TestReported(t *testing.T) {
	r := importFiles(t, map[string]string{
		"firewall/cluster.fw": "[OPTIONS]\nenable: 1\nebtables: 0\n\n[group web]\nIN HTTP(ACCEPT)\n",
		"nodes/pve1/host.fw":  "[OPTIONS]\ntcpflags: 1\nnf_conntrack_helpers: ftp\n\n[ALIASES]\nx 192.0.2.9\n\n[IPSET y]\n192.0.2.8\n",
		"firewall/100.fw": "[OPTIONS]\nenable: 1\nlayer2_protocols: ipv4,arp\n\n[group own]\nIN HTTP(ACCEPT)\n\n" +
			"[RULES]\nGROUP web -i net1\n",
		"nodes/pve1/qemu-server/100.conf": "net0: virtio=BC:24:11:00:01:00,bridge=vmbr0,firewall=1\n" +
			"net1: virtio=BC:24:11:00:01:01,bridge=vmbr0,firewall=1\n",
	})
	for _, want := range []struct{ at, text string }{
		{"firewall/cluster.fw:3:", "ebtables: 0"},
		{"nodes/pve1/host.fw:2:", "tcpflags: tapfw checks the host's traffic only"},
		{"nodes/pve1/host.fw:3:", "the host's own connections get no helper"},
		{"nodes/pve1/host.fw:3:", "tap100i0 gets none"},
		{"nodes/pve1/host.fw:6:", "alias x"},
		{"nodes/pve1/host.fw:8:", "[IPSET y]"},
		{"firewall/100.fw:3:", "layer2_protocols"},
		{"firewall/100.fw:5:", "[group own]"},
	} {
		if !hasProblem(r, want.at, want.text) {
			t.Errorf("no problem %s ... %s in %v", want.at, want.text, r.Problems)
		}
	}
	if _, ok := r.NICs["tap100i0"]["l2Protocols"]; ok {
		t.Error("l2Protocols imported with ebtables: 0")
	}
	// The GROUP rule with -i net1 is NIC 1's only.
	if in := r.NICs["tap100i0"]["rules"].(map[string]any)["in"]; in != nil {
		t.Errorf("tap100i0 in rules %v, want none", in)
	}
	if in := r.NICs["tap100i1"]["rules"].(map[string]any)["in"]; !reflect.DeepEqual(in, []map[string]any{{"group": "web"}}) {
		t.Errorf("tap100i1 in rules %v, want the group", in)
	}
}

// TestOptionValues: policies and log levels in any case; an empty log
// level logs nothing; a value Proxmox VE cannot read is its default.
func TestOptionValues(t *testing.T) {
	r := importFiles(t, map[string]string{
		"firewall/cluster.fw":             "[OPTIONS]\nenable: 1\npolicy_out: allow\n",
		"nodes/pve1/host.fw":              "[OPTIONS]\nlog_level_in: INFO\n",
		"firewall/100.fw":                 "[OPTIONS]\nenable: 1\npolicy_in: reject\npolicy_out: nope\nlog_level_in:\nlog_level_out: Debug\n",
		"nodes/pve1/qemu-server/100.conf": "net0: virtio=BC:24:11:00:01:00,bridge=vmbr0,firewall=1\n",
	})
	nic := r.NICs["tap100i0"]
	wantField(t, nic, "policyIn", "REJECT")
	wantField(t, nic, "policyOut", "ACCEPT")
	wantField(t, nic, "logLevelIn", "nolog")
	wantField(t, nic, "logLevelOut", "debug")
	host := r.Base["host"].(map[string]any)
	wantField(t, host, "logLevelIn", "info")
	out := host["rules"].(map[string]any)["out"].([]map[string]any)
	wantField(t, out[len(out)-1], "action", "ACCEPT")
	for _, at := range []string{"firewall/cluster.fw:3:", "firewall/100.fw:4:"} {
		if !hasProblem(r, at, "is not ACCEPT, DROP or REJECT") {
			t.Errorf("no problem at %s: %v", at, r.Problems)
		}
	}
}

// TestBadAliasAndNICFlag: an alias Proxmox VE cannot read is reported
// and left out, not the whole import; firewall=on is firewall=1.
func TestBadAliasAndNICFlag(t *testing.T) {
	r := importFiles(t, map[string]string{
		"firewall/cluster.fw":             "[OPTIONS]\nenable: 1\n\n[ALIASES]\nbad not-an-address\ngood 192.0.2.7\n",
		"firewall/100.fw":                 "[OPTIONS]\nenable: 1\n\n[RULES]\nIN ACCEPT -source good\n",
		"nodes/pve1/qemu-server/100.conf": "net0: virtio=BC:24:11:00:01:00,bridge=vmbr0,firewall=on\n",
	})
	if !hasProblem(r, "firewall/cluster.fw:5:", "alias bad") {
		t.Errorf("no problem for alias bad: %v", r.Problems)
	}
	nic, ok := r.NICs["tap100i0"]
	if !ok {
		t.Fatalf("tap100i0 not written: %v", r.Problems)
	}
	wantField(t, nic, "policyIn", "DROP")
	wantField(t, nic, "rules", map[string]any{"in": []map[string]any{{"action": "ACCEPT", "source": "dc-good"}}})
}

// TestSetEntriesAsPVE: ipset entries Proxmox VE refuses (a range, a
// zero prefix) are reported and left out.
func TestSetEntriesAsPVE(t *testing.T) {
	r := importFiles(t, map[string]string{
		"firewall/cluster.fw": "[OPTIONS]\nenable: 1\n\n[IPSET web]\n192.0.2.1-192.0.2.9\n0.0.0.0/0\n192.0.2.10/24 # host bits: the network\n",
	})
	if got := r.Base["ipsets"].(map[string][]string)["dc-web"]; !reflect.DeepEqual(got, []string{"192.0.2.0/24"}) {
		t.Errorf("dc-web = %v, want [192.0.2.0/24]", got)
	}
	for _, at := range []string{"firewall/cluster.fw:5:", "firewall/cluster.fw:6:"} {
		if !hasProblem(r, at, "Proxmox VE skips it too") {
			t.Errorf("no problem at %s: %v", at, r.Problems)
		}
	}
}
