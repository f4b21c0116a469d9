package pve

import (
	"bufio"
	"fmt"
	"io"
	"net/netip"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// Guest is a VM (qemu-server) or container (lxc) config: its NICs.
type Guest struct {
	File      string
	VMID      int
	Container bool
	NICs      []NIC
}

// NIC is one netN of a guest: its bridge, MAC, firewall flag and the
// addresses its config gives (ipconfigN for a VM, ip=/ip6= for a
// container). Its VLAN tag does not matter: tapfw filters the port.
type NIC struct {
	Index    int
	Line     int
	Bridge   string
	MAC      string
	Firewall bool
	IPs      []netip.Addr
}

// Port is the host-side device of the NIC: tap<vmid>i<N> for a VM,
// veth<vmid>i<N> for a container, as Proxmox VE names them.
func (g *Guest) Port(n NIC) string {
	if g.Container {
		return fmt.Sprintf("veth%di%d", g.VMID, n.Index)
	}
	return fmt.Sprintf("tap%di%d", g.VMID, n.Index)
}

var (
	netKeyRE = regexp.MustCompile(`^net(\d+)$`)
	ipcfgRE  = regexp.MustCompile(`^ipconfig(\d+)$`)
	macRE    = regexp.MustCompile(`^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$`)
)

// ParseGuest reads a guest's config, its current section (snapshots
// follow in [name] sections and are not read).
func ParseGuest(name string, vmid int, container bool, r io.Reader) (*Guest, []Problem) {
	g := &Guest{File: name, VMID: vmid, Container: container}
	var probs []Problem
	ipcfg := map[int]string{}
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "[") {
			break
		}
		key, value, ok := strings.Cut(line, ":")
		if !ok || strings.HasPrefix(line, "#") {
			continue
		}
		key, value = strings.TrimSpace(key), strings.TrimSpace(value)
		if m := netKeyRE.FindStringSubmatch(key); m != nil {
			idx, _ := strconv.Atoi(m[1])
			nic, err := parseNIC(idx, n, value, container)
			if err != nil {
				probs = append(probs, Problem{name, n, err.Error()})
				continue
			}
			g.NICs = append(g.NICs, nic)
		} else if m := ipcfgRE.FindStringSubmatch(key); m != nil && !container {
			idx, _ := strconv.Atoi(m[1])
			ipcfg[idx] = value
		}
	}
	for i := range g.NICs {
		if v, ok := ipcfg[g.NICs[i].Index]; ok {
			g.NICs[i].IPs = append(g.NICs[i].IPs, addrsOf(v)...)
		}
	}
	sort.Slice(g.NICs, func(i, j int) bool { return g.NICs[i].Index < g.NICs[j].Index })
	return g, probs
}

// parseNIC reads "virtio=MAC,bridge=vmbr0,firewall=1" (a VM) or
// "name=eth0,bridge=vmbr0,hwaddr=MAC,ip=...,firewall=1" (a container).
func parseNIC(idx, line int, v string, container bool) (NIC, error) {
	nic := NIC{Index: idx, Line: line}
	for i, kv := range strings.Split(v, ",") {
		k, val, _ := strings.Cut(kv, "=")
		switch {
		case k == "bridge":
			nic.Bridge = val
		case k == "firewall":
			nic.Firewall = parseBool(val)
		case k == "hwaddr" && container, i == 0 && !container && macRE.MatchString(val):
			nic.MAC = strings.ToLower(val)
		case k == "macaddr" && !container:
			nic.MAC = strings.ToLower(val)
		}
	}
	if container {
		nic.IPs = addrsOf(v)
	}
	switch {
	case nic.Bridge == "":
		return nic, fmt.Errorf("net%d: no bridge (a NIC without one is not on a bridge tapfw filters)", idx)
	case nic.MAC == "":
		return nic, fmt.Errorf("net%d: no MAC address", idx)
	}
	return nic, nil
}

// addrsOf reads the ip= and ip6= of a NIC or ipconfig value: static
// addresses only (dhcp, auto and manual give none).
func addrsOf(v string) []netip.Addr {
	var out []netip.Addr
	for _, kv := range strings.Split(v, ",") {
		k, val, _ := strings.Cut(kv, "=")
		if k != "ip" && k != "ip6" {
			continue
		}
		if p, err := netip.ParsePrefix(val); err == nil {
			out = append(out, p.Addr())
		} else if a, err := netip.ParseAddr(val); err == nil {
			out = append(out, a)
		}
	}
	return out
}

// ParseCorosync reads the cluster's ring addresses from corosync.conf.
func ParseCorosync(name string, r io.Reader) ([]netip.Addr, []Problem) {
	var out []netip.Addr
	var probs []Problem
	sc := bufio.NewScanner(r)
	ringRE := regexp.MustCompile(`^ring\d+_addr:\s*(\S+)`)
	for n := 1; sc.Scan(); n++ {
		m := ringRE.FindStringSubmatch(strings.TrimSpace(sc.Text()))
		if m == nil {
			continue
		}
		a, err := netip.ParseAddr(m[1])
		if err != nil {
			probs = append(probs, Problem{name, n, fmt.Sprintf("ring address %q is not an address (a host name is not resolved)", m[1])})
			continue
		}
		out = append(out, a)
	}
	return out, probs
}

// parseBool reads a boolean of a guest's config as Proxmox VE does: 1,
// on, yes or true (in any case) is true.
func parseBool(v string) bool {
	switch strings.ToLower(v) {
	case "1", "on", "yes", "true":
		return true
	}
	return false
}
