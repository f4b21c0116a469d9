package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/tapfw/tapfw/pkg/model"

	cnins "github.com/containernetworking/cni/pkg/ns"
	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"
	"github.com/vishvananda/netlink"

	"github.com/tapfw/tapfw/pkg/config"
	"github.com/tapfw/tapfw/pkg/netfilter"
	"github.com/tapfw/tapfw/pkg/nft"
)

// Error codes beyond the CNI spec's own (which end at 99).
const (
	errDrift        = 100 // CHECK: the installed firewall differs from the config
	errNotAvailable = 50  // STATUS: the spec's "plugin not available"
)

type plugin struct {
	// be is the backend of the CNI verbs, gc and flush; fw and exec are
	// the iptables backend's parts that the operator's inspection and
	// dry-run commands read (list, show, explain, metrics, render).
	be     backend
	fw     *netfilter.Firewall
	exec   netfilter.Exec
	stderr io.Writer
	// bridgeOf finds the bridge a port is enslaved to.
	bridgeOf func(port string) (string, error)
	// isBridge tells whether an interface is a bridge.
	isBridge func(name string) bool
	envErr   *config.Error // a bad TAPFW_* variable
	// backendName is the backend in use: nftables or iptables.
	backendName string
	// backends are both backends by name, and backendFromEnv says that
	// TAPFW_BACKEND chose, which the config's "backend" does not change.
	backends       map[string]backend
	backendFromEnv bool
	// marksFromEnv says that TAPFW_MARKS chose the nftables backend's
	// mark bits, which the config's "marks" does not change.
	marksFromEnv bool
	holds        holders
}

// holders say whether each backend holds tapfw's state on the host.
type holders struct {
	iptables, nftables func() (bool, error)
	// nftablesUsable says why the kernel cannot run the nftables
	// backend; nil when it can.
	nftablesUsable func() error
}

func newPlugin() *plugin {
	// envErr is the first bad TAPFW_* variable, reported by name.
	var envErr *config.Error
	bad := func(name string, err error) {
		if envErr == nil {
			envErr = &config.Error{Field: name, Err: err, Code: types.ErrInvalidEnvironmentVariables}
		}
	}
	mode, err := netfilter.ModeFromEnv()
	if err != nil {
		bad("TAPFW_IPTABLES", err)
	}
	timeout := 30 * time.Second
	if s := os.Getenv("TAPFW_LOCK_TIMEOUT"); s != "" {
		if d, perr := time.ParseDuration(s); perr == nil && d > 0 {
			timeout = d
		} else {
			bad("TAPFW_LOCK_TIMEOUT", fmt.Errorf("%q is not a positive duration such as 30s", s))
		}
	}
	lockPath := os.Getenv("TAPFW_LOCK")
	if lockPath == "" {
		lockPath = netfilter.DefaultLockPath
	}
	wait := 10
	if s := os.Getenv("TAPFW_XTABLES_WAIT"); s != "" {
		if v, perr := strconv.Atoi(s); perr == nil && v >= 1 && v <= 300 {
			wait = v
		} else {
			bad("TAPFW_XTABLES_WAIT", fmt.Errorf("%q is not a number of seconds from 1 to 300", s))
		}
	}
	ex := netfilter.Exec{Mode: mode, WaitSeconds: wait}
	var tables6 netfilter.Tables
	if ipv6Kernel() {
		tables6 = ex.IPv6()
	}
	p := &plugin{
		fw: &netfilter.Firewall{
			Tables:  ex,
			Tables6: tables6,
			Sets:    netfilter.NetlinkSets{},
			Bridge:  netfilter.NFT{},
			Lock:    netfilter.FileLock{Path: lockPath, Timeout: timeout},
			Log:     os.Stderr,
		},
		exec:     ex,
		stderr:   os.Stderr,
		bridgeOf: bridgeOf,
		isBridge: isBridge,
	}
	k, marksSet := nftKernel(bad)
	if os.Getenv("TAPFW_TRACE") != "" {
		p.fw.Trace, k.Trace, k.Start = os.Stderr, os.Stderr, processStart
	}
	if f := os.Getenv("TAPFW_FAULT"); f != "" {
		p.fw.Fault = faultAt(f)
		k.Fault = p.fw.Fault
	}
	ipt := &iptables{fw: p.fw, exec: ex, sysctl: enableBridgeNF, sysctlCheck: checkBridgeNF, other: nft.Kernel{}.Holds}
	nftb := &nftablesBackend{k: k, lock: p.fw.Lock, sysctl: enableBridgeNF,
		sysctlCheck: checkBridgeNF, other: ipt.holds, fault: p.fw.Fault}
	p.backends = map[string]backend{backendIPTables: ipt, backendNFTables: nftb}
	p.marksFromEnv = marksSet
	p.holds = holders{iptables: ipt.holds, nftables: k.Holds, nftablesUsable: nftablesUsable}
	env := os.Getenv("TAPFW_BACKEND")
	p.backendFromEnv = env != ""
	name, err := chooseBackend(env, p.holds)
	if err != nil {
		bad("TAPFW_BACKEND", err)
	}
	p.use(name)
	p.envErr = envErr
	return p
}

