package console

import (
	"slices"
	"strings"
)

// maxDiffCells bounds the table diff fills: the product of the lengths
// of the two files' middles (what lies between their common first and
// last lines), 16 MB at most. An edit from the console changes one part
// of the file, so its middle is small; a larger change is not shown.
const maxDiffCells = 4_000_000

// diffTooLarge is diff's one line for a change it does not show.
const diffTooLarge = "  (the change is too large to show line by line)"

// diff is the lines of b that differ from a, as "- old" and "+ new" with
// two lines of context around each change ("..." between): what a
// preview shows of the file it would write. It is empty when the files
// are the same.
func diff(a, b string) []string {
	x, y := strings.Split(strings.TrimSuffix(a, "\n"), "\n"), strings.Split(strings.TrimSuffix(b, "\n"), "\n")
	pre := 0
	for pre < len(x) && pre < len(y) && x[pre] == y[pre] {
		pre++
	}
	suf := 0
	for suf < len(x)-pre && suf < len(y)-pre && x[len(x)-1-suf] == y[len(y)-1-suf] {
		suf++
	}
	mx, my := x[pre:len(x)-suf], y[pre:len(y)-suf]
	if len(mx)*len(my) > maxDiffCells {
		return []string{diffTooLarge}
	}
	all := make([]string, 0, len(x)+len(my))
	for _, l := range x[:pre] {
		all = append(all, "  "+l)
	}
	all = append(all, middle(mx, my)...)
	for _, l := range x[len(x)-suf:] {
		all = append(all, "  "+l)
	}
	return context(all, 2)
}

// middle is the line diff of x and y by their longest common
// subsequence, deletions before insertions.
func middle(x, y []string) []string {
	// lcs[i][j] is the longest common subsequence of x[i:] and y[j:].
	lcs := make([][]int32, len(x)+1)
	for i := range lcs {
		lcs[i] = make([]int32, len(y)+1)
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
	var out []string
	i, j := 0, 0
	for i < len(x) || j < len(y) {
		switch {
		case i < len(x) && j < len(y) && x[i] == y[j]:
			out, i, j = append(out, "  "+x[i]), i+1, j+1
		case i < len(x) && (j == len(y) || lcs[i+1][j] >= lcs[i][j+1]):
			out, i = append(out, "- "+x[i]), i+1
		default:
			out, j = append(out, "+ "+y[j]), j+1
		}
	}
	return out
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
	if !slices.Contains(keep, true) {
		return nil
	}
	var out []string
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
