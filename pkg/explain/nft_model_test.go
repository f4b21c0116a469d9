package explain

import (
	"math/rand/v2"
	"net"
	"net/netip"
	"os/exec"
	"testing"

	"github.com/tapfw/tapfw/pkg/config"
	"github.com/tapfw/tapfw/pkg/model"
	"github.com/tapfw/tapfw/pkg/nft"
	"github.com/tapfw/tapfw/pkg/ruleset"
	"github.com/tapfw/tapfw/pkg/testnet"
)

// TestNFTRulesDecideAsTheirModel: random rule lists, in and out, installed by the
// nftables backend in a namespace and read back with `nft -j list
// ruleset`, give every random packet the verdict the straightforward
// first-match evaluator (model.Decide) gives it: the shared profiles,
// dispatch maps, mark bits and the inet chains that answer rejects keep
// first-match semantics exactly.
func TestNFTRulesDecideAsTheirModel(t *testing.T) {
	testnet.NeedKernel(t)
	if _, err := exec.LookPath("nft"); err != nil {
		t.Skip("no nft")
	}
	ns, err := testnet.NewNS("nftm")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ns.Close() }()
	k := nft.Kernel{Marks: nft.DefaultMarks}
	rng := rand.New(rand.NewPCG(15, 16))
	lists, packets, byRule := 0, 0, 0
	for lists < 100 {
		conf := randomTapConfig(rng)
		conf.PolicyOut = []string{"ACCEPT", "DROP", "REJECT"}[rng.IntN(3)]
		for range 1 + rng.IntN(6) {
			conf.Rules.Out = append(conf.Rules.Out, randomRule(rng))
		}
		r, err := config.Resolve(conf, ruleset.Limits, config.Env{ContainerID: "c1", IfName: "tap1"}, nil, nil)
		if err != nil {
			continue
		}
		lists++
		p, err := nft.Build(r.Model, nft.DefaultMarks)
		if err != nil {
			t.Fatalf("build %+v: %v", conf.Rules.In, err)
		}
		if err := ns.Do(func() error { return k.Apply(p) }); err != nil {
			t.Fatalf("apply %+v: %v", conf.Rules.In, err)
		}
		var l *nft.Listing
		if err := ns.Do(func() (err error) { l, err = nft.ReadListing(); return err }); err != nil {
			t.Fatal(err)
		}
		for i := range 60 {
			fam := model.IPv4
			if i%2 == 1 {
				fam = model.IPv6
			}
			pk := randomPacket(rng, fam)
			rules, policy, ep := r.Model.Tap.In, r.Model.Tap.PolicyIn, explainPacket(pk)
			if i%4 >= 2 {
				// From the VM: its own address and MAC, to the uplink.
				pk.Src = netip.MustParseAddr(map[string]string{model.IPv4: "192.0.2.10", model.IPv6: "2001:db8::10"}[fam])
				rules, policy, ep = r.Model.Tap.Out, r.Model.Tap.PolicyOut, explainPacket(pk)
				ep.PhysIn, ep.PhysOut = "tap1", "uplink0"
				ep.SrcMAC, _ = net.ParseMAC(conf.MAC)
			}
			want, idx := model.Decide(rules, policy, pk, r.Model.Sets)
			res, err := ExplainNFT(l, ep)
			if err != nil {
				t.Fatalf("explain %+v: %v", pk, err)
			}
			packets++
			if idx >= 0 {
				byRule++
			}
			if res.Verdict != string(want) || len(res.Uncertain) > 0 {
				t.Fatalf("packet %+v (%s -> %s) through rules %+v (policy %s): nftables gives %s (%v, uncertain %q), the model %s by rule %d\n%s",
					pk, ep.PhysIn, ep.PhysOut, rules, policy, res.Verdict, res.Decisive, res.Uncertain, want, idx, res.Text())
			}
		}
	}
	t.Logf("%d rule lists, %d packets, %d decided by a rule", lists, packets, byRule)
	if byRule < packets/4 {
		t.Errorf("only %d of %d packets were decided by a rule", byRule, packets)
	}
}
