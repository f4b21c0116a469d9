package netfilter

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tapfw/tapfw/pkg/model"

	"github.com/tapfw/tapfw/pkg/config"
	"github.com/tapfw/tapfw/pkg/fuzzconf"
	"github.com/tapfw/tapfw/pkg/ruleset"
	"github.com/tapfw/tapfw/pkg/testnet"
)

// FuzzRender builds a config from fuzzed fields (tap and bridge names,
// MAC, addresses, one rule's protocol, ports, addresses, comment and ICMP
// type, a named set) and sends it through the real validation. What the
// validation accepts is built into a Plan and rendered as the restore file
// the backend applies for a first ADD on an empty host. The file must be:
//
//   - well formed: "*filter", chain declarations, -A/-I lines on declared or
//     built-in chains, "COMMIT", and nothing else;
//   - exactly the rules it was rendered from: each rule line, split into
//     arguments the way iptables-restore splits it (add_param_to_argv),
//     gives the rule's arguments one for one; no argument holds a line
//     break or NUL, and the comment is only ever the --comment argument;
//   - readable by tapfw itself: its comment and owner parse back, and the
//     attachment record of the dispatch leaf reads back unchanged;
//   - accepted by `iptables-restore --test` under iptables-nft and
//     iptables-legacy (as root only), in a network namespace made once per
//     fuzz worker, holding the sets the plan creates;
//   - and, applied for real in that namespace, printed back by
//     iptables-save exactly as rendered (tapfw compares rules as text).
func FuzzRender(f *testing.F) {
	for _, in := range fuzzconf.Seeds() {
		f.Add(in.Tap, in.Bridge, in.MAC, in.IPs, in.Proto, in.SPort, in.DPort, in.Source, in.Dest, in.Comment, in.ICMPType, in.Action,
			in.Log, in.SetName, in.SetEntry, in.Flags)
	}
	k := &restoreTester{}
	f.Cleanup(k.close)
	f.Fuzz(func(t *testing.T, tap, bridge, mac, ips, proto, sport, dport, source, dest, comment, icmpType, action string, log bool, setName, setEntry string, flags uint8) {
		in := fuzzconf.Input{Tap: tap, Bridge: bridge, MAC: mac, IPs: ips, Proto: proto, SPort: sport, DPort: dport, Source: source, Dest: dest,
			Comment: comment, ICMPType: icmpType, Action: action, Log: log, SetName: setName, SetEntry: setEntry, Flags: flags}
		data := in.JSON()
		nc, err := config.Parse(data)
		if err != nil {
			return
		}
		res, err := config.Resolve(nc, ruleset.Limits, config.Env{ContainerID: "fuzz-1", IfName: "eth0"}, nil, nil)
		if err != nil {
			return
		}
		p, err := ruleset.Build(res.Model)
		if err != nil {
			t.Fatalf("validation accepted the config, Build refuses it: %v\nconfig: %s", err, data)
		}
		empty, err := ParseSave(mustSave(t))
		if err != nil {
			t.Fatal(err)
		}
		c, err := PlanChanges(TableReader{T: empty}, nil, p)
		if err != nil {
			t.Fatalf("PlanChanges: %v\nconfig: %s", err, data)
		}
		restore := c.RestoreFile()
		if err := checkRestoreFile(restore, p, res.Model.Tap); err != nil {
			t.Fatalf("%v\nconfig: %s\nrestore file:\n%s", err, data, restore)
		}
		if err := k.test(restore, c.Sets); err != nil {
			t.Fatalf("%v\nconfig: %s\nrestore file:\n%s", err, data, restore)
		}
	})
}

func mustSave(t *testing.T) []byte {
	t.Helper()
	save, err := NewFakeTables().Save()
	if err != nil {
		t.Fatal(err)
	}
	return save
}

var (
	declRE   = regexp.MustCompile(`^:([^ ]+) - \[0:0\]$`)
	posRE    = regexp.MustCompile(`^[1-9][0-9]*$`)
	builtins = map[string]bool{"INPUT": true, "FORWARD": true, "OUTPUT": true}
)

// Limits of iptables-restore's line parser.
const (
	maxRestoreLine  = 10240 // its line buffer
	maxRestoreParam = 1023  // a parameter ("Parameter too long!" at 1024)
	maxRestoreArgs  = 254   // MAX_ARGC, with argv[0]
)

