package explain

import (
	"github.com/tapfw/tapfw/pkg/netfilter"
	"net/netip"
	"testing"
)

// TestMark: MARK changes the packet's mark as xt_MARK does, and -m mark
// reads it later in the walk: the shape of tapfw's security groups, whose
// OUT chain marks what it allows for the tap's OUT chain to return.
func TestMark(t *testing.T) {
	save := `*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:TAP-OUT - [0:0]
:G-OUT - [0:0]
:ALLOW - [0:0]
:ALLOWED - [0:0]
-A FORWARD -j TAP-OUT
-A FORWARD -m mark --mark 0x10000000/0x10000000 -j DROP
-A FORWARD -p tcp -j ACCEPT
-A TAP-OUT -j G-OUT
-A TAP-OUT -m mark --mark 0x10000000/0x10000000 -g ALLOWED
-A TAP-OUT -j DROP
-A G-OUT -p tcp -m tcp --dport 80 -g ALLOW
-A ALLOW -j MARK --set-xmark 0x10000000/0x10000000
-A ALLOWED -j MARK --set-xmark 0x0/0x10000000
COMMIT
`
	rs, err := netfilter.ParseSave([]byte(save))
	if err != nil {
		t.Fatal(err)
	}
	p := Packet{Family: 4, Hook: "FORWARD", InIface: "br0", OutIface: "br0", Src: netip.MustParseAddr("192.0.2.1"), Dst: netip.MustParseAddr("192.0.2.2"), Proto: "tcp", SPort: 4000, DPort: 80, ICMPType: -1, ICMPCode: -1}
	r, err := Explain(rs, nil, p)
	if err != nil {
		t.Fatal(err)
	}
	// Allowed by the group: marked, returned, unmarked, then accepted.
	if r.Verdict != Accept || r.Decisive == nil || r.Decisive.Chain != "FORWARD" || r.Decisive.Index != 3 || len(r.Uncertain) > 0 {
		t.Errorf("port 80:\n%s", r.Text())
	}
	p.DPort = 22
	if r, _ = Explain(rs, nil, p); r.Verdict != Drop || r.Decisive.Chain != "TAP-OUT" || r.Decisive.Index != 3 {
		t.Errorf("port 22:\n%s", r.Text())
	}
	// A mark the packet brings along is seen.
	p.DPort, p.Mark = 80, 0x30000000
	if r, _ = Explain(rs, nil, p); r.Verdict != Accept {
		t.Errorf("port 80 with mark 0x30000000:\n%s", r.Text())
	}
	if _, err := parseMark("0x1/0xzz"); err == nil {
		t.Error("bad mask accepted")
	}
}
