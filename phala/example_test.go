package phala_test

import (
	"context"
	"fmt"
	"log"

	"github.com/cvmdeploy/cvmdeploy/phala"
)

// The two-phase on-chain deploy with this client. The chain step (the
// deployer package) and the env encryption (the kms package) are elided.
func Example_onChainDeploy() {
	ctx := context.Background()
	c, err := phala.New(phala.ConfigFromEnv())
	if err != nil {
		log.Fatal(err)
	}
	prov, err := c.Provision(ctx, phala.ProvisionRequest{
		Name:        "my-app-1",
		KMS:         phala.KMSBase,
		ComposeFile: phala.ComposeFile{DockerComposeFile: "services: {}\n", AllowedEnvs: []string{"API_TOKEN"}},
	})
	if err != nil {
		log.Fatal(err)
	}
	if !prov.OnChain() {
		log.Fatal("the service answered for a cloud KMS")
	}
	// deployAndRegisterApp(owner, false, false, 0x<device_id>, 0x<compose_hash>)
	// on *prov.KMSInfo.KMSContractAddress gives appID.
	appID := "0x..."
	key, err := c.AppPubKey(ctx, prov.KMSInfo.Ref(), appID)
	if err != nil {
		log.Fatal(err)
	}
	_ = key.PublicKey // verify key.Signature against the KMS root key, then encrypt the env to it
	cvm, err := c.Commit(ctx, phala.CommitRequest{
		AppID: appID, ComposeHash: prov.ComposeHash, EncryptedEnv: "…",
		KMSID: prov.KMSInfo.Ref(), ContractAddress: appID, DeployerAddress: "0x...",
	})
	if err != nil {
		log.Fatal(err)
	}
	st, err := c.WatchState(ctx, cvm.ID.String(), "running", func(s phala.CVMState) { fmt.Println(s.Status) })
	if err != nil {
		log.Fatal(err) // a *phala.BootError when the on-chain check failed at boot
	}
	fmt.Println(st.Status, phala.DashboardURL(*cvm.VMUUID))
}