// nftKernel is the nftables backend's kernel, with the mark bits
// TAPFW_MARKS names; set says that it names them.
func nftKernel(bad func(string, error)) (k nft.Kernel, set bool) {
	k = nft.Kernel{Marks: nft.DefaultMarks}
	s := os.Getenv("TAPFW_MARKS")
	if s == "" {
		return k, false
	}
	m, err := marksOf(s)
	if err != nil {
		bad("TAPFW_MARKS", err)
		return k, true
	}
	k.Marks = m
	return k, true
}

// parse reads a call's config and switches to the backend it names.
func (p *plugin) parse(data []byte) (*config.NetConf, error) {
	conf, err := config.Parse(data)
	if err != nil {
		return nil, err
	}
	if err := p.configBackend(conf.Backend); err != nil {
		return nil, err
	}
	if conf.Marks != "" && !p.marksFromEnv {
		m, err := marksOf(conf.Marks)
		if err != nil {
			return nil, &config.Error{Field: "marks", Err: err}
		}
		p.backends[backendNFTables].(*nftablesBackend).k.Marks = m
	}
	return conf, nil
}

// marksOf reads the nftables backend's mark bits.
func marksOf(s string) (nft.Marks, error) {
	mask, err := model.ParseMarkMask(s)
	if err != nil {
		return nft.Marks{}, err
	}
	return nft.MarksFromMask(mask)
}

// use makes the named backend the one calls go to.
func (p *plugin) use(name string) {
	p.backendName, p.be = name, p.backends[name]
}

// configBackend applies the config's "backend" (validated by
// config.Parse): it chooses as TAPFW_BACKEND does, unless that is set.
func (p *plugin) configBackend(name string) error {
	if p.backendFromEnv || name == "" {
		return nil
	}
	chosen, err := chooseBackend(name, p.holds)
	if err != nil {
		return &config.Error{Field: "backend", Err: err}
	}
	p.use(chosen)
	return nil
}

// The backends by name, as TAPFW_BACKEND and the config's "backend" say.
const (
	backendAuto     = "auto"
	backendNFTables = "nftables"
	backendIPTables = "iptables"
)

// chooseBackend resolves a backend name. auto picks the backend whose
// state is on the host, else nftables where the kernel has what it
// needs, else iptables.
func chooseBackend(name string, h holders) (string, error) {
	switch name {
	case backendNFTables, backendIPTables:
		return name, nil
	case "", backendAuto:
	default:
		return backendIPTables, fmt.Errorf("%q is not nftables, iptables or auto", name)
	}
	// The nftables check is one netlink request; it goes first, as most
	// calls on an nftables host are answered by it.
	if holds, err := h.nftables(); err == nil && holds {
		return backendNFTables, nil
	}
	if holds, err := h.iptables(); err == nil && holds {
		return backendIPTables, nil
	}
	if h.nftablesUsable() == nil {
		return backendNFTables, nil
	}
	return backendIPTables, nil
}

// ipv6Kernel reports whether this kernel has IPv6 (not booted with
// ipv6.disable=1): without it there is no IPv6 to filter, and no
// ip6tables to do it with, so the IPv6 part of every plan is skipped.
func ipv6Kernel() bool {
	_, err := os.Stat("/proc/sys/net/ipv6")
	return err == nil
}

// faultAt returns a Fault hook that kills the process with SIGKILL at the
// n-th time it reaches step, for spec "step" (n = 1) or "step:n". Tests
// use it (TAPFW_FAULT) to crash a call between any two of its changes.
func faultAt(spec string) func(string) {
	step, n := spec, 1
	if i := strings.LastIndexByte(spec, ':'); i >= 0 {
		if v, err := strconv.Atoi(spec[i+1:]); err == nil && v > 0 {
			step, n = spec[:i], v
		}
	}
	seen := 0
	return func(s string) {
		if s != step {
			return
		}
		if seen++; seen == n {
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
			time.Sleep(time.Hour) // the signal is on its way
		}
	}
}

