package netfilter

import (
	"github.com/tapfw/tapfw/pkg/model"
	"io"
	"log"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tapfw/tapfw/pkg/ruleset"
	"github.com/tapfw/tapfw/pkg/testnet"
)

// Kernel tests: the real iptables and ipsets, in a namespace of their own,
// under both iptables backends.

func init() {
	// netlink logs attributes of other programs' ipsets it does not know.
	log.SetOutput(io.Discard)
}

var modes = []Mode{ModeNFT, ModeLegacy}

type kernel struct {
	t    *testing.T
	ns   *testnet.NS
	mode Mode
	fw   *Firewall
}

func newKernel(t *testing.T, mode Mode) *kernel {
	t.Helper()
	testnet.NeedKernel(t)
	if _, err := exec.LookPath("iptables-" + string(mode) + "-restore"); err != nil {
		t.Skipf("iptables-%s not installed", mode)
	}
	ns, err := testnet.NewNS("nf")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ns.Close() })
	lock := FileLock{Path: t.TempDir() + "/lock", Timeout: 10 * time.Second}
	ex := Exec{Mode: mode, WaitSeconds: 5}
	return &kernel{t: t, ns: ns, mode: mode, fw: &Firewall{Tables: ex, Tables6: ex.IPv6(), Sets: NetlinkSets{}, Lock: lock}}
}

// do runs f with the firewall inside the namespace.
func (k *kernel) do(f func(fw *Firewall) error) {
	k.t.Helper()
	if err := k.ns.Do(func() error { return f(k.fw) }); err != nil {
		k.t.Fatal(err)
	}
}

func (k *kernel) run(args ...string) string {
	k.t.Helper()
	out, err := k.ns.Run(args...)
	if err != nil {
		k.t.Fatalf("%v: %v", args, err)
	}
	return string(out)
}

func (k *kernel) ipt(args ...string) string {
	return k.run(append([]string{"iptables-" + string(k.mode)}, args...)...)
}

var (
	saveNoise = regexp.MustCompile(`(?m)^#.*\n`)
	initval   = regexp.MustCompile(` initval 0x[0-9a-f]+`)
)

// save returns iptables-save and ip6tables-save of all tables, without
// their dated comments.
func (k *kernel) save() string {
	return saveNoise.ReplaceAllString(k.run("iptables-"+string(k.mode)+"-save")+k.run("ip6tables-"+string(k.mode)+"-save"), "")
}

// foreign returns everything in the ruleset that is not tapfw's.
func (k *kernel) foreign() string {
	var keep []string
	for _, l := range strings.Split(k.save(), "\n") {
		if strings.Contains(l, "TFW-") {
			continue
		}
		keep = append(keep, l)
	}
	sets := initval.ReplaceAllString(k.run("ipset", "save"), "")
	var fs []string
	for _, l := range strings.Split(sets, "\n") {
		if !strings.Contains(l, " tfw-") && !strings.Contains(l, " tfw6-") {
			fs = append(fs, l)
		}
	}
	return strings.Join(keep, "\n") + "\n" + strings.Join(fs, "\n")
}

func (k *kernel) addForeign() {
	k.ipt("-A", "INPUT", "-s", "203.0.113.9/32", "-j", "ACCEPT")
	k.ipt("-N", "FOREIGN")
	k.ipt("-A", "FOREIGN", "-p", "tcp", "--dport", "443", "-m", "comment", "--comment", "tap110i0: not ours", "-j", "ACCEPT")
	k.ipt("-A", "FORWARD", "-j", "FOREIGN")
	k.ipt("-A", "OUTPUT", "-d", "198.51.100.77/32", "-j", "DROP")
	k.run("ip6tables-"+string(k.mode), "-A", "FORWARD", "-s", "2001:db8:ffff::9/128", "-j", "DROP")
	k.ipt("-t", "nat", "-A", "POSTROUTING", "-s", "192.0.2.0/24", "-j", "MASQUERADE")
	k.run("ipset", "create", "foreign", "hash:ip")
	k.run("ipset", "add", "foreign", "192.0.2.77")
}

