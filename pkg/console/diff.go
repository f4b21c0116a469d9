package console

import (
	"slices"
	"strings"
)

// maxDiffLines bounds the files diff compares line by line (its table
// is the product of their lengths); longer ones show whole.
const maxDiffLines = 4000

// diff is the lines of b that differ from a, as "- old" and "+ new" with
// two lines of context around each change ("..." between): what a
// preview shows of the file it would write.
func diff(a, b string) []string {
	x, y := strings.Split(strings.TrimSuffix(a, "\n"), "\n"), strings.Split(strings.TrimSuffix(b, "\n"), "\n")
	if len(x) > maxDiffLines || len(y) > maxDiffLines {
		return nil
	}
	// lcs[i][j] is the longest common subsequence of x[i:] and y[j:].
	lcs := make([][]int, len(x)+1)
	for i := range lcs {
		lcs[i] = make([]int, len(y)+1)
	}
	for i := len(x) - 1; i >= 0; i-- {
		for j := len(y) - 1; j >= 0; j-- {
			if x[i] == y[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	var all []string
	i, j := 0, 0
	for i < len(x) || j < len(y) {
		switch {
		case i < len(x) && j < len(y) && x[i] == y[j]:
			all, i, j = append(all, "  "+x[i]), i+1, j+1
		case i < len(x) && (j == len(y) || lcs[i+1][j] >= lcs[i][j+1]):
			all, i = append(all, "- "+x[i]), i+1
		default:
			all, j = append(all, "+ "+y[j]), j+1
		}
	}
	return context(all, 2)
}

// context keeps the changed lines and n lines around each.
func context(all []string, n int) []string {
	keep := make([]bool, len(all))
	for k, l := range all {
		if !strings.HasPrefix(l, "  ") {
			for m := max(0, k-n); m <= min(len(all)-1, k+n); m++ {
				keep[m] = true
			}
		}
	}
	var out []string
	if !slices.Contains(keep, true) {
		return nil
	}
	for k, l := range all {
		switch {
		case keep[k]:
			out = append(out, l)
		case k == 0 || keep[k-1]:
			out = append(out, "  ...")
		}
	}
	return out
}
