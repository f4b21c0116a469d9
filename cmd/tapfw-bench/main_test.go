package main

import "testing"

func TestParseInts(t *testing.T) {
	got, err := parseInts("100, 1000,4000", 1, 9000)
	if err != nil || len(got) != 3 || got[2] != 4000 {
		t.Errorf("%v %v", got, err)
	}
	for _, bad := range []string{"", "100,100", "1000,100", "0", "9001", "x"} {
		if _, err := parseInts(bad, 1, 9000); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if _, err := parseInts("4000", 4001, 20000); err == nil {
		t.Error("a number below the minimum accepted")
	}
}
