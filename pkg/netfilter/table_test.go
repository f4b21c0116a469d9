package netfilter

import (
	"reflect"
	"testing"
)

// ParseSave reads the policies and counters of `iptables-save -c`: a rule
// without counters counts zero, other tables are skipped.
func TestParseSaveCounters(t *testing.T) {
	tb, err := ParseSave([]byte("*nat\n:INPUT ACCEPT [7:7]\n-A INPUT -j ACCEPT\nCOMMIT\n" +
		"*filter\n:INPUT DROP [1:2]\n:FORWARD ACCEPT [0:0]\n:X - [0:0]\n" +
		"[3:4] -A X -j ACCEPT\n-A X -j DROP\n[5:6] -A INPUT -j X\nCOMMIT\n"))
	if err != nil {
		t.Fatal(err)
	}
	if tb.Counter("X", 0) != (Counter{3, 4}) || tb.Counter("X", 1) != (Counter{}) {
		t.Errorf("X counters %v", tb.Counters["X"])
	}
	if tb.Counter("INPUT", 0) != (Counter{5, 6}) || tb.Counter("INPUT", 1) != (Counter{}) {
		t.Errorf("INPUT counters %v", tb.Counters["INPUT"])
	}
	if want := map[string]string{"INPUT": "DROP", "FORWARD": "ACCEPT"}; !reflect.DeepEqual(tb.Policies, want) {
		t.Errorf("policies %v, want %v", tb.Policies, want)
	}
	if tb.PolicyCounters["INPUT"] != (Counter{1, 2}) {
		t.Errorf("INPUT policy counter %v", tb.PolicyCounters["INPUT"])
	}
	// A counted rule after an uncounted one keeps its place.
	mixed, err := ParseSave([]byte("*filter\n:X - [0:0]\n-A X -j DROP\n[7:8] -A X -j ACCEPT\nCOMMIT\n"))
	if err != nil || mixed.Counter("X", 0) != (Counter{}) || mixed.Counter("X", 1) != (Counter{7, 8}) {
		t.Errorf("mixed counters %v, %v", mixed.Counters["X"], err)
	}
	if want := []string{"INPUT", "FORWARD", "X"}; !reflect.DeepEqual(tb.Order, want) || len(tb.Chains["X"]) != 2 {
		t.Errorf("table %+v", tb)
	}
	for _, bad := range []string{
		"*filter\n:X - [0:0]\n[x:1] -A X -j ACCEPT\nCOMMIT\n",
		"*filter\n:X - [0:0]\n[1:1]\nCOMMIT\n",
		"*filter\n:X - [0:0]\n[1:1] -j ACCEPT\nCOMMIT\n",
		"*filter\n:INPUT QUEUE [0:0]\nCOMMIT\n",
		"*filter\n:INPUT ACCEPT [1]\nCOMMIT\n",
		"*filter\n-A NOPE -j DROP\nCOMMIT\n",
	} {
		if _, err := ParseSave([]byte(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}
