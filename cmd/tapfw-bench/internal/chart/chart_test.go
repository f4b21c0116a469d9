package chart

import (
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tapfw/tapfw/cmd/tapfw-bench/internal/report"
)

func TestWriteAStoredRun(t *testing.T) {
	rep, err := report.ReadJSON("../report/testdata/quick.json")
	if err != nil {
		t.Fatal(err)
	}
	both, err := report.ReadJSON("../report/testdata/both.json")
	if err != nil {
		t.Fatal(err)
	}
	for name, r := range map[string]*report.Report{"quick": rep, "both": both, "empty": {}} {
		path := filepath.Join(t.TempDir(), name+".png")
		if err := Write(path, r); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		img, err := png.Decode(f)
		f.Close()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if b := img.Bounds(); b.Dx() != widthPx || b.Dy() != heightPx {
			t.Errorf("%s: %v, want %dx%d", name, b, widthPx, heightPx)
		}
	}
}

func TestYTicks(t *testing.T) {
	var labels []string
	for _, tk := range yTicks(10, 1000) {
		labels = append(labels, tk.Label)
	}
	if got := strings.Join(labels, ","); got != "10,20,50,100,200,500,1K" {
		t.Errorf("two decades: %s", got)
	}
	labels = nil
	for _, tk := range yTicks(1e3, 1e6) {
		labels = append(labels, tk.Label)
	}
	if got := strings.Join(labels, ","); got != "1K,,,10K,,,100K,,,1M" {
		t.Errorf("three decades: %s", got)
	}
}

func TestLegendAvoidsTheLines(t *testing.T) {
	// Lines along the top and the bottom left: the legend goes bottom right.
	p := panel{series: []series{
		{name: "a", xs: []float64{1, 100}, ys: []float64{900, 900}},
		{name: "b", xs: []float64{1, 10}, ys: []float64{11, 11}},
	}, xticks: []float64{1, 100}}
	pl := p.plot()
	if top, left := legendCorner(pl, p.series, 2); top || left {
		t.Errorf("legend top %v left %v, want bottom right", top, left)
	}
}
