// Command dedupetypes removes repeated, identical top-level type declarations
// from Go files of one package, so that several abigen --v2 outputs can share
// the package `bindings`.
//
// abigen emits struct types without a contract prefix: both DstackKms and
// DstackApp bindings declare IAppAuthAppBootInfo (the shared Solidity struct)
// and IsAppAllowedOutput (the two-value result of isAppAllowed). The copies are
// identical, so keeping the first one is exactly what abigen itself does when
// it binds several contracts in one run. A same-named type with a different
// definition is a real conflict and makes this command fail.
//
// Usage: go run ./contracts/internal/dedupetypes FILE...
// Files are processed in the order given; later copies are cut in place.
package main

import (
	"bytes"
	"fmt"
	"go/ast"
	"go/format"
	"go/parser"
	"go/token"
	"os"
	"sort"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: dedupetypes FILE...")
		os.Exit(2)
	}
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "dedupetypes:", err)
		os.Exit(1)
	}
}

// cut is a byte range [start, end) of a file to delete.
type cut struct{ start, end int }

func run(files []string) error {
	seen := make(map[string]string) // type name -> "file: definition"
	for _, name := range files {
		src, err := os.ReadFile(name)
		if err != nil {
			return err
		}
		out, removed, err := dedupe(name, src, seen)
		if err != nil {
			return err
		}
		if len(removed) == 0 {
			continue
		}
		if err := os.WriteFile(name, out, 0o644); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "dedupetypes: %s: dropped %v (declared earlier)\n", name, removed)
	}
	return nil
}

// dedupe returns src without the type declarations already recorded in seen,
// and records the new ones.
func dedupe(name string, src []byte, seen map[string]string) ([]byte, []string, error) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, name, src, parser.ParseComments)
	if err != nil {
		return nil, nil, err
	}
	offset := func(p token.Pos) int { return fset.Position(p).Offset }

	var cuts []cut
	var removed []string
	for _, decl := range f.Decls {
		gd, ok := decl.(*ast.GenDecl)
		if !ok || gd.Tok != token.TYPE || len(gd.Specs) != 1 {
			continue
		}
		ts := gd.Specs[0].(*ast.TypeSpec)
		def := string(src[offset(ts.Pos()):offset(ts.End())])
		prev, dup := seen[ts.Name.Name]
		if !dup {
			seen[ts.Name.Name] = def
			continue
		}
		if prev != def {
			return nil, nil, fmt.Errorf("%s: type %s is declared twice with different definitions", name, ts.Name.Name)
		}
		start := offset(gd.Pos())
		if gd.Doc != nil {
			start = offset(gd.Doc.Pos())
		}
		cuts = append(cuts, cut{start, offset(gd.End())})
		removed = append(removed, ts.Name.Name)
	}
	if len(cuts) == 0 {
		return src, nil, nil
	}
	sort.Slice(cuts, func(i, j int) bool { return cuts[i].start < cuts[j].start })
	var buf bytes.Buffer
	last := 0
	for _, c := range cuts {
		buf.Write(src[last:c.start])
		last = c.end
	}
	buf.Write(src[last:])
	out, err := format.Source(buf.Bytes())
	if err != nil {
		return nil, nil, fmt.Errorf("%s: formatting after removal: %w", name, err)
	}
	return out, removed, nil
}
