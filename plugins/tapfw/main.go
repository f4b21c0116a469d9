// Command tapfw is a CNI plugin that installs the firewall of one VM tap
// (or container veth) on a Linux bridge: its chains, dispatch jumps and
// ipsets. It keeps no state of its own; the kernel's netfilter state is the
// state.
package main

import (
	"io"
	"log"
	"os"
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
	p := newPlugin()
	skel.PluginMainFuncs(skel.CNIFuncs{
		Add:    p.cmdAdd,
		Del:    p.cmdDel,
		Check:  p.cmdCheck,
		GC:     p.cmdGC,
		Status: p.cmdStatus,
	}, version.PluginSupports("0.4.0", "1.0.0", "1.1.0"), about)
}
