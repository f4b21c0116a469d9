package ruleset

import (
	"strings"

	"github.com/tapfw/tapfw/pkg/model"
)

// Limits of the kernel and of iptables on names.
const (
	MaxChainName = 28
	MaxSetName   = 31
	MaxIfName    = model.MaxIfName
	// MaxComment is the longest comment tapfw writes; the kernel allows 255.
	MaxComment = 255
	// MaxUserSetName leaves room for the longer prefix, "tfw6-s-".
	MaxUserSetName = MaxSetName - len(SetPrefix6) - len("s-")
)

// Limits are the names this backend can render, checked against the
// config before it renders (see model.Limits).
var Limits = model.Limits{
	SetName:     MaxUserSetName,
	GroupName:   MaxGroupName,
	NetworkName: MaxNetworkName,
	ContainerID: MaxContainerID,
}

// Names of the chains that all taps share. Every name tapfw creates starts
// with ChainPrefix or SetPrefix, so nothing of anyone else is ever touched.
const (
	ChainPrefix  = "TFW-"
	SetPrefix    = "tfw-"
	ChainForward = "TFW-FORWARD"
	// ChainRouted is reached from the end of ChainForward, after every
	// bridge's own rules: there a packet routed to a bridge that allows
	// routing meets the IN chain of the tap its destination belongs to.
	// Each bridge has its rules there, an explicit RETURN when it does
	// not allow routing.
	ChainRouted  = "TFW-ROUTED"
	ChainInput   = "TFW-INPUT"
	ChainOutput  = "TFW-OUTPUT"
	ChainHostIn  = "TFW-HOST-IN"
	ChainHostOut = "TFW-HOST-OUT"
	// ChainUnmanagedIn and ChainUnmanagedOut get the packets of bridge
	// ports that no trie leaf matched: a fail-closed bridge drops those of
	// ports named like its taps.
	ChainUnmanagedIn  = "TFW-UNMANAGED-IN"
	ChainUnmanagedOut = "TFW-UNMANAGED-OUT"
	SetHost           = "tfw-host"
	SetCluster        = "tfw-cluster"

	// ChainGroupAllow is where a group's OUT chain sends what it allows:
	// it sets GroupMark and returns to the tap's OUT chain, which sees
	// the mark and sends the packet to ChainGroupAllowed; that clears
	// the mark and returns from the tap's OUT chain: allowed, and the
	// receiving tap's IN chain still runs.
	ChainGroupAllow   = "TFW-GROUP-ALLOW"
	ChainGroupAllowed = "TFW-GROUP-ALLOWED"
	// GroupMark is the packet mark bit of a group's "allowed" answer;
	// it is set and cleared within one tap's OUT chain.
	GroupMark    = "0x10000000/0x10000000"
	groupMarkOff = "0x0/0x10000000"

	groupChainPrefix  = "TFW-G-"
	tapChainPrefix    = "TFW-T-"
	bridgeChainPrefix = "TFW-B-"
	tapSetPrefix      = "tfw-t-"
	userSetPrefix     = "tfw-s-"
)

// Owners that are not interfaces. Interface names cannot hold '@', so these
// never collide with a tap or bridge name.
const (
	OwnerHooks = "@tapfw"
	OwnerHost  = "@host"
)

// TapIn is the chain for traffic to the VM behind tap (allow = ACCEPT).
func TapIn(tap string) string { return tapChainPrefix + tap + "-IN" }

// TapOut is the chain for traffic from the VM behind tap (allow = RETURN).
func TapOut(tap string) string { return tapChainPrefix + tap + "-OUT" }

// GroupChain is the shared chain of security group name for direction dir
// (in or out).
func GroupChain(name, dir string) string {
	return groupChainPrefix + name + "-" + strings.ToUpper(dir)
}

// IsGroupChain reports whether chain is one of a security group's chains
// and returns the group's name.
func IsGroupChain(chain string) (name string, ok bool) {
	rest, ok := strings.CutPrefix(chain, groupChainPrefix)
	if !ok {
		return "", false
	}
	for _, suf := range []string{"-IN", "-OUT"} {
		if n, ok := strings.CutSuffix(rest, suf); ok && n != "" {
			return n, true
		}
	}
	return "", false
}

// GroupOwner is the owner of a group's rules in comments and the name in
// its log prefixes: "+web".
func GroupOwner(name string) string { return "+" + name }

// MaxGroupName keeps a group's log prefix ("tfw:+NAME:out:r100 ") within
// the kernel's 29 characters, and its chain name short.
const MaxGroupName = 14

// BridgeChain is the per-bridge chain that FORWARD sends bridged traffic to.
func BridgeChain(bridge string) string { return bridgeChainPrefix + bridge }

// TapSet is the ipset holding the tap's own addresses.
func TapSet(tap string) string { return tapSetPrefix + tap }

// UserSet is the kernel name of the named ipset the config calls name.
func UserSet(name string) string { return userSetPrefix + name }

// IsTapChain reports whether chain is one of a tap's own chains and returns
// the tap's name.
func IsTapChain(chain string) (tap string, ok bool) {
	if len(chain) <= len(tapChainPrefix) || chain[:len(tapChainPrefix)] != tapChainPrefix {
		return "", false
	}
	rest := chain[len(tapChainPrefix):]
	for _, suf := range []string{"-IN", "-OUT"} {
		if len(rest) > len(suf) && rest[len(rest)-len(suf):] == suf {
			return rest[:len(rest)-len(suf)], true
		}
	}
	return "", false
}

// Longest network name and container ID tapfw accepts: with a tap name
// they fit the kernel's 255-character rule comment.
const (
	MaxNetworkName = 64
	MaxContainerID = 112
)
