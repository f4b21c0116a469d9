package report

import (
	"bytes"
	"os"
	"testing"
)

func TestPercentile(t *testing.T) {
	var s []Sample
	for i := 1; i <= 30; i++ {
		s = append(s, Sample{WallMs: float64(i)})
	}
	st := Summarize(s)
	if st.P50 != 15 || st.P95 != 29 || st.Min != 1 || st.Max != 30 {
		t.Errorf("p50 %v p95 %v min %v max %v", st.P50, st.P95, st.Min, st.Max)
	}
}

// The markdown of a stored run is exactly testdata/quick.md (what
// tapfw-bench -from-json testdata/quick.json prints): a change to the
// report's tables shows in that file's diff.
func TestMarkdownOfAStoredRun(t *testing.T) {
	rep, err := ReadJSON("testdata/quick.json")
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile("testdata/quick.md")
	if err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	WriteMarkdown(&got, rep)
	if !bytes.Equal(got.Bytes(), want) {
		t.Errorf("markdown differs from testdata/quick.md:\n%s", got.String())
	}
}
