package netfilter

import (
	"bytes"
	"fmt"
	"os/exec"
	"strings"

	"github.com/coreos/go-iptables/iptables"
)

// Tables is the narrow interface to iptables the firewall needs.
type Tables interface {
	// Save returns `iptables-save -t filter`.
	Save() ([]byte, error)
	// Restore applies a restore file with --noflush in one transaction:
	// it lands whole or not at all.
	Restore(data []byte) error
	// Reader returns a reader of the filter table's chains as they are
	// now: the cheapest this backend has.
	Reader() (Reader, error)
}

// Mode names an iptables backend.
type Mode string

// The iptables backends tapfw can drive.
const (
	ModeAuto   Mode = "auto"   // whatever `iptables` is on this host
	ModeNFT    Mode = "nft"    // iptables-nft
	ModeLegacy Mode = "legacy" // iptables-legacy
)

// ParseMode reads a mode name; "" is auto.
func ParseMode(s string) (Mode, error) {
	switch Mode(s) {
	case "", ModeAuto:
		return ModeAuto, nil
	case ModeNFT, ModeLegacy:
		return Mode(s), nil
	}
	return "", fmt.Errorf("iptables backend %q is not auto, nft or legacy", s)
}

// Exec runs the iptables-save and iptables-restore of one backend.
type Exec struct {
	Mode Mode
	// WaitSeconds is how long iptables-restore waits for the xtables lock
	// (legacy); iptables-nft does not need it.
	WaitSeconds int
	// V6 drives ip6tables instead of iptables.
	V6 bool
}

// IPv6 is the same backend for ip6tables.
func (e Exec) IPv6() Exec { e.V6 = true; return e }

func (e Exec) cmd() string {
	if e.V6 {
		return "ip6tables"
	}
	return "iptables"
}

var _ Tables = Exec{}

func (e Exec) bin(tool string) string {
	switch e.Mode {
	case ModeNFT:
		return e.cmd() + "-nft-" + tool
	case ModeLegacy:
		return e.cmd() + "-legacy-" + tool
	}
	return e.cmd() + "-" + tool
}

// Reader implements Tables: with iptables-nft, chains are read one by one
// over netlink; with iptables-legacy the whole table is read once.
func (e Exec) Reader() (Reader, error) {
	if e.Mode == ModeNFT || (e.Mode == ModeAuto && NFTActive()) {
		return NewNFTReader(e.V6)
	}
	return saveReader(e)
}

// Save implements Tables.
func (e Exec) Save() ([]byte, error) { return e.save("-t", "filter") }

// SaveCounters is Save with each rule's packet and byte counters
// ("[packets:bytes] -A ..."), for operators' views.
func (e Exec) SaveCounters() ([]byte, error) { return e.save("-c", "-t", "filter") }

func (e Exec) save(args ...string) ([]byte, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(e.bin("save"), args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("running %s: %w: %s", e.bin("save"), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}

// Restore implements Tables.
func (e Exec) Restore(data []byte) error {
	args := []string{"--noflush"}
	if e.WaitSeconds > 0 {
		args = append(args, fmt.Sprintf("--wait=%d", e.WaitSeconds))
	}
	var stderr bytes.Buffer
	cmd := exec.Command(e.bin("restore"), args...)
	cmd.Stdin, cmd.Stderr = bytes.NewReader(data), &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if isLockBusy(msg) {
			return fmt.Errorf("%w: %s", ErrBusy, msg)
		}
		return fmt.Errorf("running %s: %w: %s", e.bin("restore"), err, msg)
	}
	return nil
}

func isLockBusy(stderr string) bool {
	return strings.Contains(stderr, "xtables lock") || strings.Contains(stderr, "Another app is currently holding")
}

// Probe checks that iptables of this mode works here: the binary runs and
// can read the filter table. It uses go-iptables, as STATUS does.
func (e Exec) Probe() error {
	for _, tool := range []string{"save", "restore"} {
		if _, err := exec.LookPath(e.bin(tool)); err != nil {
			return fmt.Errorf("finding %s: %w", e.bin(tool), err)
		}
	}
	path, proto := e.cmd(), iptables.ProtocolIPv4
	if e.Mode != ModeAuto {
		path += "-" + string(e.Mode)
	}
	if e.V6 {
		proto = iptables.ProtocolIPv6
	}
	ipt, err := iptables.New(iptables.Path(path), iptables.IPFamily(proto), iptables.Timeout(5))
	if err != nil {
		return fmt.Errorf("starting iptables: %w", err)
	}
	if _, err := ipt.ListChains("filter"); err != nil {
		return fmt.Errorf("listing the filter table: %w", err)
	}
	return nil
}
