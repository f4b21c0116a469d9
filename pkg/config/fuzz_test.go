package config

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/tapfw/tapfw/pkg/model"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/tapfw/tapfw/pkg/ruleset"
)

// FuzzParse feeds arbitrary stdin, CNI environment and previous-result
// identity to Parse and Resolve. Neither may panic; an error must be one
// the plugin maps to a CNI code (a decoding error or a *Error naming its
// field, never an internal error); and whatever they accept must hold only
// values the ruleset's own validation accepts and must build a Plan whose
// names, comments and LOG prefixes fit the kernel's limits.
//
// Seeds: the seed network's configs and the stdin of every bad-input
// corpus file (testdata/bad), with its CNI_IFNAME, CNI_CONTAINERID and
// CNI_ARGS.
func FuzzParse(f *testing.F) {
	seeds, _ := filepath.Glob(filepath.Join("..", "..", "testdata", "seed", "*.json"))
	for _, p := range seeds {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		tap := strings.TrimSuffix(filepath.Base(p), ".json")
		f.Add(data, tap, "vm-"+tap, "", false, "", "", "", "")
		f.Add(data, tap, "vm-"+tap, "IgnoreUnknown=1;MAC=02:00:00:00:00:09;IP=192.0.2.9", true, "veth0123abcd", "cni0", "02:00:00:00:0c:01", "192.0.2.60/24,2001:db8::5/64")
	}
	// A port range whose ends are equal, alone and in a list.
	f.Add([]byte(`{"cniVersion":"1.0.0","name":"n","type":"tapfw","bridge":"vmbr0","mac":"02:00:00:00:00:01",
		"rules":{"in":[{"action":"ACCEPT","proto":"tcp","dport":"22:22,80"}]}}`), "tap1", "c1", "", false, "", "", "", "")
	bad, _ := filepath.Glob(filepath.Join("..", "..", "testdata", "bad", "*.json"))
	for _, p := range bad {
		raw, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		var in struct {
			Env         map[string]*string `json:"env"`
			Stdin       string             `json:"stdin"`
			StdinBase64 string             `json:"stdinBase64"`
		}
		if err := json.Unmarshal(raw, &in); err != nil {
			f.Fatalf("%s: %v", p, err)
		}
		data := []byte(in.Stdin)
		if in.StdinBase64 != "" {
			if data, err = base64.StdEncoding.DecodeString(in.StdinBase64); err != nil {
				f.Fatalf("%s: %v", p, err)
			}
		}
		get := func(k, def string) string {
			if v, ok := in.Env[k]; ok {
				if v == nil {
					return ""
				}
				return *v
			}
			return def
		}
		f.Add(data, get("CNI_IFNAME", "tap111i0"), get("CNI_CONTAINERID", "vm111"), get("CNI_ARGS", ""), false, "", "", "", "")
	}
	// A duplicate key and a case variant, nested.
	f.Add([]byte(`{"cniVersion":"1.0.0","name":"n","type":"tapfw","bridge":"vmbr0","mac":"02:00:00:00:00:01",
		"rules":{"in":[{"action":"ACCEPT","action":"DROP"}]},"host":{"rules":{"IN":[]}}}`), "tap1", "c1", `TAPFW_RULES={"in":[]}x`, false, "", "", "", "")
	f.Fuzz(func(t *testing.T, data []byte, ifName, containerID, args string, usePrev bool, prevPort, prevBridge, prevMAC, prevIPs string) {
		conf, err := Parse(data)
		if err != nil {
			var e *Error
			switch {
			case errors.As(err, &e):
				// Unknown or duplicate key, wrong type, or (Code 0)
				// too large a config.
				if e.Code != types.ErrUnsupportedField && e.Code != types.ErrDecodingFailure && e.Code != 0 {
					t.Fatalf("Parse error %v has code %d", err, e.Code)
				}
			case !errors.Is(err, ErrDecode):
				t.Fatalf("Parse error %v (%T) is neither a decoding error nor a *config.Error", err, err)
			}
			return
		}
		// "Unknown fields are an error": every key of an accepted config
		// is a field's name exactly, not one that matches it only when
		// case is ignored (Go's decoder folds case, and 'ſ' to 's'), and
		// no object has a key twice.
		if generic, err := decodeOrdered(data); err != nil {
			t.Fatalf("Parse accepted what does not decode: %v\nconfig: %q", err, data)
		} else if err := exactKeys(generic, reflect.TypeOf(NetConf{}), ""); err != nil {
			t.Fatalf("Parse accepted %v\nconfig: %q", err, data)
		}
		var prev *PrevIface
		if usePrev {
			prev = &PrevIface{HostPort: prevPort, Bridge: prevBridge, MAC: prevMAC}
			if prevIPs != "" {
				prev.IPs = strings.Split(prevIPs, ",")
			}
		}
		env := Env{ContainerID: containerID, IfName: ifName, Args: args}
		r, err := Resolve(conf, ruleset.Limits, env, prev, nil)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Field == "" {
				t.Fatalf("Resolve error %v (%T) is not a *config.Error naming a field", err, err)
			}
			// Environment errors are about CNI_* variables, and all of
			// those are environment errors.
			isEnv := strings.HasPrefix(e.Field, "CNI_")
			switch {
			case e.Code == types.ErrInvalidEnvironmentVariables && !isEnv,
				e.Code == 0 && isEnv,
				e.Code != 0 && e.Code != types.ErrInvalidEnvironmentVariables:
				t.Fatalf("Resolve error %v has code %d", err, e.Code)
			}
			return
		}
		checkResolved(t, r.Model)
		p, err := ruleset.Build(r.Model)
		if err != nil {
			t.Fatalf("Resolve accepted the config but Build refuses it: %v\nconfig: %q env %+v prev %+v", err, data, env, prev)
		}
		checkPlanLimits(t, p)
	})
}

