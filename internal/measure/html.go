package measure

import (
	"bytes"
	"fmt"
	"html/template"
	"os"
	"slices"
	"strings"
	"time"
)

// WriteHTML writes rep as a self-contained page (no external resources):
// a timeline with one lane per node, the operation's steps as bars and the
// loss windows as red marks, the numbers on hover, then the tables.
func WriteHTML(path string, rep *Report) error {
	var b bytes.Buffer
	if err := page.Execute(&b, layout(rep)); err != nil {
		return fmt.Errorf("rendering the report: %w", err)
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil { //nolint:gosec // a report to share
		return fmt.Errorf("writing the report: %w", err)
	}
	return nil
}

type bar struct {
	X, W, Y float64
	Class   string
	Title   string
}

type lane struct {
	Name string
	Y    float64
}

type tick struct {
	X     float64
	Label string
}

type view struct {
	Rep           *Report
	Width, Height float64
	Lanes         []lane
	Steps, Marks  []bar
	Ticks         []tick
	Generated     string
}

const (
	laneH   = 28.0
	leftPad = 190.0
	plotW   = 1000.0
	topPad  = 30.0
)

var phaseClass = map[string]string{"cordon": "cordon", "pre-node": "hook", "drain": "drain", "action": "action",
	"wait": "wait", "post-node": "hook", "uncordon": "uncordon"}

func layout(rep *Report) view {
	v := view{Rep: rep, Width: leftPad + plotW + 50, Generated: time.Now().UTC().Format(time.RFC3339)}
	names := append([]string{}, rep.Agents...)
	for _, s := range rep.Steps {
		if !slices.Contains(names, s.Node) {
			names = append(names, s.Node)
		}
	}
	slices.Sort(names)
	y := map[string]float64{}
	for i, n := range names {
		y[n] = topPad + float64(i)*laneH
		v.Lanes = append(v.Lanes, lane{Name: n, Y: y[n]})
	}
	v.Height = topPad + float64(len(names))*laneH + 20
	start, end := rep.Started, rep.Ended
	span := end.Sub(start).Seconds()
	if span <= 0 {
		span = 1
	}
	x := func(t time.Time) float64 {
		return leftPad + max(0, min(1, t.Sub(start).Seconds()/span))*plotW
	}
	for i := 0; i <= 10; i++ {
		t := start.Add(time.Duration(float64(i) / 10 * span * float64(time.Second)))
		v.Ticks = append(v.Ticks, tick{X: x(t), Label: t.Format("15:04:05")})
	}
	for _, s := range rep.Steps {
		cls := phaseClass[s.Phase]
		if cls == "" {
			cls = "other"
		}
		v.Steps = append(v.Steps, bar{X: x(s.Start), W: max(1.5, x(s.End)-x(s.Start)), Y: y[s.Node] + 4, Class: cls,
			Title: fmt.Sprintf("%s: %s %s - %s (%s)", s.Node, s.Phase, s.Start.Format("15:04:05.000"), s.End.Format("15:04:05.000"), s.End.Sub(s.Start).Round(time.Millisecond))})
	}
	windows := rep.Windows
	if windows == nil {
		for _, p := range rep.Paths {
			for _, w := range p.Windows {
				windows = append(windows, Attributed{From: p.From, To: p.To, Kind: p.Kind, Start: w.Start, End: w.End, DurationMs: w.DurationMs, Lost: w.Lost})
			}
		}
	}
	for _, w := range windows {
		title := fmt.Sprintf("%s -> %s: %.0f ms outage, %d probes lost, %s - %s", w.From, w.To, w.DurationMs, w.Lost,
			w.Start.Format("15:04:05.000"), w.End.Format("15:04:05.000"))
		if w.Node != "" {
			title += "; " + w.during("")
		}
		lanes := []string{w.From, w.To}
		if w.Node != "" && w.OnPath {
			// The step's node is the cause: mark its lane, not the peer's.
			lanes = []string{w.Node}
		}
		for _, n := range lanes {
			if ly, ok := y[n]; ok {
				v.Marks = append(v.Marks, bar{X: x(w.Start), W: max(2, x(w.End)-x(w.Start)), Y: ly + 16, Class: "loss", Title: title})
			}
		}
	}
	return v
}

var page = template.Must(template.New("report").Funcs(template.FuncMap{"join": func(s []string) string { return strings.Join(s, ", ") }}).Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>hitless probe report {{.Rep.Session}}</title>
<style>
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px;color:#1d2330}
h1{font-size:20px;margin:0 0 4px}
.sub{color:#5b6475;margin-bottom:16px}
.kpis{display:flex;gap:16px;margin:12px 0 20px}
.kpi{border:1px solid #d9dee8;border-radius:6px;padding:8px 14px}
.kpi b{display:block;font-size:20px}
svg{border:1px solid #d9dee8;border-radius:6px;background:#fbfcfe;max-width:100%;height:auto}
.lane{fill:#f1f3f8}.lanelabel{font-size:12px;fill:#1d2330}
.tick{stroke:#d9dee8}.ticklabel{font-size:11px;fill:#5b6475}
.cordon{fill:#8fa8d8}.drain{fill:#e0a84f}.action{fill:#7a5cc2}.wait{fill:#5fb0a5}.uncordon{fill:#9cc58a}.hook{fill:#b5b5b5}.other{fill:#c7cbd4}
.loss{fill:#d93636;opacity:.85}
rect:hover{stroke:#000;stroke-width:1}
table{border-collapse:collapse;margin-top:18px}
th,td{border-bottom:1px solid #e3e7ef;padding:4px 10px;text-align:right}
th:first-child,td:first-child,th:nth-child(2),td:nth-child(2),.windows td:last-child,.windows th:last-child{text-align:left}
.bad{color:#c02828;font-weight:600}
.legend span{display:inline-block;margin-right:14px}.legend i{display:inline-block;width:12px;height:10px;margin-right:4px;vertical-align:middle}
</style></head><body>
<h1>Disruption measured{{if .Rep.Operation}} during {{.Rep.Operation}}{{end}}</h1>
<div class="sub">Probe session {{.Rep.Session}}: {{len .Rep.Agents}} agents, {{.Rep.Summary.Paths}} paths, {{.Rep.Rate}} probes/s per peer,
{{.Rep.Started.Format "2006-01-02 15:04:05"}} to {{.Rep.Ended.Format "15:04:05"}} UTC</div>
{{with .Rep.Loaded}}<div class="sub">Loaded: {{join .}} during the session: short gaps there may be the CPU's, not the network's.</div>
{{end}}{{with .Rep.Modeled}}<div class="sub bad">Model: the data plane of {{join .}} is the lab's model (a node's link follows its data-plane pod): losses there are made, not measured.</div>
{{end}}<div class="kpis">
<div class="kpi">longest outage<b>{{printf "%.0f" .Rep.Summary.LongestOutageMs}} ms</b>{{.Rep.Summary.WorstPath}}</div>
<div class="kpi">probes lost<b>{{.Rep.Summary.Lost}}</b>of {{.Rep.Summary.Sent}} ({{printf "%.3f" .Rep.Summary.LossPct}}%)</div>
<div class="kpi">paths with loss<b>{{.Rep.Summary.PathsWithLoss}}</b>of {{.Rep.Summary.Paths}}{{with .Rep.Summary.LossAt}}, all at node {{.}}{{end}}</div>
<div class="kpi">TCP resets<b>{{.Rep.Summary.TCPResets}}</b>long-lived connections</div>
</div>
<div class="legend"><span><i class="cordon" style="background:#8fa8d8"></i>cordon</span><span><i style="background:#e0a84f"></i>drain</span><span><i style="background:#7a5cc2"></i>action (data plane restart)</span><span><i style="background:#5fb0a5"></i>wait Ready</span><span><i style="background:#9cc58a"></i>uncordon</span><span><i style="background:#d93636"></i>loss window</span></div>
<svg width="{{.Width}}" height="{{.Height}}" viewBox="0 0 {{.Width}} {{.Height}}" xmlns="http://www.w3.org/2000/svg">
{{range .Ticks}}<line class="tick" x1="{{.X}}" x2="{{.X}}" y1="18" y2="{{$.Height}}"/><text class="ticklabel" x="{{.X}}" y="13" text-anchor="middle">{{.Label}}</text>
{{end}}{{range .Lanes}}<rect class="lane" x="190" y="{{.Y}}" width="1000" height="24"/><text class="lanelabel" x="8" y="{{.Y}}" dy="16">{{.Name}}</text>
{{end}}{{range .Steps}}<rect class="{{.Class}}" x="{{.X}}" y="{{.Y}}" width="{{.W}}" height="10"><title>{{.Title}}</title></rect>
{{end}}{{range .Marks}}<rect class="{{.Class}}" x="{{.X}}" y="{{.Y}}" width="{{.W}}" height="7"><title>{{.Title}}</title></rect>
{{end}}</svg>
{{if .Rep.Windows}}<h2>Loss windows</h2><table class="windows"><tr><th>start</th><th>path</th><th>duration</th><th>lost</th><th>during</th></tr>
{{range .Rep.Windows}}<tr><td>{{.Start.Format "15:04:05.000"}}</td><td>{{.From}} &rarr; {{.To}}</td><td>{{printf "%.0f" .DurationMs}} ms</td><td>{{.Lost}}</td><td>{{if .Node}}{{if .After}}after {{end}}{{.Phase}} of {{.Node}}{{if not .OnPath}} (not on this path){{end}}{{else}}no step{{end}}</td></tr>
{{end}}</table>{{end}}
<h2>Paths</h2><table><tr><th>from</th><th>to</th><th>sent</th><th>lost</th><th>loss %</th><th>longest outage</th><th>windows</th><th>p50 ms</th><th>p99 ms</th><th>TCP resets</th></tr>
{{range .Rep.Paths}}<tr><td>{{.From}}</td><td>{{.To}}</td><td>{{.Sent}}</td><td{{if .Lost}} class="bad"{{end}}>{{.Lost}}</td><td>{{printf "%.3f" .LossPct}}</td><td{{if .Lost}} class="bad"{{end}}>{{printf "%.0f" .LongestOutageMs}} ms</td><td>{{len .Windows}}</td><td>{{printf "%.3f" .Latency.P50}}</td><td>{{printf "%.3f" .Latency.P99}}</td><td>{{.TCPResets}}</td></tr>
{{end}}</table>
<p class="sub">Generated by hitless at {{.Generated}}.</p>
</body></html>
`))
