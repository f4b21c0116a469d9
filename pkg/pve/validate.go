package pve

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/tapfw/tapfw/pkg/config"
	"github.com/tapfw/tapfw/pkg/model"
)

// Checking the result: each NIC's config (the base and its NIC file, as
// the QEMU scripts merge them) goes through tapfw's own validation. A
// rule it refuses is taken out and reported at the line it came from,
// and the check runs again, until the config is good. A refused NIC
// file that no rule explains is not written.

// ruleField is the field of a refused rule: its list and index.
var ruleField = regexp.MustCompile(`^((?:host\.)?rules\.(?:in|out)|securityGroups\.[^.\[]+\.(?:in|out)|ipsets\.[^\[]+)\[(\d+)\]`)

// maxChecks bounds the rounds of one NIC's check.
const maxChecks = 1000

func (c *converter) validate() {
	ports := make([]string, 0, len(c.res.NICs))
	for p := range c.res.NICs {
		ports = append(ports, p)
	}
	sort.Strings(ports)
	if len(ports) == 0 {
		// The base alone, on a tap that filters nothing.
		c.check("", map[string]any{"bridge": "vmbr0", "macFilter": false, "ipFilter": false})
		return
	}
	for _, p := range ports {
		if !c.check(p, c.res.NICs[p]) {
			delete(c.res.NICs, p)
		}
	}
}

// check validates port's config, taking out the rules it refuses; it
// reports false for a NIC file that stays refused.
func (c *converter) check(port string, nic map[string]any) bool {
	for range maxChecks {
		err := Validate(c.res.Base, nic, port, c.opt.Limits)
		if err == nil {
			return true
		}
		var e *config.Error
		m := []string(nil)
		if errors.As(err, &e) {
			m = ruleField.FindStringSubmatch(e.Field)
		}
		if m == nil {
			c.problem("nics/"+port+".json", 0, "not written: %v", err)
			return false
		}
		i, _ := strconv.Atoi(m[2])
		c.drop(port, nic, m[1], i, e)
	}
	return false
}

// drop takes rule i out of list (of the NIC, or of the base) and
// reports it where it came from.
func (c *converter) drop(port string, nic map[string]any, list string, i int, e *config.Error) {
	key, holder := list, c.res.Base
	if len(list) >= 6 && list[:6] == "rules." {
		key, holder = port+"|"+list, nic
	}
	origins := c.res.origins[key]
	if i < len(origins) {
		o := origins[i]
		c.problem(o.File, o.Line, "tapfw refuses it (%v); left out", e)
		c.res.origins[key] = append(origins[:i:i], origins[i+1:]...)
	}
	if name, ok := strings.CutPrefix(list, "ipsets."); ok {
		sets := c.res.Base["ipsets"].(map[string][]string)
		if i < len(sets[name]) {
			sets[name] = append(sets[name][:i:i], sets[name][i+1:]...)
		}
		return
	}
	parent, k := lookupList(holder, list)
	if parent == nil {
		return
	}
	rs, ok := parent[k].([]map[string]any)
	if !ok || i >= len(rs) {
		return
	}
	parent[k] = append(rs[:i:i], rs[i+1:]...)
}

// groupList is a security group's list in a field path.
var groupList = regexp.MustCompile(`^securityGroups\.([^.]+)\.(in|out)$`)

// lookupList finds a rule list in a config map by its field path: the
// map that holds it, and its key there.
func lookupList(m map[string]any, list string) (map[string]any, string) {
	var path []string
	switch {
	case len(list) > 5 && list[:5] == "host.":
		path = []string{"host", "rules", list[len("host.rules."):]}
	case len(list) > 6 && list[:6] == "rules.":
		path = []string{"rules", list[len("rules."):]}
	default:
		g := groupList.FindStringSubmatch(list)
		if g == nil {
			return nil, ""
		}
		path = []string{"securityGroups", g[1], g[2]}
	}
	cur := m
	for _, p := range path[:len(path)-1] {
		next, ok := cur[p].(map[string]any)
		if !ok {
			return nil, ""
		}
		cur = next
	}
	return cur, path[len(path)-1]
}

// Merged is the config a QEMU ifup script sends for port: the base, the
// NIC file's top-level fields winning.
func Merged(base, nic map[string]any) map[string]any {
	out := map[string]any{"cniVersion": "1.0.0", "name": "pve", "type": "tapfw"}
	for k, v := range base {
		out[k] = v
	}
	for k, v := range nic {
		out[k] = v
	}
	return out
}

// Validate checks port's merged config as an ADD would.
func Validate(base, nic map[string]any, port string, lim model.Limits) error {
	data, err := json.Marshal(Merged(base, nic))
	if err != nil {
		return err
	}
	conf, err := config.Parse(data)
	if err != nil {
		return err
	}
	tap := port
	if tap == "" {
		tap = "tap0"
	}
	_, err = config.Resolve(conf, lim, config.Env{ContainerID: "qemu-" + tap, IfName: tap}, nil, nil)
	return err
}

// Write writes the base config to dir/tapfw.conf and each NIC file to
// dir/nics/<port>.json.
func (r *Result) Write(dir string) error {
	if err := os.MkdirAll(filepath.Join(dir, "nics"), 0o755); err != nil {
		return err
	}
	write := func(path string, v any) error {
		data, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			return err
		}
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, append(data, '\n'), 0o644); err != nil {
			return err
		}
		return os.Rename(tmp, path)
	}
	base := Merged(r.Base, nil)
	if err := write(filepath.Join(dir, "tapfw.conf"), base); err != nil {
		return fmt.Errorf("writing tapfw.conf: %w", err)
	}
	for port, nic := range r.NICs {
		if err := write(filepath.Join(dir, "nics", port+".json"), nic); err != nil {
			return fmt.Errorf("writing %s: %w", port, err)
		}
	}
	return nil
}
