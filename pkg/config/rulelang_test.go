package config

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/tapfw/tapfw/pkg/model"
)

// rulesIn resolves good with extra fields and returns the tap's IN rules.
func rulesIn(t *testing.T, extra string) []model.Rule {
	t.Helper()
	r, err := resolve(t, good+extra+"}", Env{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return r.Model.Tap.In
}

// words is a rule's number and fields, to compare in one string.
func words(rs []model.Rule) string {
	var out []string
	for i, r := range rs {
		w := []string{r.Number(i), string(r.Action), r.Proto}
		for _, a := range []model.Addr{r.Source, r.Dest} {
			switch {
			case a.Set != "":
				w = append(w, "+"+a.Set)
			case a.Range.IsValid():
				w = append(w, a.Range.String())
			case a.Prefix.IsValid():
				w = append(w, a.Prefix.String())
			case a.Family != "":
				w = append(w, "any-"+a.Family)
			default:
				w = append(w, "*")
			}
		}
		w = append(w, r.SPort, r.DPort, r.ICMPType, r.Family, r.Macro)
		out = append(out, strings.Join(w, " "))
	}
	return strings.Join(out, "; ")
}

func TestMacros(t *testing.T) {
	for _, c := range []struct{ name, rules, want string }{
		{"one part", `{"action":"ACCEPT","macro":"SSH"}`, "1 ACCEPT tcp * *  22   SSH"},
		{"any case", `{"action":"DROP","macro":"ssh"}`, "1 DROP tcp * *  22   SSH"},
		{"two parts", `{"action":"ACCEPT","macro":"DNS","source":"198.51.100.0/24"}`,
			"1.1 ACCEPT udp 198.51.100.0/24 *  53   DNS; 1.2 ACCEPT tcp 198.51.100.0/24 *  53   DNS"},
		{"both families", `{"action":"ACCEPT","macro":"Ping"}`,
			"1.1 ACCEPT icmp * *   8  Ping; 1.2 ACCEPT ipv6-icmp * *   128  Ping"},
		{"a part of the other family is left out", `{"action":"ACCEPT","macro":"Ping","source":"2001:db8::/32"}`,
			"1 ACCEPT ipv6-icmp 2001:db8::/32 *   128  Ping"},
		{"ipv6 only", `{"action":"ACCEPT","macro":"DHCPv6"}`, "1 ACCEPT udp * * 546:547 546:547  ipv6 DHCPv6"},
		{"a protocol number", `{"action":"ACCEPT","macro":"GRE","dest":"203.0.113.1"}`, "1 ACCEPT 47 * 203.0.113.1/32     GRE"},
		{"a field the macro leaves open", `{"action":"ACCEPT","macro":"DNS","sport":"1024:65535"}`,
			"1.1 ACCEPT udp * * 1024:65535 53   DNS; 1.2 ACCEPT tcp * * 1024:65535 53   DNS"},
		{"the macro's own value again", `{"action":"ACCEPT","macro":"SSH","proto":"tcp","dport":"22"}`, "1 ACCEPT tcp * *  22   SSH"},
		{"numbered as the config", `{"action":"ACCEPT","macro":"HTTP","enable":false},{"action":"ACCEPT","macro":"HTTPS","enable":true}`,
			"2 ACCEPT tcp * *  443   HTTPS"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := words(rulesIn(t, `,"rules":{"in":[`+c.rules+`]}`)); got != c.want {
				t.Errorf("got  %s\nwant %s", got, c.want)
			}
		})
	}
}

func TestEveryMacroResolves(t *testing.T) {
	ms := Macros()
	if len(ms) < 80 {
		t.Fatalf("%d macros", len(ms))
	}
	for _, m := range ms {
		if m.Description == "" || len(m.Parts) == 0 {
			t.Errorf("%s: no description or parts", m.Name)
		}
		rs := rulesIn(t, `,"rules":{"in":[{"action":"ACCEPT","macro":"`+m.Name+`"}]}`)
		if len(rs) != len(m.Parts) {
			t.Errorf("%s: %d rules for %d parts", m.Name, len(rs), len(m.Parts))
		}
	}
}

func TestAliasesAndLists(t *testing.T) {
	aliases := `,"aliases":{"db":"198.51.100.10","Net6":"2001:db8:5::/48","my-host":"203.0.113.7"},"ipsets":{"s":["db","net6"]}`
	for _, c := range []struct{ name, rules, want string }{
		{"alias", `{"action":"ACCEPT","source":"db"}`, "1 ACCEPT  198.51.100.10/32 *     "},
		{"alias in another case, with a dash", `{"action":"ACCEPT","dest":"NET6"},{"action":"DROP","dest":"my-host"}`,
			"1 ACCEPT  * 2001:db8:5::/48     ; 2 DROP  * 203.0.113.7/32     "},
		{"range", `{"action":"ACCEPT","source":"198.51.100.1-198.51.100.9"}`, "1 ACCEPT  198.51.100.1-198.51.100.9 *     "},
		{"range that is a prefix", `{"action":"ACCEPT","source":"198.51.100.0-198.51.100.255"}`, "1 ACCEPT  198.51.100.0/24 *     "},
		{"range of one", `{"action":"ACCEPT","source":"2001:db8::5-2001:db8::5"}`, "1 ACCEPT  2001:db8::5/128 *     "},
		{"list", `{"action":"ACCEPT","proto":"tcp","dport":"22","source":"198.51.100.1-198.51.100.9, 203.0.113.0/24,+s"}`,
			"1.1 ACCEPT tcp 198.51.100.1-198.51.100.9 *  22   ; 1.2 ACCEPT tcp 203.0.113.0/24 *  22   ; 1.3 ACCEPT tcp +s *  22   "},
		{"lists both ways, pairs of two families left out", `{"action":"ACCEPT","source":"db,net6","dest":"203.0.113.1,2001:db8::1"}`,
			"1.1 ACCEPT  198.51.100.10/32 203.0.113.1/32     ; 1.2 ACCEPT  2001:db8:5::/48 2001:db8::1/128     "},
		{"duplicates once", `{"action":"ACCEPT","source":"db,198.51.100.10"}`, "1 ACCEPT  198.51.100.10/32 *     "},
		{"set entries from aliases", `{"action":"ACCEPT","source":"+s"}`, "1 ACCEPT  +s *     "},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := words(rulesIn(t, aliases+`,"rules":{"in":[`+c.rules+`]}`)); got != c.want {
				t.Errorf("got  %s\nwant %s", got, c.want)
			}
		})
	}
	r, err := resolve(t, good+aliases+`,"host":{"ips":["my-host"]}}`, Env{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := []netip.Prefix{netip.MustParsePrefix("198.51.100.10/32"), netip.MustParsePrefix("2001:db8:5::/48")}; len(r.Model.Sets["s"]) != 2 || r.Model.Sets["s"][0] != want[0] || r.Model.Sets["s"][1] != want[1] {
		t.Errorf("set s: %v", r.Model.Sets["s"])
	}
	if r.Model.Host.IPs[0] != netip.MustParsePrefix("203.0.113.7/32") {
		t.Errorf("host ips: %v", r.Model.Host.IPs)
	}
}

func TestRuleLanguageErrors(t *testing.T) {
	for _, c := range []struct{ name, extra, field, msg string }{
		{"unknown macro", `"rules":{"in":[{"action":"ACCEPT","macro":"SSHH"}]}`, "rules.in[0].macro", "not a macro"},
		{"a field the macro sets otherwise", `"rules":{"in":[{"action":"ACCEPT","macro":"SSH","dport":"2222"}]}`, "rules.in[0].dport", "macro SSH sets dport 22"},
		{"no part of the rule's family", `"rules":{"in":[{"action":"ACCEPT","macro":"NeighborDiscovery","source":"198.51.100.1"}]}`, "rules.in[0].source", "is ipv4 but macro is ipv6"},
		{"macro ipv6 only, ipv4 source", `"rules":{"in":[{"action":"ACCEPT","macro":"DHCPv6","source":"198.51.100.1"}]}`, "rules.in[0].source", "is ipv4 but macro is ipv6"},
		{"disabled rules are checked", `"rules":{"in":[{"action":"ACCEPT","macro":"nope","enable":false}]}`, "rules.in[0].macro", "not a macro"},
		{"unknown alias", `"rules":{"in":[{"action":"ACCEPT","source":"nosuch"}]}`, "rules.in[0].source", "nor an alias"},
		{"bad alias name", `"aliases":{"1db":"198.51.100.1"}`, "aliases", "no alias name"},
		{"bad alias value", `"aliases":{"db":"198.51.100.1-198.51.100.2"}`, "aliases.db", "not an IPv4 or IPv6"},
		{"aliases differing in case", `"aliases":{"db":"198.51.100.1","DB":"198.51.100.2"}`, "aliases", "differ only in case"},
		{"unknown alias in a set", `"ipsets":{"s":["nosuch"]}`, "ipsets.s[0]", "nor an alias"},
		{"backwards range", `"rules":{"in":[{"action":"ACCEPT","source":"198.51.100.9-198.51.100.1"}]}`, "rules.in[0].source", "backwards"},
		{"range of two families", `"rules":{"in":[{"action":"ACCEPT","source":"198.51.100.1-2001:db8::1"}]}`, "rules.in[0].source", "mixes IPv4 and IPv6"},
		{"range of no addresses", `"rules":{"in":[{"action":"ACCEPT","source":"198.51.100.1-x"}]}`, "rules.in[0].source", "not a range"},
		{"every address in a list", `"rules":{"in":[{"action":"ACCEPT","source":"0.0.0.0/0,198.51.100.1"}]}`, "rules.in[0].source", "cannot be in a list"},
		{"empty list item", `"rules":{"in":[{"action":"ACCEPT","source":"198.51.100.1,"}]}`, "rules.in[0].source", "empty item"},
		{"iface in a tap's rule", `"rules":{"in":[{"action":"ACCEPT","iface":"vmbr0"}]}`, "rules.in[0].iface", "only the host's rules"},
		{"iface in a group's rule", `"securityGroups":{"g":{"in":[{"action":"ACCEPT","iface":"vmbr0"}]}}`, "securityGroups.g.in[0].iface", "only the host's rules"},
		{"bad iface", `"host":{"rules":{"in":[{"action":"ACCEPT","iface":"vm br0"}]}}`, "host.rules.in[0].iface", "may hold only"},
		{"pairs of two families only", `"rules":{"in":[{"action":"ACCEPT","source":"198.51.100.1","dest":"2001:db8::1"}]}`, "rules.in[0].dest", "is ipv6 but source is ipv4"},
		{"too many parts", `"rules":{"in":[{"action":"ACCEPT","macro":"DNS","source":"198.51.100.1-198.51.100.2,198.51.100.3,198.51.100.4,198.51.100.5,198.51.100.6,198.51.100.7,198.51.100.8,198.51.100.9,198.51.100.10,198.51.100.11,198.51.100.12,198.51.100.13,198.51.100.14,198.51.100.15,198.51.100.16,198.51.100.17,198.51.100.18","dest":"203.0.113.1,203.0.113.2"}]}`, "rules.in[0]", "more than 64"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := resolve(t, good+","+c.extra+"}", Env{}, nil)
			var e *Error
			if !errors.As(err, &e) || e.Field != c.field || !strings.Contains(e.Err.Error(), c.msg) {
				t.Errorf("got %v, want %s: ...%s...", err, c.field, c.msg)
			}
		})
	}
}

