package check

import (
	"encoding/xml"
	"fmt"
	"io"
	"os"
	"strings"
)

// PrintTable writes the report as a table, worst first, with colour when
// colour is true. Objects are listed under each result that names some.
func PrintTable(w io.Writer, r *Report, colour bool) {
	_, _ = fmt.Fprintf(w, "%s  profile %s  run %s\n\n", strings.ToUpper(r.Kind), r.Profile, r.ID)
	_, _ = fmt.Fprintln(w, "STATUS\tSEVERITY\tCHECK\tNODE\tMESSAGE")
	for _, res := range collapse(r.Results) {
		node := res.Node
		if node == "" {
			node = "-"
		}
		first, rest, _ := strings.Cut(res.Message, "\n")
		_, _ = fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", paint(res.Status, colour), res.Severity, res.ID, node, first)
		if res.Status == Pass || res.Status == Skip {
			continue
		}
		for _, line := range strings.Split(rest, "\n") {
			if line != "" {
				_, _ = fmt.Fprintf(w, "\t\t\t\t  %s\n", line)
			}
		}
		const shown = 10
		for i, o := range res.Objects {
			if i == shown {
				_, _ = fmt.Fprintf(w, "\t\t\t\t  ... and %d more (-o json lists all)\n", len(res.Objects)-shown)
				break
			}
			_, _ = fmt.Fprintf(w, "\t\t\t\t  %s\n", o)
		}
		if res.Remediation != "" {
			_, _ = fmt.Fprintf(w, "\t\t\t\t  fix: %s\n", oneLine(res.Remediation))
		}
	}
	s := r.Summary
	verdict := "OK: no hard check failed"
	if !s.OK {
		verdict = fmt.Sprintf("NOT OK: %d hard check(s) failed", s.Blocking)
	}
	_, _ = fmt.Fprintf(w, "\n%d checks: %d pass, %d warn, %d fail, %d error, %d skip. %s.\n",
		s.Total, s.Pass, s.Warn, s.Fail, s.Error, s.Skip, verdict)
}

func oneLine(s string) string { return strings.ReplaceAll(s, "\n", " | ") }

func paint(s Status, colour bool) string {
	if !colour {
		return string(s)
	}
	code := map[Status]string{Pass: "32", Warn: "33", Fail: "31", Error: "35", Skip: "90"}[s]
	return "\x1b[" + code + "m" + string(s) + "\x1b[0m"
}

type junitSuites struct {
	XMLName xml.Name     `xml:"testsuites"`
	Suites  []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name     string      `xml:"name,attr"`
	Tests    int         `xml:"tests,attr"`
	Failures int         `xml:"failures,attr"`
	Errors   int         `xml:"errors,attr"`
	Skipped  int         `xml:"skipped,attr"`
	Time     string      `xml:"time,attr"`
	Cases    []junitCase `xml:"testcase"`
}

type junitCase struct {
	Name      string        `xml:"name,attr"`
	Classname string        `xml:"classname,attr"`
	Time      string        `xml:"time,attr"`
	Failure   *junitMessage `xml:"failure,omitempty"`
	Error     *junitMessage `xml:"error,omitempty"`
	Skipped   *junitMessage `xml:"skipped,omitempty"`
	SystemOut string        `xml:"system-out,omitempty"`
}

type junitMessage struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr,omitempty"`
	Body    string `xml:",chardata"`
}

// WriteJUnit writes the report as JUnit XML to path. Hard failures are
// failures, errors are errors, soft failures and warnings pass with their
// message in system-out (CI systems then show them without failing).
func WriteJUnit(path string, r *Report) error {
	suite := junitSuite{Name: "hitless " + r.Kind + " (" + r.Profile + ")", Time: seconds(r.DurationMs)}
	for _, res := range r.Results {
		name := res.ID
		if res.Node != "" {
			name += " [" + res.Node + "]"
		}
		c := junitCase{Name: name + ": " + res.Title, Classname: "hitless." + r.Kind, Time: seconds(res.DurationMs)}
		body := strings.Join(res.Objects, "\n")
		if res.Remediation != "" {
			body += "\nfix: " + res.Remediation
		}
		switch {
		case res.Status == Error:
			c.Error = &junitMessage{Message: res.Message, Type: string(res.Severity), Body: body}
			suite.Errors++
		case res.Status == Fail && res.Severity == Hard:
			c.Failure = &junitMessage{Message: res.Message, Type: string(res.Severity), Body: body}
			suite.Failures++
		case res.Status == Skip:
			c.Skipped = &junitMessage{Message: res.Message}
			suite.Skipped++
		default:
			c.SystemOut = string(res.Status) + ": " + res.Message + "\n" + body
		}
		suite.Cases = append(suite.Cases, c)
	}
	suite.Tests = len(suite.Cases)
	b, err := xml.MarshalIndent(junitSuites{Suites: []junitSuite{suite}}, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding JUnit: %w", err)
	}
	b = append([]byte(xml.Header), append(b, '\n')...)
	if err := os.WriteFile(path, b, 0o644); err != nil { //nolint:gosec // a report meant to be read by CI
		return fmt.Errorf("writing JUnit report: %w", err)
	}
	return nil
}

func seconds(ms int64) string { return fmt.Sprintf("%.3f", float64(ms)/1000) }

// collapse folds node results that say the same thing (same check,
// status and message) into one row naming the nodes, so a 1,000-node
// report stays readable. JSON and YAML keep every result.
func collapse(results []Result) []Result {
	type key struct {
		id, msg string
		st      Status
		sev     Severity
	}
	var out []Result
	at := map[key]int{}
	nodes := map[key][]string{}
	for _, res := range results {
		if res.Node == "" {
			out = append(out, res)
			continue
		}
		k := key{res.ID, res.Message, res.Status, res.Severity}
		if _, ok := at[k]; !ok {
			at[k] = len(out)
			out = append(out, res)
		}
		nodes[k] = append(nodes[k], res.Node)
	}
	for k, i := range at {
		if ns := nodes[k]; len(ns) > 1 {
			out[i].Node = fmt.Sprintf("%d nodes", len(ns))
			out[i].Objects = make([]string, len(ns))
			for j, n := range ns {
				out[i].Objects[j] = "Node/" + n
			}
		}
	}
	return out
}
