// Package netfilter applies tapfw's iptables plans (pkg/ruleset) to the
// kernel and compares them with what is installed: rules through one
// iptables-restore --noflush transaction per table and call, ipsets over
// netlink, the layer-2 checks as nftables set elements over netlink, all
// under a host-wide lock.
//
// # The model
//
// Firewall keeps no state between calls: the kernel's netfilter state is
// the state. Each call reads only what its tap's plan touches (the chains
// on its trie paths, its sets), works out the difference (PlanChanges:
// a Changes, set operations and a restore file) and applies it. Because
// ruleset renders rules exactly as iptables-save prints them and every
// comment ends in a hash of its rule, installed and wanted rules compare
// as text: a second identical ADD finds nothing to change and runs no
// restore at all; CHECK names the exact chain and rule that differ
// (Verify, DriftError).
//
// # The kernel behind narrow interfaces
//
// Firewall reaches the kernel only through these interfaces, each
// documented where it is declared with what a repeated call does:
//
//   - Tables: save and restore one filter table (Exec runs iptables-nft
//     or iptables-legacy, and ip6tables; Reader gives the cheapest way to
//     read chains: NFTReader over netlink for iptables-nft, TableReader on
//     iptables-save for legacy).
//   - Sets: list, create, fill, swap and destroy ipsets (NetlinkSets).
//   - Bridge: the layer-2 checks of table bridge tapfw (NFT).
//   - Locker: the host-wide lock (FileLock, a flock with a timeout;
//     ErrBusy when it is held too long).
//
// fake.go has an in-memory implementation of each that can fail on
// demand (FakeTables, FakeSets, FakeBridge, NoLock): tests of the whole
// Firewall run without a kernel, and their failure paths get tested too.
// A second backend either implements these for another table layout or,
// where its model differs, sits beside Firewall behind the plugin's own
// backend interface.
//
// # How a call works
//
// Apply(plan), under the lock: for IPv4, then IPv6 (Plan.V6, Tables6),
// read the chains and sets of the plan; create and fill new sets; apply
// the restore file (hooks at the top of the built-in chains, owned chains
// exactly, shared chains when they differ, members per owner, trie edges,
// tails kept last); swap changed sets in (built aside under TempSet) and
// destroy the sets no rule needs any more; then the layer-2 elements. If a
// restore fails, the sets made or swapped for it are put back. A call
// killed between any two steps (FaultSteps) leaves a state the next call
// completes: the tests kill the plugin at every step and compare the
// kernel byte for byte with an uninterrupted run. Remove, GC and
// RemoveGone find a tap's rules by the owner in their comments; the last
// removal with no host firewall removes every shared chain, hook and set
// (cleanUp), so nothing of tapfw's is left. ParseSave is the one reader
// of iptables-save's format.
package netfilter
