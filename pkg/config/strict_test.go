package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/tapfw/tapfw/pkg/ruleset"
)

// wantErr checks err is a *Error about field with code (the CNI code: 7
// for Code 0) whose message says msg.
func wantErr(t *testing.T, err error, field string, code uint, msg string) {
	t.Helper()
	if err == nil {
		t.Fatal("accepted")
	}
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T), want a *config.Error", err, err)
	}
	if e.Field != field {
		t.Errorf("field %q, want %q (%v)", e.Field, field, err)
	}
	if got := cniCode(err); got != code {
		t.Errorf("code %d, want %d (%v)", got, code, err)
	}
	if !strings.Contains(err.Error(), msg) {
		t.Errorf("error %q does not say %q", err, msg)
	}
	if strings.Contains(err.Error(), "PluginConf") {
		t.Errorf("error %q names an embedded Go struct", err)
	}
}

// Keys match exactly, case included, and once per object, at every level
// tapfw reads. Go's decoder alone folds case (and 'ſ' to 's') and
// lets the later of two keys win.
func TestExactKeys(t *testing.T) {
	const unknown, dup = "unknown field", "duplicate key"
	rule := `{"action":"ACCEPT","proto":"tcp","dport":"22"}`
	cases := []struct {
		name, js, args string
		field          string
		code           uint
		msg            string
	}{
		// Case variants and folds of field names.
		{"BRIDGE", good + `,"BRIDGE":"vmbr1"}`, "", "BRIDGE", 2, unknown},
		{"policyin smuggles ACCEPT", good + `,"policyIn":"DROP","rules":{},"policyin":"ACCEPT"}`, "", "policyin", 2, unknown},
		{"macfilter", good + `,"macfilter":false}`, "", "macfilter", 2, unknown},
		{"long s folds to ips", strings.Replace(good, `"ips"`, `"ipſ"`, 1) + `}`, "", `"ipſ"`, 2, unknown},
		{"ipfilter", good + `,"macFilter":true,"ipfilter":false}`, "", "ipfilter", 2, unknown},
		{"long s nested", good + `,"host":{"clusterHoſts":["192.0.2.1"]}}`, "", `host."clusterHoſts"`, 2, unknown},
		{"Action", good + `,"rules":{"in":[{"action":"ACCEPT","Action":"DROP"}]}}`, "", "rules.in[0].Action", 2, unknown},
		{"Action alone", good + `,"rules":{"in":[` + rule + `,{"Action":"DROP"}]}}`, "", "rules.in[1].Action", 2, unknown},
		{"IN", good + `,"rules":{"IN":[` + rule + `]}}`, "", "rules.IN", 2, unknown},
		{"host rule", good + `,"host":{"rules":{"in":[` + rule + `,{"action":"ACCEPT","bad":1}]}}}`, "", "host.rules.in[1].bad", 2, unknown},
		{"host IPs", good + `,"host":{"IPs":["192.0.2.1"]}}`, "", "host.IPs", 2, unknown},
		{"host Rules", good + `,"host":{"Rules":{}}}`, "", "host.Rules", 2, unknown},
		{"runtimeConfig MAC", good + `,"runtimeConfig":{"MAC":"02:00:00:00:00:02"}}`, "", "runtimeConfig.MAC", 2, unknown},
		{"runtimeConfig rule", good + `,"runtimeConfig":{"tapfwRules":{"in":[{"action":"ACCEPT","Dport":"1"}]}}}`, "", "runtimeConfig.tapfwRules.in[0].Dport", 2, unknown},
		{"runtimeConfig rules", good + `,"runtimeConfig":{"tapfwrules":{"in":[]}}}`, "", "runtimeConfig.tapfwrules", 2, unknown},
		{"RuntimeConfig", good + `,"RuntimeConfig":{}}`, "", "RuntimeConfig", 2, unknown},
		{"cniversion", good + `,"cniversion":"0.4.0"}`, "", "cniversion", 2, unknown},
		{"Name", good + `,"Name":"x"}`, "", "Name", 2, unknown},
		{"ipam Type", good + `,"ipam":{"Type":"host-local"}}`, "", "ipam.Type", 2, unknown},
		{"dns Nameservers", good + `,"dns":{"Nameservers":[]}}`, "", "dns.Nameservers", 2, unknown},
		{"valid attachment", good + `,"cni.dev/valid-attachments":[{"containerID":"a","ifname":"b"},{"containerid":"a","ifname":"b"}]}`, "", "cni.dev/valid-attachments[1].containerid", 2, unknown},
		{"attachment", good + `,"cni.dev/attachments":[{"containerID":"a","IfName":"b"}]}`, "", "cni.dev/attachments[0].IfName", 2, unknown},
		{"args rules IN", good + `,"args":{"cni":{"tapfwRules":{"IN":[]}}}}`, "", "args.cni.tapfwRules.IN", 2, unknown},
		{"args rule ACTION", good + `,"args":{"cni":{"tapfwRules":{"in":[{"ACTION":"ACCEPT"}]}}}}`, "", "args.cni.tapfwRules.in[0].ACTION", 2, unknown},
		{"key with NUL", good + `,"mac\u0000":"x"}`, "", `"mac\x00"`, 2, unknown},
		{"empty key", good + `,"":1}`, "", `""`, 2, unknown},
		{"after skipped values", good + `,"prevResult":{"a":"}\"]\\","b":[{"c":"]"},-1.5e+3,true,null],"d":{}},` +
			`"args":{"k":"}{\\\"","cni":{"x":"\"}","y":[[]]}},"BRIDGE":"x"}`, "", "BRIDGE", 2, unknown},
		{"after escaped strings", good + `,"rules":{"in":[{"action":"ACCEPT","comment":"a\"},{\\"}],"out":[],"o\u0075t":[]}}`, "", "rules.out", 2, dup},
		{"CNI_ARGS rules IN", good + `}`, `TAPFW_RULES={"IN":[]}`, "CNI_ARGS TAPFW_RULES.IN", 4, unknown},
		{"CNI_ARGS rule Action", good + `}`, `TAPFW_RULES={"in":[{"Action":"ACCEPT"}]}`, "CNI_ARGS TAPFW_RULES.in[0].Action", 4, unknown},

		// Keys given twice, at each level.
		{"bridge twice", good + `,"bridge":"vmbr1"}`, "", "bridge", 2, dup},
		{"bridge twice escaped", good + `,"\u0062ridge":"vmbr1"}`, "", "bridge", 2, dup},
		{"policyIn twice", good + `,"policyIn":"DROP","policyIn":"ACCEPT"}`, "", "policyIn", 2, dup},
		{"rules twice", good + `,"rules":{},"rules":{"in":[` + rule + `]}}`, "", "rules", 2, dup},
		{"rules in twice", good + `,"rules":{"in":[],"in":[]}}`, "", "rules.in", 2, dup},
		{"rule action twice", good + `,"rules":{"in":[{"action":"DROP","action":"ACCEPT"}]}}`, "", "rules.in[0].action", 2, dup},
		{"host twice", good + `,"host":{},"host":{}}`, "", "host", 2, dup},
		{"host rules out twice", good + `,"host":{"rules":{"out":[],"out":[` + rule + `]}}}`, "", "host.rules.out", 2, dup},
		{"host rule dport twice", good + `,"host":{"rules":{"in":[` + rule + `,{"action":"ACCEPT","proto":"tcp","dport":"22","dport":"23"}]}}}`, "", "host.rules.in[1].dport", 2, dup},
		{"ipset twice", good + `,"ipsets":{"web":["192.0.2.1"],"web":["192.0.2.2"]}}`, "", "ipsets.web", 2, dup},
		{"capability twice", good + `,"capabilities":{"mac":true,"mac":false}}`, "", "capabilities.mac", 2, dup},
		{"runtimeConfig mac twice", good + `,"runtimeConfig":{"mac":"02:00:00:00:00:02","mac":"02:00:00:00:00:03"}}`, "", "runtimeConfig.mac", 2, dup},
		{"runtimeConfig rule proto twice", good + `,"runtimeConfig":{"tapfwRules":{"in":[{"action":"ACCEPT","proto":"tcp","proto":"udp"}]}}}`, "", "runtimeConfig.tapfwRules.in[0].proto", 2, dup},
		{"args cni twice", good + `,"args":{"cni":{"tapfwRules":{}},"cni":{}}}`, "", "args.cni", 2, dup},
		{"args rules twice", good + `,"args":{"cni":{"tapfwRules":{"in":[` + rule + `]},"tapfwRules":{}}}}`, "", "args.cni.tapfwRules", 2, dup},
		{"args rule action twice", good + `,"args":{"cni":{"tapfwRules":{"in":[{"action":"DROP","action":"ACCEPT"}]}}}}`, "", "args.cni.tapfwRules.in[0].action", 2, dup},
		{"attachment ifname twice", good + `,"cni.dev/valid-attachments":[{"containerID":"a","ifname":"b","ifname":"c"}]}`, "", "cni.dev/valid-attachments[0].ifname", 2, dup},
		{"CNI_ARGS rules in twice", good + `}`, `TAPFW_RULES={"in":[],"in":[]}`, "CNI_ARGS TAPFW_RULES.in", 4, dup},
		{"CNI_ARGS rule action twice", good + `}`, `TAPFW_RULES={"in":[{"action":"DROP","action":"ACCEPT"}]}`, "CNI_ARGS TAPFW_RULES.in[0].action", 4, dup},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := resolve(t, c.js, Env{Args: c.args}, nil)
			wantErr(t, err, c.field, c.code, c.msg)
		})
	}
}

