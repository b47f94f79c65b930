// Package plot draws the load generator's time series as PNG files: rates
// over time and latency over time, one image each, so a run can be judged
// at a glance (a flat line is a steady state, a sawtooth is a stall, a
// falling reply rate under a flat offered rate is overload).
package plot

import (
	"fmt"
	"image/color"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"

	"github.com/pinhole-sip/pinhole/bench/load"
)

// Size of every image.
const (
	width  = 10 * vg.Inch
	height = 4 * vg.Inch
)

type series struct {
	name  string
	color color.Color
	value func(load.Sample) float64
}

// Rate writes the per-second message and action rates of r to path.
func Rate(r *load.Result, path string) error {
	return draw(r, path, fmt.Sprintf("%s: rates (%d devices, offered %.0f actions/s)", r.Scenario, r.Devices, r.Rate), "per second", []series{
		{"sent msgs", color.RGBA{31, 119, 180, 255}, func(s load.Sample) float64 { return float64(s.Sent) }},
		{"received msgs", color.RGBA{255, 127, 14, 255}, func(s load.Sample) float64 { return float64(s.Recv) }},
		{"final 2xx", color.RGBA{44, 160, 44, 255}, func(s load.Sample) float64 { return float64(s.OK) }},
		{"failed + timeouts", color.RGBA{214, 39, 40, 255}, func(s load.Sample) float64 { return float64(s.Failed + s.Timeouts) }},
	})
}

// Latency writes the per-second median and 99th percentile of final
// response latency of r to path.
func Latency(r *load.Result, path string) error {
	return draw(r, path, fmt.Sprintf("%s: latency of final responses", r.Scenario), "milliseconds", []series{
		{"p50", color.RGBA{31, 119, 180, 255}, func(s load.Sample) float64 { return float64(s.P50) / 1000 }},
		{"p99", color.RGBA{214, 39, 40, 255}, func(s load.Sample) float64 { return float64(s.P99) / 1000 }},
	})
}

func draw(r *load.Result, path, title, ylabel string, ss []series) error {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "seconds"
	p.Y.Label.Text = ylabel
	p.Add(plotter.NewGrid())
	p.Legend.Top = true
	for _, s := range ss {
		pts := make(plotter.XYs, 0, len(r.Series))
		for _, smp := range r.Series {
			pts = append(pts, plotter.XY{X: smp.T + 1, Y: s.value(smp)})
		}
		if len(pts) == 0 {
			continue
		}
		l, err := plotter.NewLine(pts)
		if err != nil {
			return fmt.Errorf("plot %s: %w", s.name, err)
		}
		l.Color = s.color
		l.Width = vg.Points(1.5)
		p.Add(l)
		p.Legend.Add(s.name, l)
	}
	if r.Warmup > 0 {
		// Shade nothing, but mark where the summary starts.
		w, err := plotter.NewLine(plotter.XYs{{X: r.Warmup, Y: p.Y.Min}, {X: r.Warmup, Y: p.Y.Max}})
		if err == nil {
			w.Color = color.Gray{Y: 128}
			w.Dashes = []vg.Length{vg.Points(4), vg.Points(4)}
			p.Add(w)
			p.Legend.Add("end of warm-up", w)
		}
	}
	if err := p.Save(width, height, path); err != nil {
		return fmt.Errorf("write plot %s: %w", path, err)
	}
	return nil
}
