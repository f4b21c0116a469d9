package soak

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/tapfw/tapfw/pkg/testnet"
)

// The sandbox of one backend's soak, in namespaces named tfws-...:
//
//	ns client 192.0.2.10 --eth0/port tap100i0--+
//	                                           vmbr0 (ns host) + the even pool taps
//	ns server 192.0.2.11 --eth0/port tap101i0--+
//	                                           vmbr1 (ns host) + tap102i0 (the anchor)
//	                                                           + the odd pool taps
//
// The VMs' ports are veth pairs; the anchor and the pool taps are tap
// devices no process holds (no carrier): the anchor stays attached, the
// pool taps exist only to be ADDed and DELeted.
type sandbox struct {
	o                    *Options
	host, client, server *testnet.NS
	lock                 string // the plugin's lock file, this run's own
	pool                 []Tap
}

// nsPrefix makes testnet's names tfws-<role>-<hex>.
const nsPrefix = "s-"

func newSandbox(o *Options, spaces *testnet.Spaces, tmp string) (*sandbox, error) {
	s := &sandbox{o: o, lock: filepath.Join(tmp, o.Backend+".lock")}
	var err error
	for _, n := range []struct {
		ns   **testnet.NS
		role string
	}{{&s.host, "host"}, {&s.client, "client"}, {&s.server, "server"}} {
		if *n.ns, err = spaces.NewNS(nsPrefix + n.role); err != nil {
			return nil, err
		}
	}
	if err := refuseHostNetns(s.host); err != nil {
		return nil, err
	}
	for _, br := range []string{Bridge0, Bridge1} {
		if err := testnet.AddBridge(s.host, br, ""); err != nil {
			return nil, err
		}
	}
	c, v := VMTaps()
	if err := testnet.AddPort(s.host, Bridge0, c.Name, s.client, c.MAC, c.IPs[0]+"/24", ""); err != nil {
		return nil, err
	}
	if err := testnet.AddPort(s.host, Bridge0, v.Name, s.server, v.MAC, v.IPs[0]+"/24", ""); err != nil {
		return nil, err
	}
	if err := s.addTapDevice(FixedTaps()[2].Tap); err != nil {
		return nil, err
	}
	for i := 0; i < o.Taps; i++ {
		t := PoolTap(i)
		if err := s.addTapDevice(t); err != nil {
			return nil, err
		}
		s.pool = append(s.pool, t)
	}
	return s, nil
}

// addTapDevice makes t's tap device on its bridge in the host namespace.
func (s *sandbox) addTapDevice(t Tap) error {
	for _, argv := range [][]string{
		{"ip", "tuntap", "add", "dev", t.Name, "mode", "tap"},
		{"ip", "link", "set", t.Name, "master", t.Bridge, "up"},
	} {
		if _, _, err := testnet.RunIn(context.Background(), s.host, nil, nil, argv...); err != nil {
			return err
		}
	}
	return nil
}

// ownNetns is the namespace this program started in (the host's), read
// before any thread switched namespaces.
var ownNetns, ownNetnsErr = os.Stat("/proc/thread-self/ns/net")

// refuseHostNetns is the soak's host guard: the namespace the plugin will
// run in must not be the one this program started in.
func refuseHostNetns(ns *testnet.NS) error {
	if ownNetnsErr != nil {
		return fmt.Errorf("reading the program's own namespace: %w", ownNetnsErr)
	}
	var same bool
	if err := ns.Do(func() error {
		fi, err := os.Stat("/proc/thread-self/ns/net")
		same = err == nil && os.SameFile(fi, ownNetns)
		return err
	}); err != nil {
		return err
	}
	if same {
		return fmt.Errorf("namespace %s is the host's own: refusing to run the plugin there", ns.Name)
	}
	return nil
}

// call runs the plugin once as a CNI runtime (or QEMU ifup script) would,
// forked inside the sandbox's host namespace, with this run's lock and
// backend. TAPFW_TRACE makes the plugin report its own peak memory
// (testnet.Usage).
func (s *sandbox) call(ctx context.Context, command string, t Tap, conf []byte) (testnet.Usage, error) {
	env := []string{"TAPFW_BACKEND=" + s.o.Backend, "TAPFW_LOCK=" + s.lock, "TAPFW_LOCK_TIMEOUT=60s", "TAPFW_TRACE=1"}
	_, u, err := testnet.RunPlugin(ctx, s.host, testnet.Call{
		Bin: s.o.Plugin, Command: command, ContainerID: t.ContainerID, IfName: t.Name, Env: env, Config: conf,
	})
	return u, err
}

// settle waits for the bridge ports and ARP to be ready before the flows start.
func settle() { time.Sleep(300 * time.Millisecond) }
