package testnet

// Real Linux guests for tests: a Debian kernel and an initramfs of
// busybox-static, built at test time from Debian's packages and cached,
// booted by qemu-system-x86_64 inside a test namespace with a virtio-net NIC
// on a tap, and driven through a shell on the serial console. This file
// builds the image; guest.go runs it.

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"debug/elf"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

const (
	// guestKernelMeta is the metapackage whose dependency names the kernel.
	guestKernelMeta = "linux-image-amd64"
	guestBusybox    = "busybox-static"
	guestQEMU       = "qemu-system-x86_64"
	// guestMemMB is the default guest memory: enough for the kernel and the
	// initramfs, small enough for several guests at once.
	guestMemMB = 160
	// guestReadyMarker is what /init prints once the console shell is set
	// up; /init prints it in two pieces, so the marker is not in its text.
	guestReadyMarker = "tfw-guest-ready\n"
	// guestRestartMarker is what /init prints when the shell has exited,
	// before it starts another.
	guestRestartMarker = "\ntfw-shell-restarted\n"
	// guestMaxCommand bounds a Run command (base64 over the console).
	guestMaxCommand = 64 << 10
	// guestStopTimeout bounds each fallback step of stopping QEMU.
	guestStopTimeout = 5 * time.Second
)

// guestCmdline is the kernel command line: serial console, quiet, exit on
// panic (QEMU runs with -no-reboot), and no time spent on what a test guest
// does not need (under TCG the crypto self-tests alone take 0.4 s, the W+X
// check of rodata 0.15 s). /init reads tfwname (its hostname) from its
// environment.
const guestCmdline = "console=ttyS0 quiet loglevel=1 panic=-1 mitigations=off edd=off " +
	"8250.nr_uarts=1 tsc=reliable no_timer_check random.trust_cpu=on cryptomgr.notests rodata=off"

// guestModuleOptions are the kernel options a guest needs; each one built as
// a module goes into the initramfs with what it depends on.
var guestModuleOptions = []struct{ option, module string }{
	{"CONFIG_VIRTIO_PCI", "virtio_pci"},
	{"CONFIG_VIRTIO_NET", "virtio_net"},
	{"CONFIG_PACKET", "af_packet"},
	{"CONFIG_IPV6", "ipv6"},
}

// GuestImage is a bootable guest: a Debian kernel and an initramfs with
// busybox, the modules a virtio-net NIC needs, and /init.
type GuestImage struct {
	// Kernel is the ELF vmlinux unpacked from the package's vmlinuz when it
	// has a PVH entry (QEMU boots it without the decompressor, which takes
	// seconds under TCG), else the vmlinuz.
	Kernel   string
	Initrd   string   // gzip'd newc initramfs
	Dir      string   // the image's folder in the cache
	Packages []string // the packages it was built from, "name=version"
	Modules  []string // modules /init loads, in that order
}

var (
	guestImagesMu sync.Mutex
	guestImages   = map[string]*GuestImage{} // by absolute cache folder
)

// PrepareGuestImage returns the guest image cached in cacheDir, building it
// first if the cache has none for the current candidate versions of the
// kernel package (the dependency of linux-image-amd64) and busybox-static:
// `apt-get download` and `dpkg-deb -x` into the cache, nothing installed.
// When apt fails (no or stale package lists) it runs `apt-get update` once
// and tries again. Safe for concurrent use, also across processes.
func PrepareGuestImage(cacheDir string) (*GuestImage, error) {
	dir, err := filepath.Abs(cacheDir)
	if err != nil {
		return nil, err
	}
	guestImagesMu.Lock()
	defer guestImagesMu.Unlock()
	if img := guestImages[dir]; img != nil {
		return img, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("guest image cache: %w", err)
	}
	unlock, err := lockFile(filepath.Join(dir, ".lock"))
	if err != nil {
		return nil, err
	}
	defer unlock()
	img, err := prepareGuestImage(dir)
	var aerr *aptError
	if errors.As(err, &aerr) {
		if out, uerr := exec.Command("apt-get", "update", "-qq").CombinedOutput(); uerr != nil {
			return nil, fmt.Errorf("%w; apt-get update: %v: %s", err, uerr, bytes.TrimSpace(out))
		}
		img, err = prepareGuestImage(dir)
	}
	if err != nil {
		return nil, fmt.Errorf("guest image in %s: %w", dir, err)
	}
	guestImages[dir] = img
	return img, nil
}

