package main

import (
	"strings"
	"testing"
)

const header = "package p\n\n"

func TestDedupe(t *testing.T) {
	tests := []struct {
		name        string
		first       string
		second      string
		wantRemoved []string
		wantErr     string
		wantKept    string // must still appear in the second file's output
	}{
		{
			name:        "identical struct is dropped with its doc comment",
			first:       header + "// A doc.\ntype A struct {\n\tX int\n}\n",
			second:      header + "// A doc.\ntype A struct {\n\tX int\n}\n\ntype B int\n",
			wantRemoved: []string{"A"},
			wantKept:    "type B int",
		},
		{
			name:    "same name with another definition is an error",
			first:   header + "type A struct{ X int }\n",
			second:  header + "type A struct{ Y int }\n",
			wantErr: "declared twice with different definitions",
		},
		{
			name:     "distinct types are left alone",
			first:    header + "type A int\n",
			second:   header + "type B int\n",
			wantKept: "type B int",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			seen := map[string]string{}
			if _, removed, err := dedupe("first.go", []byte(tt.first), seen); err != nil || len(removed) != 0 {
				t.Fatalf("first file: removed %v, err %v; want nothing removed", removed, err)
			}
			out, removed, err := dedupe("second.go", []byte(tt.second), seen)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if strings.Join(removed, ",") != strings.Join(tt.wantRemoved, ",") {
				t.Errorf("removed %v, want %v", removed, tt.wantRemoved)
			}
			for _, r := range tt.wantRemoved {
				if strings.Contains(string(out), "type "+r+" ") || strings.Contains(string(out), "// "+r+" doc") {
					t.Errorf("output still declares %s:\n%s", r, out)
				}
			}
			if !strings.Contains(string(out), tt.wantKept) {
				t.Errorf("output lost %q:\n%s", tt.wantKept, out)
			}
		})
	}
}