func TestKernelLifecycle(t *testing.T) {
	for _, mode := range modes {
		t.Run(string(mode), func(t *testing.T) {
			k := newKernel(t, mode)
			k.addForeign()
			foreign := k.foreign()
			plans := map[string]*ruleset.Plan{}
			for _, tap := range seedTaps {
				plans[tap] = seedPlan(t, tap)
			}
			// ADD each tap; ADD again changes nothing.
			for _, tap := range seedTaps {
				k.do(func(fw *Firewall) error {
					changed, err := fw.Apply(plans[tap])
					if err == nil && !changed {
						t.Errorf("first ADD of %s changed nothing", tap)
					}
					return err
				})
			}
			before := k.save()
			for _, tap := range seedTaps {
				k.do(func(fw *Firewall) error {
					changed, err := fw.Apply(plans[tap])
					if err == nil && changed {
						t.Errorf("second ADD of %s changed the kernel", tap)
					}
					return err
				})
				k.do(func(fw *Firewall) error { return fw.Check(plans[tap]) })
			}
			if after := k.save(); after != before {
				t.Errorf("second ADD changed iptables-save:\n%s\n---\n%s", before, after)
			}

			// Tamper: CHECK names the chain and rule; ADD repairs.
			k.ipt("-D", "TFW-T-tap110i0-IN", "6") // the ssh rule
			k.run("ipset", "del", "tfw-host", "192.0.2.31")
			k.do(func(fw *Firewall) error {
				err := fw.Check(plans["tap110i0"])
				if err == nil {
					t.Fatal("CHECK passed after tampering")
				}
				for _, want := range []string{"table filter, chain TFW-T-tap110i0-IN, rule 6: missing", "--dport 22", "ipset tfw-host"} {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("CHECK error does not say %q: %v", want, err)
					}
				}
				if _, err := fw.Apply(plans["tap110i0"]); err != nil {
					return err
				}
				return fw.Check(plans["tap110i0"])
			})

			// DEL twice; no trace of the tap; the others intact.
			for i := 0; i < 2; i++ {
				k.do(func(fw *Firewall) error { return fw.Remove("tap110i0") })
			}
			if s := k.save(); strings.Contains(s, "tap110i0-") || strings.Contains(s, "physdev-in tap110i0 ") {
				t.Errorf("tap110i0 left in iptables:\n%s", s)
			}
			if strings.Contains(k.run("ipset", "list", "-n"), "tfw-t-tap110i0") {
				t.Error("tap110i0's ipset left")
			}
			for _, tap := range []string{"tap123i0", "tap115i0"} {
				k.do(func(fw *Firewall) error { return fw.Check(plans[tap]) })
			}
			// GC with every attachment still valid removes nothing.
			kept := k.save()
			k.do(func(fw *Firewall) error {
				removed, err := fw.GC("seed", func(model.Attachment) bool { return true })
				if len(removed) > 0 {
					t.Errorf("GC removed %v", removed)
				}
				return err
			})
			if k.save() != kept {
				t.Error("GC with all attachments valid changed the kernel")
			}
			for _, tap := range []string{"tap123i0", "tap115i0"} {
				k.do(func(fw *Firewall) error { return fw.Remove(tap) })
			}
			if s := k.run("ipset", "list", "-n"); strings.Contains(s, "tfw-t-tap110i0") || strings.Contains(s, "tfw6-t-tap110i0") {
				t.Errorf("tap sets left: %s", s)
			}
			if got := k.foreign(); got != foreign {
				t.Errorf("foreign rules or sets changed:\n--- before\n%s\n--- after\n%s", foreign, got)
			}
		})
	}
}

// Every rule form a config can produce renders exactly as iptables-save
// prints it back, so CHECK and the no-change ADD hold for all of them.
func TestKernelRuleFormsRoundTrip(t *testing.T) {
	conf := []byte(`{"cniVersion":"1.0.0","name":"forms","type":"tapfw","bridge":"br0","mac":"02:00:00:00:00:01","ips":["192.0.2.10","198.51.100.0/28"],
	"policyIn":"REJECT","policyOut":"ACCEPT","logDropped":true,
	"ipsets":{"web":["198.51.100.0/24","192.0.2.5"],"empty":[]},
	"rules":{"in":[
		{"action":"ACCEPT","proto":"tcp","dport":"22","log":true,"comment":"ssh (admins) #1"},
		{"action":"ACCEPT","proto":"tcp","sport":"1024:65535","dport":"80,443,8000:8080"},
		{"action":"ACCEPT","proto":"udp","sport":"53,123","dport":"1000:2000","source":"+web"},
		{"action":"REJECT","proto":"tcp","source":"192.0.2.0/24","dest":"192.0.2.10"},
		{"action":"REJECT","proto":"udp","dport":"0"},
		{"action":"DROP","proto":"icmp","icmpType":"echo-request"},
		{"action":"ACCEPT","proto":"icmp","icmpType":"port-unreachable"},
		{"action":"ACCEPT","proto":"icmp","icmpType":"13"},
		{"action":"ACCEPT","proto":"gre"},
		{"action":"ACCEPT","proto":"esp","dest":"+empty"},
		{"action":"ACCEPT","proto":"250"},
		{"action":"ACCEPT","proto":"tcp","dport":"0:65535"},
		{"action":"ACCEPT","proto":"icmp","icmpType":"8/0"},
		{"action":"DROP","source":"0.0.0.0/0"}],
	"out":[{"action":"DROP","proto":"sctp"},{"action":"REJECT","dest":"203.0.113.0/24","log":true}]},
	"host":{"ips":["192.0.2.1"],"rules":{"in":[{"action":"ACCEPT","proto":"tcp","dport":"22"}],"out":[{"action":"ACCEPT","proto":"icmp"}]}}}`)
	for _, mode := range modes {
		t.Run(string(mode), func(t *testing.T) {
			k := newKernel(t, mode)
			p := planFrom(t, conf, "tapX")
			k.do(func(fw *Firewall) error {
				if _, err := fw.Apply(p); err != nil {
					return err
				}
				if err := fw.Check(p); err != nil {
					return err
				}
				changed, err := fw.Apply(p)
				if changed {
					t.Error("second ADD changed the kernel")
				}
				return err
			})
		})
	}
}

