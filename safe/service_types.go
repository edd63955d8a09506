package safe

import (
	"encoding/json"
	"fmt"
	"math/big"
	"strconv"
	"strings"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
)

// The Safe Transaction Service's JSON, as api-kit 5.0.3 sends and reads it
// (camelCase keys, EIP-55 addresses, big numbers as decimal strings).

// Dec is a non-negative integer written as a decimal string ("0") and
// read from a string or a JSON number, as the service's fields are.
type Dec struct{ big.Int }

// NewDec returns v as a Dec (nil counts as zero).
func NewDec(v *big.Int) Dec {
	var d Dec
	if v != nil {
		d.Set(v)
	}
	return d
}

func (d Dec) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

func (d *Dec) UnmarshalJSON(b []byte) error {
	s := strings.TrimSpace(string(b))
	if s == "null" {
		d.SetInt64(0)
		return nil
	}
	if len(s) >= 2 && s[0] == '"' {
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
	}
	if _, ok := d.SetString(s, 10); !ok || d.Sign() < 0 {
		return fmt.Errorf("%q is not a non-negative decimal integer", s)
	}
	return nil
}

// Nonce is a Safe nonce, written as a JSON number (as api-kit sends it)
// and read from a number or a string.
type Nonce uint64

func (n *Nonce) UnmarshalJSON(b []byte) error {
	s := strings.TrimSpace(string(b))
	if len(s) >= 2 && s[0] == '"' {
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return fmt.Errorf("nonce %s is not a non-negative integer", s)
	}
	*n = Nonce(v)
	return nil
}

// ProposeRequest is the body of POST /v2/safes/{safe}/multisig-transactions/,
// its fields in api-kit's order (the SafeTx fields, then the four others).
type ProposeRequest struct {
	To                      string `json:"to"`
	Value                   Dec    `json:"value"`
	Data                    string `json:"data"`
	Operation               uint8  `json:"operation"`
	SafeTxGas               Dec    `json:"safeTxGas"`
	BaseGas                 Dec    `json:"baseGas"`
	GasPrice                Dec    `json:"gasPrice"`
	GasToken                string `json:"gasToken"`
	RefundReceiver          string `json:"refundReceiver"`
	Nonce                   Nonce  `json:"nonce"`
	ContractTransactionHash string `json:"contractTransactionHash"`
	Sender                  string `json:"sender"`
	Signature               string `json:"signature,omitempty"`
	Origin                  string `json:"origin,omitempty"`
}

// NewProposeRequest fills a proposal of t by sender with its signature
// (nil for none).
func NewProposeRequest(t Tx, safeTxHash common.Hash, sender common.Address, sig []byte, origin string) ProposeRequest {
	r := ProposeRequest{
		To: t.To.Hex(), Value: NewDec(t.Value), Data: hexutil.Encode(nonNil(t.Data)), Operation: uint8(t.Operation),
		SafeTxGas: NewDec(t.SafeTxGas), BaseGas: NewDec(t.BaseGas), GasPrice: NewDec(t.GasPrice),
		GasToken: t.GasToken.Hex(), RefundReceiver: t.RefundReceiver.Hex(), Nonce: Nonce(t.Nonce),
		ContractTransactionHash: safeTxHash.Hex(), Sender: sender.Hex(), Origin: origin,
	}
	if sig != nil {
		r.Signature = hexutil.Encode(sig)
	}
	return r
}

// ConfirmRequest is the body of POST /v1/multisig-transactions/{hash}/confirmations/.
type ConfirmRequest struct {
	Signature string `json:"signature"`
}

// Confirmation is one owner's signature of a queued transaction.
type Confirmation struct {
	Owner           string  `json:"owner"`
	SubmissionDate  string  `json:"submissionDate"`
	TransactionHash *string `json:"transactionHash"`
	Signature       string  `json:"signature"`
	SignatureType   SigType `json:"signatureType"`
}

