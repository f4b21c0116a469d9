package main

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"

	"github.com/google/nftables"
	"github.com/tapfw/tapfw/pkg/inspect"
	"github.com/tapfw/tapfw/pkg/model"
	"github.com/tapfw/tapfw/pkg/netfilter"
	"github.com/tapfw/tapfw/pkg/nft"
	"github.com/tapfw/tapfw/pkg/ruleset"
)

// nftablesBackend renders with pkg/nft and applies over netlink: one
// bridge and one inet table, one transaction per call.
type nftablesBackend struct {
	k    nft.Kernel
	lock netfilter.Locker
	// sysctl makes sure bridged traffic meets conntrack (the inet chains
	// see it through br_netfilter); sysctlCheck reports when it does not.
	sysctl, sysctlCheck func() error
	// other says whether the iptables backend holds tapfw state here.
	other func() (bool, error)
	fault func(step string)
}

var _ backend = (*nftablesBackend)(nil)

// The chains are package ruleset's, translated, so its name limits hold.
func (b *nftablesBackend) Limits() model.Limits { return ruleset.Limits }

func (b *nftablesBackend) locked(fn func() error) error {
	unlock, err := b.lock.Lock()
	if err != nil {
		return err
	}
	defer unlock()
	b.step("locked")
	return fn()
}

func (b *nftablesBackend) step(s string) {
	if b.fault != nil {
		b.fault(s)
	}
}

func (b *nftablesBackend) build(cfg model.Config) (*nft.Plan, error) {
	p, err := nft.Build(cfg, b.k.Marks)
	if err == nil {
		return p, nil
	}
	if fe := (*model.FieldError)(nil); errors.As(err, &fe) {
		return nil, err
	}
	return nil, &model.FieldError{Err: err}
}

func (b *nftablesBackend) Add(cfg model.Config) error {
	p, err := b.build(cfg)
	if err != nil {
		return err
	}
	return b.locked(func() error {
		if err := b.exclusive(); err != nil {
			return err
		}
		if err := b.sysctl(); err != nil {
			return err
		}
		if err := b.k.Apply(p); err != nil {
			return fmt.Errorf("installing firewall of %s: %w", p.Tap, err)
		}
		return nil
	})
}

func (b *nftablesBackend) ApplyAll(sel selection, dryRun bool) (said []string, err error) {
	err = b.locked(func() error {
		atts, err := b.k.Attachments()
		if err != nil {
			return err
		}
		host, taps := sel(atts)
		ps, err := buildAll(host, taps, b.build, (*nft.Plan).HostWide)
		if err != nil {
			return err
		}
		if len(ps) == 0 {
			return nil
		}
		if !dryRun {
			if err := b.exclusive(); err != nil {
				return err
			}
			if err := b.sysctl(); err != nil {
				return err
			}
		}
		said, err = b.k.ApplyAll(ps, dryRun)
		return err
	})
	return said, err
}

// exclusive refuses to start this backend's state on a host where the
// other backend holds tapfw's rules: both at once would filter twice and
// each would miss the other's taps. It asks only while this backend's
// own tables are not there yet.
func (b *nftablesBackend) exclusive() error {
	mine, err := b.k.Holds()
	if err != nil || mine {
		return err
	}
	theirs, err := b.other()
	if err != nil {
		return err
	}
	if theirs {
		return fmt.Errorf("the iptables backend holds tapfw's rules on this host: remove them with `tapfw flush` (every tap loses its firewall until its next ADD) or set TAPFW_BACKEND=iptables")
	}
	return nil
}

func (b *nftablesBackend) Check(cfg model.Config) error {
	p, err := b.build(cfg)
	if err != nil {
		return err
	}
	return b.locked(func() error {
		if err := b.sysctlCheck(); err != nil {
			return err
		}
		diffs, err := b.k.Diffs(p)
		if err != nil {
			return err
		}
		if len(diffs) > 0 {
			return &netfilter.DriftError{Diffs: diffs}
		}
		return nil
	})
}

func (b *nftablesBackend) Attachment(tap string) (a model.Attachment, ok bool, err error) {
	err = b.locked(func() error {
		a, ok, err = b.k.Attachment(tap)
		return err
	})
	return a, ok, err
}

func (b *nftablesBackend) Attachments() (atts []model.Attachment, err error) {
	err = b.locked(func() error {
		atts, err = b.k.Attachments()
		return err
	})
	return atts, err
}

func (b *nftablesBackend) Remove(taps ...string) error {
	return b.locked(func() error {
		if err := b.k.Remove(taps...); err != nil {
			return err
		}
		b.step("tap-removed")
		return b.k.CleanUp()
	})
}

func (b *nftablesBackend) CleanUp() error { return b.locked(b.k.CleanUp) }

func (b *nftablesBackend) GC(network string, keep func(model.Attachment) bool) ([]string, error) {
	var removed []string
	err := b.locked(func() error {
		atts, err := b.k.Attachments()
		if err != nil {
			return err
		}
		recorded, err := b.k.Recorded()
		if err != nil {
			return err
		}
		for _, a := range atts {
			// A tap without a record is what a killed ADD leaves.
			if !recorded[a.Tap] || (a.Network == network && !keep(a)) {
				removed = append(removed, a.Tap)
			}
		}
		if len(removed) > 0 {
			if err := b.k.Remove(removed...); err != nil {
				return err
			}
		}
		return b.k.CleanUp()
	})
	return removed, err
}

