// Command tapfw is a CNI plugin that installs the firewall of one VM tap
// (or container veth) on a Linux bridge: its chains, dispatch jumps and
// ipsets. It keeps no state of its own; the kernel's netfilter state is the
// state.
package main

import (
	"fmt"
	"io"
	"log"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/version"
)

const about = "tapfw: per-tap firewall for VMs and containers on Linux bridges (CNI plugin)"

// processStart is when the process began, for TAPFW_TRACE.
var processStart = time.Now()

func main() {
	// tapfw logs nothing through package log; a library that does (netlink
	// on other programs' ipsets) must not fill the runtime's logs.
	log.SetOutput(io.Discard)
	if os.Getenv("CNI_COMMAND") == "" && len(os.Args) > 1 {
		os.Exit(runCommand(os.Args[1:], os.Stdout, os.Stderr))
	}
	tuneGC()
	p := newPlugin()
	e := skel.PluginMainFuncsWithError(skel.CNIFuncs{
		Add:    p.cmdAdd,
		Del:    p.cmdDel,
		Check:  p.cmdCheck,
		GC:     p.cmdGC,
		Status: p.cmdStatus,
	}, version.PluginSupports("0.4.0", "1.0.0", "1.1.0"), about)
	if os.Getenv("TAPFW_TRACE") != "" {
		tracePeakRSS(os.Stderr)
	}
	if e != nil {
		_ = e.Print()
		os.Exit(1)
	}
}

// callMemoryLimit is the heap a CNI call may reach before the collector
// runs: a few times what an ADD at 10,000 taps allocates.
const callMemoryLimit = 256 << 20

// tuneGC keeps the collector out of a CNI call. A call lives tens of
// milliseconds and allocates some MiB; the collector's first cycle, due
// at 4 MiB, would come in the middle of it and take one of a small
// host's cores for milliseconds. It runs only past callMemoryLimit,
// unless GOGC or GOMEMLIMIT say otherwise.
func tuneGC() {
	if os.Getenv("GOGC") != "" || os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	debug.SetGCPercent(-1)
	debug.SetMemoryLimit(callMemoryLimit)
}

// tracePeakRSS writes the process's peak resident memory, for
// TAPFW_TRACE: VmHWM, which counts this program only. The rusage a
// parent gets counts the parent's own memory too when it started the
// process with vfork, as Go programs do.
func tracePeakRSS(w io.Writer) {
	if kb, ok := peakRSS(); ok {
		fmt.Fprintf(w, "tapfw: peak rss %d KiB\n", kb)
	}
}

func peakRSS() (int64, bool) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb, err == nil
		}
	}
	return 0, false
}
