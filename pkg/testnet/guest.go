package testnet

// Running a guest built by PrepareGuestImage: QEMU in a test namespace, a
// shell on the serial console, poweroff and the choice of accelerator.

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// GuestConfig says how StartGuest runs QEMU.
type GuestConfig struct {
	Name string // for messages and the guest's hostname; default "guest"
	NS   *NS    // the namespace QEMU runs in (required: never the host's)
	// Tap is the tap QEMU creates for the guest's virtio-net NIC (eth0);
	// "" gives the guest no NIC.
	Tap string
	MAC string // the NIC's MAC; "" for a random locally administered one
	// Script and DownScript are QEMU's script= and downscript= for the tap:
	// paths, or "no" (also for ""). QEMU runs them in NS with Env.
	Script, DownScript string
	Env                []string // added to QEMU's environment, hence the scripts'
	MemMB              int      // guest memory; default 160
	// Accel is "kvm" or "tcg"; "" uses KVM where a probe guest runs at
	// speed there (see GuestAccel), else TCG.
	Accel     string
	QEMUFlags []string // more QEMU arguments, e.g. a second NIC
}

// Guest is a running QEMU guest with a shell on its serial console.
type Guest struct {
	Name  string
	Accel string // "kvm" or "tcg"

	cfg     GuestConfig
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	console guestConsole
	stderr  guestConsole
	dir     string // the monitor's socket
	started time.Time
	ready   atomic.Int64  // BootTime, in nanoseconds
	done    chan struct{} // closed when QEMU has exited
	waitErr error         // cmd.Wait's result, set before done is closed

	runMu       sync.Mutex // one Run at a time; guards the fields below
	seq         int        // numbers the markers
	interrupted bool       // ^C was sent: the shell may have lost input
	closeOnce   sync.Once
}

// StartGuest starts QEMU for img in cfg.NS (`ip netns exec NS
// qemu-system-x86_64 ...`): serial console on QEMU's stdio, an HMP monitor
// on a unix socket, the NIC on cfg.Tap. It returns at once; WaitReady waits
// for the shell. Close it (t.Cleanup) in every case.
func StartGuest(img *GuestImage, cfg GuestConfig) (*Guest, error) {
	if img == nil || cfg.NS == nil {
		return nil, errors.New("StartGuest: needs an image and a namespace")
	}
	if cfg.Name == "" {
		cfg.Name = "guest"
	}
	// The name goes on the kernel command line and into QEMU's options.
	if !guestNameRE.MatchString(cfg.Name) || cfg.Tap != "" && !guestNameRE.MatchString(cfg.Tap) {
		return nil, fmt.Errorf("StartGuest: name %q or tap %q is not [A-Za-z0-9_.-]+", cfg.Name, cfg.Tap)
	}
	if cfg.MAC == "" {
		cfg.MAC = randomMAC().String()
	}
	accel := cfg.Accel
	if accel == "" {
		accel = GuestAccel(img, cfg.NS)
	}
	dir, err := os.MkdirTemp("", "tfwguest-")
	if err != nil {
		return nil, err
	}
	g := &Guest{Name: cfg.Name, Accel: accel, cfg: cfg, dir: dir, done: make(chan struct{})}
	args := append([]string{"netns", "exec", cfg.NS.Name, guestQEMU}, g.qemuArgs(img)...)
	g.cmd = exec.Command("ip", args...)
	g.cmd.Env = append(os.Environ(), cfg.Env...)
	g.cmd.Stdout, g.cmd.Stderr = &g.console, &g.stderr
	// A script's child holding stdout open must not hold up Wait.
	g.cmd.WaitDelay = 2 * time.Second
	if g.stdin, err = g.cmd.StdinPipe(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	g.started = time.Now()
	if err := g.cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("guest %s: start %s: %w", cfg.Name, guestQEMU, err)
	}
	go func() {
		g.waitErr = g.cmd.Wait()
		close(g.done)
	}()
	return g, nil
}

var guestNameRE = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)

// qemuOpt escapes a value for QEMU's comma-separated options.
func qemuOpt(v string) string { return strings.ReplaceAll(v, ",", ",,") }