// cniError maps an error to a CNI error with the right code.
func cniError(err error, what string) error {
	if err == nil {
		return nil
	}
	var ce *types.Error
	if errors.As(err, &ce) {
		return ce
	}
	var ve *config.Error
	var de *netfilter.DriftError
	if fe := (*model.FieldError)(nil); errors.As(err, &fe) {
		// A value the backend cannot render, as the config would report it.
		ve = &config.Error{Field: fe.Field, Err: fe.Err}
		if fe.Env {
			ve.Code = types.ErrInvalidEnvironmentVariables
		}
		err = ve
	}
	switch {
	case errors.As(err, &ve):
		switch ve.Code {
		case 0, types.ErrInvalidNetworkConfig:
			return types.NewError(types.ErrInvalidNetworkConfig, "invalid config: "+ve.Error(), "")
		case types.ErrInvalidEnvironmentVariables:
			return types.NewError(ve.Code, "invalid environment: "+ve.Error(), "")
		case types.ErrUnsupportedField:
			return types.NewError(ve.Code, "unsupported field: "+ve.Error(), "")
		case types.ErrDecodingFailure:
			return types.NewError(ve.Code, "cannot decode config: "+ve.Error(), "")
		}
		return types.NewError(ve.Code, ve.Error(), "")
	case errors.Is(err, config.ErrDecode):
		return types.NewError(types.ErrDecodingFailure, err.Error(), "")
	case errors.Is(err, netfilter.ErrBusy):
		return types.NewError(types.ErrTryAgainLater, what+": "+err.Error(), "")
	case errors.As(err, &de):
		return types.NewError(errDrift, de.Error(), "")
	}
	return types.NewError(types.ErrInternal, what+": "+err.Error(), "")
}

// load parses stdin and the previous result and resolves the tap.
func (p *plugin) load(args *skel.CmdArgs) (*config.Resolved, types.Result, error) {
	if p.envErr != nil {
		return nil, nil, p.envErr
	}
	conf, err := p.parse(args.StdinData)
	if err != nil {
		return nil, nil, err
	}
	var prevRes types.Result
	var prev *config.PrevIface
	if conf.RawPrevResult != nil {
		if err := version.ParsePrevResult(&conf.PluginConf); err != nil {
			e := &config.Error{Field: "prevResult", Err: err}
			var te *json.UnmarshalTypeError
			if errors.As(err, &te) {
				e.Code = types.ErrDecodingFailure
			}
			return nil, nil, e
		}
		prevRes = conf.PrevResult
		if prev, err = p.fromPrev(conf.PrevResult, args.IfName); err != nil {
			return nil, nil, &config.Error{Field: "prevResult", Err: err}
		}
	}
	env := config.Env{ContainerID: args.ContainerID, IfName: args.IfName, Args: args.Args}
	r, err := config.Resolve(conf, p.be.Limits(), env, prev, p.bridgeOf)
	if err != nil {
		return nil, nil, err
	}
	return r, prevRes, nil
}

// fromPrev finds in a previous result (the bridge plugin's) the host-side
// port, its bridge, and the sandboxed interface's MAC and IPs.
func (p *plugin) fromPrev(res types.Result, ifName string) (*config.PrevIface, error) {
	r, err := current.NewResultFromResult(res)
	if err != nil {
		return nil, fmt.Errorf("converting: %w", err)
	}
	pi := &config.PrevIface{}
	sandboxIdx := -1
	for i, itf := range r.Interfaces {
		if itf == nil {
			return nil, fmt.Errorf("interfaces[%d] is null", i)
		}
		if itf.Sandbox != "" {
			if sandboxIdx < 0 || itf.Name == ifName {
				sandboxIdx = i
			}
			continue
		}
		if p.isBridge(itf.Name) {
			pi.Bridge = itf.Name
		} else if pi.HostPort == "" {
			pi.HostPort = itf.Name
		}
	}
	if sandboxIdx >= 0 {
		pi.MAC = r.Interfaces[sandboxIdx].Mac
	}
	for i, ip := range r.IPs {
		if ip == nil {
			return nil, fmt.Errorf("ips[%d] is null", i)
		}
		if ip.Interface != nil && sandboxIdx >= 0 && *ip.Interface != sandboxIdx {
			continue
		}
		if ip.Address.IP == nil {
			continue
		}
		pi.IPs = append(pi.IPs, ip.Address.String())
	}
	if pi.HostPort != "" && pi.Bridge == "" {
		if br, err := p.bridgeOf(pi.HostPort); err == nil {
			pi.Bridge = br
		}
	}
	return pi, nil
}

