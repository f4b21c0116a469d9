package pve

import (
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// Tree is what the import reads of a Proxmox VE configuration tree for
// one node.
type Tree struct {
	Dir     string
	Node    string
	Cluster *FwFile // nil without firewall/cluster.fw
	Host    *FwFile // nil without nodes/<node>/host.fw
	Guests  []*Guest
	GuestFw map[int]*FwFile // by vmid; a guest without one has none
	Ring    []netip.Addr    // corosync's ring addresses
}

// Load reads the tree under dir for node. Files that are missing are
// none; a file it cannot read, or a tree without nodes/<node>, is an
// error (nothing is imported).
func Load(dir, node string) (*Tree, []Problem, error) {
	t := &Tree{Dir: dir, Node: node, GuestFw: map[int]*FwFile{}}
	var probs []Problem
	if st, err := os.Stat(filepath.Join(dir, "nodes", node)); err != nil || !st.IsDir() {
		return nil, nil, fmt.Errorf("%s: no nodes/%s in the tree (--node names this machine's node)", dir, node)
	}
	var err error
	if t.Cluster, err = t.fw("firewall/cluster.fw", &probs); err != nil {
		return nil, nil, err
	}
	if t.Host, err = t.fw(filepath.Join("nodes", node, "host.fw"), &probs); err != nil {
		return nil, nil, err
	}
	if err := t.corosync(&probs); err != nil {
		return nil, nil, err
	}
	for _, kind := range []struct {
		dir       string
		container bool
	}{{"qemu-server", false}, {"lxc", true}} {
		if err := t.guests(kind.dir, kind.container, &probs); err != nil {
			return nil, nil, err
		}
	}
	sort.Slice(t.Guests, func(i, j int) bool { return t.Guests[i].VMID < t.Guests[j].VMID })
	for _, g := range t.Guests {
		f, err := t.fw(fmt.Sprintf("firewall/%d.fw", g.VMID), &probs)
		if err != nil {
			return nil, nil, err
		}
		if f != nil {
			t.GuestFw[g.VMID] = f
		}
	}
	return t, probs, nil
}

// open opens a file of the tree; nil, nil when it is not there.
func (t *Tree) open(rel string) (*os.File, error) {
	f, err := os.Open(filepath.Join(t.Dir, rel))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return f, err
}

func (t *Tree) fw(rel string, probs *[]Problem) (*FwFile, error) {
	f, err := t.open(rel)
	if err != nil || f == nil {
		return nil, err
	}
	defer f.Close()
	fw, ps := ParseFw(rel, f)
	*probs = append(*probs, ps...)
	return fw, nil
}

func (t *Tree) corosync(probs *[]Problem) error {
	f, err := t.open("corosync.conf")
	if err != nil || f == nil {
		return err
	}
	defer f.Close()
	ring, ps := ParseCorosync("corosync.conf", f)
	t.Ring, *probs = ring, append(*probs, ps...)
	return nil
}

// guests reads nodes/<node>/<dir>/<vmid>.conf.
func (t *Tree) guests(dir string, container bool, probs *[]Problem) error {
	rel := filepath.Join("nodes", t.Node, dir)
	ents, err := os.ReadDir(filepath.Join(t.Dir, rel))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range ents {
		id, ok := strings.CutSuffix(e.Name(), ".conf")
		vmid, err := strconv.Atoi(id)
		if !ok || err != nil || e.IsDir() {
			continue
		}
		name := filepath.Join(rel, e.Name())
		f, err := os.Open(filepath.Join(t.Dir, name))
		if err != nil {
			return err
		}
		g, ps := ParseGuest(name, vmid, container, f)
		f.Close()
		t.Guests, *probs = append(t.Guests, g), append(*probs, ps...)
	}
	return nil
}