// checkRestoreFile checks a first ADD's restore file against the plan it
// was rendered from (see FuzzRender).
func checkRestoreFile(data []byte, p *ruleset.Plan, tap model.Tap) error {
	if !bytes.HasSuffix(data, []byte("\n")) {
		return fmt.Errorf("restore file does not end in a newline")
	}
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	if len(lines) < 3 || lines[0] != "*filter" || lines[len(lines)-1] != "COMMIT" {
		return fmt.Errorf("restore file is not *filter ... COMMIT")
	}
	// Every rule the plan holds, by chain and spec.
	want := map[[2]string]ruleset.Rule{}
	addRule := func(r ruleset.Rule) { want[[2]string{r.Chain, r.Spec()}] = r }
	for _, chs := range [][]ruleset.Chain{p.Owned, p.Shared, p.Base} {
		for _, ch := range chs {
			for _, r := range ch.Rules {
				addRule(r)
			}
		}
	}
	for _, rs := range [][]ruleset.Rule{p.Members, p.Hooks, p.Tails} {
		for _, r := range rs {
			addRule(r)
		}
	}
	var leafIn *ruleset.Rule
	for _, path := range p.Paths {
		for _, e := range path.Edges {
			addRule(e)
		}
		addRule(path.Leaf)
		if path.Trie.Name == ruleset.TrieIn.Name {
			l := path.Leaf
			leafIn = &l
		}
		// A trie whose nodes end in a rule of their own ("miss" rule)
		// renders that rule in every node of the path.
		if m, ok := any(path.Trie).(interface {
			MissRule(node string) (ruleset.Rule, bool)
		}); ok {
			for _, node := range path.Nodes {
				if r, ok := m.MissRule(node); ok {
					addRule(r)
				}
			}
		}
	}
	declared := map[string]bool{}
	seenLeaf := false
	for n, line := range lines[1 : len(lines)-1] {
		n += 2
		if len(line) >= maxRestoreLine {
			return fmt.Errorf("line %d is %d bytes long", n, len(line))
		}
		if m := declRE.FindStringSubmatch(line); m != nil {
			name := m[1]
			if len(name) > ruleset.MaxChainName || !strings.HasPrefix(name, ruleset.ChainPrefix) || strings.ContainsAny(name, "\t\"'\\!\x00") {
				return fmt.Errorf("line %d declares chain %q", n, name)
			}
			declared[name] = true
			continue
		}
		verb, rest, _ := strings.Cut(line, " ")
		chain, spec, _ := strings.Cut(rest, " ")
		head := []string{verb, chain}
		switch verb {
		case "-A":
		case "-I":
			pos, sp, _ := strings.Cut(spec, " ")
			if !posRE.MatchString(pos) {
				return fmt.Errorf("line %d inserts at %q: %q", n, pos, line)
			}
			head, spec = append(head, pos), sp
		default:
			return fmt.Errorf("line %d is neither a chain declaration nor -A or -I: %q", n, line)
		}
		r, ok := want[[2]string{chain, spec}]
		if !ok {
			return fmt.Errorf("line %d is no rule of the plan (or of its tries' nodes): %q", n, line)
		}
		argv, err := restoreArgv(line)
		if err != nil {
			return fmt.Errorf("line %d: %v: %q", n, err, line)
		}
		if !declared[chain] && !builtins[chain] {
			return fmt.Errorf("line %d adds to chain %s, which is neither declared before nor built in", n, chain)
		}
		wantArgv := append(head, r.Args()...)
		if !slices.Equal(argv, wantArgv) {
			return fmt.Errorf("line %d splits into\n  %q\nbut was rendered from\n  %q", n, argv, wantArgv)
		}
		if len(argv) >= maxRestoreArgs {
			return fmt.Errorf("line %d has %d arguments", n, len(argv))
		}
		for _, a := range argv {
			if strings.ContainsAny(a, "\n\r\x00") || len(a) > maxRestoreParam {
				return fmt.Errorf("line %d: argument %q holds a line break or NUL or is too long", n, a)
			}
		}
		// The comment is only ever the argument of --comment.
		if c := r.InstalledComment(); c != "" {
			for i, a := range argv {
				if a == c && (i == 0 || argv[i-1] != "--comment") {
					return fmt.Errorf("line %d: the comment %q is argument %d, not after --comment", n, c, i)
				}
			}
		}
		// tapfw reads its comments back from iptables-save text.
		if got := Comment(spec); got != r.InstalledComment() {
			return fmt.Errorf("line %d: comment reads back as %q, want %q", n, got, r.InstalledComment())
		}
		if got := Owner(spec); got != r.Owner() {
			return fmt.Errorf("line %d: owner reads back as %q, want %q", n, got, r.Owner())
		}
		if leafIn != nil && chain == leafIn.Chain && spec == leafIn.Spec() {
			seenLeaf = true
			a, ok := ruleset.ParseDispatchComment(ruleset.StripHash(Comment(spec)))
			wantA := model.Attachment{Tap: tap.Name, Network: tap.Network, ContainerID: tap.ContainerID, IfName: tap.IfName}
			if !ok || a != wantA {
				return fmt.Errorf("line %d: attachment reads back as %+v (%v), want %+v", n, a, ok, wantA)
			}
		}
	}
	if leafIn != nil && !seenLeaf {
		return fmt.Errorf("the restore file does not install the tap's leaf %q", leafIn.String())
	}
	return nil
}