// lockFile takes an exclusive flock on path and returns its release.
func lockFile(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return func() { f.Close() }, nil
}

// aptError is a failed apt-cache or apt-get call: worth an apt-get update.
type aptError struct{ msg string }

func (e *aptError) Error() string { return e.msg }

// apt runs an apt command in dir and returns its stdout.
func runApt(dir string, args ...string) ([]byte, error) {
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, &aptError{fmt.Sprintf("%s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(stderr.Bytes()))}
	}
	return out, nil
}

// prepareGuestImage resolves the packages and returns their cached image,
// building it when the cache has none.
func prepareGuestImage(dir string) (*GuestImage, error) {
	pkgs, err := resolveGuestPackages()
	if err != nil {
		return nil, err
	}
	key := strings.NewReplacer(":", "_", "=", "_", "/", "_").Replace(strings.Join(pkgs, "+")) + "+" + guestImageRecipe()
	final := filepath.Join(dir, key)
	if img, err := loadGuestImage(final); err == nil {
		return img, nil
	}
	img, err := buildGuestImage(dir, final, pkgs)
	if err == nil {
		pruneGuestCache(dir, final)
	}
	return img, err
}

// guestImageRecipe is a hash of how an image is made from its packages:
// changing /init, the modules or the layout (bump the version) makes a new
// cache entry.
func guestImageRecipe() string {
	h := sha256.New()
	fmt.Fprintf(h, "v1 pvh %s %s %v", guestInit, guestShell, guestModuleOptions)
	return hex.EncodeToString(h.Sum(nil))[:8]
}

// resolveGuestPackages returns "name=version" of the kernel package that
// linux-image-amd64 depends on, then of busybox-static (the candidates),
// from one `apt-cache show` where it can (each call parses the package
// lists: most of a second).
func resolveGuestPackages() ([]string, error) {
	recs, err := aptShow(guestKernelMeta, guestBusybox)
	if err != nil {
		return nil, err
	}
	dep := regexp.MustCompile(`(?:^|[,|] *)(linux-image-[^ ,|()]+)(?: *\(= *([^ )]+)\))?`).
		FindStringSubmatch(recs[guestKernelMeta]["Depends"])
	if dep == nil {
		return nil, &aptError{fmt.Sprintf("%s depends on no linux-image package: %q", guestKernelMeta, recs[guestKernelMeta]["Depends"])}
	}
	kernel, version := dep[1], dep[2]
	if version == "" {
		krec, err := aptShow(kernel)
		if err != nil {
			return nil, err
		}
		version = krec[kernel]["Version"]
	}
	bb := recs[guestBusybox]["Version"]
	if version == "" || bb == "" {
		return nil, &aptError{fmt.Sprintf("apt-cache show: no version for %s or %s", kernel, guestBusybox)}
	}
	return []string{kernel + "=" + version, guestBusybox + "=" + bb}, nil
}

// aptShow returns the fields of each package's candidate record.
func aptShow(pkgs ...string) (map[string]map[string]string, error) {
	out, err := runApt("", append([]string{"apt-cache", "show", "--no-all-versions"}, pkgs...)...)
	if err != nil {
		return nil, err
	}
	recs := map[string]map[string]string{}
	for _, rec := range strings.Split(string(out), "\n\n") {
		fields := map[string]string{}
		for _, line := range strings.Split(rec, "\n") {
			if k, v, ok := strings.Cut(line, ": "); ok && !strings.HasPrefix(line, " ") {
				fields[k] = v
			}
		}
		if p := fields["Package"]; p != "" && recs[p] == nil {
			recs[p] = fields
		}
	}
	for _, p := range pkgs {
		if recs[p] == nil {
			return nil, &aptError{fmt.Sprintf("apt-cache show: no record for %s", p)}
		}
	}
	return recs, nil
}

// loadGuestImage reads the image description written last by buildGuestImage.
func loadGuestImage(dir string) (*GuestImage, error) {
	data, err := os.ReadFile(filepath.Join(dir, "image.json"))
	if err != nil {
		return nil, err
	}
	img := &GuestImage{}
	if err := json.Unmarshal(data, img); err != nil {
		return nil, err
	}
	if img.Kernel != "vmlinux" && img.Kernel != "vmlinuz" {
		return nil, fmt.Errorf("%s: kernel %q", dir, img.Kernel)
	}
	img.Dir = dir
	img.Kernel = filepath.Join(dir, img.Kernel)
	img.Initrd = filepath.Join(dir, "initrd.gz")
	for _, f := range []string{img.Kernel, img.Initrd} {
		if _, err := os.Stat(f); err != nil {
			return nil, err
		}
	}
	return img, nil
}

// buildGuestImage downloads and unpacks pkgs in a scratch folder of dir,
// writes vmlinuz, initrd.gz and image.json, and renames the result to final.
func buildGuestImage(dir, final string, pkgs []string) (*GuestImage, error) {
	work, err := os.MkdirTemp(dir, ".build-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	if _, err := runApt(work, append([]string{"apt-get", "download", "-q", "-o", "APT::Sandbox::User=root"}, pkgs...)...); err != nil {
		return nil, err
	}
	roots := make([]string, len(pkgs))
	for i, p := range pkgs {
		name := p[:strings.Index(p, "=")]
		debs, _ := filepath.Glob(filepath.Join(work, name+"_*.deb"))
		if len(debs) != 1 {
			return nil, fmt.Errorf("apt-get download %s left %d .deb files", p, len(debs))
		}
		roots[i] = filepath.Join(work, fmt.Sprintf("root%d", i))
		if out, err := exec.Command("dpkg-deb", "-x", debs[0], roots[i]).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("dpkg-deb -x %s: %v: %s", debs[0], err, bytes.TrimSpace(out))
		}
	}
	out := filepath.Join(work, "image")
	if err := os.Mkdir(out, 0o755); err != nil {
		return nil, err
	}
	kernel, mods, err := writeGuestFiles(out, roots[0], filepath.Join(roots[1], "bin", "busybox"))
	if err != nil {
		return nil, err
	}
	img := &GuestImage{Kernel: kernel, Initrd: "initrd.gz", Packages: pkgs, Modules: mods}
	data, _ := json.MarshalIndent(img, "", "\t")
	if err := os.WriteFile(filepath.Join(out, "image.json"), data, 0o644); err != nil {
		return nil, err
	}
	_ = os.RemoveAll(final) // an incomplete earlier build
	if err := os.Rename(out, final); err != nil {
		return nil, err
	}
	return loadGuestImage(final)
}

