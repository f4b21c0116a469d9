package main

import (
	"errors"
	"flag"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/tapfw/tapfw/pkg/config"
	"github.com/tapfw/tapfw/pkg/model"
)

// tapfw apply brings a running host to what its files say: the host-wide
// parts of the base config (host section, named sets, security groups,
// log options) for every tap, and each running QEMU tap's NIC file for
// that tap. It reads and validates every file before it changes
// anything, and changes everything in one transaction per table, under
// the plugin's lock: the taps it changes are chosen there, from the taps
// installed then, so an ADD or DEL comes wholly before it or after it.

func applyFlags(fs *flag.FlagSet) runFunc {
	base := fs.String("config", "", "the base config `FILE`: host section, ipsets, securityGroups, log options (default $TAPFW_CONFIG, else "+config.DefaultBaseConfig+")")
	nics := fs.String("nics", "", "also bring each running QEMU tap to `DIR`/TAP.json merged with the base config, as its ifup does")
	dry := fs.Bool("dry-run", false, "print what would change, change nothing")
	return func(o *operator, _ []string) int { return o.apply(*base, *nics, *dry) }
}

// nicConfig is the config a QEMU tap's ifup sends: the base config merged
// with the NIC's file, validated for tap (which it must not rename) with
// the identity the scripts give it.
func nicConfig(tap, base, nic string, lim model.Limits) ([]byte, *config.Resolved, error) {
	data, conf, err := config.MergeNIC(base, nic)
	if err != nil {
		return nil, nil, err
	}
	// The tap QEMU names is the one firewalled: a "tap" field naming
	// another would leave this one on its bridge with no firewall.
	if conf.Tap != "" && conf.Tap != tap {
		return nil, nil, fmt.Errorf("tap: %q in %s or %s is not %s; leave the field out", conf.Tap, base, nic, tap)
	}
	if conf.Bridge == "" {
		return nil, nil, fmt.Errorf("bridge: required in %s", nic)
	}
	// Validate every value now, so the script refuses the NIC before it
	// touches the tap.
	r, err := config.Resolve(conf, lim, qemuEnv(tap), nil, nil)
	if err != nil {
		return nil, nil, err
	}
	return data, r, nil
}

// qemuEnv is the CNI environment the QEMU scripts call the plugin with.
func qemuEnv(tap string) config.Env { return config.Env{ContainerID: "qemu-" + tap, IfName: tap} }

// isQEMU says whether the QEMU scripts attached the tap.
func isQEMU(a model.Attachment) bool {
	return a.ContainerID == qemuEnv(a.Tap).ContainerID && a.IfName == a.Tap
}

// wanted is what the files say: the base config's host-wide parts and
// each NIC file's config, by tap.
type wanted struct {
	// host is the host-wide parts to install: without a host section,
	// a host firewall that guards nothing (the backends' HostWide).
	// hostSection says the base config has one.
	host        model.Config
	hostSection bool
	nicDir      string
	nics        map[string]model.Config
}

// readWanted reads and validates the base config (from data, or the
// file base when data is nil) and every NIC file in nicDir ("": none).
// A NIC file may repeat the base config's host-wide parts but not change
// them: those are the host's, not one tap's.
func (o *operator) readWanted(base string, data []byte, nicDir string) (*wanted, error) {
	if base == "" {
		base, _ = config.NICPaths("")
	}
	if data == nil {
		var err error
		if data, err = os.ReadFile(base); err != nil {
			return nil, fmt.Errorf("the base config: %w", err)
		}
	}
	data, _, err := config.MergeBase(base, data)
	if err != nil {
		return nil, err
	}
	conf, err := o.p.parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", base, err)
	}
	lim := o.p.be.Limits()
	w := &wanted{nicDir: nicDir, nics: map[string]model.Config{}, hostSection: conf.Host != nil}
	// Its NIC files are held to the base config as its ifup merges it.
	merged, err := config.ResolveHostWide(conf, lim)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", base, err)
	}
	w.host = merged
	if nicDir == "" {
		return w, nil
	}
	files, err := filepath.Glob(filepath.Join(nicDir, "*.json"))
	if err != nil {
		return nil, fmt.Errorf("listing %s: %w", nicDir, err)
	}
	for _, f := range files {
		tap := strings.TrimSuffix(filepath.Base(f), ".json")
		if err := model.ValidateIfName(tap); err != nil {
			return nil, fmt.Errorf("%s: the file name is not a tap's: %w", f, err)
		}
		_, r, err := nicConfig(tap, base, f, lim)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		if field := config.SameHostWide(merged, r.Model); field != "" {
			return nil, fmt.Errorf("%s: %s: differs from %s; the host-wide parts (host, ipsets, securityGroups, log options) are the base config's alone", f, field, base)
		}
		w.nics[tap] = r.Model
	}
	return w, nil
}