// restoreArgv splits a restore line into arguments as iptables-restore
// does (add_param_to_argv in iptables' xshared.c): blanks, tabs and
// newlines separate arguments outside double quotes; a double quote opens
// a quoted part and the next one closes it and ends the argument; inside
// quotes a backslash takes the next character literally.
func restoreArgv(line string) ([]string, error) {
	var out []string
	var param []byte
	quoteOpen, escaped := false, false
	for i := 0; i < len(line); i++ {
		ch := line[i]
		if quoteOpen {
			switch {
			case escaped:
				param = append(param, ch)
				escaped = false
				continue
			case ch == '\\':
				escaped = true
				continue
			case ch == '"':
				quoteOpen = false
			default:
				param = append(param, ch)
				continue
			}
		} else if ch == '"' {
			quoteOpen = true
			continue
		}
		switch ch {
		case '"':
		case ' ', '\t', '\n':
			if len(param) == 0 {
				continue
			}
		default:
			param = append(param, ch)
			continue
		}
		out = append(out, string(param))
		param = param[:0]
	}
	if quoteOpen {
		return nil, fmt.Errorf("unterminated quote")
	}
	if len(param) > 0 {
		out = append(out, string(param))
	}
	return out, nil
}

// TestRestoreArgv pins the splitting FuzzRender relies on to what
// iptables-restore does with quotes, escapes and blanks.
func TestRestoreArgv(t *testing.T) {
	for _, c := range []struct {
		line string
		want []string
	}{
		{`-A X -j ACCEPT`, []string{"-A", "X", "-j", "ACCEPT"}},
		{"-A  X\t-j ACCEPT\n", []string{"-A", "X", "-j", "ACCEPT"}},
		{`-A X -m comment --comment "a b  c" -j ACCEPT`, []string{"-A", "X", "-m", "comment", "--comment", "a b  c", "-j", "ACCEPT"}},
		{`-A X --comment "a \" -j DROP" -j ACCEPT`, []string{"-A", "X", "--comment", `a " -j DROP`, "-j", "ACCEPT"}},
		{`-A X --comment "a\\b"`, []string{"-A", "X", "--comment", `a\b`}},
		{`-A X --comment a"b c"d`, []string{"-A", "X", "--comment", "ab c", "d"}},
		{`-A X --comment "" -j ACCEPT`, []string{"-A", "X", "--comment", "", "-j", "ACCEPT"}},
		{`-A X --comment a\b`, []string{"-A", "X", "--comment", `a\b`}},
	} {
		got, err := restoreArgv(c.line)
		if err != nil || !slices.Equal(got, c.want) {
			t.Errorf("restoreArgv(%q) = %q, %v; want %q", c.line, got, err, c.want)
		}
	}
	if _, err := restoreArgv(`-A X --comment "open`); err == nil {
		t.Errorf("an unterminated quote is no error")
	}
}

// TestRestoreTester makes sure FuzzRender's kernel check is not vacuous:
// iptables-restore --test, as it runs it, refuses a broken file and a
// rule on a set that does not exist, and accepts a good one. (It is no
// substitute for the structural check: iptables-restore accepts an
// unterminated quote, and iptables-nft-restore --test a rule in a chain
// nobody declared.)
func TestRestoreTester(t *testing.T) {
	testnet.NeedKernel(t)
	k := &restoreTester{}
	t.Cleanup(k.close)
	good := "*filter\n:TFW-X - [0:0]\n-A TFW-X -m set --match-set tfw-s-x src -m comment --comment \"@x: y #1\" -j ACCEPT\n-I INPUT 1 -j TFW-X\nCOMMIT\n"
	if err := k.test([]byte(good), []SetChange{{Name: "tfw-s-x"}}); err != nil {
		t.Fatalf("a good file: %v", err)
	}
	if k.ns == nil {
		t.Skip("no nsenter or iptables-restore here")
	}
	if err := k.test([]byte(good), nil); err == nil {
		t.Errorf("a rule on a set that does not exist passed")
	}
	for _, bad := range []string{
		"*filter\n-A TFW-X -j ACCEPT\nCOMMIT\n",
		"*filter\n:TFW-X - [0:0]\n-A TFW-X -j TFW-NOWHERE\nCOMMIT\n",
	} {
		if err := k.test([]byte(bad), nil); err == nil {
			t.Errorf("passed:\n%s", bad)
		}
	}
}

