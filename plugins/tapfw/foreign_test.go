package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tapfw/tapfw/pkg/testnet"
)

// foreignTables are another program's nftables tables, with base chains
// at the hooks and priorities tapfw's own use: each drops one port.
const foreignTables = `table bridge foreign {
	chain pre { type filter hook prerouting priority 200; policy accept; tcp dport 9996 drop; }
	chain forward { type filter hook forward priority -200; policy accept; tcp dport 9999 drop; }
}
table inet foreign {
	chain input { type filter hook input priority 0; policy accept; tcp dport 9998 drop; }
}
`

// TestForeignTablesDecide: foreign nftables tables with base chains at
// tapfw's hooks and priorities, and a foreign iptables rule (in mangle),
// keep deciding their own packets while tapfw's rules are installed, and
// are byte-identical after tapfw's last DEL.
func TestForeignTablesDecide(t *testing.T) {
	testnet.NeedKernel(t)
	forEachBackend(t, testForeignTablesDecide)
}

func testForeignTablesDecide(t *testing.T, be testBackend) {
	h, a, b := l2net(t, be)
	path := filepath.Join(t.TempDir(), "foreign.nft")
	if err := os.WriteFile(path, []byte(foreignTables), 0o644); err != nil {
		t.Fatal(err)
	}
	h.run("nft", "-f", path)
	// In a table of its own: in filter's INPUT a tap's ACCEPT (from
	// tapfw's hook, first) would end the chain before it.
	h.run("iptables", "-t", "mangle", "-A", "INPUT", "-p", "tcp", "--dport", "9997", "-j", "DROP")
	foreign := func() string {
		return h.run("nft", "list", "table", "bridge", "foreign") + h.run("nft", "list", "table", "inet", "foreign") + h.run("iptables", "-t", "mangle", "-S", "INPUT")
	}
	before := foreign()
	serveTCP(t, []string{"80", "9996", "9999"}, a.ns)
	serveTCP(t, []string{"80", "9997", "9998"}, h.ns)
	h.mustCall(a.conf(""))
	h.mustCall(b.conf(""))
	host := "192.0.2.31"
	for _, c := range []struct {
		to   string
		pass bool
	}{
		{a.ip4.String() + ":80", true},
		{a.ip4.String() + ":9996", false},
		{a.ip4.String() + ":9999", false},
		{host + ":80", true},
		{host + ":9997", false},
		{host + ":9998", false},
	} {
		wait := 2 * time.Second
		if !c.pass {
			wait = 500 * time.Millisecond
		}
		if got := testnet.TCPProbe(b.ns, c.to, wait); got != c.pass {
			t.Errorf("b to %s: passed %v, want %v", c.to, got, c.pass)
		}
	}
	for _, v := range []*l2vm{a, b} {
		del := v.conf("")
		del.Command = "DEL"
		h.mustCall(del)
	}
	if after := foreign(); after != before {
		t.Errorf("the foreign tables and rule changed:\n%s\n---\n%s", before, after)
	}
}
