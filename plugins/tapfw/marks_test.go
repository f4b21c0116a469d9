package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tapfw/tapfw/pkg/testnet"
)

// TestForeignMarks: another program marks every packet with bits of its
// own (those tapfw uses by default) before tapfw's chains and counts them
// after; with tapfw's bits moved elsewhere (TAPFW_MARKS), the taps'
// verdicts hold (an allowed connection and its replies pass, a closed
// port is dropped, a REJECT answers at once) and every packet still
// carries the other program's bits. A call with other bits than the
// installed ones is refused and changes nothing.
func TestForeignMarks(t *testing.T) {
	testnet.NeedKernel(t)
	be := testBackend{name: "nftables", env: []string{"TAPFW_BACKEND=nftables", "TAPFW_MARKS=0x0001f000"}, tool: "nft"}
	h, a, b := l2net(t, be)
	const foreign = "0x1f000001"
	script := fmt.Sprintf(`table bridge foreign {
	chain pre { type filter hook prerouting priority -400; policy accept; meta mark set meta mark | %[1]s; }
	chain forward {
		type filter hook forward priority 100; policy accept;
		meta mark & %[1]s == %[1]s counter comment "kept"
		counter comment "all"
	}
}
`, foreign)
	path := filepath.Join(t.TempDir(), "foreign.nft")
	if err := os.WriteFile(path, []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	h.run("nft", "-f", path)
	serveTCP(t, []string{"80", "22", "23"}, a.ns)
	h.mustCall(testnet.Call{Command: "ADD", ContainerID: "vm-" + a.port, IfName: a.port,
		Config: []byte(fmt.Sprintf(`{"cniVersion":"1.0.0","name":"l2","type":"tapfw","bridge":"vmbr0","mac":%q,"ips":[%q],
		"rules":{"in":[{"action":"ACCEPT","proto":"tcp","dport":"80"},{"action":"REJECT","proto":"tcp","dport":"23"}]}}`, a.mac, a.ip4))})
	h.mustCall(b.conf(""))
	if s := h.run("nft", "list", "table", "inet", "tapfw"); !strings.Contains(s, "0xfffe0fff") {
		t.Errorf("tapfw does not clear only its own bits (0x0001f000):\n%s", s)
	}
	if !testnet.TCPProbe(b.ns, a.ip4.String()+":80", 2*time.Second) {
		t.Error("b to a's allowed port 80 failed")
	}
	if testnet.TCPProbe(b.ns, a.ip4.String()+":22", 500*time.Millisecond) {
		t.Error("b to a's closed port 22 passed")
	}
	start := time.Now()
	if testnet.TCPProbe(b.ns, a.ip4.String()+":23", 3*time.Second) || time.Since(start) > 2*time.Second {
		t.Errorf("b to a's rejected port 23 was not refused at once (%v)", time.Since(start))
	}
	// A packet forwarded while the counters are read may be in one only:
	// read until they settle; a packet that lost the bits never counts.
	var kept, all int
	for end := time.Now().Add(2 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		listing := h.run("nft", "list", "table", "bridge", "foreign")
		kept, all = foreignCounter(t, listing, "kept"), foreignCounter(t, listing, "all")
		if (all > 0 && kept == all) || time.Now().After(end) {
			break
		}
	}
	if all == 0 || kept != all {
		t.Errorf("the other program's bits: %d of %d forwarded packets kept them", kept, all)
	}
	// The installed tables use 0x0001f000: a call with the defaults is
	// refused, naming both.
	before := h.state()
	other := b.conf("")
	other.Env = []string{"TAPFW_MARKS=0x1f000000"}
	if _, e := h.call(other); e == nil || !strings.Contains(e.Msg, "0x0001f000") || !strings.Contains(e.Msg, "0x1f000000") {
		t.Errorf("ADD with other marks: %+v, want a refusal naming both", e)
	}
	if after := h.state(); after != before {
		t.Errorf("the refused ADD changed the kernel:\n%s", after)
	}
}

// foreignCounter is the packets counted by the rule with comment what in
// a listing of the foreign bridge table.
func foreignCounter(t *testing.T, listing, what string) int {
	t.Helper()
	for _, l := range strings.Split(listing, "\n") {
		if !strings.Contains(l, `comment "`+what+`"`) {
			continue
		}
		_, rest, _ := strings.Cut(l, "counter packets ")
		var n int
		if _, err := fmt.Sscanf(rest, "%d", &n); err != nil {
			t.Fatalf("%s: %v", l, err)
		}
		return n
	}
	t.Fatalf("no rule %q in table bridge foreign", what)
	return 0
}
