package testnet

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// kernelImports are packages only a test that touches the kernel imports.
var kernelImports = map[string]bool{
	"github.com/tapfw/tapfw/pkg/testnet": true,
	"github.com/vishvananda/netlink":     true,
	"github.com/vishvananda/netns":       true,
	"github.com/google/nftables":         true,
	"github.com/coreos/go-iptables":      true,
}

// TestKernelTestsGuarded reads every test file of the module, whatever its
// build tags: a package whose tests call NeedKernel, NewNS or import a
// kernel-facing package must run GuardHost in its TestMain (NeedKernel
// checks the same at run time, but only for the tests that get there).
func TestKernelTestsGuarded(t *testing.T) {
	root := filepath.Join("..", "..")
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatal(err)
	}
	kernel := map[string]string{} // dir -> why its tests touch the kernel
	guarded := map[string]bool{}
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if n := d.Name(); path != root && (strings.HasPrefix(n, ".") || n == "testdata" || n == "tmp" || n == "bin") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		dir := filepath.Dir(path)
		for _, imp := range f.Imports {
			if p, _ := strconv.Unquote(imp.Path.Value); kernelImports[p] {
				kernel[dir] = path + " imports " + p
			}
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.FuncDecl:
				if n.Name.Name == "TestMain" && n.Recv == nil && calls(n.Body, "GuardHost") {
					guarded[dir] = true
				}
			case *ast.CallExpr:
				if name := callee(n); name == "NeedKernel" || name == "NewNS" {
					kernel[dir] = path + " calls " + name
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(guarded) == 0 || len(kernel) == 0 {
		t.Fatalf("found no guarded or no kernel test package under %s: the walk is broken", root)
	}
	for dir, why := range kernel {
		if !guarded[dir] {
			rel, _ := filepath.Rel(root, dir)
			why, _ = strings.CutPrefix(why, root+string(filepath.Separator))
			t.Errorf("%s: its TestMain does not run testnet.GuardHost, but %s", rel, why)
		}
	}
}

// callee is the name a call calls: f(...) or x.f(...).
func callee(c *ast.CallExpr) string {
	switch f := c.Fun.(type) {
	case *ast.Ident:
		return f.Name
	case *ast.SelectorExpr:
		return f.Sel.Name
	}
	return ""
}

// calls says whether body calls a function of that name.
func calls(body ast.Node, name string) bool {
	found := false
	ast.Inspect(body, func(n ast.Node) bool {
		if c, ok := n.(*ast.CallExpr); ok && callee(c) == name {
			found = true
		}
		return !found
	})
	return found
}