func TestLogLevels(t *testing.T) {
	r, err := resolve(t, good+`,"logLevelIn":"info","logLevelOut":"nolog","host":{"logLevelOut":"debug"},
		"rules":{"in":[{"action":"ACCEPT","log":true},{"action":"ACCEPT","log":"warning"},{"action":"ACCEPT","log":"crit"},
		{"action":"ACCEPT","log":"nolog"},{"action":"ACCEPT","log":false}]}}`, Env{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	tp := r.Model.Tap
	var got []string
	for _, u := range tp.In {
		got = append(got, fmt.Sprintf("%v/%s", u.Log, u.LogLevel))
	}
	if want := "true/ true/ true/crit false/ false/"; strings.Join(got, " ") != want {
		t.Errorf("rule logs %s, want %s", strings.Join(got, " "), want)
	}
	if tp.LogLevelIn != "info" || tp.LogLevelOut != "nolog" || r.Model.Host.LogLevelOut != "debug" || r.Model.Host.LogLevelIn != "" {
		t.Errorf("policy levels %q %q, host %q %q", tp.LogLevelIn, tp.LogLevelOut, r.Model.Host.LogLevelIn, r.Model.Host.LogLevelOut)
	}
	for _, c := range []struct {
		level   string
		dropped bool
		want    string
	}{
		{"", true, "warning"}, {"", false, ""}, {"nolog", true, ""}, {"info", false, "info"},
	} {
		if got := model.PolicyLogLevel(c.level, c.dropped); got != c.want {
			t.Errorf("PolicyLogLevel(%q, %v) = %q, want %q", c.level, c.dropped, got, c.want)
		}
	}
	for _, c := range []struct{ extra, field string }{
		{`"logLevelIn":"verbose"`, "logLevelIn"},
		{`"host":{"logLevelOut":"warn"}`, "host.logLevelOut"},
		{`"rules":{"out":[{"action":"DROP","log":"Info"}]}`, "rules.out[0].log"},
	} {
		_, err := resolve(t, good+","+c.extra+"}", Env{}, nil)
		var e *Error
		if !errors.As(err, &e) || e.Field != c.field || !strings.Contains(e.Error(), "a level: emerg, alert") {
			t.Errorf("%s: got %v, want an error about %s", c.extra, err, c.field)
		}
	}
}

func TestGroupRules(t *testing.T) {
	groups := `,"securityGroups":{"web":{"in":[{"action":"ACCEPT","macro":"DNS"},{"action":"DROP","proto":"tcp","dport":"23"}]}}`
	r, err := resolve(t, good+groups+`,"rules":{"in":[{"action":"DROP","proto":"tcp","dport":"22"},{"group":"web","comment":"shared"}]},
		"host":{"rules":{"in":[{"action":"ACCEPT","macro":"SSH"},{"group":"web"},{"group":"web","enable":false}]}}}`, Env{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if in := r.Model.Tap.In; len(in) != 2 || in[1].Group != "web" || in[1].Comment != "shared" || in[1].Num != 2 {
		t.Errorf("tap rules %+v", in)
	}
	// The host's chains do not jump to a group's: its rules are copied
	// in, numbered as parts of the rule that names the group.
	var got []string
	for i, u := range r.Model.Host.In {
		got = append(got, u.Number(i)+" "+u.Text())
	}
	if want := "1 SSH; 2.1 +web: DNS; 2.2 +web: DNS; 2.3 +web"; strings.Join(got, "; ") != want {
		t.Errorf("host rules %q, want %q", strings.Join(got, "; "), want)
	}
	for _, c := range []struct{ extra, field, msg string }{
		{`"rules":{"in":[{"group":"nosuch"}]}`, "rules.in[0].group", "not defined in securityGroups"},
		{`"rules":{"in":[{"group":"web","action":"ACCEPT"}]}`, "rules.in[0].action", "given with group"},
		{`"rules":{"out":[{"group":"web","dport":"22"}]}`, "rules.out[0].dport", "given with group"},
		{`"rules":{"out":[{"group":"web","log":true}]}`, "rules.out[0].log", "given with group"},
		{`"securityGroups":{"a":{"in":[{"group":"b"}]},"b":{}}`, "securityGroups.a.in[0].group", "cannot check another"},
	} {
		_, err := resolve(t, good+groups[:len(groups)-1]+`,"other":{}},`+c.extra+"}", Env{}, nil)
		if strings.HasPrefix(c.extra, `"securityGroups"`) {
			_, err = resolve(t, good+","+c.extra+"}", Env{}, nil)
		}
		var e *Error
		if !errors.As(err, &e) || e.Field != c.field || !strings.Contains(e.Err.Error(), c.msg) {
			t.Errorf("%s: got %v, want %s: ...%s...", c.extra, err, c.field, c.msg)
		}
	}
}

func TestSetExclusions(t *testing.T) {
	for _, c := range []struct{ name, entries, want string }{
		{"a half out", `"198.51.100.0/24","!198.51.100.128/25"`, "198.51.100.0/25"},
		{"one address out", `"198.51.100.0/30","!198.51.100.2"`, "198.51.100.0/31 198.51.100.3/32"},
		{"an entry inside an exclusion wins", `"198.51.100.0/24","!198.51.100.0/26","198.51.100.8/29"`,
			"198.51.100.8/29 198.51.100.64/26 198.51.100.128/25"},
		{"order does not matter", `"!198.51.100.128/25","198.51.100.0/24"`, "198.51.100.0/25"},
		{"ipv6 and an alias", `"2001:db8::/126","!db6"`, "2001:db8::/127 2001:db8::2/128"},
		{"a held entry once", `"198.51.100.0/24","198.51.100.7"`, "198.51.100.0/24"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r, err := resolve(t, good+`,"aliases":{"db6":"2001:db8::3"},"ipsets":{"s":[`+c.entries+`]}}`, Env{}, nil)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, p := range r.Model.Sets["s"] {
				got = append(got, p.String())
			}
			if strings.Join(got, " ") != c.want {
				t.Errorf("got %s, want %s", strings.Join(got, " "), c.want)
			}
		})
	}
	for _, c := range []struct{ entries, field, msg string }{
		{`"198.51.100.0/24","!198.51.100.0/24"`, "ipsets.s[1]", "both an entry and an exclusion"},
		{`"198.51.100.0/24","!203.0.113.0/24"`, "ipsets.s", "excludes nothing"},
		{`"!x"`, "ipsets.s[0]", "nor an alias"},
	} {
		_, err := resolve(t, good+`,"ipsets":{"s":[`+c.entries+`]}}`, Env{}, nil)
		var e *Error
		if !errors.As(err, &e) || e.Field != c.field || !strings.Contains(e.Err.Error(), c.msg) {
			t.Errorf("%s: got %v, want %s: ...%s...", c.entries, err, c.field, c.msg)
		}
	}
}

func TestManagementPorts(t *testing.T) {
	r, err := resolve(t, good+`,"host":{"allLocal":true,"managementPorts":["8006","tcp/5900:5999","udp/161","22","tcp/3128"]}}`, Env{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(r.Model.Host.Management); got != "[{tcp 22,8006,5900:5999,3128} {udp 161}]" || !r.Model.Host.AllLocal {
		t.Errorf("management %s, allLocal %v", got, r.Model.Host.AllLocal)
	}
	var many []string
	for p := 1000; p < 1020; p++ {
		many = append(many, fmt.Sprintf("%q", fmt.Sprint(p)))
	}
	r, err = resolve(t, good+`,"host":{"managementPorts":[`+strings.Join(many, ",")+`]}}`, Env{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if m := r.Model.Host.Management; len(m) != 2 || strings.Count(m[0].Ports, ",") != 14 {
		t.Errorf("21 ports in lists of 15: %v", m)
	}
	for _, c := range []struct{ extra, field, msg string }{
		{`"host":{"managementPorts":["icmp/8"]}`, "host.managementPorts[0]", "tcp or udp"},
		{`"host":{"managementPorts":["22,80"]}`, "host.managementPorts[0]", "one port or range"},
		{`"host":{"managementPorts":["tcp/x"]}`, "host.managementPorts[0]", "not PORT"},
		{`"host":{"allLocal":true,"ips":["192.0.2.1"]}`, "host.ips", "given with allLocal"},
	} {
		_, err := resolve(t, good+","+c.extra+"}", Env{}, nil)
		var e *Error
		if !errors.As(err, &e) || e.Field != c.field || !strings.Contains(e.Err.Error(), c.msg) {
			t.Errorf("%s: got %v, want %s: ...%s...", c.extra, err, c.field, c.msg)
		}
	}
}

func TestHostProtections(t *testing.T) {
	r, err := resolve(t, good+`,"host":{}}`, Env{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Proxmox VE's defaults: smurfs dropped, TCP flags and SYN floods
	// not checked, INVALID dropped.
	if h := r.Model.Host; !h.Smurfs || h.TCPFlags || h.AllowInvalid || h.SynFlood != nil {
		t.Errorf("defaults: %+v", h)
	}
	r, err = resolve(t, good+`,"host":{"noSmurfs":false,"tcpFlags":true,"allowInvalid":true,"synFlood":true,"synFloodBurst":50}}`, Env{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if h := r.Model.Host; h.Smurfs || !h.TCPFlags || !h.AllowInvalid || *h.SynFlood != (model.SynFlood{Rate: 200, Burst: 50}) {
		t.Errorf("set: %+v %+v", h, h.SynFlood)
	}
	for _, c := range []struct{ extra, field, msg string }{
		{`"host":{"synFloodRate":10}`, "host.synFloodRate", "while synFlood is off"},
		{`"host":{"synFlood":true,"synFloodBurst":-1}`, "host.synFloodBurst", "is not 1-"},
		{`"host":{"noSmurfs":"yes"}`, "host.noSmurfs", "wrong type"},
	} {
		_, err := resolve(t, good+","+c.extra+"}", Env{}, nil)
		var e *Error
		if !errors.As(err, &e) || e.Field != c.field || !strings.Contains(e.Error(), c.msg) {
			t.Errorf("%s: got %v, want %s: ...%s...", c.extra, err, c.field, c.msg)
		}
	}
}

func TestL2ProtocolsAndIsolation(t *testing.T) {
	r, err := resolve(t, good+`,"l2Protocols":["ip","ARP","ip6","0x88cc"],"isolatePorts":true}`, Env{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(r.Model.Tap.L2Protocols); got != "[2048 2054 34525 35020]" || !r.Model.Bridge.IsolatePorts {
		t.Errorf("l2Protocols %s, isolatePorts %v", got, r.Model.Bridge.IsolatePorts)
	}
	for _, c := range []struct{ list, field, msg string }{
		{`["ipv4"]`, "l2Protocols[0]", "not an ethertype name"},
		{`["0x0100"]`, "l2Protocols[0]", "0x0600-0xffff"},
		{`["ip","0x0800"]`, "l2Protocols[1]", "named twice"},
	} {
		_, err := resolve(t, good+`,"l2Protocols":`+c.list+"}", Env{}, nil)
		var e *Error
		if !errors.As(err, &e) || e.Field != c.field || !strings.Contains(e.Err.Error(), c.msg) {
			t.Errorf("%s: got %v, want %s: ...%s...", c.list, err, c.field, c.msg)
		}
	}
}

func TestAllowedPairs(t *testing.T) {
	r, err := resolve(t, good+`,"allowedPairs":[{"mac":"00:00:5e:00:01:07","ips":["192.0.2.50","2001:db8::50"]},{"ips":["192.0.2.51"]}]}`, Env{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	tp := r.Model.Tap
	if fmt.Sprint(tp.IPs, tp.IPs6) != "[192.0.2.10/32 192.0.2.50/32 192.0.2.51/32] [2001:db8::50/128]" || len(tp.Pairs) != 1 || tp.Pairs[0].MAC.String() != "00:00:5e:00:01:07" {
		t.Errorf("ips %v %v, pairs %+v", tp.IPs, tp.IPs6, tp.Pairs)
	}
	for _, c := range []struct{ extra, field, msg string }{
		{`"allowedPairs":[{"mac":"01:00:5e:00:00:01","ips":["192.0.2.50"]}]`, "allowedPairs[0].mac", "not a unicast"},
		{`"allowedPairs":[{"ips":[]}]`, "allowedPairs[0].ips", "needs 1-16"},
		{`"allowedPairs":[{"ips":["192.0.2.0/24"]}]`, "allowedPairs[0].ips[0]", "not a unicast"},
		{`"ipFilter":false,"allowedPairs":[{"ips":["192.0.2.50"]}]`, "allowedPairs", "needs macFilter and ipFilter"},
	} {
		_, err := resolve(t, good+","+c.extra+"}", Env{}, nil)
		var e *Error
		if !errors.As(err, &e) || e.Field != c.field || !strings.Contains(e.Err.Error(), c.msg) {
			t.Errorf("%s: got %v, want %s: ...%s...", c.extra, err, c.field, c.msg)
		}
	}
}

func TestHelpers(t *testing.T) {
	r, err := resolve(t, good+`,"helpers":["ftp","sip"]}`, Env{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(r.Model.Tap.Helpers) != "[ftp sip]" {
		t.Errorf("helpers %v", r.Model.Tap.Helpers)
	}
	for _, c := range []struct{ extra, field, msg string }{
		{`"helpers":["irc"]`, "helpers[0]", "ftp, tftp or sip"},
		{`"helpers":["ftp","ftp"]`, "helpers[1]", "named twice"},
		{`"ipFilter":false,"helpers":["ftp"]`, "helpers", "needs ipFilter"},
	} {
		_, err := resolve(t, good+","+c.extra+"}", Env{}, nil)
		var e *Error
		if !errors.As(err, &e) || e.Field != c.field || !strings.Contains(e.Err.Error(), c.msg) {
			t.Errorf("%s: got %v, want %s: ...%s...", c.extra, err, c.field, c.msg)
		}
	}
}
