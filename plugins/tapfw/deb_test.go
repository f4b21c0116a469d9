package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// debFiles are the paths the Debian package holds, with their modes as
// dpkg-deb -c prints them; a directory ends in "/".
var debFiles = map[string]string{
	"./etc/tapfw/":                             "drwxr-xr-x",
	"./etc/tapfw/nics/":                        "drwxr-xr-x",
	"./etc/tapfw/tapfw.conf":                   "-rw-r--r--",
	"./usr/lib/cni/tapfw":                      "-rwxr-xr-x",
	"./usr/lib/tapfw/qemu-ifup":                "-rwxr-xr-x",
	"./usr/lib/tapfw/qemu-ifdown":              "-rwxr-xr-x",
	"./usr/share/man/man8/tapfw.8.gz":          "-rw-r--r--",
	"./usr/share/doc/tapfw/README.md":          "-rw-r--r--",
	"./usr/share/doc/tapfw/copyright":          "-rw-r--r--",
	"./usr/share/doc/tapfw/changelog.gz":       "-rw-r--r--",
	"./usr/share/lintian/overrides/tapfw":      "-rw-r--r--",
	"./lib/systemd/system/tapfw-apply.path":    "-rw-r--r--",
	"./lib/systemd/system/tapfw-apply.service": "-rw-r--r--",
	"./lib/systemd/system/tapfw-ui.service":    "-rw-r--r--",
}

// TestDeb builds the package twice (make deb's script) and checks it:
// the same bytes both times; every file where it belongs, owned by root,
// with its mode, and nothing in /opt (postinst makes the link); the
// control fields and the conffile; the plugin inside runs and its man page
// is the command table's; the example config is a valid base config; and
// lintian, where it is installed, finds no error or warning.
func TestDeb(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the plugin twice")
	}
	for _, tool := range []string{"dpkg-deb", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed", tool)
		}
	}
	a, b := buildDeb(t), buildDeb(t)
	if !bytes.Equal(readFile(t, a), readFile(t, b)) {
		t.Errorf("two builds of one commit differ: %s, %s", a, b)
	}
	checkDebFiles(t, tool(t, "dpkg-deb", "-c", a))
	info := tool(t, "dpkg-deb", "-f", a, "Package", "Architecture", "Depends", "Section")
	for _, want := range []string{"Package: tapfw", "Depends: nftables, iproute2", "Section: net"} {
		if !strings.Contains(info, want) {
			t.Errorf("control lacks %q:\n%s", want, info)
		}
	}
	if v := strings.TrimSpace(tool(t, "dpkg-deb", "-f", a, "Version")); !strings.HasPrefix(v, "0.0~git") {
		t.Errorf("version %q", v)
	}
	ctl := t.TempDir()
	tool(t, "dpkg-deb", "-e", a, ctl)
	if got := string(readFile(t, filepath.Join(ctl, "conffiles"))); got != "/etc/tapfw/tapfw.conf\n" {
		t.Errorf("conffiles: %q", got)
	}
	if got := string(readFile(t, filepath.Join(ctl, "postinst"))); !strings.Contains(got, "ln -s /usr/lib/cni/tapfw /opt/cni/bin/tapfw") {
		t.Errorf("postinst makes no /opt/cni/bin link:\n%s", got)
	}
	checkDebContents(t, a)
	checkMaintainerScripts(t, ctl)
	if _, err := exec.LookPath("lintian"); err != nil {
		t.Log("lintian is not installed: not run")
		return
	}
	cmd := exec.Command("lintian", "--fail-on", "error,warning", "--tag-display-limit", "0", a)
	if out, err := cmd.CombinedOutput(); err != nil || strings.Contains(string(out), "\nE: ") || strings.Contains(string(out), "\nW: ") {
		t.Errorf("lintian: %v:\n%s", err, out)
	}
}

func buildDeb(t *testing.T) string {
	t.Helper()
	out := t.TempDir()
	cmd := exec.Command("bash", "scripts/deb.sh", out)
	cmd.Dir = filepath.Join("..", "..")
	got, err := cmd.Output()
	if err != nil {
		t.Fatalf("scripts/deb.sh: %v: %s", err, stderrOf(err))
	}
	return strings.TrimSpace(string(got))
}

// checkDebFiles holds dpkg-deb -c's listing against debFiles.
func checkDebFiles(t *testing.T, listing string) {
	t.Helper()
	seen := map[string]bool{}
	for _, l := range strings.Split(strings.TrimSpace(listing), "\n") {
		f := strings.Fields(l)
		if len(f) < 6 {
			t.Fatalf("listing line %q", l)
		}
		mode, owner, path := f[0], f[1], f[5]
		if owner != "root/root" {
			t.Errorf("%s is owned by %s", path, owner)
		}
		if strings.HasPrefix(path, "./opt") {
			t.Errorf("%s: a package ships nothing in /opt", path)
		}
		if want, ok := debFiles[path]; ok {
			seen[path] = true
			if mode != want {
				t.Errorf("%s: mode %s, want %s", path, mode, want)
			}
		} else if !strings.HasSuffix(path, "/") {
			t.Errorf("unexpected file %s", path)
		}
	}
	for path := range debFiles {
		if !seen[path] {
			t.Errorf("the package lacks %s", path)
		}
	}
}

