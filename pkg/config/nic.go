package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"

	"github.com/tapfw/tapfw/pkg/model"
)

// Where the QEMU scripts find their configs, unless the environment says
// otherwise (TAPFW_CONFIG, TAPFW_NIC_DIR).
const (
	DefaultBaseConfig = "/etc/tapfw/tapfw.conf"
	DefaultNICDir     = "/etc/tapfw/nics"
)

// NICPaths returns the base config and the NIC file for tap, from the
// environment or the defaults.
func NICPaths(tap string) (base, nic string) {
	base = os.Getenv("TAPFW_CONFIG")
	if base == "" {
		base = DefaultBaseConfig
	}
	dir := os.Getenv("TAPFW_NIC_DIR")
	if dir == "" {
		dir = DefaultNICDir
	}
	return base, filepath.Join(dir, tap+".json")
}

// MergeNIC merges a base config (host section, ipsets, defaults) and a
// NIC's own file (bridge, mac, ips, rules): top-level fields of the NIC file
// win. A missing base config is no error; a missing NIC file is (nicPath
// "" reads the base config alone). Each file
// must be one JSON object with no key twice. The result is the plugin
// config a QEMU ifup script sends, checked by Parse.
func MergeNIC(basePath, nicPath string) ([]byte, *NetConf, error) {
	base, err := os.ReadFile(basePath)
	if err != nil && !os.IsNotExist(err) {
		return nil, nil, fmt.Errorf("reading %s: %w", basePath, err)
	}
	files := []namedFile{{basePath, base}}
	if nicPath != "" {
		nic, err := os.ReadFile(nicPath)
		if err != nil {
			return nil, nil, fmt.Errorf("reading %s: %w", nicPath, err)
		}
		files = append(files, namedFile{nicPath, nic})
	}
	return merge(files)
}

// MergeBase is MergeNIC of a base config alone, given as data (what it
// would read from the file name).
func MergeBase(name string, data []byte) ([]byte, *NetConf, error) {
	return merge([]namedFile{{name, data}})
}

// namedFile is a config file's contents (nil: there is none) and name.
type namedFile struct {
	name string
	data []byte
}

// merge merges the files' top-level fields, later files winning, over
// the fields every plugin config has.
func merge(files []namedFile) ([]byte, *NetConf, error) {
	merged := map[string]json.RawMessage{
		"cniVersion": json.RawMessage(`"1.0.0"`),
		"name":       json.RawMessage(`"qemu"`),
		"type":       json.RawMessage(`"tapfw"`),
	}
	for _, f := range files {
		if f.data == nil {
			continue
		}
		if err := checkSyntax(f.data); err != nil {
			return nil, nil, fmt.Errorf("%w: %s: %v", ErrDecode, f.name, err)
		}
		// Top-level keys are merged as they are, so one given twice in a
		// file would be lost before Parse sees it: refuse it here.
		// Parse checks the merged keys and what is inside their values.
		if err := checkKeys(f.data, reflect.TypeOf(map[string]json.RawMessage{}), "", false); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", f.name, err)
		}
		var m map[string]json.RawMessage
		if err := json.Unmarshal(f.data, &m); err != nil {
			return nil, nil, fmt.Errorf("%w: %s: %v", ErrDecode, f.name, err)
		}
		for k, v := range m {
			merged[k] = v
		}
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	if err := enc.Encode(merged); err != nil {
		return nil, nil, fmt.Errorf("encoding the merged config: %w", err)
	}
	conf, err := Parse(buf.Bytes())
	if err != nil {
		names := make([]string, len(files))
		for i, f := range files {
			names[i] = f.name
		}
		return nil, nil, fmt.Errorf("%s: %w", strings.Join(names, " + "), err)
	}
	return buf.Bytes(), conf, nil
}

// hostWideTap and hostWideBridge are the tap and bridge a config's
// host-wide parts are resolved for: Resolve needs both, and nothing of
// theirs is installed (only the host-wide parts of the plans are).
const (
	hostWideTap    = "tapfw-host"
	hostWideBridge = "tapfw-host-br"
)

// ResolveHostWide validates conf for its host-wide parts: the host
// section, the named sets, the security groups and the log options, which
// every tap of the host shares. Its Tap holds only the options.
func ResolveHostWide(conf *NetConf, lim model.Limits) (model.Config, error) {
	c := *conf
	off := false
	c.Tap, c.MAC, c.IPs, c.MACFilter, c.RuntimeConfig = hostWideTap, "", nil, &off, nil
	if c.Bridge == "" {
		c.Bridge = hostWideBridge
	}
	r, err := Resolve(&c, lim, Env{}, nil, nil)
	if err != nil {
		return model.Config{}, err
	}
	return r.Model, nil
}

// SameHostWide names the first host-wide part in which a and b differ
// ("" when they agree): "host", "ipsets", "securityGroups", or a log
// option's field.
func SameHostWide(a, b model.Config) string {
	switch {
	case !reflect.DeepEqual(a.Host, b.Host):
		return "host"
	case !reflect.DeepEqual(a.Sets, b.Sets):
		return "ipsets"
	case !reflect.DeepEqual(a.Groups, b.Groups):
		return "securityGroups"
	case a.Tap.LogTarget != b.Tap.LogTarget:
		return "logTarget"
	case a.Tap.NFLogGroup != b.Tap.NFLogGroup:
		return "nflogGroup"
	case a.Tap.LogLimit != b.Tap.LogLimit:
		return "logLimit"
	case a.Tap.LogDropped != b.Tap.LogDropped:
		return "logDropped"
	}
	return ""
}