// A restore the real iptables-restore rejects leaves the kernel as it was:
// no rule, no chain, and the sets made for the call are gone again.
func TestKernelFailedRestoreChangesNothing(t *testing.T) {
	for _, mode := range modes {
		t.Run(string(mode), func(t *testing.T) {
			k := newKernel(t, mode)
			k.do(func(fw *Firewall) error { _, err := fw.Apply(seedPlan(t, "tap110i0")); return err })
			before := k.save() + k.foreign() + initval.ReplaceAllString(k.run("ipset", "save"), "")
			k.fw.Tables = failingRestore{k.fw.Tables}
			k.do(func(fw *Firewall) error {
				if _, err := fw.Apply(seedPlan(t, "tap123i0")); err == nil {
					t.Error("apply with a failing restore succeeded")
				}
				return nil
			})
			after := k.save() + k.foreign() + initval.ReplaceAllString(k.run("ipset", "save"), "")
			if after != before {
				t.Errorf("failed ADD changed the kernel:\n--- before\n%s\n--- after\n%s", before, after)
			}
		})
	}
}

// failingRestore sends a restore file with a bad last line, so the real
// iptables-restore rejects the whole transaction.
type failingRestore struct{ Tables }

func (f failingRestore) Restore(data []byte) error {
	bad := strings.Replace(string(data), "COMMIT\n", "-A TFW-NO-SUCH-CHAIN -j ACCEPT\nCOMMIT\n", 1)
	return f.Tables.Restore([]byte(bad))
}

func TestKernelStatus(t *testing.T) {
	for _, mode := range modes {
		t.Run(string(mode), func(t *testing.T) {
			k := newKernel(t, mode)
			k.do(func(fw *Firewall) error { return Status(Exec{Mode: mode}, NetlinkSets{}, true) })
			if err := Status(Exec{Mode: Mode("nope")}, NetlinkSets{}, true); err == nil {
				t.Error("status passed with a missing iptables")
			}
		})
	}
}

// The longest interface names fit nf_tables' limit of 16 chains deep.
func TestKernelLongNames(t *testing.T) {
	conf := []byte(`{"cniVersion":"1.0.0","name":"long","type":"tapfw","bridge":"br0","mac":"02:00:00:00:00:01","ips":["192.0.2.10"]}`)
	for _, mode := range modes {
		t.Run(string(mode), func(t *testing.T) {
			k := newKernel(t, mode)
			k.ipt("-A", "FORWARD", "-j", "ACCEPT") // a foreign rule, as hosts have
			for _, tap := range []string{"abcdefghijklmno", "abcdefghijklmnp", "veth0123abcd"} {
				p := planFrom(t, conf, tap)
				k.do(func(fw *Firewall) error {
					if _, err := fw.Apply(p); err != nil {
						return err
					}
					return fw.Check(p)
				})
			}
			k.do(func(fw *Firewall) error { return fw.Remove("abcdefghijklmno") })
			k.do(func(fw *Firewall) error { return fw.Check(planFrom(t, conf, "abcdefghijklmnp")) })
		})
	}
}

