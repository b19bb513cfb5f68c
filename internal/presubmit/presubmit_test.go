package presubmit

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
)

// packages returns every directory of the module holding non-test Go files.
func packages(t *testing.T) map[string][]string {
	t.Helper()
	root := "../.."
	dirs := map[string][]string{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata") && path != root {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(path, ".go") && !strings.HasSuffix(path, "_test.go") {
			dirs[filepath.Dir(path)] = append(dirs[filepath.Dir(path)], path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return dirs
}

// TestPackages_Documented: every package has a package comment.
func TestPackages_Documented(t *testing.T) {
	for dir, files := range packages(t) {
		documented := false
		for _, f := range files {
			file, err := parser.ParseFile(token.NewFileSet(), f, nil, parser.ParseComments|parser.PackageClauseOnly)
			if err != nil {
				t.Fatal(err)
			}
			if file.Doc != nil && strings.TrimSpace(file.Doc.Text()) != "" {
				documented = true
			}
		}
		if !documented {
			t.Errorf("package %s has no package comment (a doc.go)", dir)
		}
	}
}

// TestExported_Documented: every exported top-level name of the library
// packages (not commands) has a doc comment that starts with its name.
func TestExported_Documented(t *testing.T) {
	for dir, files := range packages(t) {
		if strings.Contains(dir, "cmd") {
			continue
		}
		for _, f := range files {
			file, err := parser.ParseFile(token.NewFileSet(), f, nil, parser.ParseComments)
			if err != nil {
				t.Fatal(err)
			}
			for _, decl := range file.Decls {
				switch d := decl.(type) {
				case *ast.FuncDecl:
					if !d.Name.IsExported() || d.Recv != nil && !exportedRecv(d.Recv) {
						continue
					}
					if isInterfaceMethod(d) {
						continue
					}
					check(t, f, d.Name.Name, d.Doc)
				case *ast.GenDecl:
					for _, spec := range d.Specs {
						switch s := spec.(type) {
						case *ast.TypeSpec:
							if s.Name.IsExported() {
								doc := s.Doc
								if doc == nil {
									doc = d.Doc
								}
								check(t, f, s.Name.Name, doc)
							}
						case *ast.ValueSpec:
							for _, n := range s.Names {
								if n.IsExported() && s.Doc == nil && d.Doc == nil {
									t.Errorf("%s: %s has no doc comment (nor does its group)", f, n.Name)
								}
							}
						}
					}
				}
			}
		}
	}
}

func exportedRecv(r *ast.FieldList) bool {
	typ := r.List[0].Type
	if s, ok := typ.(*ast.StarExpr); ok {
		typ = s.X
	}
	if ix, ok := typ.(*ast.IndexExpr); ok {
		typ = ix.X
	}
	id, ok := typ.(*ast.Ident)
	return ok && id.IsExported()
}

// isInterfaceMethod reports methods that only implement a well-known
// interface (Error, String, ServeHTTP, Write, Is, Unwrap …), whose meaning
// the interface documents.
func isInterfaceMethod(d *ast.FuncDecl) bool {
	if d.Recv == nil {
		return false
	}
	switch d.Name.Name {
	case "Error", "String", "ServeHTTP", "Write", "Is", "Unwrap", "RoundTrip", "Apply", "Snapshot", "Restore", "Persist", "Release":
		return true
	}
	return false
}

func check(t *testing.T, file, name string, doc *ast.CommentGroup) {
	t.Helper()
	if doc == nil {
		t.Errorf("%s: %s has no doc comment", file, name)
		return
	}
	text := strings.TrimSpace(doc.Text())
	first := strings.Fields(text)
	if len(first) == 0 || (first[0] != name && !(len(first) > 1 && (first[0] == "A" || first[0] == "An" || first[0] == "The") && first[1] == name)) {
		t.Errorf("%s: the doc comment of %s does not start with its name: %q", file, name, firstLine(text))
	}
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
