package safe

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"encoding/json"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/crypto"
)

// The vectors were made with the real packages (ethers, api-kit) and run on
// anvil; they are copied unchanged from shared/vectors/governance.
const vectorDir = "../testdata/governance"

func readVector(t *testing.T, name string, v any) []byte {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(vectorDir, name))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return raw
}

// keySigner signs digests with an in-memory key (the vectors' anvil keys).
type keySigner struct{ key *ecdsa.PrivateKey }

func (k keySigner) Address() common.Address { return crypto.PubkeyToAddress(k.key.PublicKey) }
func (k keySigner) SignHash(_ context.Context, h common.Hash) ([]byte, error) {
	return crypto.Sign(h[:], k.key)
}

type deployVector struct {
	Contracts map[string]struct {
		Address        common.Address `json:"address"`
		InitcodeKeccak common.Hash    `json:"initcodeKeccak"`
		RuntimeCode    common.Hash    `json:"runtimeCodeHash"`
	} `json:"contracts"`
	SingletonFactory struct {
		Address     common.Address `json:"address"`
		RuntimeCode hexutil.Bytes  `json:"runtimeCode"`
	} `json:"singletonFactory"`
	Keys map[string]struct {
		Key     string         `json:"key"`
		Address common.Address `json:"address"`
	} `json:"keys"`
	Safe struct {
		Singleton          common.Address   `json:"singleton"`
		Owners             []common.Address `json:"owners"`
		Threshold          uint64           `json:"threshold"`
		FallbackHandler    common.Address   `json:"fallbackHandler"`
		SetupCalldata      hexutil.Bytes    `json:"setupCalldata"`
		CreateCalldata     hexutil.Bytes    `json:"createProxyWithNonceCalldata"`
		ProxyCodeKeccak    common.Hash      `json:"proxyCreationCodeKeccak"`
		PredictedAddress   common.Address   `json:"predictedAddress"`
		DomainSeparator    common.Hash      `json:"domainSeparator31337"`
		DomainSeparator845 common.Hash      `json:"domainSeparator8453"`
	} `json:"safe2of3"`
}

// signers are the vectors' keys by address.
func signers(t *testing.T) map[common.Address]keySigner {
	t.Helper()
	var d deployVector
	readVector(t, "safe-deploy-anvil.json", &d)
	out := map[common.Address]keySigner{}
	for name, k := range d.Keys {
		key, err := crypto.HexToECDSA(k.Key[2:])
		if err != nil {
			t.Fatalf("key %s: %v", name, err)
		}
		s := keySigner{key}
		if s.Address() != k.Address {
			t.Fatalf("key %s derives %s, the vector says %s", name, s.Address(), k.Address)
		}
		out[k.Address] = s
	}
	return out
}

func TestDeployVector(t *testing.T) {
	var d deployVector
	readVector(t, "safe-deploy-anvil.json", &d)
	if d.SingletonFactory.Address != SingletonFactory || !bytes.Equal(d.SingletonFactory.RuntimeCode, SingletonFactoryRuntime) {
		t.Errorf("singleton factory %s / runtime differ from the vector", d.SingletonFactory.Address)
	}
	if len(d.Contracts) != len(Contracts()) {
		t.Fatalf("the vector has %d contracts, the package %d", len(d.Contracts), len(Contracts()))
	}
	for _, c := range Contracts() {
		v, ok := d.Contracts[c.Name]
		if !ok {
			t.Errorf("%s: not in the vector", c.Name)
			continue
		}
		if v.Address != c.Address || v.InitcodeKeccak != c.InitCodeHash || v.RuntimeCode != c.CodeHash {
			t.Errorf("%s: package %s %s %s, vector %s %s %s", c.Name, c.Address, c.InitCodeHash, c.CodeHash, v.Address, v.InitcodeKeccak, v.RuntimeCode)
		}
		// The canonical address is CREATE2 from the factory with a zero
		// salt over the init code whose keccak is pinned.
		if got := crypto.CreateAddress2(SingletonFactory, [32]byte{}, c.InitCodeHash[:]); got != c.Address {
			t.Errorf("%s: CREATE2 gives %s, want %s", c.Name, got, c.Address)
		}
	}
	s := d.Safe
	if s.Singleton != SafeL2.Address || s.FallbackHandler != FallbackHandler.Address || s.ProxyCodeKeccak != ProxyCreationCodeHash {
		t.Errorf("safe2of3 singleton/handler/proxy code hash differ from the package")
	}
	setup := SetupData(s.Owners, s.Threshold, s.FallbackHandler)
	if !bytes.Equal(setup, s.SetupCalldata) {
		t.Errorf("setup calldata\n got %x\nwant %x", setup, []byte(s.SetupCalldata))
	}
	create := CreateProxyData(s.Singleton, setup, big.NewInt(0))
	if !bytes.Equal(create, s.CreateCalldata) {
		t.Errorf("createProxyWithNonce calldata\n got %x\nwant %x", create, []byte(s.CreateCalldata))
	}
	if got := DomainSeparator(31337, s.PredictedAddress); got != s.DomainSeparator {
		t.Errorf("domain separator 31337 = %s, want %s", got, s.DomainSeparator)
	}
	if got := DomainSeparator(8453, s.PredictedAddress); got != s.DomainSeparator845 {
		t.Errorf("domain separator 8453 = %s, want %s", got, s.DomainSeparator845)
	}
}

