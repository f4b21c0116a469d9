package taps

import (
	"encoding/json"

	"github.com/tapfw/tapfw/pkg/config"
	"github.com/tapfw/tapfw/pkg/ruleset"
	"testing"
)

func TestFillerTaps(t *testing.T) {
	a, b := Filler(0, "vmbr0"), Filler(len(fillerAddrs), "vmbr1")
	if a.Name != "tap1000i0" || a.IPs[0] != "198.51.100.1" || a.ContainerID != "vm1000" {
		t.Errorf("first filler %+v", a)
	}
	// Past the documentation ranges the addresses come round again.
	if b.IPs[0] != a.IPs[0] || b.MAC == a.MAC || b.Name == a.Name {
		t.Errorf("%+v and %+v", a, b)
	}
	if p := a.Port(); p.Tap != a.Name || p.IP.String() != a.IPs[0] || p.MAC.String() != a.MAC {
		t.Errorf("port %+v", p)
	}
}

func TestOnlyVMsAllowTheBenchsPackets(t *testing.T) {
	var conf struct {
		Rules Rules `json:"rules"`
	}
	vm := VM(3, "vmbr0", VMAMAC, VMAIP)
	if err := json.Unmarshal(vm.PluginConfig(), &conf); err != nil {
		t.Fatal(err)
	}
	in, out := conf.Rules.In, conf.Rules.Out
	if n, m := len(in), len(out); n != len(UserIn)+2 || in[n-2] != BenchRule || in[n-1] != IperfRule ||
		m != len(UserOut)+2 || out[m-2] != BenchRule || out[m-1] != IperfRule {
		t.Errorf("VM rules %+v", conf.Rules)
	}
	if r := Filler(3, "vmbr0").UserRules(); len(r.In) != len(UserIn) || len(r.Out) != len(UserOut) {
		t.Errorf("filler rules %+v", r)
	}
}

// The plugin's own parser and validation accept every config the
// benchmark sends.
func TestThePluginAcceptsTheConfigs(t *testing.T) {
	for _, s := range []Spec{Filler(0, "vmbr0"), Filler(4321, "vmbr3"), VM(7, "vmbr0", VMBMAC, VMBIP)} {
		conf, err := config.Parse(s.PluginConfig())
		if err != nil {
			t.Fatalf("%s: %v", s.Name, err)
		}
		env := config.Env{ContainerID: s.ContainerID, IfName: s.Name}
		if _, err := config.Resolve(conf, ruleset.Limits, env, nil, func(string) (string, error) { return s.Bridge, nil }); err != nil {
			t.Errorf("%s: %v", s.Name, err)
		}
	}
}
