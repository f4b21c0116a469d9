package main

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/tapfw/tapfw/pkg/testnet"
)

// TestBackendsExclusive: while one backend holds tapfw's rules, an ADD
// under the other is refused, names `tapfw flush`, and changes nothing;
// auto keeps the backend that holds them; after DEL of the last tap the
// other backend may start.
func TestBackendsExclusive(t *testing.T) {
	testnet.NeedKernel(t)
	for _, c := range []struct{ holder, other testBackend }{
		{testBackend{name: "iptables", env: []string{"TAPFW_BACKEND=iptables"}}, nftablesBE},
		{nftablesBE, testBackend{name: "iptables", env: []string{"TAPFW_BACKEND=iptables"}}},
	} {
		t.Run(c.holder.name+" holds", func(t *testing.T) {
			h := newHost(t, "tap110i0", "tap111i0")
			a := testnet.Call{Command: "ADD", ContainerID: "vm110", IfName: "tap110i0", Config: tapConf("1.0.0", ""), Env: c.holder.env}
			h.mustCall(a)
			before := h.state()
			b := testnet.Call{Command: "ADD", ContainerID: "vm111", IfName: "tap111i0",
				Config: []byte(`{"cniVersion":"1.0.0","name":"vms","type":"tapfw","mac":"02:00:00:00:01:11"}`), Env: c.other.env}
			if _, e := h.call(b); e == nil || !strings.Contains(e.Msg, "tapfw flush") {
				t.Errorf("ADD under %s while %s holds the rules: %+v, want a refusal naming tapfw flush", c.other.name, c.holder.name, e)
			}
			if after := h.state(); after != before {
				t.Errorf("the refused ADD changed the kernel:\n%s", after)
			}
			// auto keeps the backend that holds the rules.
			auto := b
			auto.Env = []string{"TAPFW_BACKEND=auto"}
			h.mustCall(auto)
			want := "TFW-T-tap111i0-IN"
			if c.holder.nftables() {
				want = "chain tfw-r-tap111i0"
			}
			if s := h.state(); !strings.Contains(s, want) {
				t.Errorf("auto did not keep the %s backend:\n%s", c.holder.name, s)
			}
			auto.Command = "DEL"
			h.mustCall(auto)
			del := a
			del.Command = "DEL"
			h.mustCall(del)
			h.mustCall(b)
		})
	}
}

// TestConfigBackend: the config's "backend" picks the backend as
// TAPFW_BACKEND does, the environment wins over it, a bad value is
// refused by name and changes nothing, and `tapfw list` says which
// backend it reads and lists the tap from it.
func TestConfigBackend(t *testing.T) {
	testnet.NeedKernel(t)
	for _, c := range []struct {
		config, env, want string
	}{
		{"nftables", "", "nftables"},
		{"iptables", "", "iptables"},
		{"nftables", "TAPFW_BACKEND=iptables", "iptables"},
		// Neither says: auto, nftables on this kernel.
		{"", "", "nftables"},
		{"auto", "", "nftables"},
	} {
		t.Run(c.config+" "+c.env, func(t *testing.T) {
			h := newHost(t, "tap110i0")
			extra := ""
			if c.config != "" {
				extra = `,"backend":"` + c.config + `"`
			}
			// An empty TAPFW_BACKEND is unset, for the plugin: the
			// test binary's own is iptables (TestMain).
			add := testnet.Call{Command: "ADD", ContainerID: "vm110", IfName: "tap110i0", Config: tapConf("1.0.0", extra),
				Env: []string{"TAPFW_BACKEND="}}
			if c.env != "" {
				add.Env = []string{c.env}
			}
			h.mustCall(add)
			mark := map[string]string{"nftables": "chain tfw-r-tap110i0", "iptables": "TFW-T-tap110i0-IN"}
			if s := h.state(); !strings.Contains(s, mark[c.want]) {
				t.Fatalf("ADD with backend %q and %q did not install with %s:\n%s", c.config, c.env, c.want, s)
			}
			out, err := h.ns.Run(append(append([]string{"env"}, add.Env...), pluginBin, "list")...)
			lines := strings.Split(string(out), "\n")
			if err != nil || len(lines) < 3 || lines[0] != "backend: "+c.want {
				t.Fatalf("tapfw list: %v\n%s", err, out)
			}
			f := strings.Fields(lines[2])
			if want := []string{"tap110i0", "vmbr0", "02:00:00:00:01:10", "192.0.2.200,fe80::ff:fe00:110", "1/0"}; len(f) < 8 || !slices.Equal(f[:5], want) ||
				!slices.Equal(f[len(f)-3:], []string{"vms", "vm110", "tap110i0"}) {
				t.Errorf("tapfw list, the tap's line %q, want %q and attached by vms vm110 tap110i0", f, want)
			}
			del := add
			del.Command = "DEL"
			h.mustCall(del)
			if s := h.state(); strings.Contains(s, "tap110i0") {
				t.Errorf("DEL left the tap:\n%s", s)
			}
		})
	}
	h := newHost(t, "tap110i0")
	before := h.state()
	_, e := h.call(testnet.Call{Command: "ADD", ContainerID: "vm110", IfName: "tap110i0", Config: tapConf("1.0.0", `,"backend":"pf"`)})
	if e == nil || !strings.Contains(e.Msg, "backend") {
		t.Errorf("ADD with backend pf: %+v, want an error naming the field", e)
	}
	if after := h.state(); after != before {
		t.Errorf("the refused ADD changed the kernel:\n%s", after)
	}
}