// ServiceTx is a multisig transaction as GET /v2/multisig-transactions/{hash}/
// returns it.
type ServiceTx struct {
	Safe                  string         `json:"safe"`
	To                    string         `json:"to"`
	Value                 Dec            `json:"value"`
	Data                  *string        `json:"data"`
	Operation             uint8          `json:"operation"`
	GasToken              string         `json:"gasToken"`
	SafeTxGas             Dec            `json:"safeTxGas"`
	BaseGas               Dec            `json:"baseGas"`
	GasPrice              Dec            `json:"gasPrice"`
	RefundReceiver        string         `json:"refundReceiver"`
	Nonce                 Dec            `json:"nonce"`
	ExecutionDate         *string        `json:"executionDate"`
	SubmissionDate        string         `json:"submissionDate"`
	Modified              string         `json:"modified"`
	BlockNumber           *uint64        `json:"blockNumber"`
	TransactionHash       *string        `json:"transactionHash"`
	SafeTxHash            string         `json:"safeTxHash"`
	Proposer              *string        `json:"proposer"`
	ProposedByDelegate    *string        `json:"proposedByDelegate"`
	Executor              *string        `json:"executor"`
	IsExecuted            bool           `json:"isExecuted"`
	IsSuccessful          *bool          `json:"isSuccessful"`
	EthGasPrice           *string        `json:"ethGasPrice"`
	MaxFeePerGas          *string        `json:"maxFeePerGas"`
	MaxPriorityFeePerGas  *string        `json:"maxPriorityFeePerGas"`
	GasUsed               *uint64        `json:"gasUsed"`
	Fee                   *string        `json:"fee"`
	Payment               *string        `json:"payment"`
	Origin                *string        `json:"origin"`
	DataDecoded           any            `json:"dataDecoded"`
	ConfirmationsRequired int            `json:"confirmationsRequired"`
	Confirmations         []Confirmation `json:"confirmations"`
	Trusted               bool           `json:"trusted"`
	Signatures            *string        `json:"signatures"`
}

// Tx is the Safe transaction the service describes. It fails on fields
// that are not addresses or hex.
func (s *ServiceTx) Tx() (Tx, error) {
	var t Tx
	for _, a := range []struct {
		name string
		v    string
		dst  *common.Address
	}{{"to", s.To, &t.To}, {"gasToken", s.GasToken, &t.GasToken}, {"refundReceiver", s.RefundReceiver, &t.RefundReceiver}} {
		if !common.IsHexAddress(a.v) {
			return t, fmt.Errorf("the service's transaction has %s %q, not an address", a.name, a.v)
		}
		*a.dst = common.HexToAddress(a.v)
	}
	if s.Data != nil && *s.Data != "" {
		b, err := hexutil.Decode(*s.Data)
		if err != nil {
			return t, fmt.Errorf("the service's transaction data is not hex: %w", err)
		}
		t.Data = b
	}
	if !s.Nonce.IsUint64() {
		return t, fmt.Errorf("the service's transaction nonce %s is out of range", s.Nonce.String())
	}
	t.Value = new(big.Int).Set(&s.Value.Int)
	t.Operation = Operation(s.Operation)
	t.SafeTxGas = new(big.Int).Set(&s.SafeTxGas.Int)
	t.BaseGas = new(big.Int).Set(&s.BaseGas.Int)
	t.GasPrice = new(big.Int).Set(&s.GasPrice.Int)
	t.Nonce = s.Nonce.Uint64()
	return t, nil
}

// Page is one page of a list endpoint.
type Page[T any] struct {
	Count            int     `json:"count"`
	Next             *string `json:"next"`
	Previous         *string `json:"previous"`
	Results          []T     `json:"results"`
	CountUniqueNonce *int    `json:"countUniqueNonce,omitempty"`
}

// SafeInfo is GET /v1/safes/{safe}/: the Safe as the service indexed it.
type SafeInfo struct {
	Address         string   `json:"address"`
	Nonce           Dec      `json:"nonce"`
	Threshold       int      `json:"threshold"`
	Owners          []string `json:"owners"`
	MasterCopy      string   `json:"masterCopy"`
	Modules         []string `json:"modules"`
	FallbackHandler string   `json:"fallbackHandler"`
	Guard           string   `json:"guard"`
	ModuleGuard     string   `json:"moduleGuard"`
	Version         string   `json:"version"`
}

// DelegateRequest is the body of POST /v2/delegates/ (api-kit's order).
type DelegateRequest struct {
	Safe       *string `json:"safe"`
	Delegate   string  `json:"delegate"`
	Delegator  string  `json:"delegator"`
	Label      string  `json:"label"`
	Signature  string  `json:"signature"`
	ExpiryDate *string `json:"expiryDate,omitempty"`
}

// DelegateRemoveRequest is the body of DELETE /v2/delegates/{delegate}.
type DelegateRemoveRequest struct {
	Delegator string  `json:"delegator"`
	Signature string  `json:"signature"`
	Safe      *string `json:"safe,omitempty"`
}

// Delegate is one registered delegate.
type Delegate struct {
	Safe       *string `json:"safe"`
	Delegate   string  `json:"delegate"`
	Delegator  string  `json:"delegator"`
	Label      string  `json:"label"`
	ExpiryDate *string `json:"expiryDate"`
}