// qemuArgs is QEMU's command line for img.
func (g *Guest) qemuArgs(img *GuestImage) []string {
	mem := g.cfg.MemMB
	if mem <= 0 {
		mem = guestMemMB
	}
	cmdline := guestCmdline + " tfwname=" + g.cfg.Name
	args := []string{"-name", g.cfg.Name, "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
		"-machine", "pc", "-accel", g.Accel, "-smp", "1", "-m", strconv.Itoa(mem),
		"-kernel", img.Kernel, "-initrd", img.Initrd,
		"-chardev", "stdio,id=con0,signal=off", "-serial", "chardev:con0",
		"-monitor", "unix:" + qemuOpt(filepath.Join(g.dir, "monitor")) + ",server=on,wait=off"}
	if g.cfg.Tap != "" {
		script, down := g.cfg.Script, g.cfg.DownScript
		if script == "" {
			script = "no"
		}
		if down == "" {
			down = "no"
		}
		cmdline += " tfwnic=1"
		args = append(args,
			"-netdev", fmt.Sprintf("tap,id=n0,ifname=%s,script=%s,downscript=%s", g.cfg.Tap, qemuOpt(script), qemuOpt(down)),
			"-device", "virtio-net-pci,netdev=n0,mac="+qemuOpt(g.cfg.MAC)+",romfile=")
	}
	args = append(args, "-append", cmdline)
	return append(args, g.cfg.QEMUFlags...)
}

// guestConsole collects what QEMU writes and wakes those waiting for more.
type guestConsole struct {
	mu      sync.Mutex
	buf     []byte
	changed chan struct{} // closed on the next Write
}

func (c *guestConsole) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.buf = append(c.buf, p...)
	if c.changed != nil {
		close(c.changed)
		c.changed = nil
	}
	return len(p), nil
}

// since returns a copy of what was written from offset from on, and a
// channel closed by the next Write.
func (c *guestConsole) since(from int) ([]byte, <-chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.changed == nil {
		c.changed = make(chan struct{})
	}
	if from > len(c.buf) {
		from = len(c.buf)
	}
	return append([]byte(nil), c.buf[from:]...), c.changed
}

func (c *guestConsole) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.buf)
}

func (c *guestConsole) String() string {
	b, _ := c.since(0)
	return string(b)
}

// Console is everything the guest printed on its serial console so far
// (commands are not echoed).
func (g *Guest) Console() string { return g.console.String() }

// Stderr is what QEMU and its scripts printed on stderr.
func (g *Guest) Stderr() string { return g.stderr.String() }

// BootTime is the time from StartGuest to the shell's first answer in
// WaitReady; zero before.
func (g *Guest) BootTime() time.Duration { return time.Duration(g.ready.Load()) }

// Exited reports whether QEMU has exited.
func (g *Guest) Exited() bool {
	select {
	case <-g.done:
		return true
	default:
		return false
	}
}

// Wait waits up to d for QEMU to exit and reports whether it has.
func (g *Guest) Wait(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-g.done:
		return true
	case <-t.C:
		return false
	}
}

// ExitErr is QEMU's exit (nil for status 0); nil while it runs.
func (g *Guest) ExitErr() error {
	if !g.Exited() {
		return nil
	}
	return g.waitErr
}

// waitConsole waits up to timeout for match to find what it looks for in
// the console from offset from on; it fails early when QEMU exits.
func (g *Guest) waitConsole(from int, timeout time.Duration, match func([]byte) bool) error {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		out, changed := g.console.since(from)
		if match(out) {
			return nil
		}
		select {
		case <-changed:
		case <-g.done:
			if out, _ := g.console.since(from); match(out) {
				return nil
			}
			return fmt.Errorf("QEMU exited (%v)", g.waitErr)
		case <-timer.C:
			return fmt.Errorf("no answer after %v", timeout)
		}
	}
}

// failure wraps err with the guest's name and the ends of its console and
// QEMU's stderr.
func (g *Guest) failure(what string, err error) error {
	return fmt.Errorf("guest %s (%s): %s: %w\n--- console (end):\n%s\n--- QEMU stderr:\n%s",
		g.Name, g.Accel, what, err, lastChars(g.Console(), 3000), lastChars(g.Stderr(), 2000))
}

func lastChars(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// WaitReady waits up to timeout for /init's ready marker and the shell's
// answer to a first command.
func (g *Guest) WaitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	err := g.waitConsole(0, timeout, func(b []byte) bool { return bytes.Contains(b, []byte(guestReadyMarker)) })
	if err != nil {
		return g.failure("boot", err)
	}
	if _, code, err := g.Run("true", time.Until(deadline)); err != nil {
		return err
	} else if code != 0 {
		return g.failure("boot", fmt.Errorf("true exited %d", code))
	}
	g.ready.CompareAndSwap(0, int64(time.Since(g.started)))
	return nil
}

