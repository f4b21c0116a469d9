package baseline

import (
	"strings"
	"testing"

	"github.com/tapfw/tapfw/cmd/tapfw-bench/internal/taps"
)

func TestBaselineRulesRestoreQuoting(t *testing.T) {
	tp := tapFor(taps.Filler(3, "vmbr1"))
	if len(tp.Dispatch) != 4 || len(tp.Chains) != 2 {
		t.Fatalf("tap: %d dispatch rules, %d chains", len(tp.Dispatch), len(tp.Chains))
	}
	line := restoreArgs(tp.Dispatch[0].Args)
	if !strings.Contains(line, `--comment "tap1003i0: dispatch net=bench cid=vm1003 if=tap1003i0"`) {
		t.Errorf("restore line %s", line)
	}
}

func TestRulesPerTap(t *testing.T) {
	// What the report says of the baseline: 34 rules a tap, 29 shared.
	if own, shared := RulesPerTap(); own != 34 || shared != 29 {
		t.Errorf("own %d, shared %d; want 34, 29", own, shared)
	}
}