// restoreTester runs `iptables-restore --test` in a network namespace of
// its own, made on first use (once per fuzz worker process) and deleted by
// the fuzz test's cleanup. Unless the kernel tests run here
// (testnet.KernelTests: root, not make test-unit) it does nothing.
type restoreTester struct {
	once  sync.Once
	ns    *testnet.NS
	err   error
	tools []string
}

func (k *restoreTester) close() {
	if k.ns != nil {
		_ = k.ns.Close()
	}
}

func (k *restoreTester) test(restore []byte, sets []SetChange) error {
	if !testnet.KernelTests() {
		return nil
	}
	k.once.Do(func() {
		if _, err := exec.LookPath("nsenter"); err != nil {
			return
		}
		for _, mode := range []Mode{ModeNFT, ModeLegacy} {
			if _, err := exec.LookPath("iptables-" + string(mode) + "-restore"); err == nil {
				k.tools = append(k.tools, "iptables-"+string(mode)+"-restore")
			}
		}
		if len(k.tools) > 0 {
			k.ns, k.err = testnet.NewNS(testnet.FuzzNSPrefix())
		}
	})
	if k.err != nil {
		return fmt.Errorf("making the fuzz namespace: %w", k.err)
	}
	if k.ns == nil {
		return nil
	}
	// The sets the plan creates before its restore, as the backend does;
	// they go again afterwards, so each input starts from an empty
	// namespace.
	var made []string
	defer func() {
		_ = k.ns.Do(func() error {
			for _, name := range made {
				_ = NetlinkSets{}.Destroy(name)
			}
			return nil
		})
	}()
	if err := k.ns.Do(func() error {
		for _, s := range sets {
			if err := (NetlinkSets{}).Destroy(s.Name); err != nil {
				return err
			}
			if err := (NetlinkSets{}).Create(s.Name); err != nil {
				return err
			}
			made = append(made, s.Name)
		}
		return nil
	}); err != nil {
		return err
	}
	for _, tool := range k.tools {
		if _, err := k.run(restore, tool, "--noflush", "--test", "--wait=10"); err != nil {
			return fmt.Errorf("%s --test refuses the restore file: %w", tool, err)
		}
	}
	return k.roundTrip(restore)
}

// run runs an iptables tool in the namespace.
func (k *restoreTester) run(stdin []byte, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "nsenter", append([]string{"--net=" + k.ns.Path}, args...)...)
	cmd.Stdin = bytes.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%v: %s", err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}

// roundTrip applies the restore file for real with the first tool (the
// namespace is empty), reads the table back with the matching save, and
// checks that every chain holds exactly the rules the file put there, as
// text: tapfw compares rendered rules with iptables-save's, so a rule the
// kernel prints differently would make every ADD rewrite it and CHECK
// report drift for ever. The table is emptied again afterwards.
func (k *restoreTester) roundTrip(restore []byte) error {
	tool := k.tools[0]
	save := strings.TrimSuffix(tool, "-restore") + "-save"
	defer func() { _, _ = k.run([]byte("*filter\nCOMMIT\n"), tool, "--wait=10") }()
	if _, err := k.run(restore, tool, "--noflush", "--wait=10"); err != nil {
		return fmt.Errorf("%s passed --test but refuses the restore file: %w", tool, err)
	}
	out, err := k.run(nil, save, "-t", "filter")
	if err != nil {
		return fmt.Errorf("%s: %w", save, err)
	}
	got, err := ParseSave(out)
	if err != nil {
		return err
	}
	want := map[string][]string{}
	for _, line := range strings.Split(string(restore), "\n") {
		if m := declRE.FindStringSubmatch(line); m != nil {
			want[m[1]] = nil
			continue
		}
		verb, rest, _ := strings.Cut(line, " ")
		chain, spec, _ := strings.Cut(rest, " ")
		switch verb {
		case "-A":
			want[chain] = append(want[chain], spec)
		case "-I":
			p, spec, _ := strings.Cut(spec, " ")
			pos, _ := strconv.Atoi(p)
			rs := want[chain]
			if pos < 1 || pos > len(rs)+1 {
				return fmt.Errorf("-I %s %d in a chain of %d rules", chain, pos, len(rs))
			}
			want[chain] = append(rs[:pos-1:pos-1], append([]string{spec}, rs[pos-1:]...)...)
		}
	}
	for chain, specs := range want {
		if !got.Has(chain) {
			return fmt.Errorf("after the restore, %s has no chain %s", save, chain)
		}
		have := got.Chains[chain]
		for i := 0; i < max(len(specs), len(have)); i++ {
			var w, h string
			if i < len(specs) {
				w = Normalize(specs[i])
			}
			if i < len(have) {
				h = Normalize(have[i])
			}
			if w != h {
				return fmt.Errorf("chain %s rule %d: rendered\n  %s\nbut %s prints\n  %s", chain, i+1, w, save, h)
			}
		}
	}
	return nil
}
