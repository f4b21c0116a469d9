package main

import (
	"strings"
	"testing"
)

func TestPercentile(t *testing.T) {
	var s []Sample
	for i := 1; i <= 30; i++ {
		s = append(s, Sample{WallMs: float64(i)})
	}
	st := summarize(s)
	if st.P50 != 15 || st.P95 != 29 || st.Min != 1 || st.Max != 30 {
		t.Errorf("p50 %v p95 %v min %v max %v", st.P50, st.P95, st.Min, st.Max)
	}
}

func TestBaselineRulesRestoreQuoting(t *testing.T) {
	tp := tapFor(fillerTap(3, "vmbr1"))
	if len(tp.Dispatch) != 4 || len(tp.Chains) != 2 {
		t.Fatalf("tap: %d dispatch rules, %d chains", len(tp.Dispatch), len(tp.Chains))
	}
	line := restoreArgs(tp.Dispatch[0].Args)
	if !strings.Contains(line, `--comment "tap1003i0: dispatch net=bench cid=vm1003 if=tap1003i0"`) {
		t.Errorf("restore line %s", line)
	}
}
