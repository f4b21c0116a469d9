package main

import (
	"errors"
	"fmt"

	"github.com/vishvananda/netlink"

	"github.com/tapfw/tapfw/pkg/model"
)

// Port isolation (isolatePorts): the bridge's own port flag. Isolated
// ports forward to the bridge's other ports (the uplink) and deliver to
// the host, never to each other, whatever the taps' rules allow: the
// kernel's bridge decides before any firewall.

// isolate sets or clears the tap's isolated flag on its bridge.
func isolate(tap string, on bool) error {
	l, err := netlink.LinkByName(tap)
	if err != nil {
		return fmt.Errorf("isolating port %s: %w", tap, err)
	}
	return setIsolated(l, tap, on)
}

func setIsolated(l netlink.Link, tap string, on bool) error {
	if err := netlink.LinkSetIsolated(l, on); err != nil {
		return fmt.Errorf("isolating port %s: %w", tap, err)
	}
	return nil
}

// isolated reports whether the tap's bridge port is isolated.
func isolated(tap string) (bool, error) {
	l, err := netlink.LinkByName(tap)
	if err != nil {
		return false, fmt.Errorf("port %s: %w", tap, err)
	}
	pi, err := netlink.LinkGetProtinfo(l)
	if err != nil {
		return false, fmt.Errorf("port %s: %w", tap, err)
	}
	return pi.Isolated, nil
}

// applyIsolation isolates the tap's port when its bridge wants isolated
// ports; it leaves the flag alone otherwise (an operator may have set it).
func applyIsolation(c model.Config) error {
	if !c.Bridge.IsolatePorts {
		return nil
	}
	return isolate(c.Tap.Name, true)
}

// checkIsolation is CHECK's view of the flag.
func checkIsolation(c model.Config) error {
	if !c.Bridge.IsolatePorts {
		return nil
	}
	on, err := isolated(c.Tap.Name)
	if err != nil {
		return err
	}
	if !on {
		return fmt.Errorf("port %s of bridge %s is not isolated (isolatePorts)", c.Tap.Name, c.Bridge.Name)
	}
	return nil
}

// releaseIsolation clears the flag DEL set at ADD, on a tap that still
// exists.
func releaseIsolation(tap string) error {
	l, err := netlink.LinkByName(tap)
	var nf netlink.LinkNotFoundError
	switch {
	case errors.As(err, &nf):
		return nil
	case err != nil:
		return fmt.Errorf("isolating port %s: %w", tap, err)
	}
	return setIsolated(l, tap, false)
}
