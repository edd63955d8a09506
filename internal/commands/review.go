package commands

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/urfave/cli/v2"

	"github.com/cvmdeploy/cvmdeploy/cvm"
	"github.com/cvmdeploy/cvmdeploy/review"
)

// reviewFlag is --review FILE: a self-contained HTML page for the people
// who approve the change.
func reviewFlag(what string) cli.Flag {
	return &cli.StringFlag{Name: "review", Usage: "write a self-contained HTML page to review " + what + ": the compose diff, env names (never values), how the compose hash was checked, each on-chain call decoded, the owner and what it must do, the on-chain status (no scripts, no requests)"}
}

// checkReviewPath refuses, before anything is sent, a --review file whose
// folder does not exist.
func checkReviewPath(c *cli.Context) error {
	path := c.String("review")
	if path == "" {
		return nil
	}
	if st, err := os.Stat(filepath.Dir(path)); err != nil || !st.IsDir() {
		return &UsageError{Err: fmt.Errorf("--review %s: the folder %s does not exist", path, filepath.Dir(path))}
	}
	return nil
}

// writeUpdateReview writes --review for an update that got far enough to
// have something to review; it returns the path written ("" when none).
func writeUpdateReview(c *cli.Context, res *cvm.UpdateResult, safeFile string) (string, error) {
	path := c.String("review")
	if path == "" || res.Review == nil {
		return "", nil
	}
	if err := review.Write(path, review.FromUpdate(res, review.Options{SafeFile: safeFile})); err != nil {
		return "", err
	}
	newProgress(c).Printf("✓ review page written: %s", path)
	return path, nil
}

// writeDryRunReview writes --review for deploy --dry-run.
func writeDryRunReview(c *cli.Context, out *cvm.DryRunResult) (string, error) {
	path := c.String("review")
	if path == "" {
		return "", nil
	}
	if err := review.Write(path, review.FromDryRun(out, review.Options{})); err != nil {
		return "", err
	}
	newProgress(c).Printf("✓ review page written: %s", path)
	return path, nil
}

// checkDeployReview: a deployment's page shows what a dry run would do, for
// one app.
func checkDeployReview(c *cli.Context) error {
	if c.String("review") == "" {
		return nil
	}
	if !c.Bool("dry-run") {
		return &UsageError{Err: errors.New("--review goes with --dry-run: the page shows what the deployment would send and commit")}
	}
	if c.String("batch") != "" {
		return &UsageError{Err: errors.New("--review takes one app: drop --batch")}
	}
	return checkReviewPath(c)
}
