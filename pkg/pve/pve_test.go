package pve

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/tapfw/tapfw/pkg/ruleset"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

// importSample converts the sample tree testdata/pve-tree for node pve1.
func importSample(t *testing.T) *Result {
	t.Helper()
	tree, probs, err := Load(filepath.Join("..", "..", "testdata", "pve-tree"), "pve1")
	if err != nil {
		t.Fatal(err)
	}
	r := Convert(tree, Options{Limits: ruleset.Limits})
	r.Problems = append(probs, r.Problems...)
	return r
}

// render is the result as the golden file holds it: every file, then the
// problems.
func render(t *testing.T, r *Result) []byte {
	t.Helper()
	var b bytes.Buffer
	out, err := json.MarshalIndent(Merged(r.Base, nil), "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	b.WriteString("== tapfw.conf\n" + string(out) + "\n")
	ports := make([]string, 0, len(r.NICs))
	for p := range r.NICs {
		ports = append(ports, p)
	}
	sort.Strings(ports)
	for _, p := range ports {
		out, _ := json.MarshalIndent(r.NICs[p], "", "  ")
		b.WriteString("== nics/" + p + ".json\n" + string(out) + "\n")
	}
	b.WriteString("== problems\n")
	for _, p := range r.Problems {
		b.WriteString(p.String() + "\n")
	}
	return b.Bytes()
}

// TestImportGolden: the sample tree's import, every file and problem.
func TestImportGolden(t *testing.T) {
	got := render(t, importSample(t))
	path := filepath.Join("..", "..", "testdata", "golden", "pve-import.txt")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run `make update`)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("the import differs from %s (run `make update` if meant):\n%s", path, got)
	}
}

// TestImportValid: every NIC's merged config is one tapfw takes.
func TestImportValid(t *testing.T) {
	r := importSample(t)
	if len(r.NICs) == 0 {
		t.Fatal("no NIC files")
	}
	for port, nic := range r.NICs {
		if err := Validate(r.Base, nic, port, ruleset.Limits); err != nil {
			t.Errorf("%s: %v", port, err)
		}
	}
	// Every item the sample holds that tapfw cannot say, at its line.
	for _, want := range []string{"corosync.conf:15:", "firewall/100.fw:7:", "firewall/100.fw:24:", "firewall/100.fw:26:",
		"firewall/200.fw:5:", "firewall/200.fw:9:", "firewall/cluster.fw:5:", "firewall/cluster.fw:6:", "firewall/cluster.fw:25:", "firewall/cluster.fw:31:", "firewall/cluster.fw:32:",
		"nodes/pve1/host.fw:7:", "nodes/pve1/host.fw:11:"} {
		found := false
		for _, p := range r.Problems {
			found = found || strings.HasPrefix(p.String(), want)
		}
		if !found {
			t.Errorf("no problem at %s", want)
		}
	}
}
