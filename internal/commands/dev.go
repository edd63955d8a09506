package commands

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/urfave/cli/v2"

	"github.com/cvmdeploy/cvmdeploy/deployer"
	"github.com/cvmdeploy/cvmdeploy/phala"
	"github.com/cvmdeploy/cvmdeploy/testnet"
)

// startDev starts the throwaway testnet of --dev — anvil, or in the devchain
// build the embedded chain — with the local cloud, and points the runner at
// them with the testnet's funded dev account.
func (s *flowSetup) startDev(c *cli.Context, p *progress) error {
	start := time.Now()
	cfg := testnet.LocalnetConfig{Embedded: embeddedChain}
	if cfg.Embedded != nil {
		p.Printf("▶ starting a local testnet: embedded go-ethereum chain + local Phala Cloud (nothing leaves this machine)")
	} else {
		p.Printf("▶ starting a local testnet: anvil %s + local Phala Cloud (nothing leaves this machine)", testnet.AnvilVersion)
		bin, err := findAnvil(c, p)
		if err != nil {
			return err
		}
		cfg.AnvilBinary = bin
	}
	ctx, cancel := context.WithTimeout(c.Context, 2*time.Minute)
	defer cancel()
	ln, err := testnet.StartLocalnet(ctx, cfg)
	if err != nil {
		return fmt.Errorf("start the local testnet: %w", err)
	}
	s.dev = ln
	api, err := phala.New(phala.Config{BaseURL: ln.APIPrefix, APIKey: ln.APIKey, Version: strings.TrimSpace(c.String("api-version")), Warnf: apiWarnf(c)})
	if err != nil {
		return &UsageError{Err: err}
	}
	s.runner.API = api
	s.runner.RPCURL = ln.RPCURL
	if s.runner.Trust.KMSContract == (common.Address{}) {
		s.runner.Trust.KMSContract = ln.KMSContract // deployed just now, by this process
	}
	s.runner.Signer = deployer.NewKeySigner(ln.DevAccount.PrivateKey)
	p.Printf("  chain %d at %s, KMS %s, cloud %s (ready in %s)", ln.ChainID, ln.RPCURL, ln.KMSContract.Hex(), ln.APIPrefix, time.Since(start).Round(time.Millisecond))
	p.Printf("  dev account %s (funded, key kept in memory)", ln.DevAccount.Address.Hex())
	return nil
}

// findAnvil finds the pinned anvil for --dev and testnet up. The first time,
// it installs it from npm (into .tools/anvil in this repository, else the
// user cache folder) with npm's progress on stderr; when that cannot work
// (no npm, no network) the error says what to do instead.
func findAnvil(c *cli.Context, p *progress) (string, error) {
	ctx, cancel := context.WithTimeout(c.Context, 10*time.Minute)
	defer cancel()
	lines := &prefixWriter{p: p, prefix: "  "}
	bin, err := testnet.FindAnvil(ctx, lines)
	lines.flush()
	if err != nil && errors.Is(err, testnet.ErrAnvilNotFound) && c.Context.Err() == nil {
		embedded := "testnet up --embedded"
		if c.Command.Name == "deploy" {
			embedded = "deploy --dev …"
		}
		return "", fmt.Errorf("%w. The local testnet runs anvil %s, which cvmdeploy installs with npm on first use; "+
			"without npm, set ANVIL_BIN to an anvil binary, or use the build with the embedded go-ethereum chain, "+
			"which needs nothing but Go: go run -tags devchain . %s", err, testnet.AnvilVersion, embedded)
	}
	return bin, err
}

// prefixWriter turns what a child process writes into progress lines.
type prefixWriter struct {
	p      *progress
	prefix string
	buf    []byte
}

func (w *prefixWriter) Write(b []byte) (int, error) {
	w.buf = append(w.buf, b...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			return len(b), nil
		}
		if line := bytes.TrimRight(w.buf[:i], "\r"); len(bytes.TrimSpace(line)) > 0 {
			w.p.Printf("%s%s", w.prefix, line)
		}
		w.buf = w.buf[i+1:]
	}
}

// flush prints an unterminated last line.
func (w *prefixWriter) flush() {
	if len(bytes.TrimSpace(w.buf)) > 0 {
		w.p.Printf("%s%s", w.prefix, w.buf)
	}
	w.buf = nil
}

var _ io.Writer = (*prefixWriter)(nil)
