package harness

import (
	"context"
	"net/netip"
	"time"

	"github.com/tapfw/tapfw/cmd/tapfw-bench/internal/report"
	"github.com/tapfw/tapfw/pkg/inspect"
	"github.com/tapfw/tapfw/pkg/netfilter"
	"github.com/tapfw/tapfw/pkg/testnet"
)

// RunIn runs argv inside ns with stdin and extra environment, forked
// from a thread in the namespace (testnet.RunIn), and measures the process.
func RunIn(ctx context.Context, ns *testnet.NS, stdin []byte, env []string, argv ...string) ([]byte, report.Sample, error) {
	out, u, err := testnet.RunIn(ctx, ns, stdin, env, argv...)
	ms := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e6 }
	return out, report.Sample{WallMs: ms(u.Wall), UserMs: ms(u.User), SysMs: ms(u.Sys), MaxRSSKB: u.MaxRSSKB, RSSReported: u.RSSReported}, err
}

// NSRun runs a command inside ns (for setup and reading state, not timed).
func NSRun(ctx context.Context, ns *testnet.NS, stdin []byte, argv ...string) ([]byte, error) {
	out, _, err := RunIn(ctx, ns, stdin, nil, argv...)
	return out, err
}

// IptablesCmd is the iptables binary of a backend mode.
func IptablesCmd(mode string) string {
	switch mode {
	case "nft":
		return "iptables-nft"
	case "legacy":
		return "iptables-legacy"
	}
	return "iptables"
}

// Iptables is the run's iptables binary.
func (h *Harness) Iptables() string { return IptablesCmd(h.O.Iptables) }

// ReadTable reads the filter table in ns with iptables-save, with the
// rules' counters when counters is set.
func (h *Harness) ReadTable(ctx context.Context, ns *testnet.NS, counters bool) (*netfilter.Table, error) {
	args := []string{h.Iptables() + "-save", "-t", "filter"}
	if counters {
		args = append(args, "-c")
	}
	out, err := NSRun(ctx, ns, nil, args...)
	if err != nil {
		return nil, err
	}
	return netfilter.ParseSave(out)
}

// CountRules counts the rules of the filter table in ns.
func (h *Harness) CountRules(ctx context.Context, ns *testnet.NS) (int, error) {
	t, err := h.ReadTable(ctx, ns, false)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, specs := range t.Chains {
		n += len(specs)
	}
	return n, nil
}

// ReadSets reads tapfw's ipsets in ns over netlink, as the plugin does, on
// a thread inside ns.
func ReadSets(ns *testnet.NS) (map[string][]netip.Prefix, error) {
	var sets map[string][]netip.Prefix
	err := ns.Do(func() error {
		var err error
		sets, err = netfilter.NetlinkSets{}.List()
		return err
	})
	return sets, err
}

// LocalTable reads the local routing table of ns, for explain.
func LocalTable(ns *testnet.NS) (map[netip.Addr]string, error) {
	var t map[netip.Addr]string
	err := ns.Do(func() error {
		var err error
		t, err = inspect.LocalTable()
		return err
	})
	return t, err
}
