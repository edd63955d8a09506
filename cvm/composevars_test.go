package cvm

import (
	"reflect"
	"testing"
)

func TestMissingComposeVars(t *testing.T) {
	tests := []struct {
		name     string
		compose  string
		provided []string
		want     []string
	}{
		{"braced reference provided", "image: app:${TAG}", []string{"TAG"}, []string{}},
		{"braced reference missing", "image: app:${TAG}", nil, []string{"TAG"}},
		{"bare reference missing", "command: echo $GREETING", nil, []string{"GREETING"}},
		{"default makes it optional", "x: ${PORT:-8080} ${MODE-dev}", nil, []string{}},
		{"alternative makes it optional", "x: ${DEBUG:+--verbose}", nil, []string{}},
		{"required form still needs a value", "x: ${DB_PASSWORD:?set it}", nil, []string{"DB_PASSWORD"}},
		{"escaped dollar is literal", "command: echo $$HOME and $${USER}", nil, []string{}},
		{"sorted and deduplicated", "${B} ${A} $B", nil, []string{"A", "B"}},
		{"comments are not interpolated", "# uses ${VAR}\nimage: x # and $OTHER\n", nil, []string{}},
		{"a hash inside quotes is not a comment", "command: \"echo #${TAG}\"", nil, []string{"TAG"}},
		{"a hash inside a word is not a comment", "image: repo/app#${TAG}", nil, []string{"TAG"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			provided := map[string]bool{}
			for _, k := range tt.provided {
				provided[k] = true
			}
			got := MissingComposeVars(tt.compose, provided)
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("MissingComposeVars(%q) = %v, want %v", tt.compose, got, tt.want)
			}
		})
	}
}
