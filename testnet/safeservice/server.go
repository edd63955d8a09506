// Package safeservice is a local Safe Transaction Service: the routes
// @safe-global/api-kit 5.0.3 uses to propose, read, confirm and list Safe
// transactions and to manage delegates, backed by the chain. Like the real
// service it recomputes every safeTxHash from the Safe's domain, checks
// every signature against the Safe's live owners and registered
// delegates, and refuses what the real one refuses.
package safeservice

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/ethereum/go-ethereum"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"

	"github.com/cvmdeploy/cvmdeploy/safe"
)

// Chain is what the service reads (an ethclient.Client has it all).
type Chain interface {
	safe.Caller
	ChainID(ctx context.Context) (*big.Int, error)
	BlockNumber(ctx context.Context) (uint64, error)
	FilterLogs(ctx context.Context, q ethereum.FilterQuery) ([]types.Log, error)
	TransactionByHash(ctx context.Context, h common.Hash) (*types.Transaction, bool, error)
	TransactionReceipt(ctx context.Context, h common.Hash) (*types.Receipt, error)
	HeaderByNumber(ctx context.Context, n *big.Int) (*types.Header, error)
}

// Config configures a Server.
type Config struct {
	Chain Chain
	// APIKey, when set, must come as "Authorization: Bearer <key>" (as the
	// hosted service wants one); empty accepts every request, as a
	// self-hosted service does.
	APIKey string
	// Now is the clock of delegate signatures (TOTP) and timestamps;
	// nil is time.Now.
	Now func() time.Time
	// Log receives the event log (slog text); nil discards it.
	Log io.Writer
}

// Server is a running local Transaction Service.
type Server struct {
	cfg     Config
	chainID uint64
	log     *slog.Logger
	mux     *http.ServeMux

	mu        sync.Mutex
	txs       map[common.Hash]*entry
	order     []common.Hash // proposal order
	delegates []*delegate

	httpMu  sync.Mutex
	httpSrv *http.Server
	baseURL string
}

// New checks the chain and builds the service; Start serves it.
func New(ctx context.Context, cfg Config) (*Server, error) {
	if cfg.Chain == nil {
		return nil, errors.New("safeservice: no chain")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = io.Discard
	}
	id, err := cfg.Chain.ChainID(ctx)
	if err != nil {
		return nil, fmt.Errorf("safeservice: eth_chainId: %w", err)
	}
	s := &Server{cfg: cfg, chainID: id.Uint64(), txs: map[common.Hash]*entry{},
		log: slog.New(slog.NewTextHandler(cfg.Log, &slog.HandlerOptions{Level: slog.LevelDebug})).With("service", "safe")}
	s.routes()
	return s, nil
}

// Handler serves the API under /api (the base api-kit takes is URL()).
func (s *Server) Handler() http.Handler { return s.mux }

func (s *Server) routes() {
	m := http.NewServeMux()
	m.HandleFunc("GET /api/v1/safes/{safe}/{$}", s.auth(s.getSafe))
	m.HandleFunc("POST /api/v2/safes/{safe}/multisig-transactions/{$}", s.auth(s.propose))
	m.HandleFunc("GET /api/v2/safes/{safe}/multisig-transactions/{$}", s.auth(s.listTxs))
	m.HandleFunc("GET /api/v2/multisig-transactions/{hash}/{$}", s.auth(s.getTx))
	m.HandleFunc("GET /api/v1/multisig-transactions/{hash}/confirmations/{$}", s.auth(s.listConfirmations))
	m.HandleFunc("POST /api/v1/multisig-transactions/{hash}/confirmations/{$}", s.auth(s.confirm))
	// api-kit asks for /v2/delegates and /v2/delegates/{d} without the
	// trailing slash the routes have; both forms are served.
	for _, p := range []string{"/api/v2/delegates", "/api/v2/delegates/{$}"} {
		m.HandleFunc("GET "+p, s.auth(s.listDelegates))
		m.HandleFunc("POST "+p, s.auth(s.addDelegate))
	}
	m.HandleFunc("DELETE /api/v2/delegates/{delegate}", s.auth(s.removeDelegate))
	m.HandleFunc("DELETE /api/v2/delegates/{delegate}/{$}", s.auth(s.removeDelegate))
	m.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, map[string]string{"detail": "Not found."})
	})
	s.mux = m
}

// auth requires the bearer key when one is configured.
func (s *Server) auth(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.cfg.APIKey != "" && r.Header.Get("Authorization") != "Bearer "+s.cfg.APIKey {
			s.log.Info("refused: no or wrong API key", "method", r.Method, "path", r.URL.Path)
			writeJSON(w, http.StatusUnauthorized, map[string]string{"detail": "Authentication credentials were not provided."})
			return
		}
		h(w, r)
	}
}

// Start listens on addr (e.g. "127.0.0.1:0") and serves in the background.
func (s *Server) Start(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("safeservice: listen %s: %w", addr, err)
	}
	srv := &http.Server{Handler: s.mux, ReadHeaderTimeout: 10 * time.Second}
	s.httpMu.Lock()
	s.httpSrv, s.baseURL = srv, "http://"+ln.Addr().String()+"/api"
	s.httpMu.Unlock()
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("http server stopped", "err", err)
		}
	}()
	s.log.Info("Safe Transaction Service listening", "url", s.URL(), "chain_id", s.chainID)
	return nil
}

