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

// CurvePoint is one rung of a capacity search.
type CurvePoint struct {
	Offered, Delivered float64 // actions per second
	P50, P99           float64 // milliseconds
}

// Curve is one server's capacity search.
type Curve struct {
	Name   string
	Points []CurvePoint
}

var palette = []color.Color{
	color.RGBA{127, 127, 127, 255}, color.RGBA{31, 119, 180, 255}, color.RGBA{44, 160, 44, 255},
	color.RGBA{214, 39, 40, 255}, color.RGBA{148, 103, 189, 255}, color.RGBA{255, 127, 14, 255},
}

// Capacity writes prefix.png, delivered against offered rate for every
// curve on the same axes with the line delivered = offered, and
// prefix-latency.png, p50 and p99 against offered rate.
func Capacity(scenario string, curves []Curve, prefix string) error {
	rate := plot.New()
	rate.Title.Text = scenario + ": delivered against offered (capacity curve)"
	rate.X.Label.Text = "offered actions/s"
	rate.Y.Label.Text = "answered in time, actions/s"
	rate.Add(plotter.NewGrid())
	rate.Legend.Top, rate.Legend.Left = true, true
	lat := plot.New()
	lat.Title.Text = scenario + ": latency against offered rate"
	lat.X.Label.Text = "offered actions/s"
	lat.Y.Label.Text = "milliseconds (solid p50, dashed p99)"
	lat.Add(plotter.NewGrid())
	lat.Legend.Top, lat.Legend.Left = true, true
	top := 0.0
	for i, c := range curves {
		col := palette[i%len(palette)]
		var d, p50, p99 plotter.XYs
		for _, p := range c.Points {
			d = append(d, plotter.XY{X: p.Offered, Y: p.Delivered})
			p50 = append(p50, plotter.XY{X: p.Offered, Y: p.P50})
			p99 = append(p99, plotter.XY{X: p.Offered, Y: p.P99})
			top = max(top, p.Offered)
		}
		l, s, err := plotter.NewLinePoints(d)
		if err != nil {
			return fmt.Errorf("plot %s: %w", c.Name, err)
		}
		l.Color, s.Color, l.Width = col, col, vg.Points(1.5)
		rate.Add(l, s)
		rate.Legend.Add(c.Name, l, s)
		l50, err := plotter.NewLine(p50)
		if err != nil {
			return err
		}
		l99, err := plotter.NewLine(p99)
		if err != nil {
			return err
		}
		l50.Color, l99.Color = col, col
		l99.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
		lat.Add(l50, l99)
		lat.Legend.Add(c.Name, l50)
	}
	ideal, err := plotter.NewLine(plotter.XYs{{X: 0, Y: 0}, {X: top, Y: top}})
	if err == nil {
		ideal.Color = color.Gray{Y: 180}
		ideal.Dashes = []vg.Length{vg.Points(2), vg.Points(2)}
		rate.Add(ideal)
		rate.Legend.Add("offered", ideal)
	}
	if err := rate.Save(width, height, prefix+".png"); err != nil {
		return fmt.Errorf("write plot %s: %w", prefix, err)
	}
	if err := lat.Save(width, height, prefix+"-latency.png"); err != nil {
		return fmt.Errorf("write plot %s: %w", prefix, err)
	}
	return nil
}
