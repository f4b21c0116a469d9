package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestManPage: tapfw man prints a page that names every command, its
// synopsis, summary and flags, with the date asked for; groff, where it
// is installed, renders it without a warning, and the rendered text holds
// each command's summary.
func TestManPage(t *testing.T) {
	code, page, stderr := runCLI("man", "--date", "2026-12-07")
	if code != 0 || stderr != "" {
		t.Fatalf("man: status %d, stderr %q", code, stderr)
	}
	if !strings.HasPrefix(page, `.TH TAPFW 8 "2026-12-07" tapfw`) {
		t.Errorf("page starts %q", page[:min(len(page), 60)])
	}
	for i := range commands {
		c := &commands[i]
		if !strings.Contains(page, `\fBtapfw `+roff(c.name)+`\fR`) {
			t.Errorf("page lacks command %s", c.name)
		}
		if !strings.Contains(page, roff(c.summary)) {
			t.Errorf("page lacks the summary of %s", c.name)
		}
		for _, f := range commandFlags(c) {
			if !strings.Contains(page, `.B \-\-`+roff(f.Name)+"\n") {
				t.Errorf("page lacks flag --%s of %s", f.Name, c.name)
			}
		}
	}
	if code, _, stderr := runCLI("man", "--date", "7 Dec"); code == 0 || !strings.Contains(stderr, "YYYY-MM-DD") {
		t.Errorf("a bad date: status %d, stderr %q", code, stderr)
	}
	t.Setenv("SOURCE_DATE_EPOCH", "1796601600")
	if _, page, _ := runCLI("man"); !strings.HasPrefix(page, `.TH TAPFW 8 "2026-12-07"`) {
		t.Errorf("SOURCE_DATE_EPOCH: page starts %q", page[:min(len(page), 60)])
	}
	groff, err := exec.LookPath("groff")
	if err != nil {
		t.Log("groff is not installed: the page is not rendered")
		return
	}
	cmd := exec.Command(groff, "-man", "-Tutf8", "-ww", "-rLL=200n", "-rHY=0")
	cmd.Stdin = strings.NewReader(page)
	cmd.Env = []string{"LC_ALL=C.UTF-8"}
	var errb strings.Builder
	cmd.Stderr = &errb
	out, err := cmd.Output()
	if err != nil || errb.Len() > 0 {
		t.Fatalf("groff: %v: %s", err, errb.String())
	}
	text := words(stripOverstrike(string(out)))
	for i := range commands {
		if c := &commands[i]; !strings.Contains(text, words(c.summary)) {
			t.Errorf("rendered page lacks the summary of %s", c.name)
		}
	}
}

// stripOverstrike removes grotty's bold and underline (x\bx, _\bx) and
// turns its typographic hyphens back into ASCII ones.
func stripOverstrike(s string) string {
	var b strings.Builder
	r := []rune(s)
	for i := 0; i < len(r); i++ {
		if i+1 < len(r) && r[i+1] == '\b' {
			continue
		}
		if r[i] == '\b' {
			continue
		}
		switch r[i] {
		case '‐', '−':
			r[i] = '-'
		}
		b.WriteRune(r[i])
	}
	return b.String()
}
