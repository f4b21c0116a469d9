package main

import (
	"errors"
	"fmt"
	"os/exec"
	"slices"

	"github.com/tapfw/tapfw/pkg/model"
	"github.com/tapfw/tapfw/pkg/netfilter"
	"github.com/tapfw/tapfw/pkg/ruleset"
)

// backend is a firewall backend as the CNI verbs and the operator's gc
// and flush use it: it renders a
// validated model.Config in its own terms and keeps the kernel in step.
// Every method that reads or changes the firewall takes the host-wide lock
// for its whole run (Limits and Status read no firewall state), keeps no
// state between calls (the kernel's netfilter state is the state) and
// leaves others' rules, sets and tables alone. A call killed at any point leaves
// a state that the next call on the same tap completes.
type backend interface {
	// Limits are the names the backend can render; the config is checked
	// against them before anything else.
	Limits() model.Limits
	// Add makes the kernel hold what cfg says of its tap and the host-wide
	// parts cfg carries; a second Add of the same cfg changes nothing.
	// A config the backend cannot render is a *model.FieldError.
	Add(cfg model.Config) error
	// ApplyAll makes the kernel hold what sel chooses from the
	// installed taps, under the lock (no ADD or DEL comes between): the
	// host-wide parts of one config and the whole of others', in one
	// transaction per table. With dryRun nothing changes. It returns
	// what changed, or would, in the config's words.
	ApplyAll(sel selection, dryRun bool) ([]string, error)
	// Check returns nil when the installed firewall is what cfg says, or
	// a *netfilter.DriftError naming each difference.
	Check(cfg model.Config) error
	// Attachment reads who attached tap, as Add recorded it; ok is false
	// when tap has no record. Attachments lists every record.
	Attachment(tap string) (a model.Attachment, ok bool, err error)
	Attachments() ([]model.Attachment, error)
	// Remove deletes everything of the taps; a tap with nothing installed
	// is no error. When no tap is left and no host firewall is set up,
	// the shared parts go too.
	Remove(taps ...string) error
	// CleanUp removes the shared parts when no tap is left and no host
	// firewall is set up; otherwise it changes nothing.
	CleanUp() error
	// GC removes the taps attached through network whose attachment keep
	// refuses, and returns their names.
	GC(network string, keep func(model.Attachment) bool) ([]string, error)
	// RemoveGone removes the taps for which gone says the interface no
	// longer exists (with dryRun, only names them) and returns them.
	RemoveGone(gone func(tap string) (bool, error), dryRun bool) ([]string, error)
	// Flush removes everything of tapfw's, and nothing else.
	Flush() error
	// Status returns nil when the backend can work on this host: its
	// tools and kernel features are there.
	Status() error
}

// selection chooses, from the installed taps, what tapfw apply installs:
// the host-wide parts of host (nil: none) and the whole of each of taps.
type selection func(installed []model.Attachment) (host *model.Config, taps []model.Config)

// addLimits are the name limits of the backend an ADD on this host uses,
// for checking a config without one (qemu-config): the iptables backend's.
func addLimits() model.Limits { return (*iptables)(nil).Limits() }

// iptables renders with pkg/ruleset and applies with pkg/netfilter:
// iptables and ip6tables filter tables, ipsets, and the layer-2 checks in
// the nftables bridge family.
type iptables struct {
	fw   *netfilter.Firewall
	exec netfilter.Exec
	// sysctl makes sure bridged traffic reaches iptables; sysctlCheck
	// reports when it does not.
	sysctl, sysctlCheck func() error
	// other says whether the nftables backend holds tapfw state here.
	other func() (bool, error)
}

// holds reports whether tapfw's iptables rules are on the host: its hook
// chain in the filter table. No iptables at all holds nothing.
func (b *iptables) holds() (bool, error) {
	r, err := b.exec.Reader()
	if err != nil {
		if errors.Is(err, exec.ErrNotFound) {
			return false, nil
		}
		return false, err
	}
	if c, ok := r.(interface{ Close() error }); ok {
		defer c.Close()
	}
	have, err := r.Exist(ruleset.ChainForward)
	if err != nil {
		return false, err
	}
	return have[ruleset.ChainForward], nil
}

