package testnet

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// guestBootTimeout bounds a guest's boot to its shell under TCG, with room
// for a loaded machine; a boot takes a few seconds.
const guestBootTimeout = 60 * time.Second

// guestCacheDir is where the guest image is cached: TAPFW_GUEST_CACHE, else
// the repository's tmp/guest-cache (ignored by git).
func guestCacheDir() string {
	if d := os.Getenv("TAPFW_GUEST_CACHE"); d != "" {
		return d
	}
	return filepath.Join("..", "..", "tmp", "guest-cache")
}

// needGuestImage skips the test without root or the tools, and returns the
// (cached) guest image.
func needGuestImage(t *testing.T) *GuestImage {
	t.Helper()
	NeedKernel(t)
	for _, tool := range []string{guestQEMU, "apt-get", "apt-cache", "dpkg-deb"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
	start := time.Now()
	img, err := PrepareGuestImage(guestCacheDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("guest image %s (modules %s) ready in %v", strings.Join(img.Packages, " "),
		strings.Join(img.Modules, " "), time.Since(start).Round(time.Millisecond))
	return img
}

// startTestGuest starts a guest that the test's cleanup closes (before the
// namespace, registered earlier, is deleted).
func startTestGuest(t *testing.T, img *GuestImage, cfg GuestConfig) *Guest {
	t.Helper()
	g, err := StartGuest(img, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := g.Close(); err != nil {
			t.Errorf("close %s: %v", g.Name, err)
		}
	})
	return g
}

// mustRun runs cmd in g and fails the test unless it exits 0.
func mustRunGuest(t *testing.T, g *Guest, cmd string) string {
	t.Helper()
	out, code, err := g.Run(cmd, 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if code != 0 {
		t.Fatalf("%s: %q exited %d:\n%s", g.Name, cmd, code, out)
	}
	return out
}

// guestSpec is one guest of a test: its name, tap, MAC and addresses.
type guestSpec struct{ name, tap, mac, v4, v6 string }

// inParallel runs f for each guest at once and returns the errors.
func inParallel(guests []*Guest, f func(*Guest) error) []error {
	errs := make([]error, len(guests))
	var wg sync.WaitGroup
	for i, g := range guests {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = f(g)
		}()
	}
	wg.Wait()
	return errs
}

// bootGuests starts a guest for each spec in host, its tap handled by the
// script ifup, and waits for all of them at once.
func bootGuests(t *testing.T, img *GuestImage, host *NS, ifup string, specs []guestSpec) []*Guest {
	t.Helper()
	start := time.Now()
	t.Logf("accelerator %s, chosen in %v", GuestAccel(img, host), time.Since(start).Round(time.Millisecond))
	start = time.Now()
	guests := make([]*Guest, len(specs))
	for i, s := range specs {
		guests[i] = startTestGuest(t, img, GuestConfig{Name: s.name, NS: host, Tap: s.tap, MAC: s.mac,
			Script: ifup, DownScript: "no", MemMB: 128})
	}
	for _, err := range inParallel(guests, func(g *Guest) error { return g.WaitReady(guestBootTimeout) }) {
		if err != nil {
			t.Fatal(err)
		}
	}
	var each []string
	for _, g := range guests {
		each = append(each, fmt.Sprintf("%s %v", g.Name, g.BootTime().Round(time.Millisecond)))
	}
	t.Logf("%d guests ready in %v (%s) under %s", len(guests), time.Since(start).Round(time.Millisecond),
		strings.Join(each, ", "), guests[0].Accel)
	return guests
}

// TestGuestPair boots two guests at once on a bridge in a sandbox
// namespace, addresses them over Run, pings between them in both families,
// checks what Run returns, and powers them off.
func TestGuestPair(t *testing.T) {
	img := needGuestImage(t)
	host := newNS(t, "gh")
	if err := AddBridge(host, "br0", ""); err != nil {
		t.Fatal(err)
	}
	ifup := filepath.Join(t.TempDir(), "ifup")
	if err := os.WriteFile(ifup, []byte("#!/bin/sh\nset -e\nip link set \"$1\" master br0\nip link set \"$1\" up\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	specs := []guestSpec{
		{"g11", "tapg11", "02:00:00:00:00:11", "192.0.2.11", "2001:db8::11"},
		{"g12", "tapg12", "02:00:00:00:00:12", "192.0.2.12", "2001:db8::12"},
	}
	guests := bootGuests(t, img, host, ifup, specs)
	if ports, err := host.Run("ip", "-o", "link", "show", "master", "br0"); err != nil {
		t.Fatal(err)
	} else if !strings.Contains(string(ports), "tapg11") || !strings.Contains(string(ports), "tapg12") {
		t.Fatalf("taps not on br0:\n%s", ports)
	}
	for i, s := range specs {
		g := guests[i]
		if got := mustRunGuest(t, g, "cat /sys/class/net/eth0/address"); got != s.mac+"\n" {
			t.Errorf("%s: eth0 MAC %q, want %s", g.Name, got, s.mac)
		}
		// SLAAC stays possible: the kernel's defaults.
		if got := mustRunGuest(t, g, "cd /proc/sys/net/ipv6/conf/eth0 && cat disable_ipv6 accept_ra autoconf"); got != "0\n1\n1\n" {
			t.Errorf("%s: eth0 disable_ipv6, accept_ra, autoconf = %q, want 0 1 1", g.Name, got)
		}
		// No duplicate address detection: the address is usable at once
		// (DAD keeps it tentative for 1-3 s).
		mustRunGuest(t, g, "echo 0 > /proc/sys/net/ipv6/conf/eth0/accept_dad && ip addr add "+s.v4+"/24 dev eth0 && ip -6 addr add "+s.v6+"/64 dev eth0")
	}
	start := time.Now()
	for i, g := range guests {
		mustRunGuest(t, g, "ping -c 1 -W 5 "+specs[1-i].v4)
		mustRunGuest(t, g, "ping6 -c 1 -W 5 "+specs[1-i].v6)
	}
	t.Logf("pings in both directions and families took %v", time.Since(start).Round(time.Millisecond))
	if out, code, err := guests[0].Run("ping -c 1 -W 1 192.0.2.99", 10*time.Second); err != nil || code == 0 {
		t.Errorf("ping to an absent address: exit %d, %v:\n%s", code, err, out)
	}

	checkGuestRun(t, guests[0])

	// A command still running when Poweroff comes: ^C, and the shell answers.
	if _, _, err := guests[1].Run("sleep 30", 300*time.Millisecond); err == nil {
		t.Error("Run of sleep 30 with a 300ms timeout succeeded")
	}
	start = time.Now()
	for i, err := range inParallel(guests, func(g *Guest) error { return g.Poweroff(20 * time.Second) }) {
		if err != nil {
			t.Error(err)
		}
		if !guests[i].Exited() {
			t.Errorf("%s: QEMU still running after Poweroff", guests[i].Name)
		}
	}
	t.Logf("both powered off in %v", time.Since(start).Round(time.Millisecond))
	if ports, err := host.Run("ip", "-o", "link", "show", "master", "br0"); err != nil || len(ports) != 0 {
		t.Errorf("br0 still has ports after poweroff (%v):\n%s", err, ports)
	}
}

// checkGuestRun: Run returns each command's own output and exit status,
// whatever the command prints or contains, and recovers from a timeout.
func checkGuestRun(t *testing.T, g *Guest) {
	t.Helper()
	cases := []struct {
		cmd, out string
		code     int
	}{
		{"echo hello", "hello\n", 0},
		{"printf 'a\\nb'", "a\nb", 0},
		{"true", "", 0},
		{"false", "", 1},
		{"sh -c 'exit 7'", "", 7},
		{"echo out; echo err >&2; exit_code=3; (exit $exit_code)", "out\nerr\n", 3},
		{"x=2\ny=3\necho $((x * y))", "6\n", 0},
		{"cat", "", 0}, // stdin is /dev/null: no hang
		{"printf '%s\\n' 'tfw-e-1 0' 'tfw-b-2'", "tfw-e-1 0\ntfw-b-2\n", 0},
		{"printf '\\003\\004\\025x\\r\\n'", "\x03\x04\x15x\r\n", 0},
		{"echo '\x03\x04' | wc -c", "3\n", 0}, // control characters travel intact
		{"cd /tmp", "", 0},
		{"pwd", "/tmp\n", 0}, // the shell keeps its state
		{"echo '<3>tfw: a kernel error' > /dev/kmsg; echo after", "after\n", 0},
		{"(sleep 0.2; echo late) & echo now", "now\n", 0},
		{"sleep 0.4; echo later", "later\n", 0}, // not "late"
		{"echo " + strings.Repeat("y", 10000) + " | wc -c", "10001\n", 0},
	}
	for _, c := range cases {
		out, code, err := g.Run(c.cmd, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if out != c.out || code != c.code {
			t.Errorf("Run(%.60q) = %q, %d; want %q, %d", c.cmd, out, code, c.out, c.code)
		}
	}
	if out, code, err := g.Run("echo 'unterminated", 10*time.Second); err != nil || code == 0 || !strings.Contains(out, "syntax error") {
		t.Errorf("syntax error: %q, exit %d, %v", out, code, err)
	}
	// Background jobs ending (SIGCHLD) while the shell reads the next
	// commands cut none short.
	mustRunGuest(t, g, "for i in 1 2 3 4 5 6; do sleep 0.$i & done")
	for i := 0; i < 12; i++ {
		cmd := fmt.Sprintf("cat <<'EOF'\n%d\n%s\nEOF", i, strings.Repeat("z", 300))
		if got, want := mustRunGuest(t, g, cmd), fmt.Sprintf("%d\n%s\n", i, strings.Repeat("z", 300)); got != want {
			t.Errorf("with background jobs ending: %.40q, want %.40q", got, want)
		}
	}
	start := time.Now()
	if _, _, err := g.Run("sleep 30", 500*time.Millisecond); err == nil {
		t.Error("Run of sleep 30 with a 500ms timeout succeeded")
	}
	if got := mustRunGuest(t, g, "echo after the timeout; pwd"); got != "after the timeout\n/tmp\n" {
		t.Errorf("after a timeout: %q, want the shell as it was", got)
	}
	t.Logf("timeout and recovery took %v", time.Since(start).Round(time.Millisecond))
	// A loop of builtins outlives ^C: ^\ ends the shell, /init starts another.
	start = time.Now()
	if _, _, err := g.Run("while :; do :; done", 500*time.Millisecond); err == nil {
		t.Error("Run of an endless loop succeeded")
	}
	if got := mustRunGuest(t, g, "echo alive; pwd"); got != "alive\n/root\n" {
		t.Errorf("after an endless loop: %q, want a new shell", got)
	}
	t.Logf("endless loop and recovery took %v", time.Since(start).Round(time.Millisecond))
	if out, _, err := g.Run("exit 3", 10*time.Second); err == nil || !strings.Contains(err.Error(), "shell exited") {
		t.Errorf("Run(exit 3) = %q, %v; want an error about the shell", out, err)
	}
	if got := mustRunGuest(t, g, "echo back"); got != "back\n" {
		t.Errorf("after exit: %q", got)
	}
	if strings.Contains(g.Console(), "a kernel error") {
		t.Error("a kernel message reached the console")
	}
}

// TestGuestQuit: Quit on the monitor ends QEMU, which runs the downscript
// with the environment of GuestConfig.Env; QEMU needs no booted guest for
// that. A second PrepareGuestImage finds the cached image.
func TestGuestQuit(t *testing.T) {
	img := needGuestImage(t)
	before, err := os.Stat(filepath.Join(img.Dir, "image.json"))
	if err != nil {
		t.Fatal(err)
	}
	again, err := prepareGuestImage(filepath.Dir(img.Dir))
	if err != nil {
		t.Fatal(err)
	}
	if after, err := os.Stat(filepath.Join(again.Dir, "image.json")); err != nil || again.Dir != img.Dir || !after.ModTime().Equal(before.ModTime()) {
		t.Errorf("second prepare: %s (%v), want the cached %s", again.Dir, err, img.Dir)
	}

	host := newNS(t, "gq")
	dir := t.TempDir()
	up, down, log := filepath.Join(dir, "up"), filepath.Join(dir, "down"), filepath.Join(dir, "log")
	for path, script := range map[string]string{
		up:   "#!/bin/sh\nip link set \"$1\" up\necho \"up $1 $TFW_GUEST_TEST\" >>" + log + "\n",
		down: "#!/bin/sh\necho \"down $1 $TFW_GUEST_TEST\" >>" + log + "\n",
	} {
		if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	g := startTestGuest(t, img, GuestConfig{Name: "gq", NS: host, Tap: "tapgq", Script: up, DownScript: down,
		Env: []string{"TFW_GUEST_TEST=env-passed"}})
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(readTestFile(t, log), "up tapgq") && time.Now().Before(deadline) && !g.Exited() {
		time.Sleep(10 * time.Millisecond)
	}
	if err := g.Quit(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if got, want := readTestFile(t, log), "up tapgq env-passed\ndown tapgq env-passed\n"; got != want {
		t.Errorf("scripts logged %q, want %q; QEMU stderr:\n%s", got, want, g.Stderr())
	}
	if out, err := host.Run("ip", "-o", "link", "show"); err != nil || strings.Contains(string(out), "tapgq") {
		t.Errorf("tap left after quit (%v):\n%s", err, out)
	}
}

// TestGuestAccelProbe: the KVM probe's firmware runs to its end under TCG,
// so a KVM that runs guests passes it.
func TestGuestAccelProbe(t *testing.T) {
	NeedKernel(t)
	if _, err := exec.LookPath(guestQEMU); err != nil {
		t.Skipf("%s not installed", guestQEMU)
	}
	ns := newNS(t, "gp")
	start := time.Now()
	if !runProbe(ns, "tcg") {
		t.Fatal("the probe firmware did not exit 85 under TCG")
	}
	t.Logf("probe under TCG: %v", time.Since(start).Round(time.Millisecond))
}

func readTestFile(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return string(data)
}
