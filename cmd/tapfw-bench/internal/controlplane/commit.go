package controlplane

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/tapfw/tapfw/cmd/tapfw-bench/internal/harness"
	"github.com/tapfw/tapfw/cmd/tapfw-bench/internal/report"
	"github.com/tapfw/tapfw/pkg/nft"
)

// CommitHelperFlag makes the benchmark's binary time single-element
// commits in tapfw's bridge table; the benchmark runs itself with it
// inside the plugin's namespace.
const CommitHelperFlag = "-commit-helper"

// commitKey is the port name of the helper's elements: no tap's.
const commitKey = "bench-commit"

// commitTimes are the helper's commit times, in ms: an element of the
// dispatch map jumping to a chain (what every ADD adds: the kernel then
// validates every chain the base chains reach, through every element of
// the bound verdict maps), and a plain set element (no validation).
type commitTimes struct {
	Jump  []float64 `json:"jump"`
	Plain []float64 `json:"plain"`
}

// CommitHelper adds and takes out, args[0] times each, one element of
// the dispatch map jumping to the empty anchor chain and one element of
// the ports set, each in a transaction of its own, over netlink as the
// plugin does, and prints the additions' commit times as JSON.
func CommitHelper(args []string) int {
	n, err := strconv.Atoi(args[0])
	if len(args) != 1 || err != nil || n < 1 {
		fmt.Fprintln(os.Stderr, "commit helper: want the number of commits")
		return 2
	}
	tb := &nftables.Table{Name: nft.Table, Family: nftables.TableFamilyBridge}
	in := &nftables.Set{Table: tb, Name: nft.MapIn, IsMap: true,
		KeyType: nftables.MustConcatSetType(nftables.TypeEtherType, nftables.TypeIFName), DataType: nftables.TypeVerdict}
	ports := &nftables.Set{Table: tb, Name: nft.SetPorts, KeyType: nftables.TypeIFName}
	name := make([]byte, 16)
	copy(name, commitKey)
	var out commitTimes
	for i := 0; i < n; i++ {
		jump := nftables.SetElement{Key: nft.DispatchKey(nft.IPv4, commitKey),
			VerdictData: &expr.Verdict{Kind: expr.VerdictJump, Chain: nft.ChainAnchor}}
		d, err := commitElement(in, jump)
		if err != nil {
			fmt.Fprintf(os.Stderr, "commit helper: %v\n", err)
			return 1
		}
		out.Jump = append(out.Jump, d)
		if d, err = commitElement(ports, nftables.SetElement{Key: name}); err != nil {
			fmt.Fprintf(os.Stderr, "commit helper: %v\n", err)
			return 1
		}
		out.Plain = append(out.Plain, d)
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		return 1
	}
	return 0
}

// commitElement times the commit that adds el to s, then takes it out
// again in a transaction of its own.
func commitElement(s *nftables.Set, el nftables.SetElement) (float64, error) {
	c, err := nftables.New(nftables.AsLasting())
	if err != nil {
		return 0, err
	}
	defer c.CloseLasting()
	if err := c.SetAddElements(s, []nftables.SetElement{el}); err != nil {
		return 0, err
	}
	t := time.Now()
	if err := c.Flush(); err != nil {
		return 0, fmt.Errorf("adding to %s: %w", s.Name, err)
	}
	d := float64(time.Since(t).Microseconds()) / 1000
	if err := c.SetDeleteElements(s, []nftables.SetElement{{Key: el.Key}}); err != nil {
		return 0, err
	}
	if err := c.Flush(); err != nil {
		return 0, fmt.Errorf("taking out of %s: %w", s.Name, err)
	}
	return d, nil
}

// measureCommits runs the helper in the plugin's namespace.
func (b *bench) measureCommits(ctx context.Context, row *report.CPResult) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	out, err := harness.NSRun(ctx, b.cp, nil, exe, CommitHelperFlag, strconv.Itoa(b.h.O.Calls))
	if err != nil {
		return err
	}
	var ct commitTimes
	if err := json.Unmarshal(out, &ct); err != nil {
		return fmt.Errorf("commit helper: %w", err)
	}
	row.CommitJump, row.CommitPlain = summarizeMs(ct.Jump), summarizeMs(ct.Plain)
	return nil
}

func summarizeMs(ms []float64) *report.CallStats {
	s := make([]report.Sample, len(ms))
	for i, v := range ms {
		s[i].WallMs = v
	}
	return report.Summarize(s)
}
