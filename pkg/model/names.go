package model

import (
	"fmt"
	"math/bits"
	"regexp"
	"strconv"
)

// MaxIfName is the longest interface name the kernel accepts (IFNAMSIZ
// less its NUL).
const MaxIfName = 15

// MaxComment is the longest comment a user rule may carry.
const MaxComment = 128

// Limits are the lengths of names one backend can render: each backend
// has its own (ruleset.Limits for iptables), and the config is checked
// against the limits of the backend that will render it, so that an ADD
// fails with the config's field before it reaches the kernel.
type Limits struct {
	// SetName is the longest name of a named set.
	SetName int
	// GroupName is the longest name of a security group.
	GroupName int
	// NetworkName and ContainerID are the longest network name and
	// container ID, which the backend records with the tap.
	NetworkName, ContainerID int
}

// FieldError is a value a backend cannot render, naming the config's
// field when it knows it; Env marks a value from the CNI environment (CNI_CONTAINERID),
// which a CNI caller reports with its own error code.
type FieldError struct {
	Field string
	Env   bool
	Err   error
}

func (e *FieldError) Error() string {
	if e.Field == "" {
		return e.Err.Error()
	}
	return e.Field + ": " + e.Err.Error()
}

func (e *FieldError) Unwrap() error { return e.Err }

var (
	ifNameRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]*$`)
	nameRE   = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]*$`)
	// IDs that CNI allows for container IDs and network names.
	idRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)
	// Comments: printable text without quotes, backslashes or anything a
	// rule's text form would read as syntax.
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

// ValidateIfPrefix checks an interface name prefix, which matches every
// longer name that starts with it: an interface name of at most
// MaxIfName-1 characters.
func ValidateIfPrefix(prefix string) error {
	if err := ValidateIfName(prefix); err != nil {
		return err
	}
	if len(prefix) > MaxIfName-1 {
		return fmt.Errorf("%q is longer than %d characters", prefix, MaxIfName-1)
	}
	return nil
}

// ValidateName checks the name of a named set or security group: letters,
// digits, '_', '.' and '-', at most max characters (0: of any length).
func ValidateName(name string, max int) error {
	if name == "" {
		return fmt.Errorf("is empty")
	}
	if max > 0 && len(name) > max {
		return fmt.Errorf("%q is longer than %d characters", name, max)
	}
	if !nameRE.MatchString(name) {
		return fmt.Errorf("%q may hold only letters, digits, '_', '.' and '-'", name)
	}
	return nil
}

// ValidateID checks a container ID or network name: letters, digits, '_',
// '.', '-', at most max characters (0: of any length).
func ValidateID(id string, max int) error {
	if max > 0 && len(id) > max {
		return fmt.Errorf("%q is longer than %d characters", id, max)
	}
	if !idRE.MatchString(id) {
		return fmt.Errorf("%q may hold only letters, digits, '_', '.' and '-' and must start with a letter or digit", id)
	}
	return nil
}

// ValidateComment checks a user comment: at most MaxComment characters of
// letters, digits, spaces and _ . , : ; = / @ ( ) # + -.
func ValidateComment(c string) error {
	if len(c) > MaxComment {
		return fmt.Errorf("is longer than %d characters", MaxComment)
	}
	if !commentRE.MatchString(c) {
		return fmt.Errorf("%q may hold only letters, digits, spaces and _ . , : ; = / @ ( ) # + -", c)
	}
	return nil
}

// MarkBits is how many packet mark bits the nftables backend borrows.
const MarkBits = 5

// ParseMarkMask reads the mark bits a backend may use: a number (0x for
// hex) with exactly MarkBits bits set.
func ParseMarkMask(s string) (uint32, error) {
	v, err := strconv.ParseUint(s, 0, 32)
	if err != nil {
		return 0, fmt.Errorf("%q is not a 32-bit number", s)
	}
	if n := bits.OnesCount32(uint32(v)); n != MarkBits {
		return 0, fmt.Errorf("%q has %d bits set, want %d", s, n, MarkBits)
	}
	return uint32(v), nil
}
