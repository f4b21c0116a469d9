package traffic

import "testing"

func TestSnmpFields(t *testing.T) {
	data := []byte("Ip: Forwarding DefaultTTL\nIp: 1 64\nUdp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors\nUdp: 500 2 0 7 12\nUdpLite: InDatagrams\nUdpLite: 9\n")
	v, err := snmpFields(data, "Udp:")
	if err != nil {
		t.Fatal(err)
	}
	if v["InDatagrams"] != 500 || v["RcvbufErrors"] != 12 || v["NoPorts"] != 2 {
		t.Errorf("%v", v)
	}
	if _, err := snmpFields(data, "Tcp:"); err == nil {
		t.Error("no Tcp lines, no error")
	}
}

func TestBuildCyclesTheSourcePorts(t *testing.T) {
	f := Flow{addr: make([]byte, 16)} // build points every header at it
	if err := f.build(func(sport uint16) ([]byte, error) { return []byte{byte(sport >> 8), byte(sport)}, nil }); err != nil {
		t.Fatal(err)
	}
	if f.ports != FlowPortHi-FlowPortLo+1 || len(f.pkts) != f.ports {
		t.Fatalf("%d ports, %d packets", f.ports, len(f.pkts))
	}
	if p := f.pkts[f.ports-1]; uint16(p[0])<<8|uint16(p[1]) != FlowPortHi {
		t.Errorf("last packet's port %v", p)
	}
}