var _ backend = (*iptables)(nil)

func (b *iptables) Limits() model.Limits { return ruleset.Limits }

// build renders cfg; what it refuses is a config error.
func (b *iptables) build(cfg model.Config) (*ruleset.Plan, error) {
	plan, err := ruleset.Build(cfg)
	if err == nil {
		return plan, nil
	}
	if fe := (*model.FieldError)(nil); errors.As(err, &fe) {
		return nil, err
	}
	return nil, &model.FieldError{Err: err}
}

func (b *iptables) Add(cfg model.Config) error {
	plan, err := b.build(cfg)
	if err != nil {
		return err
	}
	if err := b.sysctl(); err != nil {
		return err
	}
	if theirs, err := b.other(); err != nil {
		return err
	} else if theirs {
		return fmt.Errorf("the nftables backend holds tapfw's rules on this host: remove them with `tapfw flush` (every tap loses its firewall until its next ADD) or set TAPFW_BACKEND=nftables")
	}
	if _, err := b.fw.Apply(plan); err != nil {
		return fmt.Errorf("installing firewall of %s: %w", plan.Tap, err)
	}
	return nil
}

func (b *iptables) ApplyAll(sel selection, dryRun bool) ([]string, error) {
	if !dryRun {
		if err := b.sysctl(); err != nil {
			return nil, err
		}
		if theirs, err := b.other(); err != nil {
			return nil, err
		} else if theirs {
			return nil, fmt.Errorf("the nftables backend holds tapfw's rules on this host: set TAPFW_BACKEND=nftables")
		}
	}
	cs, err := b.fw.ApplyAll(func(atts []model.Attachment) ([]*ruleset.Plan, error) {
		host, taps := sel(atts)
		return buildAll(host, taps, b.build, (*ruleset.Plan).HostWide)
	}, dryRun)
	var said []string
	for _, c := range cs {
		for _, w := range c.Said() {
			if !slices.Contains(said, w) {
				said = append(said, w)
			}
		}
	}
	return said, err
}

// buildAll renders the host-wide part of host and each of taps, host
// first: a config either cannot render is a config error.
func buildAll[P any](host *model.Config, taps []model.Config, build func(model.Config) (P, error), hostWide func(P) P) ([]P, error) {
	var out []P
	if host != nil {
		p, err := build(*host)
		if err != nil {
			return nil, err
		}
		out = append(out, hostWide(p))
	}
	for _, t := range taps {
		p, err := build(t)
		if err != nil {
			return nil, fmt.Errorf("tap %s: %w", t.Tap.Name, err)
		}
		out = append(out, p)
	}
	return out, nil
}

func (b *iptables) Check(cfg model.Config) error {
	plan, err := b.build(cfg)
	if err != nil {
		return err
	}
	if err := b.sysctlCheck(); err != nil {
		return err
	}
	return b.fw.Check(plan)
}

func (b *iptables) Attachment(tap string) (model.Attachment, bool, error) {
	return b.fw.Attachment(tap)
}

func (b *iptables) Attachments() ([]model.Attachment, error) { return b.fw.Attachments() }

func (b *iptables) Remove(taps ...string) error { return b.fw.Remove(taps...) }

func (b *iptables) CleanUp() error { return b.fw.CleanUp() }

func (b *iptables) GC(network string, keep func(model.Attachment) bool) ([]string, error) {
	return b.fw.GC(network, keep)
}

func (b *iptables) RemoveGone(gone func(string) (bool, error), dryRun bool) ([]string, error) {
	return b.fw.RemoveGone(gone, dryRun)
}

func (b *iptables) Flush() error { return b.fw.Flush() }

func (b *iptables) Status() error {
	return netfilter.Status(b.exec, b.fw.Sets, b.fw.Tables6 != nil)
}