type txVector struct {
	ChainID         uint64         `json:"chainId"`
	Safe            common.Address `json:"safe"`
	DomainSeparator common.Hash    `json:"domainSeparator"`
	Typehashes      struct {
		Domain common.Hash `json:"EIP712Domain"`
		SafeTx common.Hash `json:"SafeTx"`
	} `json:"typehashes"`
	Vectors []struct {
		Name   string `json:"name"`
		SafeTx struct {
			To             common.Address `json:"to"`
			Value          Dec            `json:"value"`
			Data           hexutil.Bytes  `json:"data"`
			Operation      uint8          `json:"operation"`
			SafeTxGas      Dec            `json:"safeTxGas"`
			BaseGas        Dec            `json:"baseGas"`
			GasPrice       Dec            `json:"gasPrice"`
			GasToken       common.Address `json:"gasToken"`
			RefundReceiver common.Address `json:"refundReceiver"`
			Nonce          uint64         `json:"nonce"`
		} `json:"safeTx"`
		StructHash *common.Hash  `json:"safeTxStructHash"`
		Encoded    hexutil.Bytes `json:"encodeTransactionData"`
		Owners     []struct {
			Owner     common.Address `json:"owner"`
			Signature hexutil.Bytes  `json:"signature"`
		} `json:"ownerSignatures"`
		InnerTxs []struct {
			Operation uint8          `json:"operation"`
			To        common.Address `json:"to"`
			Value     Dec            `json:"value"`
			Data      hexutil.Bytes  `json:"data"`
		} `json:"innerTxs"`
		Packed     hexutil.Bytes  `json:"packedTransactions"`
		SafeTxHash common.Hash    `json:"safeTxHash"`
		Signatures hexutil.Bytes  `json:"signatures"`
		ExecData   hexutil.Bytes  `json:"execTransactionCalldata"`
		ApproveBy  common.Address `json:"approveHashBy"`
		Executor   common.Address `json:"executor"`
	} `json:"vectors"`
}