// checkNetNS refuses, before anything changes, what skel refuses only
// after the command ran: CNI_NETNS naming the plugin's own namespace
// without CNI_NETNS_OVERRIDE.
func checkNetNS(args *skel.CmdArgs) error {
	if o := strings.ToUpper(args.NetnsOverride); o == "TRUE" || o == "1" || args.Netns == "" {
		return nil
	}
	own, err := cnins.CheckNetNS(args.Netns)
	if err != nil {
		return err
	}
	if own {
		return types.NewError(types.ErrInvalidNetNS, "plugin's netns and netns from CNI_NETNS should not be the same", "")
	}
	return nil
}

func (p *plugin) cmdAdd(args *skel.CmdArgs) error {
	if err := checkNetNS(args); err != nil {
		return err
	}
	r, prev, err := p.load(args)
	if err != nil {
		return cniError(err, "add")
	}
	// An ADD that replaces the tap's firewall cuts the connections its
	// new rules do not allow.
	replaced := false
	if !r.Model.Tap.KeepEstablished {
		if _, replaced, err = p.be.Attachment(r.Model.Tap.Name); err != nil {
			return cniError(err, "add")
		}
	}
	if err := p.be.Add(r.Model); err != nil {
		return cniError(err, "add")
	}
	if err := applyIsolation(r.Model); err != nil {
		return cniError(err, "add")
	}
	if err := p.cutAfterAdd(r.Model.Tap, replaced); err != nil {
		return cniError(err, "add")
	}
	if prev != nil {
		return types.PrintResult(prev, r.Conf.CNIVersion)
	}
	return types.PrintResult(standaloneResult(r), r.Conf.CNIVersion)
}

// standaloneResult names the tap with its MAC and IPs.
func standaloneResult(r *config.Resolved) *current.Result {
	t := r.Model.Tap
	res := &current.Result{CNIVersion: current.ImplementedSpecVersion}
	itf := &current.Interface{Name: t.Name}
	if t.MAC != nil {
		itf.Mac = t.MAC.String()
	}
	res.Interfaces = []*current.Interface{itf}
	idx := 0
	for _, ip := range append(append([]netip.Prefix(nil), t.IPs...), t.IPs6...) {
		res.IPs = append(res.IPs, &current.IPConfig{
			Interface: &idx,
			Address:   net.IPNet{IP: ip.Addr().AsSlice(), Mask: net.CIDRMask(ip.Bits(), ip.Addr().BitLen())},
		})
	}
	return res
}

func (p *plugin) cmdCheck(args *skel.CmdArgs) error {
	r, _, err := p.load(args)
	if err != nil {
		return cniError(err, "check")
	}
	if err := p.be.Check(r.Model); err != nil {
		return cniError(err, "check")
	}
	return cniError(checkIsolation(r.Model), "check")
}

// cmdDel removes everything of the tap. It needs only the tap's identity:
// the previous result's host port, the config's "tap", or the attachment
// recorded at ADD (network, container ID, ifname). Nothing there is no
// error.
func (p *plugin) cmdDel(args *skel.CmdArgs) error {
	if err := checkNetNS(args); err != nil {
		return err
	}
	if p.envErr != nil {
		return cniError(p.envErr, "del")
	}
	conf, err := p.parse(args.StdinData)
	if err != nil {
		return cniError(err, "del")
	}
	taps := map[string]bool{}
	if conf.Tap != "" {
		if err := model.ValidateIfName(conf.Tap); err != nil {
			return cniError(&config.Error{Field: "tap", Err: err}, "del")
		}
		taps[conf.Tap] = true
	}
	if conf.RawPrevResult != nil {
		if err := version.ParsePrevResult(&conf.PluginConf); err == nil {
			if pi, err := p.fromPrev(conf.PrevResult, args.IfName); err == nil && pi.HostPort != "" {
				taps[pi.HostPort] = true
			}
		}
	}
	// Standalone: CNI_IFNAME is the tap itself; its record is on its own
	// path, read without scanning every tap.
	// With no record at all, whatever is left under that name (a set or
	// chains a DEL killed halfway left behind) is attached to nothing, so
	// removing it is safe.
	leftover := ""
	if model.ValidateIfName(args.IfName) == nil {
		a, ok, err := p.be.Attachment(args.IfName)
		if err != nil {
			return cniError(err, "del")
		}
		if ok && (a.IfName == args.IfName || a.ContainerID == args.ContainerID) {
			taps[a.Tap] = true
		}
		if !ok {
			leftover = args.IfName
		}
	}
	// Chained without a previous result: find the attachment among all.
	if len(taps) == 0 {
		atts, err := p.be.Attachments()
		if err != nil {
			return cniError(err, "del")
		}
		for _, a := range atts {
			if a.Network == conf.Name && a.ContainerID == args.ContainerID && a.IfName == args.IfName {
				taps[a.Tap] = true
			}
		}
	}
	if leftover != "" {
		taps[leftover] = true
	}
	if len(taps) == 0 {
		// Nothing of this attachment is left, but a DEL killed after
		// removing the last tap may have left the shared state behind.
		return cniError(p.be.CleanUp(), "del")
	}
	list := make([]string, 0, len(taps))
	for t := range taps {
		list = append(list, t)
	}
	if err := p.be.Remove(list...); err != nil {
		return cniError(fmt.Errorf("removing firewall of %s: %w", strings.Join(list, ","), err), "del")
	}
	for _, t := range list {
		if conf.IsolatePorts {
			if err := releaseIsolation(t); err != nil {
				return cniError(err, "del")
			}
		}
	}
	return nil
}

