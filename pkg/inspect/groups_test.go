package inspect

import (
	"net"
	"net/netip"
	"testing"

	"github.com/tapfw/tapfw/pkg/explain"
)

// TestGroupMarkArrivingSet: a packet that reaches tapfw with the group
// mark bit already set (someone else's mark) still meets the tap's own
// rules: the tap's OUT chain clears the bit before its groups.
func TestGroupMarkArrivingSet(t *testing.T) {
	s := dualstack(t)
	mac, _ := net.ParseMAC("02:00:00:00:02:01")
	p := explain.Packet{Family: 4, Hook: "FORWARD", InIface: "vmbr6", OutIface: "vmbr6", PhysIn: "tap201i0", PhysOut: "uplink0", Bridged: true,
		SrcMAC: mac, Src: netip.MustParseAddr("192.0.2.201"), Dst: netip.MustParseAddr("203.0.113.5"), Proto: "tcp", SPort: 40000, DPort: 25,
		ICMPType: -1, ICMPCode: -1}
	for _, mark := range []uint32{0, 0x10000000, 0xffffffff} {
		p.Mark = mark
		r, err := explain.Explain(s.V4, s.Sets, p)
		if err != nil {
			t.Fatal(err)
		}
		if r.Verdict != explain.Reject || r.Decisive == nil || r.Decisive.Chain != "TFW-T-tap201i0-OUT" {
			t.Errorf("mark %#x: mail out of tap201i0 is not rejected by its out rule 1:\n%s", mark, r.Text())
		}
	}
}
