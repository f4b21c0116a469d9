package explain

// Fields splits a rule spec as iptables-save prints it into its words,
// unquoted: what other readers of installed rules (tapfw list, show,
// metrics) use, so that the spec is parsed one way only.
func Fields(spec string) ([]string, error) {
	toks, err := tokenize(spec)
	if err != nil {
		return nil, err
	}
	out := make([]string, len(toks))
	for i, t := range toks {
		out[i] = t.val
	}
	return out, nil
}
