// Package harness is what the benchmark's phases share: the run's
// options, the sandbox namespaces (every one deleted at the end, also on a
// signal), progress lines, and running commands inside a namespace.
package harness

import (
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/tapfw/tapfw/pkg/testnet"
)

// Options are the settings of a run, from the command line.
type Options struct {
	Plugin    string
	Ns        []int // control plane: taps installed before measuring
	NftNs     []int // control plane, nftables backend only: more N after Ns
	DpNs      []int // data plane: managed taps beside the two VMs
	Calls     int
	Duration  time.Duration
	Jobs      int
	Bridges   int
	Iptables  string        // auto, nft or legacy
	Backend   string        // the plugin's TAPFW_BACKEND: "" (its default), iptables or nftables
	Backends  []string      // the backends to measure one after the other (-backend)
	TCPTime   time.Duration // established traffic: iperf3 time per run; 0 skips it
	JSONPath  string
	ChartPath string
	MDPath    string
	FromJSON  string
	CtTimeout int
	Count     int // packets sent for the rules-checked cross-check
	SkipCP    bool
	SkipBase  bool
	SkipDP    bool
	Quick     bool
	Verbose   bool
	Cmdline   string
}

// Harness holds the run's state; Cleanup may run from the signal path
// while a phase is still going.
type Harness struct {
	O     *Options
	start time.Time

	spaces testnet.Spaces
	mu     sync.Mutex
	tmp    string // lock files
}

// New starts the clock of a run.
func New(o *Options) *Harness { return &Harness{O: o, start: time.Now()} }

// Start is when the run started.
func (h *Harness) Start() time.Time { return h.start }

// Tmp is the run's temporary directory (for lock files), made on first use.
func (h *Harness) Tmp() (string, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.tmp == "" {
		d, err := os.MkdirTemp("", "tapfw-bench-")
		if err != nil {
			return "", err
		}
		h.tmp = d
	}
	return h.tmp, nil
}

// NewNS creates a namespace that Cleanup deletes.
func (h *Harness) NewNS(prefix string) (*testnet.NS, error) { return h.spaces.NewNS(prefix) }

// NewHostNS is a sandbox hypervisor: a namespace with the given bridges
// (no addresses) up.
func (h *Harness) NewHostNS(prefix string, bridges []string) (*testnet.NS, error) {
	ns, err := h.NewNS(prefix)
	if err != nil {
		return nil, err
	}
	for _, br := range bridges {
		if err := testnet.AddBridge(ns, br, ""); err != nil {
			return nil, err
		}
	}
	return ns, nil
}

// DropNS deletes namespaces before the end of the run (to free the memory
// of a large ruleset).
func (h *Harness) DropNS(list ...*testnet.NS) {
	if err := h.spaces.Drop(list...); err != nil {
		fmt.Fprintf(os.Stderr, "tapfw-bench: %v\n", err)
	}
}

// Cleanup deletes every namespace and the temporary directory; a second
// call does nothing.
func (h *Harness) Cleanup() {
	if err := h.spaces.Close(); err != nil {
		fmt.Fprintf(os.Stderr, "tapfw-bench: %v\n", err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.tmp != "" {
		_ = os.RemoveAll(h.tmp)
		h.tmp = ""
	}
}

// Progress prints one line to stderr, prefixed with the time since start.
func (h *Harness) Progress(format string, a ...any) {
	el := time.Since(h.start).Round(time.Second)
	fmt.Fprintf(os.Stderr, "[%8s] %s\n", el, fmt.Sprintf(format, a...))
}
