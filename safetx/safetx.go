// Package safetx writes transaction batches in the Safe{Wallet} Transaction
// Builder's JSON import format, for AppAuth owners that are multisigs.
package safetx

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
)

// Batch is a Transaction Builder file. The checksum is optional in the
// format and left out: the builder then imports without checking it.
type Batch struct {
	Version      string        `json:"version"`
	ChainID      string        `json:"chainId"`
	CreatedAt    int64         `json:"createdAt"` // Unix milliseconds
	Meta         Meta          `json:"meta"`
	Transactions []Transaction `json:"transactions"`
}

// Meta names the batch and the Safe it was made for.
type Meta struct {
	Name                    string `json:"name"`
	Description             string `json:"description"`
	TxBuilderVersion        string `json:"txBuilderVersion,omitempty"`
	CreatedFromSafeAddress  string `json:"createdFromSafeAddress,omitempty"`
	CreatedFromOwnerAddress string `json:"createdFromOwnerAddress"`
}

// Transaction is one call, given as raw calldata.
type Transaction struct {
	To                   string  `json:"to"`
	Value                string  `json:"value"`
	Data                 string  `json:"data"`
	ContractMethod       *string `json:"contractMethod"`
	ContractInputsValues *string `json:"contractInputsValues"`
}

// Call is what a batch is made of.
type Call struct {
	To   common.Address
	Data []byte
}

// New builds a batch of calls for the Safe at safe on chainID.
func New(chainID uint64, safe common.Address, name, description string, now time.Time, calls ...Call) (*Batch, error) {
	if chainID == 0 {
		return nil, fmt.Errorf("safetx: chain id is required")
	}
	if len(calls) == 0 {
		return nil, fmt.Errorf("safetx: a batch needs at least one call")
	}
	b := &Batch{
		Version:   "1.0",
		ChainID:   strconv.FormatUint(chainID, 10),
		CreatedAt: now.UnixMilli(),
		Meta:      Meta{Name: name, Description: description},
	}
	if safe != (common.Address{}) {
		b.Meta.CreatedFromSafeAddress = safe.Hex()
	}
	for _, c := range calls {
		b.Transactions = append(b.Transactions, Transaction{To: c.To.Hex(), Value: "0", Data: hexutil.Encode(c.Data)})
	}
	return b, nil
}

// JSON renders the batch as the builder imports it. Names and descriptions
// are written as typed: encoding/json's default would turn "<" into
// "\u003c", which the builder shows verbatim.
func (b *Batch) JSON() ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(b); err != nil {
		return nil, err
	}
	return bytes.TrimRight(buf.Bytes(), "\n"), nil
}