// pruneGuestCache removes, under the cache's lock, the images in dir other
// than keep (older packages or recipes; a running QEMU has read its files),
// builds a killed process left, and the KVM probe's answers of earlier
// boots.
func pruneGuestCache(dir, keep string) {
	entries, _ := os.ReadDir(dir)
	bootID, _ := os.ReadFile("/proc/sys/kernel/random/boot_id")
	for _, e := range entries {
		path := filepath.Join(dir, e.Name())
		_, err := os.Stat(filepath.Join(path, "image.json"))
		if err == nil && path != keep || strings.HasPrefix(e.Name(), ".build-") {
			_ = os.RemoveAll(path)
		}
		if strings.HasPrefix(e.Name(), "accel-") && e.Name() != "accel-"+strings.TrimSpace(string(bootID)) {
			_ = os.Remove(path)
		}
	}
}

// writeGuestFiles writes the kernel of the unpacked kernel package to out
// (vmlinux, else vmlinuz: its name is returned) and out/initrd.gz; it
// returns the modules' names too.
func writeGuestFiles(out, kernelRoot, busybox string) (string, []string, error) {
	one := func(pattern string) (string, error) {
		m, _ := filepath.Glob(filepath.Join(kernelRoot, pattern))
		if len(m) != 1 {
			return "", fmt.Errorf("kernel package: %d files match %s, want 1", len(m), pattern)
		}
		return m[0], nil
	}
	vmlinuz, err := one("boot/vmlinuz-*")
	if err != nil {
		return "", nil, err
	}
	config, err := one("boot/config-*")
	if err != nil {
		return "", nil, err
	}
	modDir, err := one("lib/modules/*")
	if err != nil {
		if modDir, err = one("usr/lib/modules/*"); err != nil {
			return "", nil, err
		}
	}
	kernel, err := os.ReadFile(vmlinuz)
	if err != nil {
		return "", nil, err
	}
	name := "vmlinux"
	if elfKernel, err := extractVmlinux(kernel); err == nil {
		kernel = elfKernel
	} else {
		name = "vmlinuz" // booted through its decompressor
	}
	if err := os.WriteFile(filepath.Join(out, name), kernel, 0o644); err != nil {
		return "", nil, err
	}
	mods, err := guestModules(config, modDir)
	if err != nil {
		return "", nil, err
	}
	bb, err := os.ReadFile(busybox)
	if err != nil {
		return "", nil, fmt.Errorf("busybox-static: %w", err)
	}
	var names []string
	for _, m := range mods {
		names = append(names, m.name)
	}
	return name, names, writeInitramfs(filepath.Join(out, "initrd.gz"), bb, mods)
}

