package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestMergeNIC(t *testing.T) {
	dir := t.TempDir()
	base := filepath.Join(dir, "tapfw.conf")
	nic := filepath.Join(dir, "tap1.json")
	write := func(p, s string) {
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(base, `{"name":"lab","policyIn":"REJECT","ipsets":{"a":["192.0.2.0/28"]},"host":{"ips":["192.0.2.31"]}}`)
	write(nic, `{"bridge":"vmbr0","mac":"02:00:00:00:00:01","policyIn":"DROP"}`)
	data, conf, err := MergeNIC(base, nic)
	if err != nil {
		t.Fatal(err)
	}
	if conf.Name != "lab" || conf.Type != "tapfw" || conf.CNIVersion != "1.0.0" || conf.PolicyIn != "DROP" ||
		conf.Bridge != "vmbr0" || conf.Host == nil || len(conf.IPSets["a"]) != 1 {
		t.Errorf("merged wrong: %s", data)
	}
	// A missing base is fine, a missing NIC file is not.
	if _, _, err := MergeNIC(filepath.Join(dir, "none"), nic); err != nil {
		t.Errorf("missing base: %v", err)
	}
	if _, _, err := MergeNIC(base, filepath.Join(dir, "tap2.json")); err == nil {
		t.Error("missing NIC file accepted")
	}
	write(nic, `{"bridge":"vmbr0","macFiltr":false}`)
	_, _, err = MergeNIC(base, nic)
	var ve *Error
	if !errors.As(err, &ve) || ve.Field != "macFiltr" || !strings.Contains(err.Error(), nic) {
		t.Errorf("unknown field in NIC file: %v", err)
	}
	write(nic, `{"bridge":`)
	if _, _, err := MergeNIC(base, nic); !errors.Is(err, ErrDecode) {
		t.Errorf("broken NIC file: %v", err)
	}
}
