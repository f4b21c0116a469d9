// Package config reads a tapfw network configuration from CNI stdin,
// validates every field, and resolves which tap it is about.
package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strconv"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/tapfw/tapfw/pkg/model"
)

// NetConf is the plugin's configuration as it arrives on stdin. Field names
// are the JSON names the README documents; unknown fields are an error.
type NetConf struct {
	types.PluginConf

	Bridge             string               `json:"bridge,omitempty"`
	Tap                string               `json:"tap,omitempty"`
	MAC                string               `json:"mac,omitempty"`
	IPs                []string             `json:"ips,omitempty"`
	MACFilter          *bool                `json:"macFilter,omitempty"`
	IPFilter           *bool                `json:"ipFilter,omitempty"`
	DHCP               *bool                `json:"dhcp,omitempty"`
	DHCPServers        []string             `json:"dhcpServers,omitempty"`
	NDP                *bool                `json:"ndp,omitempty"`
	IGMP               *bool                `json:"igmp,omitempty"`
	RAdv               bool                 `json:"radv,omitempty"`
	L2Protocols        []string             `json:"l2Protocols,omitempty"`
	AllowedPairs       []AllowedPair        `json:"allowedPairs,omitempty"`
	Helpers            []string             `json:"helpers,omitempty"`
	PolicyIn           string               `json:"policyIn,omitempty"`
	PolicyOut          string               `json:"policyOut,omitempty"`
	LogDropped         *bool                `json:"logDropped,omitempty"`
	LogLevelIn         string               `json:"logLevelIn,omitempty"`
	LogLevelOut        string               `json:"logLevelOut,omitempty"`
	LogTarget          string               `json:"logTarget,omitempty"`
	LogLimit           string               `json:"logLimit,omitempty"`
	LogPrefix          string               `json:"logPrefix,omitempty"`
	NFLogGroup         *int                 `json:"nflogGroup,omitempty"`
	AllowBridgeRouting bool                 `json:"allowBridgeRouting,omitempty"`
	IsolatePorts       bool                 `json:"isolatePorts,omitempty"`
	KeepEstablished    bool                 `json:"keepEstablished,omitempty"`
	FailClosed         *bool                `json:"failClosed,omitempty"`
	ManagedPrefix      string               `json:"managedPrefix,omitempty"`
	Rules              RuleLists            `json:"rules,omitempty"`
	IPSets             map[string][]string  `json:"ipsets,omitempty"`
	Aliases            map[string]string    `json:"aliases,omitempty"`
	SecurityGroups     map[string]RuleLists `json:"securityGroups,omitempty"`
	Groups             []string             `json:"groups,omitempty"`
	Host               *Host                `json:"host,omitempty"`
	// Backend is the firewall backend: nftables, iptables or auto
	// (TAPFW_BACKEND wins over it).
	Backend string `json:"backend,omitempty"`
	// Marks are the packet mark bits the nftables backend uses (five
	// bits, "0x1f000000" by default; TAPFW_MARKS wins over it).
	Marks string `json:"marks,omitempty"`

	// Attachments is the name an earlier CNI spec used for
	// cni.dev/valid-attachments; libcni still sends both on GC.
	Attachments []types.GCAttachment `json:"cni.dev/attachments,omitempty"`

	RuntimeConfig *RuntimeConfig `json:"runtimeConfig,omitempty"`
	// Args is the CNI "args" convention. tapfw reads args.cni.tapfwRules
	// (Multus puts a network selection's "cni-args" there) and ignores the
	// rest, as runtimes may pass args to every plugin of a list.
	Args *ArgsConf `json:"args,omitempty"`
}

// RuleLists holds rules for each direction, as seen from the VM (or host):
// "in" is traffic to it, "out" traffic from it.
type RuleLists struct {
	In  []Rule `json:"in,omitempty"`
	Out []Rule `json:"out,omitempty"`
}