// extractVmlinux returns the ELF kernel compressed inside a bzImage, if it
// has a PVH entry point (the Xen note XEN_ELFNOTE_PHYS32_ENTRY) that QEMU's
// -kernel can boot.
func extractVmlinux(bz []byte) ([]byte, error) {
	if len(bz) < 0x250 || string(bz[0x202:0x206]) != "HdrS" {
		return nil, errors.New("not a bzImage")
	}
	setup := int(bz[0x1f1])
	if setup == 0 {
		setup = 4
	}
	start := (setup+1)*512 + int(binary.LittleEndian.Uint32(bz[0x248:]))
	end := start + int(binary.LittleEndian.Uint32(bz[0x24c:]))
	if start >= end || end > len(bz) {
		return nil, errors.New("bzImage payload out of range")
	}
	payload := bz[start:end]
	var raw []byte
	var err error
	switch {
	case bytes.HasPrefix(payload, []byte("\xfd7zXZ\x00")):
		raw, err = decompress(bytes.NewReader(payload), "xz", "--single-stream")
	case bytes.HasPrefix(payload, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		raw, err = decompress(bytes.NewReader(payload), "zstd")
	case bytes.HasPrefix(payload, []byte{0x1f, 0x8b}):
		raw, err = decompress(bytes.NewReader(payload), "gzip")
	default:
		return nil, fmt.Errorf("bzImage payload compression % x unknown", payload[:min(len(payload), 6)])
	}
	if err != nil {
		return nil, err
	}
	if !hasPVHNote(raw) {
		return nil, errors.New("vmlinux has no PVH entry")
	}
	return raw, nil
}

// hasPVHNote reports whether an ELF kernel has the Xen note type 18.
func hasPVHNote(kernel []byte) bool {
	f, err := elf.NewFile(bytes.NewReader(kernel))
	if err != nil {
		return false
	}
	for _, p := range f.Progs {
		if p.Type != elf.PT_NOTE {
			continue
		}
		notes, err := io.ReadAll(p.Open())
		for err == nil && len(notes) >= 12 {
			namesz := int(binary.LittleEndian.Uint32(notes))
			descsz := int(binary.LittleEndian.Uint32(notes[4:]))
			typ := binary.LittleEndian.Uint32(notes[8:])
			name := notes[12:min(len(notes), 12+namesz)]
			if typ == 18 && string(bytes.TrimRight(name, "\x00")) == "Xen" {
				return true
			}
			next := 12 + (namesz+3)&^3 + (descsz+3)&^3
			if next > len(notes) {
				break
			}
			notes = notes[next:]
		}
	}
	return false
}

// decompress runs `tool -dc args...` on r ("gzip" in Go).
func decompress(r io.Reader, tool string, args ...string) ([]byte, error) {
	if tool == "gzip" {
		zr, err := gzip.NewReader(r)
		if err != nil {
			return nil, err
		}
		zr.Multistream(false)
		return io.ReadAll(zr)
	}
	cmd := exec.Command(tool, append([]string{"-dc"}, args...)...)
	cmd.Stdin = r
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		pkg := map[string]string{"xz": "xz-utils", "zstd": "zstd"}[tool]
		return nil, fmt.Errorf("%s -dc (package %s): %v: %s", tool, pkg, err, bytes.TrimSpace(stderr.Bytes()))
	}
	return out, nil
}