// TestKernelDualStack: the dual-stack sample in both tables. A second ADD
// changes nothing (what ip6tables-save prints back, masks in IPv4 form
// included, is what tapfw renders), CHECK sees a tampered IPv6 rule and
// set, ADD repairs them, and DEL of both taps leaves only the foreign rules.
func TestKernelDualStack(t *testing.T) {
	for _, mode := range modes {
		t.Run(string(mode), func(t *testing.T) {
			k := newKernel(t, mode)
			k.addForeign()
			foreign := k.foreign()
			plans := map[string]*ruleset.Plan{}
			for _, tap := range dualTaps {
				plans[tap] = dualPlan(t, tap)
				k.do(func(fw *Firewall) error { _, err := fw.Apply(plans[tap]); return err })
			}
			before := k.save()
			for _, want := range []string{
				"-A TFW-DH-1020 -d ::201/::0.15.255.255 ",
				"-A TFW-T-tap201i0-IN -p ipv6-icmp -m icmp6 --icmpv6-type 128 ",
				"-A TFW-T-tap201i0-IN -s 2001:db8:1::202/128 -p tcp -m tcp --dport 8080 ",
				"-j REJECT --reject-with icmp6-port-unreachable",
			} {
				if !strings.Contains(before, want) {
					t.Errorf("ip6tables-save lacks %q", want)
				}
			}
			for _, tap := range dualTaps {
				k.do(func(fw *Firewall) error {
					changed, err := fw.Apply(plans[tap])
					if err == nil && changed {
						t.Errorf("second ADD of %s changed the kernel", tap)
					}
					if err != nil {
						return err
					}
					return fw.Check(plans[tap])
				})
			}
			if after := k.save(); after != before {
				t.Errorf("second ADD changed the tables:\n%s\n---\n%s", before, after)
			}
			k.run("ip6tables-"+string(mode), "-D", "TFW-T-tap201i0-IN", "8")
			k.run("ipset", "del", "tfw6-t-tap201i0", "fe80::ff:fe00:201")
			k.do(func(fw *Firewall) error {
				err := fw.Check(plans["tap201i0"])
				if err == nil {
					t.Fatal("CHECK passed after tampering")
				}
				for _, want := range []string{"table ip6 filter, chain TFW-T-tap201i0-IN, rule 8: missing", "ipset tfw6-t-tap201i0"} {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("CHECK error does not say %q: %v", want, err)
					}
				}
				if _, err := fw.Apply(plans["tap201i0"]); err != nil {
					return err
				}
				return fw.Check(plans["tap201i0"])
			})
			for _, tap := range dualTaps {
				k.do(func(fw *Firewall) error { return fw.Remove(tap) })
			}
			k.do(func(fw *Firewall) error { return fw.Flush() })
			if got := k.foreign(); got != foreign {
				t.Errorf("foreign rules changed:\n%s\n---\n%s", foreign, got)
			}
			if s := k.save() + k.run("ipset", "list", "-n"); strings.Contains(s, "TFW-") || strings.Contains(s, "tfw") {
				t.Errorf("tapfw left:\n%s", s)
			}
		})
	}
}

// TestKernelRuleLanguage: the Proxmox-style sample (testdata/pve: macros,
// aliases, address lists and ranges, log levels) in both tables. What
// iptables-save prints back (-m iprange, --log-level) is what tapfw
// renders: a second ADD changes nothing and CHECK passes.
func TestKernelRuleLanguage(t *testing.T) {
	for _, mode := range modes {
		t.Run(string(mode), func(t *testing.T) {
			k := newKernel(t, mode)
			p := pvePlan(t)
			k.do(func(fw *Firewall) error { _, err := fw.Apply(p); return err })
			before := k.save()
			for _, want := range []string{
				"-m iprange --src-range 198.51.100.1-198.51.100.9 -m udp --dport 53 -m comment --comment \"tap301i0: in rule 3.1 DNS: resolvers",
				"-j LOG --log-prefix \"tfw:in:r7.1 \" --log-level 6",
				"-j LOG --log-prefix \"tfw:host:in:drop \" --log-level 7",
			} {
				if !strings.Contains(before, want) {
					t.Errorf("iptables-save lacks %q", want)
				}
			}
			k.do(func(fw *Firewall) error {
				changed, err := fw.Apply(p)
				if err == nil && changed {
					t.Error("second ADD changed the kernel")
				}
				if err != nil {
					return err
				}
				return fw.Check(p)
			})
			if after := k.save(); after != before {
				t.Errorf("second ADD changed the tables:\n%s\n---\n%s", before, after)
			}
			k.do(func(fw *Firewall) error { return fw.Remove("tap301i0") })
			k.do(func(fw *Firewall) error { return fw.Flush() })
		})
	}
}
