package kms

import (
	"errors"
	"strings"
	"testing"
)

func TestApplyComposeChanges(t *testing.T) {
	base := mustParseObject(t, honest2026)
	before, _ := CanonicalJSON(base)
	newCompose := "services:\n  web:\n    image: nginx@sha256:def\n"
	off := false
	got := ApplyComposeChanges(base, ComposeChanges{DockerCompose: &newCompose, PublicLogs: &off, AllowedEnvs: []string{}})
	after, _ := CanonicalJSON(base)
	if string(before) != string(after) {
		t.Error("ApplyComposeChanges changed its base")
	}
	want := strings.NewReplacer(
		`"allowed_envs":["API_KEY","DB_URL"]`, `"allowed_envs":[]`,
		`sha256:abc`, `sha256:def`,
		`"public_logs":true`, `"public_logs":false`,
	).Replace(honest2026)
	if b, _ := CanonicalJSON(got); string(b) != want {
		t.Errorf("got\n%s\nwant\n%s", b, want)
	}
	// nil AllowedEnvs leaves them as they were.
	if b, _ := CanonicalJSON(ApplyComposeChanges(base, ComposeChanges{})); string(b) != honest2026 {
		t.Errorf("no changes gave\n%s", b)
	}
	// The copy is deep: changing it does not reach the base.
	got["features"].([]any)[0] = "x"
	if b, _ := CanonicalJSON(base); string(b) != honest2026 {
		t.Error("the copy shares arrays with the base")
	}
}

// An update of a 2026 app whose approved document carries the server's
// official pre-launch script: the new document is the base with the new
// compose; it verifies, its hash is predicted, and tampering is caught.
func TestUpdateRoundTrip(t *testing.T) {
	official := "#!/bin/bash\necho \"Running Phala Cloud Pre-Launch Script vTEST\"\n"
	p := DefaultPins().Merge(&Pins{AppCompose: AppComposePins{OfficialPreLaunchScripts: []PreLaunchScriptPin{
		{Version: "TEST", Form: "file", SHA256: sha256Hex(official), Source: "test"},
	}}})
	base := mustParseObject(t, honest2026)
	base["pre_launch_script"] = official

	newCompose := testCompose + "  cache:\n    image: redis@sha256:123\n"
	ch := ComposeChanges{DockerCompose: &newCompose}
	exp := ExpectationForUpdate(base, ch)

	updated, err := SerializeAppCompose(ApplyComposeChanges(base, ch), SerializationCompact)
	if err != nil {
		t.Fatal(err)
	}
	verdict, err := p.VerifyAppCompose(updated, sha256Hex(string(updated)), exp)
	if err != nil {
		t.Fatalf("honest update refused: %v", err)
	}
	if verdict.PreLaunch != "Phala pre-launch vTEST ("+"sha256 "+sha256Hex(official)[:6]+"…)" {
		t.Errorf("PreLaunch %q", verdict.PreLaunch)
	}
	cands, err := p.Predict(exp)
	if err != nil {
		t.Fatal(err)
	}
	if MatchPrediction(cands, sha256Hex(string(updated))) == nil {
		t.Error("the update's hash is not among the predictions")
	}

	// The cloud slips a service into the new compose.
	tampered := ApplyComposeChanges(base, ch)
	tampered["docker_compose_file"] = newCompose + "  evil:\n    image: evil\n"
	raw, _ := SerializeAppCompose(tampered, SerializationCompact)
	_, err = p.VerifyAppCompose(raw, sha256Hex(string(raw)), exp)
	var re *ComposeRuleError
	if !errors.As(err, &re) || len(re.Violations) != 1 ||
		re.Violations[0] != `docker_compose_file differs from your compose file (first difference at line 6: cloud "  evil:", yours "")` {
		t.Errorf("tampered update: %v", err)
	}
}

func TestExpectationForUpdate(t *testing.T) {
	base := mustParseObject(t, honest2026)
	delete(base, "public_tcbinfo") // absent: dstack's default true
	on, envs := true, []string{"ONLY"}
	exp := ExpectationForUpdate(base, ComposeChanges{PublicSysinfo: &on, AllowedEnvs: envs})
	envs[0] = "CHANGED" // the expectation keeps its own copy
	if exp.DockerCompose != testCompose || exp.PreLaunchScript != nil || len(exp.Names) != 1 || exp.Names[0] != "" ||
		!exp.PublicLogs || !exp.PublicSysinfo || !exp.PublicTcbinfo || !exp.GatewayEnabled || !exp.KMSEnabled ||
		len(exp.AllowedEnvs) != 1 || exp.AllowedEnvs[0] != "ONLY" {
		t.Errorf("%+v", exp)
	}
	base["kms_enabled"] = false
	base["tproxy_enabled"] = false
	base["gateway_enabled"] = false
	base["features"] = []any{"kms"}
	if exp := ExpectationForUpdate(base, ComposeChanges{}); exp.KMSEnabled || exp.GatewayEnabled {
		t.Errorf("KMS and gateway off in the base, expectation %+v", exp)
	}
}
