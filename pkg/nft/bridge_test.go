package nft

import (
	"strings"
	"testing"
)

// A bridge's forwarded packets skip the routed chain only when no VLAN
// pattern of another bridge ("<bridge>.*") can match its name.
func TestBridgedKey(t *testing.T) {
	for _, c := range []struct {
		name string
		ok   bool
	}{{"vmbr0", true}, {"br-lan", true}, {"vmbr0.5", false}, {"", false}} {
		key, ok := bridgedKey(c.name)
		if ok != c.ok {
			t.Errorf("%q: skip %v, want %v", c.name, ok, c.ok)
			continue
		}
		if ok && (len(key) != 32 || string(key[:16]) != string(key[16:]) || !strings.HasPrefix(string(key), c.name+"\x00")) {
			t.Errorf("%q: key %q", c.name, key)
		}
	}
}

// After an ADD the bridge's packets skip the routed chain by one lookup:
// its element is in the set the forward hook's rule tests, a second ADD
// adds no second one, and it stays when a tap goes (as the bridge's
// rules in the routed chain do).
func TestKernelBridgedElement(t *testing.T) {
	p, err := Build(sampleConfig(t, "seed", "tap110i0"), DefaultMarks)
	if err != nil {
		t.Fatal(err)
	}
	k := Kernel{Marks: DefaultMarks}
	ns := inNS(t, func() error { return k.Apply(p) })
	set := func() string {
		out, err := ns.Run("nft", "list", "set", "inet", Table, SetBridged)
		if err != nil {
			t.Fatal(err)
		}
		return string(out)
	}
	if got := set(); !strings.Contains(got, `"vmbr0" . "vmbr0"`) {
		t.Fatalf("set after ADD:\n%s", got)
	}
	if err := ns.Do(func() error { return k.Apply(p) }); err != nil {
		t.Fatal(err)
	}
	if got := set(); strings.Count(got, `"vmbr0" . "vmbr0"`) != 1 {
		t.Fatalf("set after a second ADD:\n%s", got)
	}
	if err := ns.Do(func() error { return k.Remove("tap110i0") }); err != nil {
		t.Fatal(err)
	}
	if got := set(); !strings.Contains(got, `"vmbr0" . "vmbr0"`) {
		t.Fatalf("set after DEL:\n%s", got)
	}
	out, err := ns.Run("nft", "list", "chain", "inet", Table, ChainRejectFwd)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), "iifname . oifname != @"+SetBridged+" jump "+ChainRouted) {
		t.Fatalf("forward chain:\n%s", out)
	}
}