func (p *plugin) cmdGC(args *skel.CmdArgs) error {
	if p.envErr != nil {
		return cniError(p.envErr, "gc")
	}
	conf, err := p.parse(args.StdinData)
	if err != nil {
		return cniError(err, "gc")
	}
	valid := map[[2]string]bool{}
	for _, a := range append(conf.ValidAttachments, conf.Attachments...) {
		valid[[2]string{a.ContainerID, a.IfName}] = true
	}
	removed, err := p.be.GC(conf.Name, func(a model.Attachment) bool {
		return valid[[2]string{a.ContainerID, a.IfName}]
	})
	if len(removed) > 0 {
		fmt.Fprintf(p.stderr, "tapfw: gc removed %s\n", strings.Join(removed, ", "))
	}
	return cniError(err, "gc")
}

func (p *plugin) cmdStatus(args *skel.CmdArgs) error {
	if p.envErr != nil {
		return types.NewError(errNotAvailable, p.envErr.Error(), "")
	}
	if _, err := p.parse(args.StdinData); err != nil {
		return cniError(err, "status")
	}
	if err := p.be.Status(); err != nil {
		return types.NewError(errNotAvailable, fmt.Sprintf("%s backend: %v", p.backendName, err), "")
	}
	return nil
}

func bridgeOf(port string) (string, error) {
	l, err := netlink.LinkByName(port)
	if err != nil {
		return "", fmt.Errorf("finding the bridge of %s: %w", port, err)
	}
	if l.Attrs().MasterIndex == 0 {
		return "", nil
	}
	m, err := netlink.LinkByIndex(l.Attrs().MasterIndex)
	if err != nil {
		return "", fmt.Errorf("finding the bridge of %s: %w", port, err)
	}
	if m.Type() != "bridge" {
		return "", fmt.Errorf("%s is enslaved to %s, a %s, not a bridge", port, m.Attrs().Name, m.Type())
	}
	return m.Attrs().Name, nil
}

func isBridge(name string) bool {
	l, err := netlink.LinkByName(name)
	return err == nil && l.Type() == "bridge"
}

// bridgeNFSysctls must be 1 for bridged traffic to reach iptables and
// ip6tables: plain, and inside a VLAN tag or PPPoE (otherwise a guest that
// tags its frames skips every rule).
var bridgeNFSysctls = []string{
	"/proc/sys/net/bridge/bridge-nf-call-iptables",
	"/proc/sys/net/bridge/bridge-nf-call-ip6tables",
	"/proc/sys/net/bridge/bridge-nf-filter-vlan-tagged",
	"/proc/sys/net/bridge/bridge-nf-filter-pppoe-tagged",
}

// enableBridgeNF turns the bridge-nf sysctls on in this namespace; a
// second call finds them on and writes nothing.
func enableBridgeNF() error {
	for _, path := range bridgeNFSysctls {
		cur, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("reading %s (is br_netfilter loaded?): %w", path, err)
		}
		if strings.TrimSpace(string(cur)) == "1" {
			continue
		}
		if err := os.WriteFile(path, []byte("1"), 0o644); err != nil {
			return fmt.Errorf("enabling %s: %w", path, err)
		}
	}
	return nil
}

// checkBridgeNF reports a bridge-nf sysctl that is off.
func checkBridgeNF() error {
	for _, path := range bridgeNFSysctls {
		cur, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("reading %s (is br_netfilter loaded?): %w", path, err)
		}
		if strings.TrimSpace(string(cur)) != "1" {
			return &netfilter.DriftError{Diffs: []string{fmt.Sprintf("sysctl %s is %s, want 1: bridged traffic bypasses iptables and ip6tables", path, strings.TrimSpace(string(cur)))}}
		}
	}
	return nil
}