// Run runs cmd (any shell text, several lines too) in the guest's shell,
// which keeps its state (cd, variables) across calls, and returns its
// output (stdout and stderr together, stdin is /dev/null) and exit status.
// The command travels base64-encoded, so nothing in it can upset the tty
// or be mistaken for the markers around its output; its output goes to a
// file first, so kernel messages and background jobs cannot mix into it
// (redirect the output of background jobs that matters: what they print
// later goes to a deleted file). When the command outlasts timeout, Run
// sends ^C and returns an error; the next call first waits for the shell
// to answer again. `exit` ends the shell: /init starts another one, and
// Run returns an error.
func (g *Guest) Run(cmd string, timeout time.Duration) (string, int, error) {
	if len(cmd) > guestMaxCommand {
		return "", -1, fmt.Errorf("guest %s: command of %d bytes, more than %d", g.Name, len(cmd), guestMaxCommand)
	}
	deadline := time.Now().Add(timeout)
	g.runMu.Lock()
	defer g.runMu.Unlock()
	what := "run " + strconv.Quote(cmd)
	if err := g.resync(deadline); err != nil {
		return "", -1, g.failure(what, err)
	}
	g.seq++
	begin := []byte(fmt.Sprintf("tfw-b-%d\n", g.seq))
	end := []byte(fmt.Sprintf("\ntfw-e-%d ", g.seq))
	from := g.console.len()
	if _, err := io.WriteString(g.stdin, guestRunInput(cmd, g.seq)); err != nil {
		return "", -1, g.failure(what, err)
	}
	var out []byte
	code := -1
	restarted := false
	err := g.waitConsole(from, time.Until(deadline), func(b []byte) bool {
		before, b, ok := bytes.Cut(b, begin)
		if !ok {
			return false
		}
		o, rest, ok := bytes.Cut(b, end)
		if !ok {
			return false
		}
		status, _, ok := bytes.Cut(rest, []byte("\n"))
		if ok {
			out, code = o, atoiOr(string(status), -1)
			restarted = bytes.Contains(before, []byte(guestRestartMarker))
		}
		return ok
	})
	if err != nil {
		_, _ = io.WriteString(g.stdin, "\x03") // SIGINT to the command
		g.interrupted = true
		return "", -1, g.failure(what, err)
	}
	if restarted {
		return string(out), code, g.failure(what, errors.New("the shell exited and /init started another: its directory and variables are gone"))
	}
	return string(out), code, nil
}

// guestRunInput is what Run sends for cmd: cmd base64-decoded into a
// variable, `command eval` (errors, even syntax errors, only set its
// status) with its output to a file, and on a line of its own (read once
// the command is done; by the next shell if the command ended this one)
// the begin marker, the output, the end marker and the exit status. The
// markers are printed in two pieces, so nothing sent contains them.
func guestRunInput(cmd string, seq int) string {
	var in strings.Builder
	in.WriteString("tfw_c=$(base64 -d <<'tfw-eof'\n")
	enc := base64.StdEncoding.EncodeToString([]byte(cmd))
	for len(enc) > 0 {
		n := min(len(enc), 76)
		in.WriteString(enc[:n] + "\n")
		enc = enc[n:]
	}
	out := fmt.Sprintf("/tmp/.tfw-out-%d", seq)
	fmt.Fprintf(&in, "tfw-eof\n); command eval \"$tfw_c\" </dev/null >%s 2>&1\n", out)
	fmt.Fprintf(&in, "tfw_s=$?; printf '%%s%%s\\n' tfw- b-%d; cat %s; rm -f %s; printf '\\n%%s%%s %%d\\n' tfw- e-%d \"${tfw_s:--1}\"\n",
		seq, out, out, seq)
	return in.String()
}

// resync, after a ^C, sends a marker line every half second until the
// shell prints one. After two seconds without an answer (a loop of shell
// builtins runs on, as the shell catches SIGINT) it sends ^\ once: the
// shell exits on SIGQUIT, and /init starts another. The caller holds runMu.
func (g *Guest) resync(deadline time.Time) error {
	if !g.interrupted {
		return nil
	}
	first := g.seq + 1
	from := g.console.len()
	re := regexp.MustCompile(`tfw-s-(\d+)\n`)
	quit := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		if !quit.IsZero() && time.Now().After(quit) {
			_, _ = io.WriteString(g.stdin, "\x1c")
			quit = time.Time{}
		}
		g.seq++
		if _, err := fmt.Fprintf(g.stdin, "printf '%%s%%s\\n' tfw- s-%d\n", g.seq); err != nil {
			return err
		}
		err := g.waitConsole(from, min(500*time.Millisecond, time.Until(deadline)), func(b []byte) bool {
			for _, m := range re.FindAllSubmatch(b, -1) {
				if atoiOr(string(m[1]), 0) >= first {
					return true
				}
			}
			return false
		})
		if err == nil {
			g.interrupted = false
			return nil
		}
		if g.Exited() {
			return err
		}
	}
	return errors.New("the shell did not answer after ^C")
}

