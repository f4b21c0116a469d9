package config

import (
	"errors"
	"strings"
	"testing"

	"github.com/tapfw/tapfw/pkg/model"

	"github.com/tapfw/tapfw/pkg/ruleset"
)

const good = `{"cniVersion":"1.0.0","name":"n","type":"tapfw","bridge":"vmbr0","mac":"02:00:00:00:00:01","ips":["192.0.2.10"]`

func resolve(t *testing.T, js string, env Env, prev *PrevIface) (*Resolved, error) {
	t.Helper()
	conf, err := Parse([]byte(js))
	if err != nil {
		return nil, err
	}
	if env.IfName == "" {
		env.IfName = "tap1"
	}
	return Resolve(conf, ruleset.Limits, env, prev, nil)
}

func TestBadConfigs(t *testing.T) {
	cases := []struct {
		name, js, field, msg string
		env                  Env
		code                 uint // the CNI code: 6 for ErrDecode, else Error.Code, 7 for 0
	}{
		{"malformed json", `{"cniVersion":`, "", "cannot decode", Env{}, 6},
		{"trailing data", good + `} {}`, "", "trailing", Env{}, 6},
		{"unknown field", good + `,"bridgee":"x"}`, "bridgee", "unknown field", Env{}, 2},
		{"unknown rule field", good + `,"rules":{"in":[{"action":"ACCEPT","port":"22"}]}}`, "rules.in[0].port", "unknown field", Env{}, 2},
		{"wrong type", strings.Replace(good, `["192.0.2.10"]`, `"192.0.2.1"`, 1) + `}`, "ips", "wrong type", Env{}, 6},
		{"wrong bool type", good + `,"macFilter":"yes"}`, "macFilter", "wrong type", Env{}, 6},
		{"bad mac", strings.Replace(good, "02:00:00:00:00:01", "02:00:00:00:00", 1) + `}`, "mac", "not an Ethernet MAC", Env{}, 7},
		{"multicast mac", strings.Replace(good, "02:00", "01:00", 1) + `}`, "mac", "multicast", Env{}, 7},
		{"no mac with macFilter", `{"cniVersion":"1.0.0","bridge":"vmbr0"}`, "mac", "required when macFilter", Env{}, 7},
		{"bad ip", strings.Replace(good, "192.0.2.10", "192.0.2.300", 1) + `}`, "ips[0]", "not an IPv4", Env{}, 7},
		{"host bits", strings.Replace(good, "192.0.2.10", "192.0.2.10/24", 1) + `}`, "ips[0]", "host bits", Env{}, 7},
		{"mixed families", good + `,"rules":{"in":[{"action":"ACCEPT","source":"2001:db8::1","dest":"192.0.2.1"}]}}`, "rules.in[0].dest", "is ipv4 but source is ipv6", Env{}, 7},
		{"icmp with ipv6", good + `,"rules":{"in":[{"action":"ACCEPT","proto":"icmp","source":"2001:db8::/32"}]}}`, "rules.in[0].proto", "is ipv4 but source is ipv6", Env{}, 7},
		{"icmpv6 type name", good + `,"rules":{"in":[{"action":"ACCEPT","proto":"icmpv6","icmpType":"timestamp-request"}]}}`, "rules.in[0].icmpType", "not a known ICMP type", Env{}, 7},
		{"ipv6 with zone", strings.Replace(good, "192.0.2.10", "fe80::1%eth0", 1) + `}`, "ips[0]", "not an IPv4 or IPv6", Env{}, 7},
		{"ipv6 host bits", strings.Replace(good, "192.0.2.10", "2001:db8::1/64", 1) + `}`, "ips[0]", "host bits", Env{}, 7},
		{"bridge spaces", strings.Replace(good, "vmbr0", "vm br0", 1) + `}`, "bridge", "may hold only", Env{}, 7},
		{"bridge too long", strings.Replace(good, "vmbr0", "abcdefghijklmnop", 1) + `}`, "bridge", "longer than 15", Env{}, 7},
		{"bridge plus", strings.Replace(good, "vmbr0", "vmbr+", 1) + `}`, "bridge", "may hold only", Env{}, 7},
		{"tap with newline", good + `,"tap":"tap1\n-j ACCEPT"}`, "tap", "may hold only", Env{}, 7},
		{"tap restore syntax", good + `,"tap":"COMMIT *filter"}`, "tap", "may hold only", Env{}, 7},
		{"tap is bridge", good + `,"tap":"vmbr0"}`, "bridge", "tap itself", Env{}, 7},
		{"policy", good + `,"policyIn":"ALLOW"}`, "policyIn", "not ACCEPT", Env{}, 7},
		{"policy lower", good + `,"policyOut":"accept"}`, "policyOut", "capitals", Env{}, 7},
		{"no action", good + `,"rules":{"in":[{"proto":"tcp"}]}}`, "rules.in[0].action", "required", Env{}, 7},
		{"bad action", good + `,"rules":{"out":[{"action":"RETURN"}]}}`, "rules.out[0].action", "not ACCEPT", Env{}, 7},
		{"bad proto", good + `,"rules":{"in":[{"action":"ACCEPT","proto":"tcpx"}]}}`, "rules.in[0].proto", "not tcp", Env{}, 7},
		{"proto 0", good + `,"rules":{"in":[{"action":"ACCEPT","proto":"0"}]}}`, "rules.in[0].proto", "not tcp", Env{}, 7},
		{"port without proto", good + `,"rules":{"in":[{"action":"ACCEPT","dport":"22"}]}}`, "rules.in[0].dport", "need proto", Env{}, 7},
		{"port too big", good + `,"rules":{"in":[{"action":"ACCEPT","proto":"tcp","dport":"65536"}]}}`, "rules.in[0].dport", "0-65535", Env{}, 7},
		{"port range backwards", good + `,"rules":{"in":[{"action":"ACCEPT","proto":"tcp","sport":"2000:1000"}]}}`, "rules.in[0].sport", "backwards", Env{}, 7},
		{"port injection", good + `,"rules":{"in":[{"action":"ACCEPT","proto":"tcp","dport":"22 -j ACCEPT"}]}}`, "rules.in[0].dport", "not a port", Env{}, 7},
		{"too many ports", good + `,"rules":{"in":[{"action":"ACCEPT","proto":"udp","dport":"1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16"}]}}`, "rules.in[0].dport", "at most 15", Env{}, 7},
		{"icmp type without icmp", good + `,"rules":{"in":[{"action":"ACCEPT","icmpType":"echo-request"}]}}`, "rules.in[0].icmpType", "needs proto icmp", Env{}, 7},
		{"icmp type unknown", good + `,"rules":{"in":[{"action":"ACCEPT","proto":"icmp","icmpType":"ping"}]}}`, "rules.in[0].icmpType", "not a known", Env{}, 7},
		{"source garbage", good + `,"rules":{"in":[{"action":"ACCEPT","source":"192.0.2.0/33"}]}}`, "rules.in[0].source", "not an IPv4", Env{}, 7},
		{"undefined ipset", good + `,"rules":{"in":[{"action":"ACCEPT","source":"+web"}]}}`, "rules.in[0].source", "not defined", Env{}, 7},
		{"ipset bad name", good + `,"ipsets":{"a b":["192.0.2.1"]}}`, "ipsets", "may hold only", Env{}, 7},
		{"ipset bad entry", good + `,"ipsets":{"web":["0.0.0.0/0"]}}`, "ipsets.web[0]", "matches everything", Env{}, 7},
		{"comment quote", good + `,"rules":{"in":[{"action":"ACCEPT","comment":"a\" -j ACCEPT"}]}}`, "rules.in[0].comment", "may hold only", Env{}, 7},
		{"host bad ip", good + `,"host":{"ips":["x"]}}`, "host.ips[0]", "not an IPv4", Env{}, 7},
		{"host bad rule", good + `,"host":{"rules":{"in":[{"action":"ACCEPT","proto":"udp","dport":"x"}]}}}`, "host.rules.in[0].dport", "not a port", Env{}, 7},
		{"cni args unknown", good + `}`, "CNI_ARGS", "unknown keys", Env{Args: "FOO=1"}, 4},
		{"cni args bad ip", good + `}`, "CNI_ARGS IP[0]", "not an IPv4", Env{Args: "IP=nope"}, 4},
		{"bad container id", good + `}`, "CNI_CONTAINERID", "may hold only", Env{ContainerID: "a b"}, 4},
		{"bad network name", strings.Replace(good, `"name":"n"`, `"name":"n n"`, 1) + `}`, "name", "may hold only", Env{}, 7},
		{"network name too long", strings.Replace(good, `"name":"n"`, `"name":"`+strings.Repeat("n", 65)+`"`, 1) + `}`, "name", "longer than 64", Env{}, 7},
		{"container id too long", good + `}`, "CNI_CONTAINERID", "longer than 112", Env{ContainerID: strings.Repeat("c", 113)}, 4},
		{"args rules unknown field", good + `,"args":{"cni":{"tapfwRules":{"in":[{"action":"ACCEPT","prot":"tcp"}]}}}}`, "args.cni.tapfwRules.in[0].prot", "unknown field", Env{}, 2},
		{"runtime mac bad", good + `,"runtimeConfig":{"mac":"zz"}}`, "runtimeConfig.mac", "not an Ethernet", Env{}, 7},
		{"dhcp servers without dhcp", good + `,"dhcp":false,"dhcpServers":["192.0.2.1"]}`, "dhcpServers", "dhcp is false", Env{}, 7},
		{"dhcp server bad address", good + `,"dhcpServers":["192.0.2.1;reboot"]}`, "dhcpServers[0]", "192.0.2.1;reboot", Env{}, 7},
		{"dhcp server undefined set", good + `,"dhcpServers":["192.0.2.1","+nope"]}`, "dhcpServers[1]", "not defined", Env{}, 7},
		{"dhcp server empty", good + `,"dhcpServers":[""]}`, "dhcpServers[0]", "empty", Env{}, 7},
		{"dhcp servers too many", good + `,"dhcpServers":[` + strings.Repeat(`"192.0.2.1",`, 16) + `"192.0.2.2"]}`, "dhcpServers", "more than 16", Env{}, 7},
		{"dhcp server twice", good + `,"dhcpServers":["192.0.2.1","192.0.2.1/32"]}`, "dhcpServers[1]", "named twice", Env{}, 7},
		{"dhcp servers wrong type", good + `,"dhcpServers":"192.0.2.1"}`, "dhcpServers", "", Env{}, 6},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := resolve(t, c.js, c.env, nil)
			if err == nil {
				t.Fatal("accepted")
			}
			if c.field == "" {
				if !errors.Is(err, ErrDecode) {
					t.Errorf("error %v, want a decode error", err)
				}
			} else {
				var e *Error
				if !errors.As(err, &e) {
					t.Fatalf("error %v (%T), want a *config.Error", err, err)
				}
				if e.Field != c.field {
					t.Errorf("field %q, want %q (%v)", e.Field, c.field, err)
				}
			}
			if !strings.Contains(err.Error(), c.msg) {
				t.Errorf("error %q does not say %q", err, c.msg)
			}
			if got := cniCode(err); got != c.code {
				t.Errorf("code %d, want %d (%v)", got, c.code, err)
			}
		})
	}
}