// What tapfw does not read stays lenient: prevResult (another plugin's),
// and args other than args.cni.tapfwRules. Keys there are not checked,
// and "CNI" or "TapfwRules" are not tapfw's keys.
func TestLenientParts(t *testing.T) {
	conf := good + `,"rules":{"in":[{"action":"ACCEPT","proto":"tcp","dport":"22"}]}`
	for _, js := range []string{
		conf + `,"prevResult":{"cniVersion":"1.0.0","Interfaces":[],"x":1,"x":{"X":2}}}`,
		conf + `,"args":{"k8s":{"A":1,"A":2},"K8S":1,"cni":{"other":1,"Other":[2],"TapfwRules":5}}}`,
		conf + `,"args":{"CNI":{"tapfwRules":{"in":[{"action":"DROP"}]}}}}`,
		conf + `,"args":{"cni":{"tapfwRules":null}}}`,
		conf + `,"args":{"cni":null}}`,
		conf + `,"args":null,"runtimeConfig":{"tapfwRules":null}}`,
		conf + `,"capabilities":{"mac":true,"Mac":false,"tapfwRules":true}}`,
		conf + "\n,\t\"prevResult\" : { \"a\" : \"}\\\"]\" , \"b\" : [ 1 , -2.5E-1 , [ ] , { } ] } , \"args\" : { \"cni\" : { } } \r\n}",
	} {
		r, err := resolve(t, js, Env{}, nil)
		if err != nil {
			t.Errorf("%s: %v", js, err)
			continue
		}
		if in := r.Model.Tap.In; len(in) != 1 || in[0].DPort != "22" {
			t.Errorf("%s: rules %+v, want the config's", js, in)
		}
	}
}

