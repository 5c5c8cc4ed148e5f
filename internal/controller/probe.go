package controller

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/hitless-dev/hitless/api/v1alpha1"
	"github.com/hitless-dev/hitless/internal/measure"
)

// probeSpec is the guard a resource's probe budget asks for, or nil.
func probeSpec(p *v1alpha1.ProbeBudget) (*measure.GuardSpec, error) {
	if p == nil {
		return nil, nil
	}
	g := &measure.GuardSpec{Rate: int(p.Rate), Sample: int(p.Sample), OnBudget: measure.OnBudgetPause, Settle: 5 * time.Second}
	if g.Rate == 0 {
		g.Rate = 100
	}
	g.Budget.MaxOutage = duration(p.MaxOutage)
	if p.Settle != nil {
		g.Settle = p.Settle.Duration
	}
	if p.MaxLoss != "" {
		v, err := strconv.ParseFloat(strings.TrimSuffix(p.MaxLoss, "%"), 64)
		if err != nil || v < 0 || v > 100 {
			return nil, &FieldError{Field: "spec.probe.maxLoss", Msg: fmt.Sprintf("%q: want a percentage from 0%% to 100%%", p.MaxLoss)}
		}
		g.Budget.MaxLossPct = v
	}
	return g, nil
}

// ProbeBudgetFor is the resource's probe budget of a guard's settings
// (what `--in-cluster` commands put in the resources they create).
func ProbeBudgetFor(g measure.GuardSpec) *v1alpha1.ProbeBudget {
	p := &v1alpha1.ProbeBudget{Rate: int32(g.Rate), Sample: int32(g.Sample), Settle: &metav1.Duration{Duration: g.Settle}}
	if g.Budget.MaxOutage > 0 {
		p.MaxOutage = &metav1.Duration{Duration: g.Budget.MaxOutage}
	}
	if g.Budget.MaxLossPct > 0 {
		p.MaxLoss = strconv.FormatFloat(g.Budget.MaxLossPct, 'f', -1, 64) + "%"
	}
	return p
}

// probed is what an operation's probe session measured.
type probed struct {
	report *measure.Report
	breach bool
}

// disruption sums up the report for the status, or nil without probes;
// why says why the budget was exceeded, if it was.
func (p probed) disruption(why string) *v1alpha1.Disruption {
	rep := p.report
	if rep == nil {
		return nil
	}
	d := &v1alpha1.Disruption{
		MaxOutage: metav1.Duration{Duration: time.Duration(rep.Summary.LongestOutageMs * float64(time.Millisecond))},
		Loss:      fmt.Sprintf("%.3f%%", rep.Summary.LossPct),
		Windows:   int32(len(rep.Windows)),
	}
	if p.breach {
		d.Breach = budgetWhy(why)
	}
	return d
}

// budgetWhy is the budget's own words in an operation's error message.
func budgetWhy(msg string) string {
	if i := strings.Index(msg, "disruption budget exceeded"); i >= 0 {
		return msg[i:]
	}
	return msg
}

// DisruptionLine sums a status's disruption up in a line.
func DisruptionLine(d *v1alpha1.Disruption) string {
	line := fmt.Sprintf("disruption: longest outage %s, loss %s, %d loss window(s)", d.MaxOutage.Duration, d.Loss, d.Windows)
	if d.Breach != "" {
		line += "; " + d.Breach
	}
	return line
}