// guestModule is a kernel module, uncompressed.
type guestModule struct {
	name string
	data []byte
}

// guestModules returns the modules guestModuleOptions need from modDir,
// each after those it depends on (the packages ship no modules.dep: the
// dependencies are read from each module's .modinfo).
func guestModules(configPath, modDir string) ([]guestModule, error) {
	config, err := os.ReadFile(configPath)
	if err != nil {
		return nil, err
	}
	files, err := indexModules(modDir)
	if err != nil {
		return nil, err
	}
	var order []guestModule
	seen := map[string]bool{}
	var visit func(name, from string) error
	visit = func(name, from string) error {
		if seen[name] {
			return nil
		}
		seen[name] = true
		path, ok := files[name]
		if !ok {
			return fmt.Errorf("module %s (for %s) is not in the kernel package", name, from)
		}
		data, err := readModule(path)
		if err != nil {
			return err
		}
		deps, err := moduleDepends(data)
		if err != nil {
			return fmt.Errorf("module %s: %w", path, err)
		}
		for _, d := range deps {
			if err := visit(d, name); err != nil {
				return err
			}
		}
		order = append(order, guestModule{name, data})
		return nil
	}
	for _, o := range guestModuleOptions {
		m := regexp.MustCompile(`(?m)^` + o.option + `=(\w+)$`).FindSubmatch(config)
		switch {
		case m != nil && string(m[1]) == "y":
			continue // built in
		case m != nil && string(m[1]) == "m":
			if err := visit(o.module, o.option); err != nil {
				return nil, err
			}
		default:
			return nil, fmt.Errorf("kernel config %s: %s is not set", configPath, o.option)
		}
	}
	return order, nil
}

// indexModules maps module names (with "_" for "-") to their files.
func indexModules(modDir string) (map[string]string, error) {
	files := map[string]string{}
	err := filepath.WalkDir(modDir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		base := d.Name()
		for _, ext := range []string{".ko", ".ko.xz", ".ko.zst", ".ko.gz"} {
			if strings.HasSuffix(base, ext) {
				files[strings.ReplaceAll(strings.TrimSuffix(base, ext), "-", "_")] = path
			}
		}
		return nil
	})
	return files, err
}

