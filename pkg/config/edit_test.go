package config

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestSetField: an edit replaces one field and keeps every other key in
// its place with its value.
func TestSetField(t *testing.T) {
	in := []byte(`{"logTarget": "NFLOG", "ipsets": {"b": ["192.0.2.1"], "a": []}, "host": {"ips": ["192.0.2.2"]}, "policyIn": "DROP"}`)
	for _, c := range []struct {
		name  string
		value string
		path  []string
		want  string
	}{
		{"replace", `{"ips":["192.0.2.3"]}`, []string{"host"}, `{"logTarget":"NFLOG","ipsets":{"b":["192.0.2.1"],"a":[]},"host":{"ips":["192.0.2.3"]},"policyIn":"DROP"}`},
		{"inner", `["198.51.100.0/24"]`, []string{"ipsets", "a"}, `{"logTarget":"NFLOG","ipsets":{"b":["192.0.2.1"],"a":["198.51.100.0/24"]},"host":{"ips":["192.0.2.2"]},"policyIn":"DROP"}`},
		{"add inner", `[]`, []string{"securityGroups", "web"}, `{"logTarget":"NFLOG","ipsets":{"b":["192.0.2.1"],"a":[]},"host":{"ips":["192.0.2.2"]},"policyIn":"DROP","securityGroups":{"web":[]}}`},
		{"remove", ``, []string{"host"}, `{"logTarget":"NFLOG","ipsets":{"b":["192.0.2.1"],"a":[]},"policyIn":"DROP"}`},
		{"remove inner", ``, []string{"ipsets", "b"}, `{"logTarget":"NFLOG","ipsets":{"a":[]},"host":{"ips":["192.0.2.2"]},"policyIn":"DROP"}`},
	} {
		t.Run(c.name, func(t *testing.T) {
			var v json.RawMessage
			if c.value != "" {
				v = json.RawMessage(c.value)
			}
			out, err := SetField(in, v, c.path...)
			if err != nil {
				t.Fatal(err)
			}
			compact := func(b []byte) string {
				var m json.RawMessage
				if err := json.Unmarshal(b, &m); err != nil {
					t.Fatal(err)
				}
				s, _ := json.Marshal(m)
				return string(s)
			}
			if got := compact(out); got != c.want {
				t.Errorf("got  %s\nwant %s", got, c.want)
			}
		})
	}
	out, err := SetField([]byte(`{"ipsets":{"a":[]}}`), nil, "ipsets", "a")
	if err != nil || string(out) != "{}\n" {
		t.Errorf("removing the last set: %q, %v", out, err)
	}
	if got, err := Field(in, "ipsets", "b"); err != nil || string(got) != `["192.0.2.1"]` {
		t.Errorf("Field: %s, %v", got, err)
	}
	if got, err := Field(in, "securityGroups", "x"); err != nil || got != nil {
		t.Errorf("Field of nothing: %s, %v", got, err)
	}
	for _, bad := range []string{`[]`, `{"a":1} {}`, `{"a":`} {
		if _, err := SetField([]byte(bad), json.RawMessage(`1`), "a"); !errors.Is(err, ErrDecode) {
			t.Errorf("%s: %v, want ErrDecode", bad, err)
		}
	}
	if _, err := SetField(in, json.RawMessage(`{"a"`), "host"); !errors.Is(err, ErrDecode) {
		t.Errorf("a bad value: %v", err)
	}
}

// TestWriteFile: the new file replaces the old whole, with its mode, and
// the old one is kept beside it.
func TestWriteFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "tapfw.conf")
	if err := WriteFile(path, []byte("one\n")); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o644 {
		t.Fatalf("new file: %v, %v", fi, err)
	}
	if _, err := os.Stat(path + PrevSuffix); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a first write left a previous version: %v", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"two\n", "three\n"} {
		if err := WriteFile(path, []byte(v)); err != nil {
			t.Fatal(err)
		}
	}
	got, _ := os.ReadFile(path)
	prev, _ := os.ReadFile(path + PrevSuffix)
	if string(got) != "three\n" || string(prev) != "two\n" {
		t.Errorf("file %q, previous %q", got, prev)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want the old file's 0600", fi.Mode())
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 2 {
		t.Errorf("left behind: %v", ents)
	}
}