// cniCode is the CNI error code the plugin returns for err.
func cniCode(err error) uint {
	var e *Error
	switch {
	case errors.As(err, &e) && e.Code != 0:
		return e.Code
	case errors.As(err, &e):
		return 7
	case errors.Is(err, ErrDecode):
		return 6
	}
	return 999
}

func TestDefaults(t *testing.T) {
	r, err := resolve(t, good+`}`, Env{ContainerID: "c1"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	tp := r.Model.Tap
	if !tp.MACFilter || !tp.IPFilter || !tp.DHCP || !tp.LogDropped || tp.PolicyIn != "DROP" || tp.PolicyOut != "DROP" {
		t.Errorf("defaults wrong: %+v", tp)
	}
	if r.Model.Bridge.AllowRouting || r.Model.Host != nil {
		t.Errorf("bridge routing or host set by default")
	}
	if tp.Name != "tap1" || tp.ContainerID != "c1" || tp.Network != "n" {
		t.Errorf("identity: %+v", tp)
	}
}

// Later wins: config, then CNI_ARGS, then runtimeConfig, then prevResult.
func TestIdentityPrecedence(t *testing.T) {
	base := `{"cniVersion":"1.0.0","bridge":"br0","mac":"02:00:00:00:00:01","ips":["192.0.2.1"]`
	rc := `,"runtimeConfig":{"mac":"02:00:00:00:00:03","ips":["192.0.2.3/24"]}`
	prev := &PrevIface{HostPort: "veth9", Bridge: "cni0", MAC: "02:00:00:00:00:04", IPs: []string{"192.0.2.4/24"}}
	cases := []struct {
		name, js, args string
		prev           *PrevIface
		tap, br, mac   string
		ip             string
	}{
		{"config", base + `}`, "", nil, "tap1", "br0", "02:00:00:00:00:01", "192.0.2.1/32"},
		{"config tap", base + `,"tap":"tapX"}`, "", nil, "tapX", "br0", "02:00:00:00:00:01", "192.0.2.1/32"},
		{"cni args", base + `}`, "IgnoreUnknown=1;K8S_POD_NAME=x;MAC=02:00:00:00:00:02;IP=192.0.2.2", nil, "tap1", "br0", "02:00:00:00:00:02", "192.0.2.2/32"},
		{"runtime config", base + rc + `}`, "MAC=02:00:00:00:00:02;IP=192.0.2.2", nil, "tap1", "br0", "02:00:00:00:00:03", "192.0.2.3/32"},
		{"prev result", base + rc + `}`, "MAC=02:00:00:00:00:02;IP=192.0.2.2", prev, "veth9", "cni0", "02:00:00:00:00:04", "192.0.2.4/32"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, err := resolve(t, c.js, Env{Args: c.args}, c.prev)
			if err != nil {
				t.Fatal(err)
			}
			tp := r.Model.Tap
			if tp.Name != c.tap || tp.Bridge != c.br || tp.MAC.String() != c.mac || len(tp.IPs) != 1 || tp.IPs[0].String() != c.ip {
				t.Errorf("got tap=%s br=%s mac=%s ips=%v, want %s %s %s %s", tp.Name, tp.Bridge, tp.MAC, tp.IPs, c.tap, c.br, c.mac, c.ip)
			}
		})
	}
}

// Rules too: config, then CNI_ARGS TAPFW_RULES, then runtimeConfig.
func TestRulesFromRuntime(t *testing.T) {
	conf := good + `,"rules":{"in":[{"action":"ACCEPT","proto":"tcp","dport":"22"}]}`
	rc := `,"runtimeConfig":{"tapfwRules":{"in":[{"action":"ACCEPT","proto":"tcp","dport":"443"}]}}`
	args := `TAPFW_RULES={"in":[{"action":"ACCEPT","proto":"udp","dport":"53"}]}`
	multus := `,"args":{"cni":{"other":1,"tapfwRules":{"in":[{"action":"ACCEPT","proto":"tcp","dport":"8080"}]}},"k8s":{"x":1}}`
	for _, c := range []struct{ js, args, want string }{
		{conf + `}`, "", "tcp 22"},
		{conf + `}`, args, "udp 53"},
		{conf + multus + `}`, args, "tcp 8080"},
		{conf + multus + rc + `}`, args, "tcp 443"},
	} {
		r, err := resolve(t, c.js, Env{Args: c.args}, nil)
		if err != nil {
			t.Fatal(err)
		}
		in := r.Model.Tap.In
		if len(in) != 1 || in[0].Proto+" "+in[0].DPort != c.want {
			t.Errorf("args %q: rules %+v, want %s", c.args, in, c.want)
		}
	}
	_, err := resolve(t, conf+`}`, Env{Args: `TAPFW_RULES={"in":[{"action":"ACCEPT","dport":"x"}]}`}, nil)
	if err == nil || !strings.Contains(err.Error(), "CNI_ARGS TAPFW_RULES.in[0].dport") {
		t.Errorf("bad TAPFW_RULES: %v", err)
	}
	_, err = resolve(t, conf+`}`, Env{Args: `TAPFW_RULES={"inn":[]}`}, nil)
	if err == nil || !strings.Contains(err.Error(), "CNI_ARGS TAPFW_RULES") {
		t.Errorf("unknown field in TAPFW_RULES: %v", err)
	}
}

func TestRuleCanonical(t *testing.T) {
	js := good + `,"ipsets":{"web":["198.51.100.0/24"]},"rules":{"in":[
		{"action":"ACCEPT","proto":"TCP","dport":"22,80,1000:2000","source":"+web"},
		{"action":"REJECT","proto":"gre","dest":"0.0.0.0/0"},
		{"action":"DROP","proto":"icmp","icmpType":"port-unreachable"},
		{"action":"ACCEPT","proto":"17","sport":"053"}]}}`
	_, err := resolve(t, js, Env{}, nil)
	if err == nil || !strings.Contains(err.Error(), "rules.in[3].sport") {
		t.Fatalf("leading zero port accepted or wrong field: %v", err)
	}
	js = strings.Replace(js, `"053"`, `"53"`, 1)
	r, err := resolve(t, js, Env{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	in := r.Model.Tap.In
	if in[0].Proto != "tcp" || in[0].DPort != "22,80,1000:2000" || in[0].Source.Set != "web" {
		t.Errorf("rule 0: %+v", in[0])
	}
	if in[1].Proto != "47" || in[1].Dest.Prefix.IsValid() || in[1].Dest.Family != model.IPv4 {
		t.Errorf("rule 1: %+v", in[1])
	}
	if in[2].ICMPType != "3/3" || in[3].Proto != "udp" {
		t.Errorf("rules 2,3: %+v %+v", in[2], in[3])
	}
}

func TestIPv6Addresses(t *testing.T) {
	conf, err := Parse([]byte(strings.Replace(good, `"192.0.2.10"`, `"192.0.2.10","2001:db8::10","2001:db8:1::/64"`, 1) + `,"ndp":false,"radv":true,"igmp":false}`))
	if err != nil {
		t.Fatal(err)
	}
	r, err := Resolve(conf, ruleset.Limits, Env{IfName: "tap1", ContainerID: "c"}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	tp := r.Model.Tap
	if len(tp.IPs) != 1 || tp.IPs[0].String() != "192.0.2.10/32" {
		t.Errorf("IPv4: %v", tp.IPs)
	}
	if len(tp.IPs6) != 2 || tp.IPs6[0].String() != "2001:db8::10/128" || tp.IPs6[1].String() != "2001:db8:1::/64" {
		t.Errorf("IPv6: %v", tp.IPs6)
	}
	if tp.NDP || !tp.RAdv || tp.IGMP {
		t.Errorf("ndp %v radv %v igmp %v, want false true false", tp.NDP, tp.RAdv, tp.IGMP)
	}
}

// TestCanonicalRate: a log rate comes back as iptables-save prints it (the
// right column is what iptables-nft-save printed for the left one).
func TestCanonicalRate(t *testing.T) {
	want := "5/min 1/sec 5/min 10/sec 1/day 7/hour 2/min 3/min 10000/sec 10000/sec 7/sec 13/min 1000/day 1/sec 59/min 61/min"
	var got []string
	for _, in := range strings.Fields("5/min 60/min 5/minute 10/s 1/day 7/hour 120/hour 3/m 10000/sec 600000/min 7/sec 13/min 1000/day 86400/day 59/min 61/min") {
		r, err := canonicalRate(in)
		if err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		got = append(got, r)
	}
	if strings.Join(got, " ") != want {
		t.Errorf("got  %s\nwant %s", strings.Join(got, " "), want)
	}
	for _, bad := range []string{"0/min", "10001/sec", "5", "5/week", "-1/s", "05/min", "/min", "5/"} {
		if _, err := canonicalRate(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// TestLogOptions: NFLOG with a group, LOG by default, and the errors.
func TestLogOptions(t *testing.T) {
	r, err := resolve(t, good+`,"logTarget":"NFLOG","nflogGroup":5,"logLimit":"120/hour"}`, Env{IfName: "tap1"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if tp := r.Model.Tap; tp.LogTarget != "NFLOG" || tp.NFLogGroup != 5 || tp.LogLimit != "2/min" || tp.LogPerTap {
		t.Errorf("tap %+v", tp)
	}
	for js, perTap := range map[string]bool{`,"logPrefix":"rule"}`: false, `,"logPrefix":"tap"}`: true} {
		r, err := resolve(t, good+js, Env{IfName: "tap1"}, nil)
		if err != nil || r.Model.Tap.LogPerTap != perTap {
			t.Errorf("%s: %v, per tap %v", js, err, err == nil && r.Model.Tap.LogPerTap)
		}
	}
	for _, c := range []struct{ js, field string }{
		{`,"logPrefix":"vm"}`, "logPrefix"},
		{`,"logTarget":"SYSLOG"}`, "logTarget"},
		{`,"nflogGroup":1}`, "nflogGroup"},
		{`,"logTarget":"NFLOG","nflogGroup":70000}`, "nflogGroup"},
		{`,"logLimit":"fast"}`, "logLimit"},
	} {
		_, err := resolve(t, good+c.js, Env{IfName: "tap1"}, nil)
		var e *Error
		if !errors.As(err, &e) || e.Field != c.field {
			t.Errorf("%s: %v", c.js, err)
		}
	}
}

// TestGroups: security groups are defined once and named by taps; every
// name is checked.
func TestGroups(t *testing.T) {
	defs := `,"securityGroups":{"web":{"in":[{"action":"ACCEPT","proto":"tcp","dport":"80"}]},"db":{"out":[{"action":"ACCEPT","dest":"+admins"}]}},"ipsets":{"admins":["192.0.2.0/28"]}`
	r, err := resolve(t, good+defs+`,"groups":["db","web"]}`, Env{IfName: "tap1"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	rs := r.Model
	if strings.Join(rs.Tap.Groups, ",") != "db,web" || len(rs.Groups) != 2 || rs.Groups["web"].In[0].DPort != "80" || rs.Groups["db"].Out[0].Dest.Set != "admins" {
		t.Errorf("groups %+v %+v", rs.Tap.Groups, rs.Groups)
	}
	for _, c := range []struct{ js, field, says string }{
		{defs + `,"groups":["app"]}`, "groups[0]", "not defined"},
		{defs + `,"groups":["web","web"]}`, "groups[1]", "twice"},
		{`,"securityGroups":{"a-very-long-name":{}},"groups":[]}`, "securityGroups", "longer than 14"},
		{`,"securityGroups":{"we b":{}}}`, "securityGroups", "may hold only"},
		{`,"securityGroups":{"web":{"in":[{"action":"ACCEPT","source":"+nope"}]}}}`, "securityGroups.web.in[0].source", "not defined"},
	} {
		_, err := resolve(t, good+c.js, Env{IfName: "tap1"}, nil)
		var e *Error
		if !errors.As(err, &e) || e.Field != c.field || !strings.Contains(err.Error(), c.says) {
			t.Errorf("%s: %v", c.js, err)
		}
	}
}

// TestParseBackend: "backend" takes nftables, iptables or auto and refuses
// anything else by name.
func TestParseBackend(t *testing.T) {
	for _, b := range []string{"", "auto", "nftables", "iptables"} {
		c, err := Parse([]byte(`{"cniVersion":"1.0.0","name":"n","type":"tapfw","backend":"` + b + `"}`))
		if err != nil || c.Backend != b {
			t.Errorf("backend %q: %v %+v", b, err, c)
		}
	}
	_, err := Parse([]byte(`{"cniVersion":"1.0.0","name":"n","type":"tapfw","backend":"ebtables"}`))
	var e *Error
	if !errors.As(err, &e) || e.Field != "backend" || !strings.Contains(err.Error(), "ebtables") {
		t.Errorf("backend ebtables: %v", err)
	}
	if c, err := Parse([]byte(`{"cniVersion":"1.0.0","name":"n","type":"tapfw","marks":"0x1f00"}`)); err != nil || c.Marks != "0x1f00" {
		t.Errorf("marks 0x1f00: %v", err)
	}
	_, err = Parse([]byte(`{"cniVersion":"1.0.0","name":"n","type":"tapfw","marks":"0x3f00"}`))
	if !errors.As(err, &e) || e.Field != "marks" {
		t.Errorf("marks 0x3f00: %v", err)
	}
}