// TestBadBackendEnv: a bad TAPFW_BACKEND or TAPFW_MARKS fails the call
// with the CNI code for a bad environment variable, naming it, and
// changes nothing.
func TestBadBackendEnv(t *testing.T) {
	testnet.NeedKernel(t)
	h := newHost(t, "tap110i0")
	before := h.state()
	for _, env := range []string{"TAPFW_BACKEND=pf", "TAPFW_MARKS=0x3"} {
		name, _, _ := strings.Cut(env, "=")
		_, e := h.call(testnet.Call{Command: "ADD", ContainerID: "vm110", IfName: "tap110i0", Config: tapConf("1.0.0", ""), Env: []string{env}})
		if e == nil || e.Code != 4 || !strings.Contains(e.Msg, name) {
			t.Errorf("ADD with %s: %+v, want code 4 naming %s", env, e, name)
		}
	}
	if after := h.state(); after != before {
		t.Errorf("the refused ADDs changed the kernel:\n%s", after)
	}
}

// TestChooseBackend: auto keeps the backend holding tapfw's rules, else
// takes nftables where the kernel can run it, else iptables; a name is
// taken as it is, and anything else is refused.
func TestChooseBackend(t *testing.T) {
	yes := func() (bool, error) { return true, nil }
	no := func() (bool, error) { return false, nil }
	broken := func() (bool, error) { return false, errors.New("netlink: permission denied") }
	usable := func() error { return nil }
	unusable := func() error { return errors.New("br_netfilter is not loaded") }
	for _, c := range []struct {
		name string
		h    holders
		want string
	}{
		{"auto", holders{iptables: no, nftables: no, nftablesUsable: usable}, backendNFTables},
		{"", holders{iptables: no, nftables: no, nftablesUsable: usable}, backendNFTables},
		{"auto", holders{iptables: no, nftables: no, nftablesUsable: unusable}, backendIPTables},
		{"auto", holders{iptables: yes, nftables: no, nftablesUsable: usable}, backendIPTables},
		{"auto", holders{iptables: no, nftables: yes, nftablesUsable: unusable}, backendNFTables},
		{"auto", holders{iptables: yes, nftables: broken, nftablesUsable: usable}, backendIPTables},
		{"iptables", holders{iptables: no, nftables: yes, nftablesUsable: usable}, backendIPTables},
		{"nftables", holders{iptables: yes, nftables: no, nftablesUsable: unusable}, backendNFTables},
	} {
		got, err := chooseBackend(c.name, c.h)
		if err != nil || got != c.want {
			t.Errorf("chooseBackend(%q) = %q, %v; want %q", c.name, got, err, c.want)
		}
	}
	if _, err := chooseBackend("pf", holders{}); err == nil || !strings.Contains(err.Error(), `"pf"`) {
		t.Errorf("chooseBackend(pf): %v", err)
	}
}