// Rule is one firewall rule in the config's own words.
type Rule struct {
	Action   string `json:"action"`
	Proto    string `json:"proto,omitempty"`
	Source   string `json:"source,omitempty"`
	Dest     string `json:"dest,omitempty"`
	SPort    string `json:"sport,omitempty"`
	DPort    string `json:"dport,omitempty"`
	ICMPType string `json:"icmpType,omitempty"`
	// Log is true, false, or the syslog level of the rule's log lines
	// ("info"; "nolog" is false), as Proxmox VE's log option.
	Log     LogOption `json:"log,omitempty"`
	Comment string    `json:"comment,omitempty"`
	// Macro stands for a service's protocols and ports ("SSH"); the
	// rule is one rule per part of it, each with this rule's action,
	// addresses, log and comment.
	Macro string `json:"macro,omitempty"`
	// Enable false keeps the rule in the config (checked all the
	// same) without installing it.
	Enable *bool `json:"enable,omitempty"`
	// Iface, in host rules, is the interface the packet comes in by
	// (in) or goes out by (out).
	Iface string `json:"iface,omitempty"`
	// Group makes the rule a check of that security group at its place
	// in the list; the rule has no other field but comment and enable.
	Group string `json:"group,omitempty"`
}

// Host is the host firewall section.
type Host struct {
	IPs          []string  `json:"ips,omitempty"`
	ClusterHosts []string  `json:"clusterHosts,omitempty"`
	Rules        RuleLists `json:"rules,omitempty"`
	// LogLevelIn and LogLevelOut are the levels the host's policies log
	// at ("nolog": none); without them, logDropped decides.
	LogLevelIn  string `json:"logLevelIn,omitempty"`
	LogLevelOut string `json:"logLevelOut,omitempty"`
	// AllLocal filters traffic to and from every local address of the
	// host but loopback's (as Proxmox VE does), not only ips.
	AllLocal bool `json:"allLocal,omitempty"`
	// ManagementPorts adds ports ("8006", "tcp/5900:5999", "udp/161")
	// to tcp/22, which sources in the management set reach before any
	// host rule.
	ManagementPorts []string `json:"managementPorts,omitempty"`
	// The protections, with Proxmox VE's defaults: NoSmurfs (true)
	// drops IPv4 packets from broadcast and multicast sources, TCPFlags
	// (false) impossible TCP flag combinations; AllowInvalid (false)
	// keeps the packets conntrack calls INVALID.
	NoSmurfs     *bool `json:"noSmurfs,omitempty"`
	TCPFlags     bool  `json:"tcpFlags,omitempty"`
	AllowInvalid bool  `json:"allowInvalid,omitempty"`
	// SynFlood limits each source's TCP SYNs to the host: SynFloodRate
	// a second (200), bursts of SynFloodBurst (1000).
	SynFlood      bool `json:"synFlood,omitempty"`
	SynFloodRate  int  `json:"synFloodRate,omitempty"`
	SynFloodBurst int  `json:"synFloodBurst,omitempty"`
}

// LogOption is a rule's log field: JSON true or false, or a level's
// name. It holds "true", "false" or the name, checked when the rule is.
type LogOption string

// UnmarshalJSON reads true, false or a string; the key checker has
// refused any other JSON type before.
func (l *LogOption) UnmarshalJSON(data []byte) error {
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		return err
	}
	switch v := v.(type) {
	case bool:
		*l = LogOption(strconv.FormatBool(v))
	case string:
		*l = LogOption(v)
	case nil:
		*l = ""
	default:
		return &json.UnmarshalTypeError{Value: "number", Type: logOptionType}
	}
	return nil
}

// MarshalJSON writes the option back as it was read.
func (l LogOption) MarshalJSON() ([]byte, error) {
	switch l {
	case "", "false":
		return []byte("false"), nil
	case "true":
		return []byte("true"), nil
	}
	return json.Marshal(string(l))
}

var logOptionType = reflect.TypeOf(LogOption(""))

// ArgsConf is the "args" field; only args.cni.tapfwRules is read.
type ArgsConf struct {
	CNI struct {
		Rules *RuleLists `json:"tapfwRules,omitempty"`
	} `json:"cni"`
}

