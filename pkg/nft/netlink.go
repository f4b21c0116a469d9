package nft

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// The nftables library reads neither the verdicts of map elements nor how
// many references a chain has, and gets a single element only by dumping
// its whole set; these are the netlink requests that do, each one round
// trip whatever the number of taps.

// nlReader asks the bridge table's chains and sets.
type nlReader struct {
	c *netlink.Conn
}

func newNLReader() (*nlReader, error) {
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, nil)
	if err != nil {
		return nil, fmt.Errorf("opening netlink: %w", err)
	}
	return &nlReader{c: c}, nil
}

func (r *nlReader) close() { _ = r.c.Close() }

// request sends one nftables message about the bridge table and returns
// the answers; a missing object is ENOENT.
func (r *nlReader) request(msg uint16, flags netlink.HeaderFlags, encode func(*netlink.AttributeEncoder)) ([]netlink.Message, error) {
	ae := netlink.NewAttributeEncoder()
	encode(ae)
	attrs, err := ae.Encode()
	if err != nil {
		return nil, err
	}
	return r.c.Execute(netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | msg), Flags: netlink.Request | flags},
		// struct nfgenmsg: family, version, resource id.
		Data: append([]byte{unix.NFPROTO_BRIDGE, unix.NFNETLINK_V0, 0, 0}, attrs...),
	})
}

// element looks key up in set: whether it is there and, in a verdict
// map, the chain its jump or goto names.
func (r *nlReader) element(set string, key []byte) (chain string, found bool, err error) {
	msgs, err := r.request(unix.NFT_MSG_GETSETELEM, 0, func(ae *netlink.AttributeEncoder) {
		ae.String(unix.NFTA_SET_ELEM_LIST_TABLE, Table)
		ae.String(unix.NFTA_SET_ELEM_LIST_SET, set)
		ae.Nested(unix.NFTA_SET_ELEM_LIST_ELEMENTS, func(ae *netlink.AttributeEncoder) error {
			ae.Nested(unix.NFTA_LIST_ELEM, func(ae *netlink.AttributeEncoder) error {
				ae.Nested(unix.NFTA_SET_ELEM_KEY, func(ae *netlink.AttributeEncoder) error {
					ae.Bytes(unix.NFTA_DATA_VALUE, key)
					return nil
				})
				return nil
			})
			return nil
		})
	})
	if errors.Is(err, unix.ENOENT) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("reading an element of %s: %w", set, err)
	}
	out := map[string]string{}
	for _, m := range msgs {
		if len(m.Data) < 4 {
			continue
		}
		if err := decodeElemList(m.Data[4:], out); err != nil {
			return "", false, fmt.Errorf("reading an element of %s: %w", set, err)
		}
	}
	chain, found = out[string(key)]
	return chain, found, nil
}

// chainUse is the chain's use count: its own rules, and the rules and
// map elements that jump to it.
func (r *nlReader) chainUse(name string) (use uint32, found bool, err error) {
	msgs, err := r.request(unix.NFT_MSG_GETCHAIN, 0, func(ae *netlink.AttributeEncoder) {
		ae.String(unix.NFTA_CHAIN_TABLE, Table)
		ae.String(unix.NFTA_CHAIN_NAME, name)
	})
	if errors.Is(err, unix.ENOENT) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("reading chain %s: %w", name, err)
	}
	for _, m := range msgs {
		if len(m.Data) < 4 {
			continue
		}
		ad, err := netlink.NewAttributeDecoder(m.Data[4:])
		if err != nil {
			return 0, false, err
		}
		ad.ByteOrder = binary.BigEndian
		for ad.Next() {
			if ad.Type() == unix.NFTA_CHAIN_USE {
				return ad.Uint32(), true, nil
			}
		}
		if err := ad.Err(); err != nil {
			return 0, false, fmt.Errorf("reading chain %s: %w", name, err)
		}
	}
	return 0, false, fmt.Errorf("reading chain %s: no use count in the answer", name)
}

// mapVerdicts reads a whole verdict map of the bridge table: each key's
// chain (a jump or goto's target; "" for any other verdict).
func mapVerdicts(set string) (map[string]string, error) {
	r, err := newNLReader()
	if err != nil {
		return nil, err
	}
	defer r.close()
	msgs, err := r.request(unix.NFT_MSG_GETSETELEM, netlink.Dump, func(ae *netlink.AttributeEncoder) {
		ae.String(unix.NFTA_SET_ELEM_LIST_TABLE, Table)
		ae.String(unix.NFTA_SET_ELEM_LIST_SET, set)
	})
	if err != nil {
		return nil, fmt.Errorf("reading map %s: %w", set, err)
	}
	out := map[string]string{}
	for _, m := range msgs {
		if len(m.Data) < 4 {
			continue
		}
		if err := decodeElemList(m.Data[4:], out); err != nil {
			return nil, fmt.Errorf("reading map %s: %w", set, err)
		}
	}
	return out, nil
}
func decodeElemList(b []byte, out map[string]string) error {
	ad, err := netlink.NewAttributeDecoder(b)
	if err != nil {
		return err
	}
	ad.ByteOrder = binary.BigEndian
	for ad.Next() {
		if ad.Type() != unix.NFTA_SET_ELEM_LIST_ELEMENTS {
			continue
		}
		ad.Nested(func(nd *netlink.AttributeDecoder) error {
			for nd.Next() {
				nd.Nested(func(ed *netlink.AttributeDecoder) error {
					key, chain := decodeElem(ed)
					if key != nil {
						out[string(key)] = chain
					}
					return nil
				})
			}
			return nil
		})
	}
	return ad.Err()
}

// decodeElem reads one element's key and its verdict's chain.
func decodeElem(ed *netlink.AttributeDecoder) (key []byte, chain string) {
	for ed.Next() {
		switch ed.Type() {
		case unix.NFTA_SET_ELEM_KEY:
			ed.Nested(func(d *netlink.AttributeDecoder) error {
				for d.Next() {
					if d.Type() == unix.NFTA_DATA_VALUE {
						key = d.Bytes()
					}
				}
				return nil
			})
		case unix.NFTA_SET_ELEM_DATA:
			ed.Nested(func(d *netlink.AttributeDecoder) error {
				for d.Next() {
					if d.Type() != unix.NFTA_DATA_VERDICT {
						continue
					}
					d.Nested(func(v *netlink.AttributeDecoder) error {
						for v.Next() {
							if v.Type() == unix.NFTA_VERDICT_CHAIN {
								chain = v.String()
							}
						}
						return nil
					})
				}
				return nil
			})
		}
	}
	return key, chain
}