// readModule returns the module at path uncompressed: busybox's insmod
// does not decompress (and the kernel only does for finit_module).
func readModule(path string) ([]byte, error) {
	if strings.HasSuffix(path, ".ko") {
		return os.ReadFile(path)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	tool := map[string]string{".xz": "xz", ".zst": "zstd", ".gz": "gzip"}[filepath.Ext(path)]
	data, err := decompress(f, tool)
	if err != nil {
		return nil, fmt.Errorf("module %s: %w", path, err)
	}
	return data, nil
}

// moduleDepends returns the "depends=" names of a module's .modinfo.
func moduleDepends(data []byte) ([]string, error) {
	f, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	sec := f.Section(".modinfo")
	if sec == nil {
		return nil, errors.New("no .modinfo section")
	}
	info, err := sec.Data()
	if err != nil {
		return nil, err
	}
	for _, field := range bytes.Split(info, []byte{0}) {
		if v, ok := bytes.CutPrefix(field, []byte("depends=")); ok {
			if len(v) == 0 {
				return nil, nil
			}
			return strings.Split(strings.ReplaceAll(string(v), "-", "_"), ","), nil
		}
	}
	return nil, nil
}

// guestInit is the initramfs's /init. It loads the modules, brings lo and
// eth0 up (IPv6 and its autoconfiguration left at the kernel's defaults),
// silences the kernel on the console, turns the console's echo and output
// processing off and runs guestShell there.
const guestInit = `#!/bin/busybox sh
/bin/busybox --install -s
export PATH=/bin:/sbin:/usr/bin:/usr/sbin HOME=/root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
ln -s /proc/self/fd /dev/fd
ln -s fd/0 /dev/stdin
ln -s fd/1 /dev/stdout
ln -s fd/2 /dev/stderr
dmesg -n 1
for m in /lib/modules/*.ko; do
	insmod "$m" || echo "tfw-init: insmod $m failed"
done
hostname "${tfwname:-guest}"
ip link set lo up
if [ -n "$tfwnic" ]; then
	i=0
	while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 100 ]; do usleep 10000; i=$((i + 1)); done
	ip link set eth0 up || echo "tfw-init: no eth0"
fi
cd /root
while :; do
	stty -echo -onlcr noflsh
	printf '%s-%s\n' tfw-guest ready
	setsid cttyhack /bin/tfw-shell
done
`

// guestShell is /bin/tfw-shell, the command shell on the console: a
// session leader with ttyS0 as its controlling terminal (cttyhack), for ^C
// and ^\, that runs the shell Run talks to, again (after a marker) when it
// exits. The session leader stays: when it exits the kernel hangs the
// serial line up and drops the input not read yet.
//
// That shell is not interactive (sh -c): busybox ash reads an interactive
// shell's input with fgets when echo is off, and a signal (SIGCHLD of a
// background job) cuts a line or a here-document short. Not interactive,
// it reads with read(2) and retries; `command eval` keeps errors from
// ending it; it catches SIGINT, so ^C ends only the command in the
// foreground, and exits on SIGQUIT (^\), for a loop of builtins that ^C
// cannot end. Background jobs ignore both.
const guestShell = `#!/bin/sh
trap : INT
while :; do
	sh -c 'trap : INT; trap "exit 131" QUIT; while :; do . /proc/self/fd/0; done'
	printf '\n%s-%s\n' tfw-shell restarted
	usleep 100000
done
`

// writeInitramfs writes the gzip'd newc initramfs to path, atomically.
func writeInitramfs(path string, busybox []byte, mods []guestModule) error {
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	c := &cpioWriter{w: zw}
	for _, d := range []string{"bin", "sbin", "usr", "usr/bin", "usr/sbin", "dev", "proc", "sys",
		"etc", "root", "run", "var", "lib", "lib/modules"} {
		c.add(d, unix.S_IFDIR|0o755, nil, 0, 0)
	}
	c.add("tmp", unix.S_IFDIR|0o1777, nil, 0, 0)
	c.add("dev/console", unix.S_IFCHR|0o600, nil, 5, 1)
	c.add("bin/busybox", unix.S_IFREG|0o755, busybox, 0, 0)
	c.add("bin/sh", unix.S_IFLNK|0o777, []byte("busybox"), 0, 0)
	c.add("init", unix.S_IFREG|0o755, []byte(guestInit), 0, 0)
	c.add("bin/tfw-shell", unix.S_IFREG|0o755, []byte(guestShell), 0, 0)
	c.add("etc/passwd", unix.S_IFREG|0o644, []byte("root:x:0:0:root:/root:/bin/sh\n"), 0, 0)
	c.add("etc/group", unix.S_IFREG|0o644, []byte("root:x:0:\n"), 0, 0)
	c.add("etc/hosts", unix.S_IFREG|0o644, []byte("127.0.0.1 localhost\n::1 localhost\n"), 0, 0)
	for i, m := range mods {
		c.add(fmt.Sprintf("lib/modules/%02d-%s.ko", i, m.name), unix.S_IFREG|0o644, m.data, 0, 0)
	}
	c.add("TRAILER!!!", 0, nil, 0, 0)
	if c.err != nil {
		return c.err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, buf.Bytes(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// cpioWriter writes a newc ("070701") cpio archive.
type cpioWriter struct {
	w   io.Writer
	ino int
	err error
}

// add writes one entry; data is a file's content or a symlink's target,
// major and minor a device node's numbers.
func (c *cpioWriter) add(name string, mode uint32, data []byte, major, minor int) {
	if c.err != nil {
		return
	}
	c.ino++
	nlink := 1
	if mode&unix.S_IFMT == unix.S_IFDIR {
		nlink = 2
	}
	hdr := fmt.Sprintf("070701%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
		c.ino, mode, 0, 0, nlink, 0, len(data), 0, 0, major, minor, len(name)+1, 0)
	rec := append([]byte(hdr+name), 0)
	rec = append(rec, make([]byte, cpioPad(len(rec)))...)
	rec = append(rec, data...)
	rec = append(rec, make([]byte, cpioPad(len(data)))...)
	_, c.err = c.w.Write(rec)
}

func cpioPad(n int) int { return (4 - n%4) % 4 }