func atoiOr(s string, def int) int {
	if n, err := strconv.Atoi(strings.TrimSpace(s)); err == nil {
		return n
	}
	return def
}

// Poweroff powers the guest off (`poweroff -f`) and waits up to timeout
// for QEMU to exit, which runs the downscript. If QEMU does not exit it
// quits it on the monitor, then kills it, and returns an error; it also
// returns QEMU's error exit.
func (g *Guest) Poweroff(timeout time.Duration) error {
	if g.Exited() {
		return g.ExitErr()
	}
	deadline := time.Now().Add(timeout)
	g.runMu.Lock()
	err := g.resync(deadline)
	if err == nil {
		_, err = io.WriteString(g.stdin, "poweroff -f\n")
	}
	g.runMu.Unlock()
	if err == nil && !g.Wait(time.Until(deadline)) {
		err = fmt.Errorf("QEMU still running %v after poweroff -f", timeout)
	}
	if err != nil {
		return g.failure("poweroff", fmt.Errorf("%w; stopped QEMU: %v", err, g.stop()))
	}
	if err := g.ExitErr(); err != nil {
		return g.failure("poweroff", err)
	}
	return nil
}

// Quit quits QEMU on its monitor (the downscript runs) and waits up to
// timeout for it to exit.
func (g *Guest) Quit(timeout time.Duration) error {
	if err := g.quit(timeout); err != nil {
		return g.failure("quit", err)
	}
	return nil
}

func (g *Guest) quit(timeout time.Duration) error {
	if err := g.monitor("quit"); err != nil && !g.Exited() {
		return fmt.Errorf("monitor: %w", err)
	}
	if !g.Wait(timeout) {
		return fmt.Errorf("QEMU still running %v after quit on the monitor", timeout)
	}
	return nil
}

// monitor sends one HMP command to QEMU's monitor and reads what QEMU
// answers for a second, or until it closes the socket (as it does on
// quit): QEMU may drop a command whose client is gone before it is read.
func (g *Guest) monitor(cmd string) error {
	conn, err := net.DialTimeout("unix", filepath.Join(g.dir, "monitor"), time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(time.Second))
	if _, err := io.WriteString(conn, cmd+"\n"); err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, conn)
	return nil
}

// stop ends QEMU: monitor quit, then SIGKILL.
func (g *Guest) stop() error {
	if g.Exited() {
		return nil
	}
	qerr := g.quit(guestStopTimeout)
	if qerr == nil {
		return nil
	}
	_ = g.cmd.Process.Kill()
	if !g.Wait(guestStopTimeout) {
		return fmt.Errorf("%v; QEMU (pid %d) survived SIGKILL", qerr, g.cmd.Process.Pid)
	}
	return fmt.Errorf("%v: killed it", qerr)
}

// Close stops QEMU if it still runs (monitor quit, then kill) and removes
// the monitor's folder. Always safe, also twice; for t.Cleanup.
func (g *Guest) Close() error {
	var err error
	g.closeOnce.Do(func() {
		err = g.stop()
		_ = g.stdin.Close()
		_ = os.RemoveAll(g.dir)
	})
	return err
}

var (
	guestAccelOnce sync.Once
	guestAccel     string
)

// GuestAccel returns the accelerator guests use: "kvm" where /dev/kvm runs
// a probe guest at speed, else "tcg". Nested KVM can start a guest and then
// run its code thousands of times slower than TCG: QEMU does not notice, so
// its own fallback (-accel kvm -accel tcg) does not help. The probe (a 64
// KiB firmware that enters long mode, runs a million-iteration loop and
// exits through isa-debug-exit: well under a second on working KVM or TCG)
// runs in ns; its answer is kept for the process and, per boot of the
// machine, beside img in the cache. TAPFW_GUEST_ACCEL=kvm|tcg overrides.
func GuestAccel(img *GuestImage, ns *NS) string {
	guestAccelOnce.Do(func() { guestAccel = detectGuestAccel(img, ns) })
	return guestAccel
}