func (b *nftablesBackend) RemoveGone(gone func(string) (bool, error), dryRun bool) ([]string, error) {
	var out []string
	err := b.locked(func() error {
		taps, err := b.k.Taps()
		if err != nil {
			return err
		}
		for _, tap := range taps {
			g, err := gone(tap)
			if err != nil {
				return err
			}
			if g {
				out = append(out, tap)
			}
		}
		if dryRun || len(out) == 0 {
			return nil
		}
		if err := b.k.Remove(out...); err != nil {
			return err
		}
		return b.k.CleanUp()
	})
	return out, err
}

func (b *nftablesBackend) Flush() error { return b.locked(b.k.Flush) }

func (b *nftablesBackend) Status() error {
	// The skeleton is made once with nft -f.
	if _, err := exec.LookPath("nft"); err != nil {
		return fmt.Errorf("the nft command: %w", err)
	}
	return nftablesUsable()
}

// nftablesUsable says whether this host can run the backend: nftables
// over netlink, the bridge family, and br_netfilter (bridged traffic
// meets conntrack only through it).
func nftablesUsable() error {
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("nftables netlink: %w", err)
	}
	if _, err := c.ListTablesOfFamily(nftables.TableFamilyBridge); err != nil {
		return fmt.Errorf("nftables bridge family: %w", err)
	}
	if _, err := os.Stat(bridgeNFSysctls[0]); err != nil {
		return fmt.Errorf("br_netfilter is not loaded (%s): %w", bridgeNFSysctls[0], err)
	}
	return nil
}

// taps lists the installed taps in the operator's terms, from their
// records, with what each accepted and dropped (counted by its own
// elements: a profile's counters add up every tap that uses it).
func (b *nftablesBackend) taps(bridgeOf func(string) (string, error)) ([]inspect.Tap, error) {
	infos, err := b.k.Installed()
	if err != nil {
		return nil, err
	}
	traffic, err := b.k.Traffic()
	if err != nil {
		return nil, err
	}
	var out []inspect.Tap
	for _, in := range infos {
		a := in.Attachment
		t := inspect.Tap{Name: a.Tap, IPs: []string{}, Network: a.Network, ContainerID: a.ContainerID, IfName: a.IfName,
			Rules: in.Rules, Attached: in.Attached, Traffic: map[string]*inspect.Verdicts{"in": {}, "out": {}}}
		for dir, v := range traffic[a.Tap] {
			t.Traffic[dir] = &inspect.Verdicts{Accepted: v.Accepted, Dropped: v.Dropped}
		}
		if br, err := bridgeOf(a.Tap); err == nil {
			t.Bridge = br
		}
		t.MAC = in.MAC
		if in.L2 != nil {
			if t.MAC == "" && in.L2.MAC != nil {
				t.MAC = in.L2.MAC.String()
			}
			for _, p := range append(append([]netip.Prefix(nil), in.L2.IP4...), in.L2.IP6...) {
				if p.IsSingleIP() {
					t.IPs = append(t.IPs, p.Addr().String())
				} else {
					t.IPs = append(t.IPs, p.String())
				}
			}
		}
		out = append(out, t)
	}
	return out, nil
}

// shown is every installed tap with its rules: its profiles' rules (and
// its groups'), whose counters count every tap sharing them; the tap's
// own traffic comes from its elements.
func (b *nftablesBackend) shown(bridgeOf func(string) (string, error)) ([]inspect.Shown, error) {
	taps, err := b.taps(bridgeOf)
	if err != nil {
		return nil, err
	}
	var out []inspect.Shown
	for _, t := range taps {
		rules, err := b.rules(t.Name)
		if err != nil {
			return nil, err
		}
		out = append(out, inspect.Shown{Tap: t, Rules: rules})
	}
	return out, nil
}

// showTap is the tap and its rules; a tap without a record has none.
func (b *nftablesBackend) showTap(tap string, bridgeOf func(string) (string, error)) (inspect.Tap, []inspect.Rule, error) {
	taps, err := b.taps(bridgeOf)
	if err != nil {
		return inspect.Tap{}, nil, err
	}
	for _, t := range taps {
		if t.Name == tap {
			rules, err := b.rules(tap)
			return t, rules, err
		}
	}
	return inspect.Tap{Name: tap, IPs: []string{}}, nil, nil
}

// rules is the tap's rules in the config's words, both families joined.
func (b *nftablesBackend) rules(tap string) ([]inspect.Rule, error) {
	read, err := b.k.TapRules(tap)
	if err != nil {
		return nil, err
	}
	var out []inspect.Rule
	for _, dir := range []string{"in", "out"} {
		var listed []inspect.Listed
		for _, r := range read {
			if r.Dir != dir {
				continue
			}
			fam := ruleset.IPv4
			if r.Family == nft.IPv6 {
				fam = ruleset.IPv6
			}
			rest := r.Comment
			if r.Group != "" {
				rest = strings.TrimPrefix(rest, ruleset.GroupOwner(r.Group)+": ")
			}
			listed = append(listed, inspect.Listed{Family: fam, Rest: rest, Group: r.Group, Match: r.Match,
				Action: r.Action, Log: r.Log, LogLevel: r.LogLevel, Counter: r.Counter})
		}
		// The profiles' counters are every sharing tap's: the tap's own
		// traffic is read from its elements (taps).
		rs, _ := inspect.Join(dir, listed, nil)
		out = append(out, rs...)
	}
	return out, nil
}
