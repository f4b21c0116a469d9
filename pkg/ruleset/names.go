// Package ruleset turns a validated tap description into the chains, rules
// and ipsets tapfw wants in the kernel. It is pure: no I/O, only data.
package ruleset

import (
	"fmt"
	"regexp"
	"strings"
)

// Limits of the kernel and of iptables on names.
const (
	MaxChainName = 28
	MaxSetName   = 31
	MaxIfName    = 15
	// MaxComment is the longest comment tapfw writes; the kernel allows 255.
	MaxComment = 255
	// MaxUserSetName leaves room for the longer prefix, "tfw6-s-".
	MaxUserSetName = MaxSetName - len(SetPrefix6) - len("s-")
)

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

// GroupOwner is the owner of a group's rules in comments and the name in
// its log prefixes: "+web".
func GroupOwner(name string) string { return "+" + name }

// MaxGroupName keeps a group's log prefix ("tfw:+NAME:out:r100 ") within
// the kernel's 29 characters, and its chain name short.
const MaxGroupName = 14

// ValidateGroupName checks a security group's name: like a set name, at
// most MaxGroupName characters.
func ValidateGroupName(name string) error {
	if name == "" {
		return fmt.Errorf("is empty")
	}
	if len(name) > MaxGroupName {
		return fmt.Errorf("%q is longer than %d characters", name, MaxGroupName)
	}
	if !setNameRE.MatchString(name) {
		return fmt.Errorf("%q may hold only letters, digits, '_', '.' and '-'", name)
	}
	return nil
}

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

var (
	ifNameRE  = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]*$`)
	setNameRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]*$`)
	// IDs that CNI allows for container IDs and network names.
	idRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)
	// Comments: printable text without quotes, backslashes or anything a
	// restore file would read as syntax.
	commentRE = regexp.MustCompile(`^[A-Za-z0-9 _.,:;=/@()#+-]*$`)
)

// ValidateIfName checks an interface name as tapfw accepts it: 1 to 15
// characters of letters, digits, '_', '.', '-', not starting with '.' or '-'.
// Linux allows more, but '+' is an iptables wildcard and spaces, quotes or
// '/' have no place in a rule.
func ValidateIfName(name string) error {
	if name == "" {
		return fmt.Errorf("is empty")
	}
	if len(name) > MaxIfName {
		return fmt.Errorf("%q is longer than %d characters", name, MaxIfName)
	}
	if !ifNameRE.MatchString(name) {
		return fmt.Errorf("%q may hold only letters, digits, '_', '.' and '-' and must start with a letter, digit or '_'", name)
	}
	return nil
}

// ValidateIfPrefix checks an interface name prefix, which is matched as
// "prefix+": an interface name of at most MaxIfName-1 characters.
func ValidateIfPrefix(prefix string) error {
	if err := ValidateIfName(prefix); err != nil {
		return err
	}
	if len(prefix) > MaxIfName-1 {
		return fmt.Errorf("%q is longer than %d characters", prefix, MaxIfName-1)
	}
	return nil
}

// ValidateSetName checks the name of a named ipset as the config gives it.
func ValidateSetName(name string) error {
	if name == "" {
		return fmt.Errorf("is empty")
	}
	if len(name) > MaxUserSetName {
		return fmt.Errorf("%q is longer than %d characters", name, MaxUserSetName)
	}
	if !setNameRE.MatchString(name) {
		return fmt.Errorf("%q may hold only letters, digits, '_', '.' and '-'", name)
	}
	return nil
}

// Longest network name and container ID tapfw accepts: with a tap name
// they fit the kernel's 255-character rule comment.
const (
	MaxNetworkName = 64
	MaxContainerID = 112
)

// ValidateID checks a container ID or network name: letters, digits, '_',
// '.', '-', at most max characters.
func ValidateID(id string, max int) error {
	if len(id) > max {
		return fmt.Errorf("%q is longer than %d characters", id, max)
	}
	if !idRE.MatchString(id) {
		return fmt.Errorf("%q may hold only letters, digits, '_', '.' and '-' and must start with a letter or digit", id)
	}
	return nil
}

// ValidateComment checks a user comment: at most 128 characters of letters,
// digits, spaces and _ . , : ; = / @ ( ) # + -.
func ValidateComment(c string) error {
	if len(c) > 128 {
		return fmt.Errorf("is longer than 128 characters")
	}
	if !commentRE.MatchString(c) {
		return fmt.Errorf("%q may hold only letters, digits, spaces and _ . , : ; = / @ ( ) # + -", c)
	}
	return nil
}