func TestTxVectors(t *testing.T) {
	keys := signers(t)
	ctx := context.Background()
	for _, file := range []string{"safe-tx-31337.json", "safe-tx-8453.json"} {
		var f txVector
		readVector(t, file, &f)
		if f.Typehashes.Domain != DomainTypeHash || f.Typehashes.SafeTx != SafeTxTypeHash {
			t.Fatalf("%s: type hashes differ", file)
		}
		if got := DomainSeparator(f.ChainID, f.Safe); got != f.DomainSeparator {
			t.Fatalf("%s: domain separator %s, want %s", file, got, f.DomainSeparator)
		}
		for _, v := range f.Vectors {
			t.Run(file+"/"+v.Name, func(t *testing.T) {
				st := v.SafeTx
				tx := Tx{To: st.To, Value: &st.Value.Int, Data: st.Data, Operation: Operation(st.Operation), SafeTxGas: &st.SafeTxGas.Int,
					BaseGas: &st.BaseGas.Int, GasPrice: &st.GasPrice.Int, GasToken: st.GasToken, RefundReceiver: st.RefundReceiver, Nonce: st.Nonce}
				if v.InnerTxs != nil {
					var calls []Call
					for _, in := range v.InnerTxs {
						calls = append(calls, Call{To: in.To, Value: &in.Value.Int, Data: in.Data})
					}
					if got := PackMultiSend(calls); !bytes.Equal(got, v.Packed) {
						t.Fatalf("packed transactions\n got %x\nwant %x", got, []byte(v.Packed))
					}
					built, err := NewTx(calls, st.Nonce)
					if err != nil {
						t.Fatal(err)
					}
					if built.To != tx.To || built.Operation != tx.Operation || !bytes.Equal(built.Data, tx.Data) {
						t.Fatalf("NewTx built to %s op %d data %x; the vector has to %s op %d data %x", built.To, built.Operation, built.Data, tx.To, tx.Operation, tx.Data)
					}
					back, err := tx.Calls()
					if err != nil || len(back) != len(calls) || !bytes.Equal(back[1].Data, calls[1].Data) {
						t.Fatalf("Calls() = %v, %v", back, err)
					}
				}
				if v.StructHash != nil && tx.StructHash() != *v.StructHash {
					t.Errorf("struct hash %s, want %s", tx.StructHash(), *v.StructHash)
				}
				if v.Encoded != nil && !bytes.Equal(tx.Encode(f.ChainID, f.Safe), v.Encoded) {
					t.Errorf("encodeTransactionData %x, want %x", tx.Encode(f.ChainID, f.Safe), []byte(v.Encoded))
				}
				h := tx.Hash(f.ChainID, f.Safe)
				if h != v.SafeTxHash {
					t.Fatalf("safeTxHash %s, want %s", h, v.SafeTxHash)
				}
				for _, o := range v.Owners {
					s, err := Sign(ctx, keys[o.Owner], h)
					if err != nil {
						t.Fatal(err)
					}
					if !bytes.Equal(s.Static, o.Signature) || s.Owner != o.Owner {
						t.Errorf("%s's signature %x, want %x", o.Owner, s.Static, []byte(o.Signature))
					}
				}
				// Re-make every signature from the keys, in the form the
				// packed bytes use, and pack them in reverse order.
				parsed, err := Parse(h, v.Signatures)
				if err != nil {
					t.Fatal(err)
				}
				var remade []Signature
				for _, p := range parsed {
					var s Signature
					switch p.Type {
					case SigEOA:
						s, err = Sign(ctx, keys[p.Owner], h)
					case SigEthSign:
						s, err = SignEthSign(ctx, keys[p.Owner], h)
					case SigApprovedHash:
						s = ApprovedHash(p.Owner)
						if p.Owner != v.ApproveBy && p.Owner != v.Executor {
							t.Errorf("approved-hash item for %s, who neither approved nor executed", p.Owner)
						}
					default:
						t.Fatalf("unexpected %s item", p.Type)
					}
					if err != nil {
						t.Fatal(err)
					}
					if _, ok := keys[p.Owner]; !ok {
						t.Fatalf("signature by %s, not a vector key", p.Owner)
					}
					remade = append(remade, s)
				}
				slices.Reverse(remade)
				packed := Pack(remade)
				if !bytes.Equal(packed, v.Signatures) {
					t.Fatalf("packed signatures\n got %x\nwant %x", packed, []byte(v.Signatures))
				}
				if got := tx.ExecData(packed); !bytes.Equal(got, v.ExecData) {
					t.Fatalf("execTransaction calldata\n got %x\nwant %x", got, []byte(v.ExecData))
				}
			})
		}
	}
}

type apikitVector struct {
	DefaultBaseUrls map[string]string `json:"defaultBaseUrls"`
	Propose         struct {
		Path    string            `json:"path"`
		Headers map[string]string `json:"headers"`
		Body    json.RawMessage   `json:"body"`
	} `json:"proposeTransaction"`
	GetTransaction struct {
		Path string `json:"path"`
	} `json:"getTransaction"`
	Confirm struct {
		Path string          `json:"path"`
		Body json.RawMessage `json:"body"`
	} `json:"confirmTransaction"`
	GetSafeInfo struct {
		Path string `json:"path"`
	} `json:"getSafeInfo"`
	AddDelegate struct {
		Path string          `json:"path"`
		Body json.RawMessage `json:"body"`
	} `json:"addSafeDelegate"`
	RemoveDelegate struct {
		Body json.RawMessage `json:"body"`
	} `json:"removeSafeDelegate"`
	Delegate struct {
		ChainID         uint64         `json:"chainId"`
		Now             int64          `json:"nowSeconds"`
		TOTP            uint64         `json:"totp"`
		Delegate        common.Address `json:"delegate"`
		Delegator       common.Address `json:"delegator"`
		DomainSeparator common.Hash    `json:"domainSeparator"`
		Digest          common.Hash    `json:"digest"`
		Signature       hexutil.Bytes  `json:"signature"`
		APIKitSignature hexutil.Bytes  `json:"apiKitSignature"`
		TypehashDel     common.Hash    `json:"typehashDelegate"`
	} `json:"delegateSignatureVector"`
	Errors map[string]struct {
		StatusCode int             `json:"statusCode"`
		Message    string          `json:"message"`
		Data       json.RawMessage `json:"data"`
	} `json:"httpErrorMapping"`
}

