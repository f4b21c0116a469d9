package main

import (
	"flag"
	"fmt"
	"net/netip"
	"os"
	"strings"

	"github.com/tapfw/tapfw/pkg/pve"
	"github.com/tapfw/tapfw/pkg/ruleset"
)

// import-pve: a Proxmox VE configuration tree into tapfw's configs. It
// reads files and writes files; it installs nothing.

func importPVEFlags(fs *flag.FlagSet) runFunc {
	dir := fs.String("pve-dir", "/etc/pve", "the Proxmox VE configuration tree to read `DIR`")
	node := fs.String("node", "", "the node whose host firewall and guests to import `NAME` (default: this machine's short host name)")
	local := fs.String("local-network", "", "the management network when cluster.fw has no local_network alias `CIDR`")
	out := fs.String("out", "", "where to write tapfw.conf and nics/<port>.json `DIR` (required)")
	return func(o *operator, _ []string) int { return o.importPVE(*dir, *node, *local, *out) }
}

// importPVE writes the configs; exit status 0 when everything was
// imported, 3 when items were left out (each on stderr, FILE:LINE:
// reason), 1 when nothing was written.
func (o *operator) importPVE(dir, node, local, out string) int {
	if out == "" {
		return o.fail("import-pve: --out is required")
	}
	if local != "" {
		if _, err := netip.ParsePrefix(local); err != nil {
			return o.fail("import-pve: --local-network %q is not a CIDR", local)
		}
	}
	if node == "" {
		h, err := os.Hostname()
		if err != nil {
			return o.fail("import-pve: --node: %v", err)
		}
		node, _, _ = strings.Cut(h, ".")
	}
	tree, probs, err := pve.Load(dir, node)
	if err != nil {
		return o.fail("import-pve: %v", err)
	}
	r := pve.Convert(tree, pve.Options{LocalNetwork: local, Limits: ruleset.Limits})
	if err := r.Write(out); err != nil {
		return o.fail("import-pve: %v", err)
	}
	probs = pve.Sorted(append(probs, r.Problems...))
	for _, p := range probs {
		fmt.Fprintln(o.stderr, p)
	}
	fmt.Fprintf(o.stdout, "wrote %s/tapfw.conf and %d NIC files in %s/nics; %d items left out\n", out, len(r.NICs), out, len(probs))
	if len(probs) > 0 {
		return 3
	}
	return 0
}
