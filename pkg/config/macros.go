package config

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"sync"
)

// Macros are named services a rule may stand for ("macro": "SSH"): the
// ones Proxmox VE ships (src/PVE/Firewall.pm of proxmox/pve-firewall,
// $pve_fw_macros and $pve_ipv6fw_macros), with the ICMP types Proxmox
// writes in dport moved to icmpType and its IPv6 variants merged in.
// They are defined once, in macros.json; tapfw help macros lists them.
//
//go:embed macros.json
var macrosJSON []byte

// Macro is one macro: what it is for, and the rules it stands for.
type Macro struct {
	Name        string
	Description string      `json:"description"`
	Parts       []MacroPart `json:"parts"`
}

// MacroPart is one of a macro's rules: its protocol and ports or ICMP
// type, and the one family it is for when neither says so.
type MacroPart struct {
	Proto    string `json:"proto"`
	SPort    string `json:"sport,omitempty"`
	DPort    string `json:"dport,omitempty"`
	ICMPType string `json:"icmpType,omitempty"`
	Family   string `json:"family,omitempty"`
}

// macros are the macros by their lower-case name: a rule names one in
// any case, as Proxmox VE allows. They are read when first asked for: a
// call whose rules use none does not pay for it.
var macros = sync.OnceValue(func() map[string]*Macro {
	var byName map[string]*Macro
	if err := json.Unmarshal(macrosJSON, &byName); err != nil {
		panic(fmt.Sprintf("macros.json: %v", err))
	}
	out := map[string]*Macro{}
	for name, m := range byName {
		m.Name = name
		out[strings.ToLower(name)] = m
	}
	return out
})

// Macros lists every macro, by name.
func Macros() []Macro {
	out := make([]Macro, 0, len(macros()))
	for _, m := range macros() {
		out = append(out, *m)
	}
	sort.Slice(out, func(i, j int) bool { return strings.ToLower(out[i].Name) < strings.ToLower(out[j].Name) })
	return out
}

// String is the part as a rule's fields: "tcp dport 22".
func (p MacroPart) String() string {
	words := []string{p.Proto}
	for _, f := range [][2]string{{"sport", p.SPort}, {"dport", p.DPort}, {"type", p.ICMPType}, {"only", p.Family}} {
		if f[1] != "" {
			words = append(words, f[0]+" "+f[1])
		}
	}
	return strings.Join(words, " ")
}

// macroRule is one of the rules a config rule stands for, and the family
// its macro part is for ("" for both).
type macroRule struct {
	rule   Rule
	family string
}

// expandMacro returns the rules r stands for: r itself without a macro,
// else one rule per part of its macro, each with r's action, addresses,
// log and comment. A field both r and a part give must be the same (as
// Proxmox VE requires); one only r gives is r's.
func expandMacro(r Rule) ([]macroRule, string, error) {
	if r.Macro == "" {
		return []macroRule{{rule: r}}, "", nil
	}
	m, ok := macros()[strings.ToLower(r.Macro)]
	if !ok {
		return nil, "", fieldErr("macro", "%q is not a macro (tapfw help macros lists them)", r.Macro)
	}
	var out []macroRule
	for _, p := range m.Parts {
		x := r
		x.Macro = ""
		for _, f := range []struct {
			name       string
			rule, part string
			to         *string
		}{
			{"proto", r.Proto, p.Proto, &x.Proto},
			{"sport", r.SPort, p.SPort, &x.SPort},
			{"dport", r.DPort, p.DPort, &x.DPort},
			{"icmpType", r.ICMPType, p.ICMPType, &x.ICMPType},
		} {
			switch {
			case f.part == "":
			case f.rule != "" && !strings.EqualFold(f.rule, f.part):
				return nil, "", fieldErr(f.name, "macro %s sets %s %s", m.Name, f.name, f.part)
			default:
				*f.to = f.part
			}
		}
		out = append(out, macroRule{rule: x, family: p.Family})
	}
	return out, m.Name, nil
}
