package migrate

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"k8s.io/cli-runtime/pkg/printers"

	engine "github.com/hitless-dev/hitless/internal/engine/migrate"
	"github.com/hitless-dev/hitless/internal/engine/migrate/plan"
)

func printPlans(w io.Writer, plans []*plan.Plan) error {
	tw := printers.GetNewTabWriter(w)
	_, _ = fmt.Fprintln(tw, "NAME\tSTEPS\tPROFILE\tSOURCE")
	for _, p := range plans {
		_, _ = fmt.Fprintf(tw, "%s\t%d\t%s\t%s\n", p.Metadata.Name, len(p.Steps), orDash(p.Profile), p.Metadata.Source)
	}
	return tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// printPlan shows a plan: parameters, gates, and every step with what it
// does and how it is undone.
func printPlan(w io.Writer, p *plan.Plan, rollbacks map[string]string, skipped []string, params map[string]any) error {
	_, _ = fmt.Fprintf(w, "Plan %s: %s\n", p.Metadata.Name, p.Metadata.Description)
	if p.Metadata.Source != "" {
		_, _ = fmt.Fprintf(w, "Source: %s\n", p.Metadata.Source)
	}
	if p.Profile != "" {
		_, _ = fmt.Fprintf(w, "Checks: preflight and postflight of profile %s\n", p.Profile)
	}
	if len(p.Parameters) > 0 {
		_, _ = fmt.Fprintln(w, "\nParameters (--set name=value):")
		tw := printers.GetNewTabWriter(w)
		_, _ = fmt.Fprintln(tw, "  NAME\tTYPE\tVALUE\tDESCRIPTION")
		for _, par := range p.Parameters {
			_, _ = fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", par.Name, typeOf(par), valueOf(par, params), par.Description)
		}
		_ = tw.Flush()
	}
	if len(p.Gates) > 0 {
		_, _ = fmt.Fprintln(w, "\nGates (checked before every step that does not skip them):")
		for _, g := range p.Gates {
			_, _ = fmt.Fprintf(w, "  %s: %s holds %s\n", g.Name, g.For, oneLine(g.Condition))
		}
	}
	_, _ = fmt.Fprintln(w, "\nSteps:")
	tw := printers.GetNewTabWriter(w)
	_, _ = fmt.Fprintln(tw, "  #\tSTEP\tTYPE\tWHAT\tROLLBACK")
	for i, s := range p.Steps {
		what := s.Description
		if s.SkipGates {
			what += " [gates skipped]"
		}
		if s.When != "" && params == nil {
			what += " [when " + s.When + "]"
		}
		_, _ = fmt.Fprintf(tw, "  %d\t%s\t%s\t%s\t%s\n", i+1, s.Name, s.Type(), what, rollbackOf(s, rollbacks))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(skipped) > 0 {
		_, _ = fmt.Fprintf(w, "\nSkipped with these parameters: %s\n", strings.Join(skipped, ", "))
	}
	return nil
}

func rollbackOf(s plan.Step, rollbacks map[string]string) string {
	if r, ok := rollbacks[s.Name]; ok {
		return r
	}
	return engine.DescribeRollback(s)
}

func typeOf(par plan.Parameter) string {
	if par.Type == "" {
		return plan.TypeString
	}
	return par.Type
}

func valueOf(par plan.Parameter, params map[string]any) string {
	if params != nil {
		if v, ok := params[par.Name]; ok {
			return fmt.Sprint(v)
		}
		return "(unset)"
	}
	switch {
	case par.Default != nil:
		return fmt.Sprintf("%v (default)", par.Default)
	case par.Required:
		return "(required)"
	}
	return "(optional)"
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// printResult shows what a run or rollback did, step by step.
func printResult(w io.Writer, r *engine.Result, title string) {
	_, _ = fmt.Fprintf(w, "%s %s (%s)", title, r.Operation, r.Plan.Metadata.Name)
	if r.Resumed {
		_, _ = fmt.Fprint(w, ", resumed")
	}
	_, _ = fmt.Fprintln(w)
	tw := printers.GetNewTabWriter(w)
	_, _ = fmt.Fprintln(tw, "STEP\tRESULT\tRUNS\tTOOK\tDETAIL")
	steps := slices.Clone(r.Steps)
	for _, s := range steps {
		result, took := "started", "-"
		if s.Finished != nil {
			result, took = "ok", s.Finished.Sub(s.Started).Round(time.Millisecond).String()
		}
		if s.Error != "" {
			result = "failed"
		}
		detail := strings.Join(s.Detail, "; ")
		if s.Error != "" {
			detail = s.Error
		}
		if len(detail) > 160 {
			detail = detail[:160] + "..."
		}
		_, _ = fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", s.Name, result, s.Runs, took, detail)
	}
	_ = tw.Flush()
	for _, warn := range r.Warnings {
		_, _ = fmt.Fprintf(w, "warning: %s\n", warn)
	}
}