func compact(t *testing.T, raw json.RawMessage) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestServiceRequestVectors: the bodies this package sends are byte for
// byte what api-kit 5.0.3 sent for the same transaction and delegate.
func TestServiceRequestVectors(t *testing.T) {
	keys := signers(t)
	ctx := context.Background()
	var v apikitVector
	readVector(t, "tx-service-apikit.json", &v)
	for id, want := range v.DefaultBaseUrls {
		var chainID uint64
		if err := json.Unmarshal([]byte(id), &chainID); err != nil {
			t.Fatal(err)
		}
		if got := ServiceURL(chainID); got != want {
			t.Errorf("ServiceURL(%d) = %q, want %q", chainID, got, want)
		}
	}
	if ServiceURL(31337) != "" {
		t.Error("a service URL for anvil")
	}

	var tv txVector
	readVector(t, "safe-tx-8453.json", &tv)
	vec := tv.Vectors[1] // safe-addComposeHash-eip712, as the api-kit capture says
	st := vec.SafeTx
	tx := Tx{To: st.To, Value: &st.Value.Int, Data: st.Data, Nonce: st.Nonce}
	h := tx.Hash(8453, tv.Safe)
	owner1 := common.HexToAddress("0x70997970C51812dc3A010C7d01b50e0d17dc79C8")
	owner2 := common.HexToAddress("0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC")
	s1, _ := Sign(ctx, keys[owner1], h)
	body, err := json.Marshal(NewProposeRequest(tx, h, owner1, s1.Static, `{"url":"cli","name":"dstack-cli"}`))
	if err != nil {
		t.Fatal(err)
	}
	if want := compact(t, v.Propose.Body); !bytes.Equal(body, want) {
		t.Errorf("propose body\n got %s\nwant %s", body, want)
	}
	s2, _ := Sign(ctx, keys[owner2], h)
	body, _ = json.Marshal(ConfirmRequest{Signature: hexutil.Encode(s2.Static)})
	if want := compact(t, v.Confirm.Body); !bytes.Equal(body, want) {
		t.Errorf("confirm body\n got %s\nwant %s", body, want)
	}

	d := v.Delegate
	if delegateTypeHash != d.TypehashDel || ServiceDomainSeparator(d.ChainID) != d.DomainSeparator {
		t.Fatalf("delegate type hash or domain differ")
	}
	now := time.Unix(d.Now, 0)
	if TOTP(now) != d.TOTP || DelegateDigest(d.ChainID, d.Delegate, d.TOTP) != d.Digest {
		t.Fatalf("totp %d digest %s, want %d %s", TOTP(now), DelegateDigest(d.ChainID, d.Delegate, d.TOTP), d.TOTP, d.Digest)
	}
	sig, err := SignDelegate(ctx, keys[d.Delegator], d.ChainID, d.Delegate, now)
	if err != nil || !bytes.Equal(sig, d.Signature) || !bytes.Equal(sig, d.APIKitSignature) {
		t.Fatalf("delegate signature %x (%v), want %x", sig, err, []byte(d.Signature))
	}
	who, err := RecoverDelegateSigner(d.ChainID, d.Delegate, sig, now.Add(time.Hour))
	if err != nil || !slices.Contains(who, d.Delegator) {
		t.Fatalf("the previous hour's signature does not recover the delegator: %v %v", who, err)
	}
	safeAddr := tv.Safe.Hex()
	body, _ = json.Marshal(DelegateRequest{Safe: &safeAddr, Delegate: d.Delegate.Hex(), Delegator: d.Delegator.Hex(), Label: "cli-proposer", Signature: hexutil.Encode(sig)})
	if want := compact(t, v.AddDelegate.Body); !bytes.Equal(body, want) {
		t.Errorf("add delegate body\n got %s\nwant %s", body, want)
	}
	body, _ = json.Marshal(DelegateRemoveRequest{Delegator: d.Delegator.Hex(), Signature: hexutil.Encode(sig)})
	if want := compact(t, v.RemoveDelegate.Body); !bytes.Equal(body, want) {
		t.Errorf("remove delegate body\n got %s\nwant %s", body, want)
	}

	for name, e := range v.Errors {
		body := []byte(e.Data)
		if got := apiKitMessage(e.StatusCode, body); got != e.Message {
			t.Errorf("%s: message %q, want api-kit's %q", name, got, e.Message)
		}
	}
}