func detectGuestAccel(img *GuestImage, ns *NS) string {
	if v := os.Getenv("TAPFW_GUEST_ACCEL"); v != "" {
		return v
	}
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return "tcg"
	}
	f.Close()
	bootID, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return "tcg"
	}
	memo := filepath.Join(filepath.Dir(img.Dir), "accel-"+strings.TrimSpace(string(bootID)))
	if b, err := os.ReadFile(memo); err == nil && (string(b) == "kvm" || string(b) == "tcg") {
		return string(b)
	}
	accel := "tcg"
	if runProbe(ns, "kvm") {
		accel = "kvm"
	}
	_ = os.WriteFile(memo, []byte(accel), 0o644)
	return accel
}

// kvmProbeTimeout is what the probe may take, QEMU's start included.
const kvmProbeTimeout = 2 * time.Second

// kvmProbeCode is the probe firmware's code at its start (linear 0xf0000),
// assembled with GNU as from:
//
//	.code16
//	  cli; xor %ax,%ax; mov %ax,%ds
//	  movl $0x2003,0x1000; movl $0x3003,0x2000; movl $0x83,0x3000  # 2 MiB identity map
//	  lgdtl %cs:gdtr
//	  mov $0x20,%eax; mov %eax,%cr4                                # PAE
//	  mov $0x1000,%eax; mov %eax,%cr3
//	  mov $0xc0000080,%ecx; rdmsr; or $0x100,%eax; wrmsr           # EFER.LME
//	  mov %cr0,%eax; and $0x9fffffff,%eax; or $0x80000001,%eax; mov %eax,%cr0
//	  ljmpl $0x08,$(0xf0000+long64)
//	.code64
//	long64: mov $0x100000,%ecx; mov $0x8000,%edi
//	1: mov %rcx,(%rdi); dec %rcx; jnz 1b
//	  mov $0x2a,%al; out %al,$0xf4                                 # QEMU exits 85
//	2: hlt; jmp 2b
//	.balign 8
//	gdt: .quad 0, 0x00209a0000000000
//	gdtr: .word 15; .long 0xf0000+gdt
var kvmProbeCode = []byte{
	0xfa, 0x31, 0xc0, 0x8e, 0xd8, 0x66, 0xc7, 0x06, 0x00, 0x10, 0x03, 0x20, 0x00, 0x00, 0x66, 0xc7,
	0x06, 0x00, 0x20, 0x03, 0x30, 0x00, 0x00, 0x66, 0xc7, 0x06, 0x00, 0x30, 0x83, 0x00, 0x00, 0x00,
	0x2e, 0x66, 0x0f, 0x01, 0x16, 0x90, 0x00, 0x66, 0xb8, 0x20, 0x00, 0x00, 0x00, 0x0f, 0x22, 0xe0,
	0x66, 0xb8, 0x00, 0x10, 0x00, 0x00, 0x0f, 0x22, 0xd8, 0x66, 0xb9, 0x80, 0x00, 0x00, 0xc0, 0x0f,
	0x32, 0x66, 0x0d, 0x00, 0x01, 0x00, 0x00, 0x0f, 0x30, 0x0f, 0x20, 0xc0, 0x66, 0x25, 0xff, 0xff,
	0xff, 0x9f, 0x66, 0x0d, 0x01, 0x00, 0x00, 0x80, 0x0f, 0x22, 0xc0, 0x66, 0xea, 0x63, 0x00, 0x0f,
	0x00, 0x08, 0x00, 0xb9, 0x00, 0x00, 0x10, 0x00, 0xbf, 0x00, 0x80, 0x00, 0x00, 0x48, 0x89, 0x0f,
	0x48, 0xff, 0xc9, 0x75, 0xf8, 0xb0, 0x2a, 0xe6, 0xf4, 0xf4, 0xeb, 0xfd, 0x8d, 0xb4, 0x00, 0x00,
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x9a, 0x20, 0x00,
	0x0f, 0x00, 0x80, 0x00, 0x0f, 0x00,
}

// runProbe runs the probe firmware under accel in ns and reports whether
// it finished in time.
func runProbe(ns *NS, accel string) bool {
	rom := make([]byte, 64<<10)
	for i := range rom {
		rom[i] = 0xf4 // hlt
	}
	copy(rom, kvmProbeCode)
	copy(rom[0xfff0:], []byte{0xea, 0x00, 0x00, 0x00, 0xf0}) // reset vector: ljmp $0xf000,$0
	f, err := os.CreateTemp("", "tfw-kvm-probe-*.bin")
	if err != nil {
		return false
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(rom); err != nil || f.Close() != nil {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), kvmProbeTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", ns.Name, guestQEMU,
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot", "-machine", "pc", "-accel", accel,
		"-m", "16", "-bios", f.Name(), "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04")
	err = cmd.Run()
	var exit *exec.ExitError
	return errors.As(err, &exit) && exit.ExitCode() == 85
}