// URL is the base api-kit takes as txServiceUrl ("http://host:port/api").
func (s *Server) URL() string {
	s.httpMu.Lock()
	defer s.httpMu.Unlock()
	return s.baseURL
}

// Close stops serving.
func (s *Server) Close() error {
	s.httpMu.Lock()
	srv := s.httpSrv
	s.httpSrv = nil
	s.httpMu.Unlock()
	if srv == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		return srv.Close()
	}
	return nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// The error bodies of the real service (Django REST framework).

// fieldErrors is {"field": ["message"]}.
func fieldErrors(field, msg string) map[string][]string { return map[string][]string{field: {msg}} }

// nonField is {"nonFieldErrors": ["message"]}.
func nonField(msg string) map[string][]string { return fieldErrors("nonFieldErrors", msg) }

// checksumError is the path-parameter refusal.
func checksumError(w http.ResponseWriter, addr string) {
	writeJSON(w, http.StatusUnprocessableEntity, map[string]any{"code": 1, "message": "Checksum address validation failed", "arguments": []string{addr}})
}

// pathAddress reads an EIP-55 address from the path, or answers 422.
func pathAddress(w http.ResponseWriter, r *http.Request, name string) (common.Address, bool) {
	v := r.PathValue(name)
	if !checksummed(v) {
		checksumError(w, v)
		return common.Address{}, false
	}
	return common.HexToAddress(v), true
}

// checksummed: the service takes EIP-55 addresses only (the zero address
// in any case).
func checksummed(v string) bool {
	if !common.IsHexAddress(v) || !strings.HasPrefix(v, "0x") {
		return false
	}
	a := common.HexToAddress(v)
	return a.Hex() == v || a == (common.Address{})
}

// pathHash reads a 0x-prefixed 32-byte hash from the path, or answers 404
// as the real service does for anything that is no known hash.
func pathHash(w http.ResponseWriter, r *http.Request) (common.Hash, bool) {
	v := r.PathValue("hash")
	if len(v) != 66 || !strings.HasPrefix(v, "0x") {
		writeJSON(w, http.StatusNotFound, map[string]string{"detail": "No MultisigTransaction matches the given query."})
		return common.Hash{}, false
	}
	for _, c := range v[2:] {
		if !strings.ContainsRune("0123456789abcdefABCDEF", c) {
			writeJSON(w, http.StatusNotFound, map[string]string{"detail": "No MultisigTransaction matches the given query."})
			return common.Hash{}, false
		}
	}
	return common.HexToHash(v), true
}

// readBody decodes a JSON object body (at most 1 MiB).
func readBody(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
	if err := dec.Decode(v); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"detail": "JSON parse error - " + err.Error()})
		return false
	}
	return true
}

func (s *Server) now() time.Time { return s.cfg.Now().UTC() }

// stamp is the service's timestamp format.
func stamp(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000000Z") }

// safeState reads a Safe; an address that is none is a 422 refusal (the
// real service has not indexed it), a failing node a plain error.
func (s *Server) safeState(ctx context.Context, addr common.Address) (*safe.State, error) {
	st, err := safe.ReadState(ctx, s.cfg.Chain, addr)
	if errors.Is(err, safe.ErrNotSafe) {
		return nil, unprocessable(nonField(fmt.Sprintf("Safe=%s does not exist or it's still not indexed", addr.Hex())))
	}
	return st, err
}

// getSafe is GET /v1/safes/{safe}/.
func (s *Server) getSafe(w http.ResponseWriter, r *http.Request) {
	addr, ok := pathAddress(w, r, "safe")
	if !ok {
		return
	}
	st, err := safe.ReadState(r.Context(), s.cfg.Chain, addr)
	if err != nil {
		if errors.Is(err, safe.ErrNotSafe) {
			writeJSON(w, http.StatusNotFound, map[string]string{"detail": "Not found."})
			return
		}
		s.chainTrouble(w, err)
		return
	}
	mods, err := safe.Modules(r.Context(), s.cfg.Chain, addr)
	if err != nil {
		s.chainTrouble(w, err)
		return
	}
	info := safe.SafeInfo{Address: addr.Hex(), Nonce: safe.NewDec(new(big.Int).SetUint64(st.Nonce)), Threshold: int(st.Threshold),
		MasterCopy: st.Singleton.Hex(), FallbackHandler: st.FallbackHandler.Hex(), Guard: st.Guard.Hex(),
		ModuleGuard: common.Address{}.Hex(), Version: st.Version, Owners: []string{}, Modules: []string{}}
	for _, o := range st.Owners {
		info.Owners = append(info.Owners, o.Hex())
	}
	for _, m := range mods {
		info.Modules = append(info.Modules, m.Hex())
	}
	writeJSON(w, http.StatusOK, info)
}

// chainTrouble is the real service's answer when its node fails.
func (s *Server) chainTrouble(w http.ResponseWriter, err error) {
	s.log.Error("chain read failed", "err", err)
	writeJSON(w, http.StatusServiceUnavailable, map[string]any{"code": 50, "message": "Problem connecting to Ethereum network", "exception": "Problem connecting to Ethereum network"})
}