// checkDebContents unpacks the package and runs what it holds.
func checkDebContents(t *testing.T, deb string) {
	t.Helper()
	root := t.TempDir()
	tool(t, "dpkg-deb", "-x", deb, root)
	bin := filepath.Join(root, "usr/lib/cni/tapfw")
	help := tool(t, bin, "help")
	if !strings.Contains(help, "usage: tapfw <command>") {
		t.Errorf("the packaged plugin's help:\n%s", help)
	}
	page := tool(t, "sh", "-c", "gzip -dc "+filepath.Join(root, "usr/share/man/man8/tapfw.8.gz"))
	epoch := strings.TrimSpace(tool(t, "git", "log", "-1", "--format=%ct"))
	t.Setenv("SOURCE_DATE_EPOCH", epoch)
	date, err := manDate("")
	if err != nil {
		t.Fatal(err)
	}
	if want := manPage(date); page != want {
		t.Errorf("the packaged man page is not tapfw man's of the last commit's day (%s):\n%s", date, page)
	}
	nic := filepath.Join(root, "nic.json")
	if err := os.WriteFile(nic, []byte(`{"bridge": "vmbr0", "mac": "02:00:00:00:00:01", "ips": ["192.0.2.10"], "groups": ["ssh-admins"]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "qemu-config", "tap100i0")
	cmd.Env = append(os.Environ(), "TAPFW_CONFIG="+filepath.Join(root, "etc/tapfw/tapfw.conf"), "TAPFW_NIC_DIR="+root)
	if err := os.Rename(nic, filepath.Join(root, "tap100i0.json")); err != nil {
		t.Fatal(err)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("the example config with a NIC file: %v:\n%s", err, out)
	}
	checkUnits(t, root, bin)
	for _, s := range []string{"qemu-ifup", "qemu-ifdown"} {
		if !slices.Contains(strings.Fields(string(readFile(t, filepath.Join(root, "usr/lib/tapfw", s)))), "/usr/lib/cni/tapfw") {
			t.Errorf("%s does not look for the plugin in /usr/lib/cni", s)
		}
	}
}

// checkMaintainerScripts runs postinst and postrm in a mount namespace
// of their own, over an empty /opt: configure makes the link, a second
// configure keeps it, remove takes it out; a file of another owner at
// that name is left alone by both.
func checkMaintainerScripts(t *testing.T, ctl string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Log("not root: the maintainer scripts are not run")
		return
	}
	script := `set -e
mount -t tmpfs tapfw-test /opt
sh "$1/postinst" configure
sh "$1/postinst" configure
echo "link $(readlink /opt/cni/bin/tapfw)"
sh "$1/postrm" remove
test ! -e /opt/cni/bin/tapfw && test ! -L /opt/cni/bin/tapfw && echo removed
echo other >/opt/cni/bin/tapfw
sh "$1/postinst" configure
sh "$1/postrm" remove
echo "kept $(cat /opt/cni/bin/tapfw)"
`
	out, err := exec.Command("unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", ctl).CombinedOutput()
	if err != nil {
		t.Fatalf("maintainer scripts: %v:\n%s", err, out)
	}
	if want := "link /usr/lib/cni/tapfw\nremoved\nkept other\n"; string(out) != want {
		t.Errorf("maintainer scripts said %q, want %q", out, want)
	}
}

// tool runs a program and returns its stdout.
func tool(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).Output()
	if err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, stderrOf(err))
	}
	return string(out)
}

func stderrOf(err error) string {
	if ee, ok := err.(*exec.ExitError); ok {
		return string(ee.Stderr)
	}
	return ""
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// checkUnits holds the packaged systemd units to what the plugin takes:
// the path unit starts the apply service, and each service's command is
// the packaged plugin's apply (once) or ui with flags it has, on the
// packaged config's paths.
func checkUnits(t *testing.T, root, bin string) {
	t.Helper()
	dir := filepath.Join(root, "lib/systemd/system")
	path := string(readFile(t, filepath.Join(dir, "tapfw-apply.path")))
	for _, l := range []string{"PathChanged=/etc/tapfw\n", "PathChanged=/etc/tapfw/nics\n", "Unit=tapfw-apply.service\n", "WantedBy=multi-user.target\n"} {
		if !strings.Contains(path, l) {
			t.Errorf("tapfw-apply.path lacks %q", l)
		}
	}
	for unit, command := range map[string]string{"tapfw-apply.service": "apply", "tapfw-ui.service": "ui"} {
		service := string(readFile(t, filepath.Join(dir, unit)))
		var argv []string
		for _, l := range strings.Split(service, "\n") {
			if cmd, ok := strings.CutPrefix(l, "ExecStart="); ok {
				argv = strings.Fields(cmd)
			}
		}
		if len(argv) < 2 || argv[0] != "/usr/lib/cni/tapfw" || argv[1] != command || (command == "apply") != strings.Contains(service, "Type=oneshot\n") {
			t.Fatalf("%s does not run tapfw %s (once for apply):\n%s", unit, command, service)
		}
		usage := tool(t, bin, "help", command)
		for _, a := range argv[2:] {
			if strings.HasPrefix(a, "--") && !strings.Contains(usage, strings.TrimPrefix(a, "-")) {
				t.Errorf("%s gives %s %s, which it does not take:\n%s", unit, command, a, usage)
			}
			if strings.HasPrefix(a, "/") {
				if _, err := os.Stat(filepath.Join(root, a)); err != nil {
					t.Errorf("%s names %s, which the package does not hold", unit, a)
				}
			}
		}
	}
}