// Every field under its exact name decodes where it belongs.
func TestExactKeysDecode(t *testing.T) {
	js := `{"cniVersion":"1.1.0","name":"n","type":"tapfw","capabilities":{"mac":true},
		"ipam":{"type":"none"},"dns":{"nameservers":["192.0.2.53"],"domain":"d","search":["s"],"options":["o"]},
		"prevResult":{"cniVersion":"1.1.0"},"cni.dev/valid-attachments":[{"containerID":"c1","ifname":"tap1"}],
		"cni.dev/attachments":[{"containerID":"c2","ifname":"tap2"}],
		"bridge":"vmbr0","tap":"tap1","mac":"02:00:00:00:00:01","ips":["192.0.2.10"],"macFilter":true,"ipFilter":false,
		"dhcp":false,"policyIn":"REJECT","policyOut":"ACCEPT","logDropped":false,"allowBridgeRouting":true,
		"failClosed":false,"managedPrefix":"tap","ipsets":{"web":["198.51.100.0/24"]},
		"rules":{"in":[{"action":"ACCEPT","proto":"tcp","source":"+web","dest":"192.0.2.10","sport":"1024:65535",
			"dport":"22","icmpType":"","log":true,"comment":"ssh"}],"out":[{"action":"DROP"}]},
		"host":{"ips":["192.0.2.1"],"clusterHosts":["192.0.2.2"],"rules":{"in":[{"action":"ACCEPT"}],"out":[]}},
		"runtimeConfig":{"mac":"02:00:00:00:00:01","ips":["192.0.2.10/24"]},
		"args":{"cni":{"tapfwRules":{"in":[{"action":"ACCEPT","proto":"udp","dport":"53"}]}}}}`
	conf, err := Parse([]byte(js))
	if err != nil {
		t.Fatal(err)
	}
	if conf.CNIVersion != "1.1.0" || conf.Type != "tapfw" || !conf.Capabilities["mac"] || conf.IPAM.Type != "none" ||
		conf.DNS.Domain != "d" || conf.RawPrevResult == nil || len(conf.ValidAttachments) != 1 || conf.ValidAttachments[0].IfName != "tap1" ||
		len(conf.Attachments) != 1 || conf.Attachments[0].ContainerID != "c2" || *conf.IPFilter || *conf.DHCP ||
		conf.PolicyIn != "REJECT" || !conf.AllowBridgeRouting || *conf.FailClosed || conf.ManagedPrefix != "tap" ||
		len(conf.IPSets["web"]) != 1 || conf.Rules.In[0].SPort != "1024:65535" || conf.Rules.In[0].Log != "true" ||
		conf.Rules.Out[0].Action != "DROP" || conf.Host.ClusterHosts[0] != "192.0.2.2" || conf.RuntimeConfig.IPs[0] != "192.0.2.10/24" ||
		conf.Args.CNI.Rules.In[0].DPort != "53" {
		t.Errorf("decoded wrong: %+v", conf)
	}
	if _, err := Resolve(conf, ruleset.Limits, Env{IfName: "tap1"}, nil, nil); err != nil {
		t.Error(err)
	}
}

