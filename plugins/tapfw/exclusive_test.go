package main

import (
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
			// auto keeps the iptables backend where it holds the rules;
			// where nftables holds them, auto (iptables, until it picks
			// nftables by itself) is refused as well.
			auto := b
			auto.Env = []string{"TAPFW_BACKEND=auto"}
			if c.holder.nftables() {
				if _, e := h.call(auto); e == nil || !strings.Contains(e.Msg, "tapfw flush") {
					t.Errorf("auto ADD while nftables holds the rules: %+v, want a refusal", e)
				}
			} else {
				h.mustCall(auto)
				if s := h.state(); !strings.Contains(s, "TFW-T-tap111i0-IN") {
					t.Errorf("auto did not keep the iptables backend:\n%s", s)
				}
				auto.Command = "DEL"
				h.mustCall(auto)
			}
			del := a
			del.Command = "DEL"
			h.mustCall(del)
			h.mustCall(b)
		})
	}
}
