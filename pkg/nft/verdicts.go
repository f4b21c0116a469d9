package nft

import (
	"encoding/binary"
	"fmt"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// mapVerdicts reads a verdict map of the bridge table: each key's chain
// (a jump or goto's target; "" for any other verdict). The nftables
// library reads map elements but not their verdicts, so this is its own
// netlink dump: NFT_MSG_GETSETELEM, whose elements carry their verdict in
// NFTA_SET_ELEM_DATA as a nested NFTA_DATA_VERDICT.
func mapVerdicts(set string) (map[string]string, error) {
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, nil)
	if err != nil {
		return nil, fmt.Errorf("opening netlink: %w", err)
	}
	defer c.Close()
	ae := netlink.NewAttributeEncoder()
	ae.String(unix.NFTA_SET_ELEM_LIST_TABLE, Table)
	ae.String(unix.NFTA_SET_ELEM_LIST_SET, set)
	attrs, err := ae.Encode()
	if err != nil {
		return nil, err
	}
	req := netlink.Message{
		Header: netlink.Header{
			Type:  netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_GETSETELEM),
			Flags: netlink.Request | netlink.Dump,
		},
		// struct nfgenmsg: family, version, resource id.
		Data: append([]byte{unix.NFPROTO_BRIDGE, unix.NFNETLINK_V0, 0, 0}, attrs...),
	}
	msgs, err := c.Execute(req)
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