// No JSON the package decodes may have data after its value.
func TestTrailingData(t *testing.T) {
	for _, js := range []string{good + `}garbage`, good + `} {}`, good + `}{"cniVersion":"1.0.0"}`, good + `}]`, good + `} null`} {
		_, err := Parse([]byte(js))
		if !errors.Is(err, ErrDecode) || !strings.Contains(err.Error(), "trailing data") {
			t.Errorf("%s: %v, want a decoding error about trailing data", js, err)
		}
	}
	cases := []struct{ rules, msg string }{
		{`{"in":[]}garbage`, "trailing data"},
		{`{"in":[]} {}`, "trailing data"},
		{`{"in":[]}{"in":[{"action":"ACCEPT"}]}`, "trailing data"},
		{`{"in":[]}]`, "trailing data"},
		{`{"in":[`, "unexpected end of JSON input"},
		{``, "unexpected end of JSON input"},
	}
	for _, c := range cases {
		_, err := resolve(t, good+`}`, Env{Args: "TAPFW_RULES=" + c.rules}, nil)
		t.Run(c.rules, func(t *testing.T) { wantErr(t, err, "CNI_ARGS TAPFW_RULES", 4, c.msg) })
	}
	// Whitespace around the value is no trailing data.
	r, err := resolve(t, good+"}\n", Env{Args: "TAPFW_RULES= {\"in\":[{\"action\":\"DROP\"}]}\n"}, nil)
	if err != nil || len(r.Model.Tap.In) != 1 {
		t.Errorf("whitespace: %v", err)
	}
}

