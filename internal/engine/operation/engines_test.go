package operation_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// The engines are libraries: no engine package imports cobra or pflag,
// reads the terminal (os.Stdin), names a command-line flag in a string it
// returns or logs (errors name spec fields as `field`, which each front
// end maps to its own name), or has a function over about 80 lines.
func TestEnginesSpeakNoCLI(t *testing.T) {
	roots := []string{"../../engine", "../../kube", "../../component", "../../measure"}
	flag := regexp.MustCompile(`(^|[\s("])--[a-z][a-z-]+`)
	fset := token.NewFileSet()
	files := 0
	for _, root := range roots {
		err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
			if err != nil {
				return err
			}
			// The node agent is a daemon with flags of its own, not an engine.
			if d.IsDir() && (d.Name() == "testdata" || d.Name() == "agent") {
				return filepath.SkipDir
			}
			if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return nil
			}
			files++
			f, err := parser.ParseFile(fset, path, nil, 0)
			if err != nil {
				return err
			}
			check(t, fset, path, f, flag)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if files < 40 {
		t.Fatalf("checked %d files: the walk missed the engines", files)
	}
}

func check(t *testing.T, fset *token.FileSet, path string, f *ast.File, flag *regexp.Regexp) {
	t.Helper()
	for _, imp := range f.Imports {
		p, _ := strconv.Unquote(imp.Path.Value)
		if strings.Contains(p, "spf13/cobra") || strings.Contains(p, "spf13/pflag") {
			t.Errorf("%s imports %s", path, p)
		}
	}
	ast.Inspect(f, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.SelectorExpr:
			if id, ok := n.X.(*ast.Ident); ok && id.Name == "os" && n.Sel.Name == "Stdin" {
				t.Errorf("%s reads os.Stdin", fset.Position(n.Pos()))
			}
		case *ast.BasicLit:
			if n.Kind == token.STRING && flag.MatchString(n.Value) {
				t.Errorf("%s names a flag: %s", fset.Position(n.Pos()), n.Value)
			}
		case *ast.FuncDecl:
			if n.Body != nil {
				if lines := fset.Position(n.End()).Line - fset.Position(n.Pos()).Line; lines > 85 {
					t.Errorf("%s: func %s is %d lines", fset.Position(n.Pos()), n.Name.Name, lines)
				}
			}
		}
		return true
	})
}