// applied is what one run of apply chose: the taps whose connections
// to judge afterwards, and the taps it left alone and why.
type applied struct {
	cut, left []string
	tapCfgs   []model.Config
}

// choose picks, from the installed taps, what apply installs: the
// host-wide parts when a tap is installed or the base config has a host
// section, and the NIC file of each QEMU tap that is running.
func (w *wanted) choose(installed []model.Attachment) (*model.Config, *applied) {
	a := &applied{}
	have := map[string]model.Attachment{}
	for _, at := range installed {
		have[at.Tap] = at
	}
	for _, tap := range slices.Sorted(maps.Keys(w.nics)) {
		at, ok := have[tap]
		switch {
		case !ok:
			a.left = append(a.left, fmt.Sprintf("tap %s: not running; its ifup installs its NIC file", tap))
		case !isQEMU(at):
			a.left = append(a.left, fmt.Sprintf("tap %s: attached by CNI network %q, whose runtime gives its rules", tap, at.Network))
		default:
			cfg := w.nics[tap]
			a.tapCfgs = append(a.tapCfgs, cfg)
			if !cfg.Tap.KeepEstablished {
				a.cut = append(a.cut, tap)
			}
		}
	}
	for _, at := range installed {
		if _, ok := w.nics[at.Tap]; ok {
			continue
		}
		if w.nicDir != "" && isQEMU(at) {
			a.left = append(a.left, fmt.Sprintf("tap %s: no NIC file %s; its firewall stays as it is (tapfw gc removes it once the tap is gone)", at.Tap, filepath.Join(w.nicDir, at.Tap+".json")))
		}
		// Its own rules stay; the host-wide parts it shares change.
		if !w.host.Tap.KeepEstablished {
			a.cut = append(a.cut, at.Tap)
		}
	}
	if len(installed) == 0 && !w.hostSection {
		return nil, a
	}
	host := w.host
	return &host, a
}

// apply runs tapfw apply: it prints each change in the config's words,
// then what it left alone, then cuts the connections the changed rules no
// longer allow.
func (o *operator) apply(base, nicDir string, dryRun bool) int {
	lines, err := o.applyConfig(base, nil, nicDir, dryRun)
	for _, l := range lines {
		fmt.Fprintln(o.stdout, l)
	}
	var r *refused
	switch {
	case errors.As(err, &r):
		return o.fail("apply: %v; nothing changed", r.err)
	case err != nil:
		return o.fail("apply: %v", err)
	}
	return 0
}

// refused is a config apply refuses before it changes anything.
type refused struct{ err error }

func (r *refused) Error() string { return r.err.Error() }
func (r *refused) Unwrap() error { return r.err }

// applyConfig brings the host to the base config (data, or the file
// base when data is nil) and nicDir's NIC files, or with dryRun says
// what it would change. It returns what apply prints, even with an
// error: a *refused one when a file is refused and nothing changed.
func (o *operator) applyConfig(base string, data []byte, nicDir string, dryRun bool) ([]string, error) {
	if o.p.envErr != nil {
		return nil, o.p.envErr
	}
	w, err := o.readWanted(base, data, nicDir)
	if err != nil {
		return nil, &refused{err}
	}
	var a *applied
	said, err := o.p.be.ApplyAll(func(installed []model.Attachment) (*model.Config, []model.Config) {
		var host *model.Config
		host, a = w.choose(installed)
		return host, a.tapCfgs
	}, dryRun)
	if err != nil {
		return nil, err
	}
	verb := "changed"
	if dryRun {
		verb = "would change"
	}
	var lines []string
	for _, s := range said {
		lines = append(lines, verb+" "+s)
	}
	if len(said) == 0 {
		lines = append(lines, "nothing to change")
	}
	for _, l := range a.left {
		lines = append(lines, "left "+l)
	}
	if dryRun {
		return lines, nil
	}
	for _, cfg := range a.tapCfgs {
		if err := applyIsolation(cfg); err != nil {
			return lines, err
		}
	}
	if len(said) == 0 || len(a.cut) == 0 {
		return lines, nil
	}
	slices.Sort(a.cut)
	n, err := o.p.cutFlows(nil, a.cut...)
	if n > 0 {
		lines = append(lines, fmt.Sprintf("cut %d connection%s the new rules do not allow", n, map[bool]string{true: "s"}[n > 1]))
	}
	if err != nil {
		return lines, fmt.Errorf("the rules are in place, but cutting the connections they no longer allow: %w", err)
	}
	return lines, nil
}