// member is one key of an object as decodeOrdered returns it: objects
// are []member, in order, duplicates kept.
type member struct {
	key string
	val any
}

func decodeOrdered(data []byte) (any, error) {
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.UseNumber()
	var value func() (any, error)
	value = func() (any, error) {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		switch tok {
		case json.Delim('{'):
			obj := []member{}
			for dec.More() {
				k, err := dec.Token()
				if err != nil {
					return nil, err
				}
				v, err := value()
				if err != nil {
					return nil, err
				}
				obj = append(obj, member{k.(string), v})
			}
			_, err := dec.Token()
			return obj, err
		case json.Delim('['):
			arr := []any{}
			for dec.More() {
				v, err := value()
				if err != nil {
					return nil, err
				}
				arr = append(arr, v)
			}
			_, err := dec.Token()
			return arr, err
		}
		return tok, nil
	}
	return value()
}

var fuzzArgsType = reflect.TypeOf(ArgsConf{})

// exactKeys checks that every object key in v (from decodeOrdered) is the
// JSON name of a field of typ, exactly, and that no object has a key
// twice. Values tapfw reads leniently or not at all (prevResult, args
// other than args.cni.tapfwRules) are not checked.
func exactKeys(v any, typ reflect.Type, path string) error {
	for typ.Kind() == reflect.Pointer {
		typ = typ.Elem()
	}
	switch val := v.(type) {
	case []member:
		// only returns the one value of key, an error if it is there twice
		only := func(obj []member, key string) (any, bool, error) {
			var out any
			n := 0
			for _, m := range obj {
				if m.key == key {
					out = m.val
					n++
				}
			}
			if n > 1 {
				return nil, false, fmt.Errorf("key %q twice at %q", key, path)
			}
			return out, n == 1, nil
		}
		switch {
		case typ == fuzzArgsType:
			c, _, err := only(val, "cni")
			if err != nil {
				return err
			}
			if cni, ok := c.([]member); ok {
				r, ok, err := only(cni, "tapfwRules")
				if err != nil || !ok {
					return err
				}
				return exactKeys(r, reflect.TypeOf(RuleLists{}), path+".cni.tapfwRules")
			}
			return nil
		case typ.Kind() == reflect.Map && typ.Elem().Kind() == reflect.Interface:
			return nil // free-form: prevResult
		case typ.Kind() != reflect.Map && typ.Kind() != reflect.Struct:
			return nil
		}
		var fields map[string]reflect.Type
		if typ.Kind() == reflect.Struct {
			fields = jsonFields(typ)
		}
		seen := map[string]bool{}
		for _, m := range val {
			if seen[m.key] {
				return fmt.Errorf("key %q twice at %q", m.key, path)
			}
			seen[m.key] = true
			ft := typ
			if fields != nil {
				var ok bool
				if ft, ok = fields[m.key]; !ok {
					return fmt.Errorf("key %q at %q, which is no field of %s", m.key, path, typ)
				}
			} else {
				ft = typ.Elem()
			}
			if err := exactKeys(m.val, ft, strings.TrimPrefix(path+"."+m.key, ".")); err != nil {
				return err
			}
		}
	case []any:
		if typ.Kind() != reflect.Slice && typ.Kind() != reflect.Array {
			return nil
		}
		for i, e := range val {
			if err := exactKeys(e, typ.Elem(), fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
	}
	return nil
}

// jsonFields maps the JSON names of typ's fields, embedded structs
// flattened, to their types; fields tagged "-" are left out.
func jsonFields(typ reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := 0; i < typ.NumField(); i++ {
		f := typ.Field(i)
		tag := f.Tag.Get("json")
		name, _, _ := strings.Cut(tag, ",")
		if name == "-" || (!f.IsExported() && !f.Anonymous) {
			continue
		}
		if f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct {
			for k, t := range jsonFields(f.Type) {
				out[k] = t
			}
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = f.Type
	}
	return out
}

var (
	canonPorts   = regexp.MustCompile(`^(0|[1-9][0-9]{0,4})(:(0|[1-9][0-9]{0,4}))?(,(0|[1-9][0-9]{0,4})(:(0|[1-9][0-9]{0,4}))?)*$`)
	canonICMP    = regexp.MustCompile(`^(0|[1-9][0-9]{0,2})(/(0|[1-9][0-9]{0,2}))?$`)
	canonProtoNo = regexp.MustCompile(`^[1-9][0-9]{0,2}$`)
)

// checkResolved checks every value of a resolved config against the
// ruleset's validation and the documented limits.
func checkResolved(t *testing.T, c model.Config) {
	t.Helper()
	tp := c.Tap
	must := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("accepted %s: %v", what, err)
		}
	}
	must("tap name", model.ValidateIfName(tp.Name))
	must("bridge name", model.ValidateIfName(c.Bridge.Name))
	if tp.Bridge != c.Bridge.Name || tp.Name == c.Bridge.Name {
		t.Fatalf("tap %q on bridge %q / %q", tp.Name, tp.Bridge, c.Bridge.Name)
	}
	if tp.IfName != "" {
		must("CNI_IFNAME", model.ValidateIfName(tp.IfName))
	}
	if tp.Network != "" {
		must("network name", model.ValidateID(tp.Network, ruleset.MaxNetworkName))
	}
	if tp.ContainerID != "" {
		must("container ID", model.ValidateID(tp.ContainerID, ruleset.MaxContainerID))
	}
	if tp.MAC != nil && (len(tp.MAC) != 6 || tp.MAC[0]&1 == 1) {
		t.Fatalf("accepted MAC %v", tp.MAC)
	}
	if tp.MACFilter && len(tp.MAC) != 6 {
		t.Fatalf("macFilter on without a MAC")
	}
	for _, a := range []model.Action{tp.PolicyIn, tp.PolicyOut} {
		if a != model.Accept && a != model.Drop && a != model.Reject {
			t.Fatalf("accepted policy %q", a)
		}
	}
	if len(tp.IPs) > MaxIPs {
		t.Fatalf("accepted %d addresses", len(tp.IPs))
	}
	for _, p := range tp.IPs {
		checkPrefix(t, "tap address", p)
		if !p.Addr().Is4() {
			t.Fatalf("IPv6 tap address %v among the IPv4 ones", p)
		}
	}
	for _, p := range tp.IPs6 {
		checkPrefix(t, "tap address", p)
		if !p.Addr().Is6() {
			t.Fatalf("IPv4 tap address %v among the IPv6 ones", p)
		}
	}
	if len(c.Sets) > MaxSets {
		t.Fatalf("accepted %d sets", len(c.Sets))
	}
	for name, es := range c.Sets {
		must("set name", model.ValidateName(name, ruleset.Limits.SetName))
		if len(es) > MaxSetEntries {
			t.Fatalf("accepted %d entries in set %s", len(es), name)
		}
		for _, p := range es {
			checkPrefix(t, "set entry", p)
		}
	}
	checkRules(t, c, "in", tp.In)
	checkRules(t, c, "out", tp.Out)
	seen := map[string]bool{}
	for _, g := range tp.Groups {
		if _, ok := c.Groups[g]; !ok || seen[g] {
			t.Fatalf("tap uses group %q: defined %v, named before %v", g, ok, seen[g])
		}
		seen[g] = true
	}
	for name, g := range c.Groups {
		must("group name", model.ValidateName(name, ruleset.Limits.GroupName))
		checkRules(t, c, "group in", g.In)
		checkRules(t, c, "group out", g.Out)
	}
	if h := c.Host; h != nil {
		for _, p := range append(append([]netip.Prefix(nil), h.IPs...), h.ClusterHosts...) {
			checkPrefix(t, "host address", p)
		}
		checkRules(t, c, "host in", h.In)
		checkRules(t, c, "host out", h.Out)
	}
}

// checkPrefix: an IPv4 or IPv6 network with host bits zero that is not
// everything, without a zone and not IPv4-mapped.
func checkPrefix(t *testing.T, what string, p netip.Prefix) {
	t.Helper()
	if !p.IsValid() || p.Addr().Zone() != "" || p.Addr().Is4In6() || p.Masked() != p || p.Bits() == 0 {
		t.Fatalf("accepted %s %v", what, p)
	}
}

func checkRules(t *testing.T, c model.Config, dir string, rs []model.Rule) {
	t.Helper()
	if len(rs) > MaxRules {
		t.Fatalf("accepted %d %s rules", len(rs), dir)
	}
	for i, u := range rs {
		fail := func(format string, a ...any) {
			t.Helper()
			t.Fatalf("%s rule %d: %s: %+v", dir, i, fmt.Sprintf(format, a...), u)
		}
		switch u.Action {
		case model.Accept, model.Drop, model.Reject:
		default:
			fail("action %q", u.Action)
		}
		switch u.Proto {
		case "", "tcp", "udp", "icmp", model.ProtoICMPv6:
		default:
			n, err := strconv.Atoi(u.Proto)
			if !canonProtoNo.MatchString(u.Proto) || err != nil || n > 255 || n == 1 || n == 6 || n == 17 || n == 58 {
				fail("protocol %q", u.Proto)
			}
		}
		for _, ports := range []string{u.SPort, u.DPort} {
			if ports == "" {
				continue
			}
			if u.Proto != "tcp" && u.Proto != "udp" {
				fail("ports without tcp or udp")
			}
			if !canonPorts.MatchString(ports) {
				fail("ports %q not canonical", ports)
			}
			slots := 0
			for _, part := range strings.Split(ports, ",") {
				lo, hi, isRange := strings.Cut(part, ":")
				a, _ := strconv.Atoi(lo)
				b := a
				if isRange {
					b, _ = strconv.Atoi(hi)
					slots++
				}
				slots++
				if a > 65535 || b > 65535 || a > b {
					fail("ports %q", ports)
				}
				// iptables prints a:a back as a, and multiport refuses it.
				if isRange && a == b {
					fail("ports %q: a range whose ends are equal", ports)
				}
			}
			if strings.Contains(ports, ",") && slots > 15 {
				fail("ports %q: more than 15", ports)
			}
		}
		if u.ICMPType != "" {
			if (u.Proto != "icmp" && u.Proto != model.ProtoICMPv6) || !canonICMP.MatchString(u.ICMPType) {
				fail("icmp type %q", u.ICMPType)
			}
			typ, code, _ := strings.Cut(u.ICMPType, "/")
			a, _ := strconv.Atoi(typ)
			b, _ := strconv.Atoi(code)
			if a >= 255 || b > 255 {
				fail("icmp type %q", u.ICMPType)
			}
		}
		if err := model.ValidateComment(u.Comment); err != nil {
			fail("comment: %v", err)
		}
		for _, a := range []model.Addr{u.Source, u.Dest} {
			switch {
			case a.Set != "":
				if err := model.ValidateName(a.Set, ruleset.Limits.SetName); err != nil {
					fail("set: %v", err)
				}
				if _, ok := c.Sets[a.Set]; !ok {
					fail("set %q not defined", a.Set)
				}
				if a.Prefix.IsValid() {
					fail("both a set and a prefix")
				}
			case a.Prefix.IsValid():
				checkPrefix(t, "rule address", a.Prefix)
				if a.Family != "" {
					fail("both a family and a prefix")
				}
			case a.Family != "" && a.Family != model.IPv4 && a.Family != model.IPv6:
				fail("family %q", a.Family)
			}
		}
		// A rule is of one family at most.
		if !ruleset.IPv4.Renders(u) && !ruleset.IPv6.Renders(u) {
			fail("a rule of no family")
		}
	}
}

// Kernel limits on what a plan renders.
const (
	maxComment   = 255 // xt_comment: 256 bytes with the NUL
	maxLogPrefix = 29  // xt_LOG: 30 bytes with the NUL
)

// checkPlanLimits checks every name and rule of a plan against the limits
// of iptables, the kernel and ipset.
func checkPlanLimits(t *testing.T, p *ruleset.Plan) {
	t.Helper()
	var all []ruleset.Rule
	chains := map[string]bool{}
	for _, chs := range [][]ruleset.Chain{p.Owned, p.Shared, p.Base} {
		for _, ch := range chs {
			chains[ch.Name] = true
			all = append(all, ch.Rules...)
		}
	}
	all = append(all, p.Members...)
	all = append(all, p.Hooks...)
	for _, path := range p.Paths {
		if len(path.Nodes) > ruleset.MaxTrieDepth+1 {
			t.Fatalf("path %s %s is %d nodes deep", path.Trie.Name, path.Key, len(path.Nodes))
		}
		for _, n := range path.Nodes {
			chains[n] = true
		}
		all = append(all, path.Edges...)
		all = append(all, path.Leaf)
	}
	for ch := range chains {
		if len(ch) > ruleset.MaxChainName || strings.ContainsAny(ch, " \t\n\r\x00\"'") || !strings.HasPrefix(ch, ruleset.ChainPrefix) {
			t.Fatalf("chain name %q", ch)
		}
	}
	for _, s := range append(append([]ruleset.Set(nil), p.Sets...), p.BaseSets...) {
		if len(s.Name) > ruleset.MaxSetName || !strings.HasPrefix(s.Name, ruleset.SetPrefix) {
			t.Fatalf("set name %q", s.Name)
		}
	}
	for _, r := range all {
		line := r.String()
		if strings.ContainsAny(line, "\n\r\x00") {
			t.Fatalf("rule holds a line break or NUL: %q", line)
		}
		if c := r.InstalledComment(); len(c) > maxComment || strings.ContainsAny(c, `"\`) {
			t.Fatalf("comment of %d bytes (limit %d) or with quotes: %q", len(c), maxComment, c)
		}
		if len(r.Verdict.LogPrefix) > maxLogPrefix {
			t.Fatalf("LOG prefix of %d bytes (limit %d): %q", len(r.Verdict.LogPrefix), maxLogPrefix, r.Verdict.LogPrefix)
		}
		for _, set := range []string{r.SetSrc, r.SetDst} {
			if len(set) > ruleset.MaxSetName {
				t.Fatalf("set name %q", set)
			}
		}
		if r.Verdict.Target == "" || r.Chain == "" {
			t.Fatalf("rule without chain or target: %q", line)
		}
	}
}
