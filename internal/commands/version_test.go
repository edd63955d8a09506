package commands

import (
	"bytes"
	"context"
	"encoding/json"
	"runtime"
	"strings"
	"testing"
)

func TestVersion(t *testing.T) {
	run := func(args ...string) string {
		t.Helper()
		var out, errb bytes.Buffer
		if code := Run(context.Background(), append([]string{"cvmdeploy"}, args...), strings.NewReader(""), &out, &errb); code != 0 {
			t.Fatalf("%v: exit %d\n%s", args, code, errb.String())
		}
		return out.String()
	}
	// Unstamped (go test): the build info's fallback, never empty.
	line := run("version")
	if !strings.HasPrefix(line, "cvmdeploy ") || !strings.Contains(line, runtime.Version()) || !strings.Contains(line, runtime.GOOS+"/"+runtime.GOARCH) {
		t.Fatalf("version: %q", line)
	}
	if got := run("--version"); got != line {
		t.Fatalf("--version %q, version %q", got, line)
	}

	// What a release build stamps with -ldflags -X.
	buildVersion, buildCommit = "v1.2.3", "0123456789abcdef0123456789abcdef01234567"
	t.Cleanup(func() { buildVersion, buildCommit = "", "" })
	want := "cvmdeploy v1.2.3 (commit 0123456789abcdef0123456789abcdef01234567, " + runtime.Version() + ", " + runtime.GOOS + "/" + runtime.GOARCH + ")\n"
	if got := run("version"); got != want {
		t.Fatalf("stamped version\n got %q\nwant %q", got, want)
	}
	if got := run("--version"); got != want {
		t.Fatalf("stamped --version %q", got)
	}
	var doc map[string]string
	if err := json.Unmarshal([]byte(run("version", "--json")), &doc); err != nil {
		t.Fatal(err)
	}
	if doc["version"] != "v1.2.3" || doc["commit"] != buildCommit || doc["go_version"] != runtime.Version() || doc["platform"] != runtime.GOOS+"/"+runtime.GOARCH {
		t.Fatalf("version --json %v", doc)
	}
}
