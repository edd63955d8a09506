package cloud

import "testing"

// TestAddSidecar: the compose adversary's service goes first under the
// top-level services key, at the compose's own indentation.
func TestAddSidecar(t *testing.T) {
	side4 := "    sidecar:\n        image: alpine\n        volumes:\n            - /var/run/dstack.sock:/var/run/dstack.sock\n"
	tests := []struct {
		name, in, want string
	}{
		{"two-space compose", "services:\n  web:\n    image: nginx\n",
			"services:\n" + AdversarySidecar + "  web:\n    image: nginx\n"},
		{"four-space compose after a comment and a blank line", "version: \"3\"\nservices: # apps\n\n    # the site\n    web:\n        image: nginx\nvolumes: {}\n",
			"version: \"3\"\nservices: # apps\n" + side4 + "\n    # the site\n    web:\n        image: nginx\nvolumes: {}\n"},
		{"empty services followed by another key", "services:\nvolumes:\n  data: {}\n",
			"services:\n" + AdversarySidecar + "volumes:\n  data: {}\n"},
		{"CRLF line ends", "services:\r\n  web:\r\n    image: nginx\r\n",
			"services:\r\n" + AdversarySidecar + "  web:\r\n    image: nginx\r\n"},
		{"no services key", "x-meta: 1", "x-meta: 1\nservices:\n" + AdversarySidecar},
		{"nested services key is not top-level", "x:\n  services:\n    a: 1\n", "x:\n  services:\n    a: 1\nservices:\n" + AdversarySidecar},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := addSidecar(tt.in); got != tt.want {
				t.Errorf("addSidecar(%q) =\n%q\nwant\n%q", tt.in, got, tt.want)
			}
		})
	}
}