// Port ranges whose ends are equal are the port, alone and in lists, as
// iptables-save prints them.
func TestPortRangeCanonical(t *testing.T) {
	for in, want := range map[string]string{
		"22:22":                "22",
		"0:0":                  "0",
		"65535:65535":          "65535",
		"22:22,80":             "22,80",
		"80,443:443":           "80,443",
		"80,443:443,1000:2000": "80,443,1000:2000",
		"1000:2000":            "1000:2000",
		"0:1000":               "0:1000",
		"0:65535":              "",
		"0:65535,22":           "0:65535,22",
		// 15 ranges of one port each count one slot each: 15.
		"1:1,2:2,3:3,4:4,5:5,6:6,7:7,8:8,9:9,10:10,11:11,12:12,13:13,14:14,15:15": "1,2,3,4,5,6,7,8,9,10,11,12,13,14,15",
	} {
		got, err := parsePorts(in)
		if err != nil || got != want {
			t.Errorf("parsePorts(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"23:22", "22:22,23:22", "1:1,2:2,3:3,4:4,5:5,6:6,7:7,8:8,9:9,10:10,11:11,12:12,13:13,14:14,15:16"} {
		if got, err := parsePorts(in); err == nil {
			t.Errorf("parsePorts(%q) = %q, want an error", in, got)
		}
	}

	// The rendered rules say what iptables-save prints back.
	js := good + `,"rules":{"in":[{"action":"ACCEPT","proto":"tcp","dport":"22:22"},
		{"action":"ACCEPT","proto":"udp","sport":"53:53","dport":"1000:1000,2000:2001"}]}}`
	r, err := resolve(t, js, Env{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	p, err := ruleset.Build(r.Model)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, chs := range [][]ruleset.Chain{p.Owned, p.Shared, p.Base} {
		for _, ch := range chs {
			for _, rule := range ch.Rules {
				if l := rule.String(); strings.Contains(l, "port") {
					lines = append(lines, l)
				}
			}
		}
	}
	all := strings.Join(lines, "\n")
	for _, want := range []string{"-p tcp -m tcp --dport 22 ", "-p udp -m udp --sport 53 -m multiport --dports 1000,2000:2001 "} {
		if !strings.Contains(all, want) {
			t.Errorf("no rule renders %q:\n%s", want, all)
		}
	}
	if strings.Contains(all, "22:22") || strings.Contains(all, "53:53") || strings.Contains(all, "1000:1000") {
		t.Errorf("a range whose ends are equal is rendered:\n%s", all)
	}
}

// An empty MAC= or IP= in CNI_ARGS is an error, not an empty override of
// the config's.
func TestCNIArgsEmpty(t *testing.T) {
	cases := []struct{ js, args, field, msg string }{
		{good + `}`, "MAC=", "CNI_ARGS MAC", "empty"},
		{good + `,"macFilter":false}`, "MAC=", "CNI_ARGS MAC", "empty"},
		{good + `}`, "MAC=;IP=192.0.2.1", "CNI_ARGS MAC", "empty"},
		{good + `}`, "IP=", "CNI_ARGS IP", "empty"},
		{good + `,"ipFilter":false}`, "IgnoreUnknown=1;X=1;IP=", "CNI_ARGS IP", "empty"},
		{good + `}`, "MAC=02:00:00:00:00:02;IP=", "CNI_ARGS IP", "empty"},
		{good + `}`, "IP=192.0.2.1,,192.0.2.2", "CNI_ARGS IP[1]", "not an IPv4"},
		{good + `}`, "IP=192.0.2.1,", "CNI_ARGS IP[1]", "not an IPv4"},
	}
	for _, c := range cases {
		_, err := resolve(t, c.js, Env{Args: c.args}, nil)
		t.Run(c.args, func(t *testing.T) { wantErr(t, err, c.field, 4, c.msg) })
	}
}

// host.ips and host.clusterHosts have the limit of an ipset's entries.
func TestHostLimits(t *testing.T) {
	list := func(n int) string {
		var b strings.Builder
		for i := 0; i < n; i++ {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `"10.%d.%d.%d"`, i>>16, (i>>8)&255, i&255)
		}
		return b.String()
	}
	over, max := list(MaxSetEntries+1), list(MaxSetEntries)
	for _, f := range []string{"ips", "clusterHosts"} {
		_, err := resolve(t, good+`,"host":{"`+f+`":[`+over+`]}}`, Env{}, nil)
		wantErr(t, err, "host."+f, 7, fmt.Sprintf("more than %d entries", MaxSetEntries))
		r, err := resolve(t, good+`,"host":{"`+f+`":[`+max+`]}}`, Env{}, nil)
		if err != nil {
			t.Fatalf("%d host.%s: %v", MaxSetEntries, f, err)
		}
		if n := len(r.Model.Host.IPs) + len(r.Model.Host.ClusterHosts); n != MaxSetEntries {
			t.Errorf("host.%s: %d entries", f, n)
		}
	}
}

// Each kind of error has its code, and wrong types name the path
// with indices and without embedded Go structs.
func TestErrorCodes(t *testing.T) {
	rule := `{"action":"ACCEPT","proto":"tcp","dport":"22"}`
	cases := []struct {
		name, js string
		env      Env
		field    string
		code     uint
		msg      string
	}{
		// Wrong JSON types: 6.
		{"top-level list", `[]`, Env{}, "", 6, "wrong type: got JSON array, want an object"},
		{"top-level string", `"x"`, Env{}, "", 6, "wrong type"},
		{"type number", strings.Replace(good, `"type":"tapfw"`, `"type":5`, 1) + `}`, Env{}, "type", 6, "wrong type: got JSON number, want a string"},
		{"prevResult number", good + `,"prevResult":5}`, Env{}, "prevResult", 6, "want an object"},
		{"prevResult list", good + `,"prevResult":[]}`, Env{}, "prevResult", 6, "want an object"},
		{"capabilities string", good + `,"capabilities":{"mac":"yes"}}`, Env{}, "capabilities.mac", 6, "want true or false"},
		{"ipam number", good + `,"ipam":5}`, Env{}, "ipam", 6, "want an object"},
		{"dns nameserver number", good + `,"dns":{"nameservers":["192.0.2.53",5]}}`, Env{}, "dns.nameservers[1]", 6, "want a string"},
		{"attachments number", good + `,"cni.dev/valid-attachments":5}`, Env{}, "cni.dev/valid-attachments", 6, "want a list"},
		{"attachment ifname number", good + `,"cni.dev/valid-attachments":[{"containerID":"a","ifname":5}]}`, Env{}, "cni.dev/valid-attachments[0].ifname", 6, "wrong type"},
		{"ips item number", strings.Replace(good, `["192.0.2.10"]`, `["192.0.2.10",5]`, 1) + `}`, Env{}, "ips[1]", 6, "got JSON number, want a string"},
		{"macFilter string", good + `,"macFilter":"false"}`, Env{}, "macFilter", 6, "got JSON string, want true or false"},
		{"rules list", good + `,"rules":[]}`, Env{}, "rules", 6, "got JSON array, want an object"},
		{"rule string", good + `,"rules":{"in":["ACCEPT"]}}`, Env{}, "rules.in[0]", 6, "got JSON string, want an object"},
		{"rule action number", good + `,"rules":{"in":[` + rule + `,{"action":1}]}}`, Env{}, "rules.in[1].action", 6, "got JSON number"},
		{"rule log number", good + `,"rules":{"out":[{"action":"ACCEPT","log":1}]}}`, Env{}, "rules.out[0].log", 6, "want true, false or a log level"},
		{"rule log level unknown", good + `,"rules":{"out":[{"action":"ACCEPT","log":"yes"}]}}`, Env{}, "rules.out[0].log", 7, "not true, false, nolog or a level"},
		{"host rule dport number", good + `,"host":{"rules":{"in":[` + rule + `,{"action":"ACCEPT","proto":"tcp","dport":22}]}}}`, Env{}, "host.rules.in[1].dport", 6, "wrong type"},
		{"ipset entry number", good + `,"ipsets":{"web":["192.0.2.1",5]}}`, Env{}, "ipsets.web[1]", 6, "wrong type"},
		{"ipset string", good + `,"ipsets":{"web":"192.0.2.1"}}`, Env{}, "ipsets.web", 6, "want a list"},
		{"runtimeConfig rules list", good + `,"runtimeConfig":{"tapfwRules":[]}}`, Env{}, "runtimeConfig.tapfwRules", 6, "want an object"},
		{"args number", good + `,"args":5}`, Env{}, "args", 6, "want an object"},
		{"args cni number", good + `,"args":{"cni":5}}`, Env{}, "args.cni", 6, "want an object"},
		{"args rules number", good + `,"args":{"cni":{"tapfwRules":5}}}`, Env{}, "args.cni.tapfwRules", 6, "want an object"},
		{"args rule dport number", good + `,"args":{"cni":{"tapfwRules":{"in":[{"action":"ACCEPT","dport":22}]}}}}`, Env{}, "args.cni.tapfwRules.in[0].dport", 6, "wrong type"},
		{"huge number", good + `,"allowBridgeRouting":1e999}`, Env{}, "allowBridgeRouting", 6, "got JSON number, want true or false"},

		// Malformed JSON: ErrDecode, 6.
		{"malformed", good, Env{}, "", 6, "cannot decode config: unexpected end of JSON input"},

		// Environment: 4.
		{"bad CNI_IFNAME", good + `}`, Env{IfName: "tap 1"}, "CNI_IFNAME", 4, "may hold only"},
		{"bad CNI_CONTAINERID", good + `}`, Env{ContainerID: "-c"}, "CNI_CONTAINERID", 4, "may hold only"},
		{"CNI_ARGS not key=value", good + `}`, Env{Args: "garbage"}, "CNI_ARGS", 4, "not KEY=VALUE"},
		{"CNI_ARGS unknown key", good + `}`, Env{Args: "IgnoreUnknown=0;FOO=1"}, "CNI_ARGS", 4, "FOO"},
		{"CNI_ARGS bad MAC", good + `}`, Env{Args: "MAC=zz:00:00:00:00:01"}, "CNI_ARGS MAC", 4, "not an Ethernet"},
		{"CNI_ARGS multicast MAC", good + `}`, Env{Args: "MAC=01:00:5e:00:00:01"}, "CNI_ARGS MAC", 4, "multicast"},
		{"CNI_ARGS bad IP", good + `}`, Env{Args: "IP=192.0.2.1/24"}, "CNI_ARGS IP[0]", 4, "host bits"},
		{"CNI_ARGS too many IPs", good + `}`, Env{Args: "IP=" + strings.Repeat("192.0.2.1,", MaxIPs) + "192.0.2.1"}, "CNI_ARGS IP", 4, "more than"},
		{"CNI_ARGS rules array", good + `}`, Env{Args: "TAPFW_RULES=[]"}, "CNI_ARGS TAPFW_RULES", 4, "got JSON array, want an object"},
		{"CNI_ARGS rules null", good + `}`, Env{Args: "TAPFW_RULES=null"}, "CNI_ARGS TAPFW_RULES", 4, "got JSON null, want an object"},
		{"CNI_ARGS rules wrong type", good + `}`, Env{Args: `TAPFW_RULES={"in":[{"action":"ACCEPT","log":1}]}`}, "CNI_ARGS TAPFW_RULES.in[0].log", 4, "wrong type"},
		{"CNI_ARGS rule bad port", good + `}`, Env{Args: `TAPFW_RULES={"in":[{"action":"ACCEPT","proto":"tcp","dport":"99999"}]}`}, "CNI_ARGS TAPFW_RULES.in[0].dport", 4, "0-65535"},
		{"CNI_ARGS too many rules", good + `}`, Env{Args: `TAPFW_RULES={"out":[` + strings.Repeat(rule+",", MaxRules) + rule + `]}`}, "CNI_ARGS TAPFW_RULES.out", 4, "more than"},

		// Values: 7.
		{"runtimeConfig mac", good + `,"runtimeConfig":{"mac":"zz"}}`, Env{Args: "MAC=zz"}, "runtimeConfig.mac", 7, "not an Ethernet"},
		{"args rules bad action", good + `,"args":{"cni":{"tapfwRules":{"out":[{"action":"RETURN"}]}}}}`, Env{Args: `TAPFW_RULES={}`}, "args.cni.tapfwRules.out[0].action", 7, "not ACCEPT"},
		{"config mac", strings.Replace(good, "02:00:00:00:00:01", "zz", 1) + `}`, Env{}, "mac", 7, "not an Ethernet"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := resolve(t, c.js, c.env, nil)
			if c.name == "malformed" {
				if !errors.Is(err, ErrDecode) || !strings.Contains(err.Error(), c.msg) {
					t.Errorf("error %v, want a decoding error saying %q", err, c.msg)
				}
				var e *Error
				if errors.As(err, &e) {
					t.Errorf("malformed JSON is a *config.Error: %v", err)
				}
				return
			}
			wantErr(t, err, c.field, c.code, c.msg)
		})
	}

	// A missing CNI_IFNAME with no tap named elsewhere.
	conf, err := Parse([]byte(good + `}`))
	if err != nil {
		t.Fatal(err)
	}
	_, err = Resolve(conf, ruleset.Limits, Env{}, nil, nil)
	wantErr(t, err, "CNI_IFNAME", 4, "is empty")
	// A previous result's values are not the environment's.
	_, err = Resolve(conf, ruleset.Limits, Env{IfName: "tap1"}, &PrevIface{HostPort: "a b"}, nil)
	wantErr(t, err, "tap", 7, "a b")
	_, err = Resolve(conf, ruleset.Limits, Env{IfName: "tap1"}, &PrevIface{MAC: "01:00:5e:00:00:01"}, nil)
	wantErr(t, err, "prevResult mac", 7, "multicast")
}

// encoding/json's own errors, the fallback, lose the embedded struct's
// name too.
func TestDecodeErrFallback(t *testing.T) {
	var conf NetConf
	err := json.Unmarshal([]byte(`{"type":5}`), &conf)
	var te *json.UnmarshalTypeError
	if !errors.As(err, &te) {
		t.Fatalf("encoding/json: %v", err)
	}
	te.Field = "PluginConf.type" // as Go versions that name embedded structs have it
	wantErr(t, decodeErr(te, ""), "type", 6, "wrong type")
	te.Field = "PluginConf.prevResult"
	wantErr(t, decodeErr(te, "x"), "x.prevResult", 6, "wrong type")
	wantErr(t, decodeErr(errors.New(`json: unknown field "bogus"`), "rules"), "rules.bogus", 2, "unknown field")
}

// The NIC files QEMU scripts merge may not give a top-level key twice
// (the merge would keep the later silently) and must be objects.
func TestMergeNICStrict(t *testing.T) {
	dir := t.TempDir()
	base := filepath.Join(dir, "tapfw.conf")
	nic := filepath.Join(dir, "tap1.json")
	write := func(p, s string) {
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(base, `{"name":"lab"}`)
	for _, c := range []struct {
		base, nic, field string
		code             uint
	}{
		{`{"name":"lab"}`, `{"bridge":"vmbr0","mac":"02:00:00:00:00:01","policyIn":"DROP","policyIn":"ACCEPT"}`, "policyIn", 2},
		{`{"policyIn":"DROP","policyIn":"ACCEPT"}`, `{"bridge":"vmbr0","mac":"02:00:00:00:00:01"}`, "policyIn", 2},
		{`{"name":"lab"}`, `{"bridge":"vmbr0","mac":"02:00:00:00:00:01","policyin":"ACCEPT"}`, "policyin", 2},
		{`{"name":"lab"}`, `{"bridge":"vmbr0","rules":{"in":[{"action":"ACCEPT","action":"DROP"}]}}`, "rules.in[0].action", 2},
		{`{"name":"lab"}`, `null`, "", 6},
		{`{"name":"lab"}`, `[]`, "", 6},
	} {
		write(base, c.base)
		write(nic, c.nic)
		_, _, err := MergeNIC(base, nic)
		t.Run(c.nic, func(t *testing.T) { wantErr(t, err, c.field, c.code, "") })
	}
	write(nic, `{"bridge":"vmbr0"} {}`)
	if _, _, err := MergeNIC(base, nic); !errors.Is(err, ErrDecode) {
		t.Errorf("trailing data in NIC file: %v", err)
	}
}

// The exported codes are the CNI spec's.
func TestCodeValues(t *testing.T) {
	if types.ErrUnsupportedField != 2 || types.ErrInvalidEnvironmentVariables != 4 || types.ErrDecodingFailure != 6 {
		t.Fatal("CNI codes moved")
	}
	if reflect.TypeOf(Error{}.Code).Kind() != reflect.Uint {
		t.Fatal("Code is not a uint")
	}
}
