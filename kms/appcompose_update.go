package kms

import "slices"

// ComposeChanges are the user's changes to an app's approved app-compose, the
// hash-affecting fields of an update (PATCH /cvms/{id}).
type ComposeChanges struct {
	DockerCompose   *string
	PreLaunchScript *string
	// AllowedEnvs: nil leaves them unchanged; non-nil (possibly empty)
	// replaces them.
	AllowedEnvs                              []string
	PublicLogs, PublicSysinfo, PublicTcbinfo *bool
}

// ApplyComposeChanges returns a deep copy of base with the changes applied:
// only the keys changed are written, everything else (server fields
// included) stays as approved.
func ApplyComposeChanges(base map[string]any, ch ComposeChanges) map[string]any {
	out := deepCopyJSON(base).(map[string]any) // a nil base gives an empty map
	if ch.DockerCompose != nil {
		out["docker_compose_file"] = *ch.DockerCompose
	}
	if ch.PreLaunchScript != nil {
		out["pre_launch_script"] = *ch.PreLaunchScript
	}
	if ch.AllowedEnvs != nil {
		envs := make([]any, len(ch.AllowedEnvs))
		for i, e := range ch.AllowedEnvs {
			envs[i] = e
		}
		out["allowed_envs"] = envs
	}
	for k, b := range map[string]*bool{"public_logs": ch.PublicLogs, "public_sysinfo": ch.PublicSysinfo, "public_tcbinfo": ch.PublicTcbinfo} {
		if b != nil {
			out[k] = *b
		}
	}
	return out
}

// ExpectationForUpdate returns what the updated document must meet: the
// approved base's user fields, with the changes. VerifyAppCompose then
// reports an update's tampering field by field, as for a new app, and
// Predict can compute the update's hash when the base follows a pinned
// template.
//
// The base's pre_launch_script, whoever wrote it, becomes the expected script
// unless the change replaces it: it was approved with the base, and keeping
// it byte for byte is what an update that does not touch it means. Gateway
// and KMS follow the base's effective settings under dstack's rules; the
// base itself is not judged here (verify it when it is read).
func ExpectationForUpdate(base map[string]any, ch ComposeChanges) ComposeExpectation {
	var exp ComposeExpectation
	exp.DockerCompose, _ = base["docker_compose_file"].(string)
	if ch.DockerCompose != nil {
		exp.DockerCompose = *ch.DockerCompose
	}
	if ch.PreLaunchScript != nil {
		s := *ch.PreLaunchScript
		exp.PreLaunchScript = &s
	} else if s, ok := base["pre_launch_script"].(string); ok {
		exp.PreLaunchScript = &s
	}
	if ch.AllowedEnvs != nil {
		exp.AllowedEnvs = slices.Clone(ch.AllowedEnvs)
		if exp.AllowedEnvs == nil {
			exp.AllowedEnvs = []string{}
		}
	} else if envs, ok := base["allowed_envs"].([]any); ok {
		for _, e := range envs {
			if s, ok := e.(string); ok {
				exp.AllowedEnvs = append(exp.AllowedEnvs, s)
			}
		}
	}
	if name, ok := base["name"].(string); ok {
		exp.Names = []string{name}
	}
	exp.PublicLogs = effectiveBool(base, "public_logs", ch.PublicLogs)
	exp.PublicSysinfo = effectiveBool(base, "public_sysinfo", ch.PublicSysinfo)
	exp.PublicTcbinfo = effectiveBool(base, "public_tcbinfo", ch.PublicTcbinfo)

	features, _ := base["features"].([]any)
	exp.GatewayEnabled = base["gateway_enabled"] == true || base["tproxy_enabled"] == true ||
		slices.Contains(features, any("tproxy-net"))
	switch kp := base["key_provider"].(type) {
	case string:
		exp.KMSEnabled = kp == "kms"
	default:
		exp.KMSEnabled = base["kms_enabled"] == true
	}
	return exp
}

// effectiveBool is the changed value, else the base's, else dstack's default.
func effectiveBool(base map[string]any, field string, change *bool) bool {
	if change != nil {
		return *change
	}
	if b, ok := base[field].(bool); ok {
		return b
	}
	def, _ := dstackDefaults[field].(bool)
	return def
}