// UnmarshalJSON reads args leniently: other keys belong to other plugins.
// The keys "cni" and "tapfwRules" are matched exactly (a "CNI" is another
// plugin's), may not be given twice, and args.cni.tapfwRules is read as
// strictly as the config's rules. A null tapfwRules is no rules override.
func (a *ArgsConf) UnmarshalJSON(data []byte) error {
	if err := checkSyntax(data); err != nil {
		return &Error{Field: "args", Code: types.ErrDecodingFailure, Err: err}
	}
	if err := checkKeys(data, argsConfType, "args", true); err != nil {
		return err
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return decodeErr(err, "args")
	}
	var cni map[string]json.RawMessage
	if c, ok := raw["cni"]; ok {
		if err := json.Unmarshal(c, &cni); err != nil {
			return decodeErr(err, "args.cni")
		}
	}
	a.CNI.Rules = nil
	if r, ok := cni["tapfwRules"]; ok && string(r) != "null" {
		rules := &RuleLists{}
		if err := decodeStrict(r, rules, "args.cni.tapfwRules", false); err != nil {
			var e *Error
			if !errors.As(err, &e) {
				err = &Error{Field: "args.cni.tapfwRules", Code: types.ErrDecodingFailure, Err: err}
			}
			return err
		}
		a.CNI.Rules = rules
	}
	return nil
}

// RuntimeConfig carries the capabilities tapfw reads: "mac" and "ips".
type RuntimeConfig struct {
	MAC string   `json:"mac,omitempty"`
	IPs []string `json:"ips,omitempty"`
	// Rules, when the runtime passes them (capability "tapfwRules"),
	// replace the config's rules.
	Rules *RuleLists `json:"tapfwRules,omitempty"`
}

// Limits on sizes, so a config cannot make the kernel do unbounded work.
const (
	MaxRules      = 999 // rule numbers fit the 29-character LOG prefix
	MaxIPs        = 256
	MaxSets       = 256
	MaxSetEntries = 65536
	MaxConfigSize = 4 << 20
)

// Error is a validation error naming the field it is about.
//
// Code is the CNI error code that fits it, one of the well-known codes of
// the CNI package's types: ErrUnsupportedField (2) for a key that is no
// field of the config (exactly, case included) or a key given twice in one
// object; ErrInvalidEnvironmentVariables (4) for a bad value of CNI_ARGS,
// CNI_IFNAME or CNI_CONTAINERID (a missing CNI_IFNAME included);
// ErrDecodingFailure (6) for a value of the wrong JSON type. Zero means an
// invalid network config (ErrInvalidNetworkConfig, 7). Malformed JSON on
// stdin is no *Error but an error wrapping ErrDecode.
type Error struct {
	Field string
	Code  uint
	Err   error
}

func (e *Error) Error() string {
	if e.Field == "" {
		return e.Err.Error()
	}
	return fmt.Sprintf("%s: %v", e.Field, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// ErrDecode marks input that is not well-formed JSON.
var ErrDecode = errors.New("cannot decode config")

func fieldErr(field string, format string, a ...any) error {
	return &Error{Field: field, Err: fmt.Errorf(format, a...)}
}

// envErr marks err, a *Error, as one about an environment variable.
func envErr(err error) error {
	var e *Error
	if errors.As(err, &e) {
		e.Code = types.ErrInvalidEnvironmentVariables
	}
	return err
}

// Parse decodes stdin strictly: keys must be the fields' JSON names
// exactly (case included) and given once per object; unknown keys,
// trailing data and wrong types are errors. It does not validate values;
// Resolve does. Malformed JSON or trailing data is an error wrapping
// ErrDecode; anything else is a *Error naming the key's path, with Code
// ErrUnsupportedField or ErrDecodingFailure.
func Parse(data []byte) (*NetConf, error) {
	if len(data) > MaxConfigSize {
		return nil, fieldErr("", "config is larger than %d bytes", MaxConfigSize)
	}
	conf := &NetConf{}
	if err := decodeStrict(data, conf, "", true); err != nil {
		var e *Error
		if errors.As(err, &e) {
			return nil, e
		}
		return nil, fmt.Errorf("%w: %v", ErrDecode, err)
	}
	switch conf.Backend {
	case "", "auto", "nftables", "iptables":
	default:
		return nil, fieldErr("backend", "%q is not nftables, iptables or auto", conf.Backend)
	}
	if conf.Marks != "" {
		if _, err := model.ParseMarkMask(conf.Marks); err != nil {
			return nil, fieldErr("marks", "%v", err)
		}
	}
	return conf, nil
}
