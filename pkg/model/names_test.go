package model

import (
	"strings"
	"testing"
)

func TestValidateIfName(t *testing.T) {
	for _, ok := range []string{"tap110i0", "vmbr0", "veth1_a.b-c", "a"} {
		if err := ValidateIfName(ok); err != nil {
			t.Errorf("%q rejected: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "tap+", "a b", "a/b", "-j", ".x", "a\nb", "abcdefghijklmnop", "a\"b", "a:b", "COMMIT*"} {
		if err := ValidateIfName(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// ValidateName checks the characters always and the length against max,
// unless max is 0.
func TestValidateName(t *testing.T) {
	long := strings.Repeat("a", 40)
	for _, c := range []struct {
		name string
		max  int
		ok   bool
	}{
		{"web", 3, true}, {"webs", 3, false}, {long, 0, true}, {"", 0, false},
		{"a b", 0, false}, {"+web", 0, false}, {"-x", 0, false}, {"x_y.z-1", 7, true},
	} {
		if err := ValidateName(c.name, c.max); (err == nil) != c.ok {
			t.Errorf("ValidateName(%q, %d) = %v, want ok %v", c.name, c.max, err, c.ok)
		}
	}
}

func TestParseMarkMask(t *testing.T) {
	if v, err := ParseMarkMask("0x1f000000"); err != nil || v != 0x1f000000 {
		t.Errorf("0x1f000000: %#x %v", v, err)
	}
	for _, bad := range []string{"", "0x0f", "0x3f000000", "0x1ffffffff", "web"} {
		if _, err := ParseMarkMask(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
