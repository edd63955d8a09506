// Package cloud is a local Phala Cloud API emulator backed by a real chain:
// it provisions app-composes, serves KMS env-encryption keys signed by a
// local KMS root key, and boots CVMs only when the on-chain DstackKms allows
// them, so deploy flows can be rehearsed end to end on anvil.
package cloud

import (
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"math/rand"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/ethereum/go-ethereum"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/crypto"
)

// API versions the emulator understands (X-Phala-Version).
const (
	Version20251028 = "2025-10-28" // integer CVM ids, v1 KmsInfo in CVM objects; pinned by `phala deploy`
	Version20260121 = "2026-01-21" // integer CVM ids (SDK 0.2.9 default)
	Version20260522 = "2026-05-22" // hashed string CVM ids "cvm_<hashid>"; same-path provision on POST /cvms
	Version20260623 = "2026-06-23" // GET /kms lists KMS contracts; CVM shapes as 2026-05-22
)

// Versions are the X-Phala-Version values the emulator serves, oldest first
// ("latest" is the newest).
var Versions = []string{Version20251028, Version20260121, Version20260522, Version20260623}

// Defaults applied by Config.withDefaults.
const (
	DefaultPathPrefix   = "/api/v1"
	DefaultKMSSlug      = "kms-local"
	DefaultOSImageName  = "dstack-0.5.5"
	DefaultNodeName     = "local-node-1"
	DefaultBootStep     = 50 * time.Millisecond
	DefaultProvisionTTL = time.Hour
	DefaultPortalURL    = "https://cloud.phala.com"
	// CloudKMSSlug names the emulated cloud (PHALA) KMS, which has no chain.
	CloudKMSSlug = "phala"
	// MaxComposeBytes is the limit on docker_compose_file + pre_launch_script.
	MaxComposeBytes = 200 * 1024
)

// Backend is the chain access the cloud needs; *ethclient.Client has it.
type Backend interface {
	ChainID(ctx context.Context) (*big.Int, error)
	CallContract(ctx context.Context, call ethereum.CallMsg, blockNumber *big.Int) ([]byte, error)
	TransactionReceipt(ctx context.Context, txHash common.Hash) (*types.Receipt, error)
}

// Config describes the emulated cloud. Zero values take the defaults named
// in the field comments.
type Config struct {
	// APIKey is the only X-API-Key value accepted (required).
	APIKey string
	// Chain is the connection to the chain that holds KMSContract (required).
	Chain Backend
	// ChainID is the chain's id; it is checked against Chain at start
	// (zero: take the chain's).
	ChainID uint64
	// RPCURL is advertised as kms_info.rpc_endpoint in 2026 CVM objects.
	RPCURL string
	// KMSContract is the DstackKms proxy on Chain (required).
	KMSContract common.Address
	// KMSSlug is the on-chain KMS's id and slug (default "kms-local").
	KMSSlug string
	// KMSURL is the advertised KMS endpoint (default derived from the slug).
	KMSURL string
	// KMSVersion is the advertised KMS version (default "v0.5.5").
	KMSVersion string
	// GatewayAppID is kms_info.gateway_app_id (default null).
	GatewayAppID string
	// RootKey is the KMS root secp256k1 key; its compressed public key must be
	// kmsInfo().k256Pubkey on-chain (required).
	RootKey *ecdsa.PrivateKey
	// KMSSecret seeds the per-app X25519 keys (default: derived from RootKey).
	KMSSecret []byte
	// DeviceID is the one node's TDX device id (default sha256 of a fixed label).
	DeviceID common.Hash
	// OSImageHash is the image the node boots; the setup allows it on-chain
	// with addOsImageHash (required).
	OSImageHash common.Hash
	// OSImageName is the image's name (default "dstack-0.5.5").
	OSImageName string
	// NodeID and NodeName identify the one node (defaults 1 and "local-node-1").
	NodeID   int64
	NodeName string
	// BootStep is how long each of creating and starting lasts (default 50 ms).
	BootStep time.Duration
	// Latency is added to every API request.
	Latency time.Duration
	// Rate429 and Rate5xx are the probabilities (0..1) that a request is
	// answered 429 or 503 before it is handled (nothing is stored then).
	Rate429, Rate5xx float64
	// Seed seeds the fault-injection RNG so runs are reproducible.
	Seed int64
	// Log receives the structured event log (slog text); nil discards it.
	// It never contains env values, API keys or private keys.
	Log io.Writer
	// ProvisionTTL is how long a provision (and an update token) stays
	// valid (default 1 h).
	ProvisionTTL time.Duration
	// PortalURL is used in dashboard links (default https://cloud.phala.com).
	PortalURL string
	// PathPrefix is where the API is mounted (default "/api/v1").
	PathPrefix string
	// DefaultVersion applies when a request has no X-Phala-Version
	// (default 2025-10-28).
	DefaultVersion string
	// InjectPreLaunchScript, when set, is put into every app-compose whose
	// request has no pre_launch_script, as the real service injects its
	// default script (reference A4). Nil injects nothing: a request without
	// a script gets an app-compose without the key. DefaultPreLaunchScript
	// is a ready-made text to inject.
	InjectPreLaunchScript *string
	// Adversary makes the cloud lie about exactly one thing, consistently,
	// to show that a client's checks catch it: one of AdversaryModes, or
	// "" for an honest cloud. Every lie is logged as msg="adversary".
	Adversary string
	// RogueKMSContract is a second DstackKms on Chain, and RogueRootKey the
	// root key stored in it, that the rogue-kms mode serves instead of
	// KMSContract (required with that mode, refused without it).
	RogueKMSContract common.Address
	RogueRootKey     *ecdsa.PrivateKey
	// MisreportRootKey makes the API report, as k256_pubkey (GET /kms and
	// GET /kms/{slug}), a root key other than the one the KMS contract holds
	// on-chain, while app keys are still signed by the real root: what
	// `kms list` must flag. It is logged as msg="adversary" on=kms.
	MisreportRootKey bool
}

// Check reports missing or inconsistent settings.
func (c Config) Check() error {
	var errs []error
	if c.APIKey == "" {
		errs = append(errs, errors.New("cloud: APIKey is required"))
	}
	if c.Chain == nil {
		errs = append(errs, errors.New("cloud: Chain is required"))
	}
	if c.KMSContract == (common.Address{}) {
		errs = append(errs, errors.New("cloud: KMSContract is required"))
	}
	if c.RootKey == nil {
		errs = append(errs, errors.New("cloud: RootKey is required"))
	}
	if c.OSImageHash == (common.Hash{}) {
		errs = append(errs, errors.New("cloud: OSImageHash is required"))
	}
	if c.Rate429 < 0 || c.Rate5xx < 0 || c.Rate429+c.Rate5xx > 1 {
		errs = append(errs, fmt.Errorf("cloud: fault rates must be within 0..1 in total (429=%v 5xx=%v)", c.Rate429, c.Rate5xx))
	}
	if c.Latency < 0 || c.BootStep < 0 || c.ProvisionTTL < 0 {
		errs = append(errs, errors.New("cloud: durations must not be negative"))
	}
	if c.PathPrefix != "" && (!strings.HasPrefix(c.PathPrefix, "/") || strings.HasSuffix(c.PathPrefix, "/")) {
		errs = append(errs, fmt.Errorf("cloud: PathPrefix %q must start and not end with /", c.PathPrefix))
	}
	if c.DefaultVersion != "" {
		if _, ok := parseVersion(c.DefaultVersion); !ok {
			errs = append(errs, fmt.Errorf("cloud: unknown DefaultVersion %q", c.DefaultVersion))
		}
	}
	if err := CheckAdversary(c.Adversary); err != nil {
		errs = append(errs, err)
	}
	rogue := c.RogueKMSContract != (common.Address{}) || c.RogueRootKey != nil
	switch {
	case c.Adversary == AdversaryRogueKMS && (c.RogueKMSContract == (common.Address{}) || c.RogueRootKey == nil):
		errs = append(errs, errors.New("cloud: the rogue-kms adversary needs RogueKMSContract and RogueRootKey"))
	case c.Adversary != AdversaryRogueKMS && rogue:
		errs = append(errs, errors.New("cloud: RogueKMSContract and RogueRootKey apply only to the rogue-kms adversary"))
	case rogue && c.RogueKMSContract == c.KMSContract:
		errs = append(errs, errors.New("cloud: RogueKMSContract must differ from KMSContract"))
	}
	if c.InjectPreLaunchScript != nil && len(*c.InjectPreLaunchScript) > MaxComposeBytes {
		errs = append(errs, fmt.Errorf("cloud: InjectPreLaunchScript is %d bytes, over the %d-byte limit", len(*c.InjectPreLaunchScript), MaxComposeBytes))
	}
	return errors.Join(errs...)
}

// secretFrom derives a KMS's app-key secret from its root key.
func secretFrom(root *ecdsa.PrivateKey) []byte {
	sum := sha256.Sum256(append([]byte("cvmdeploy-local-kms/secret/v1"), crypto.FromECDSA(root)...))
	return sum[:]
}

// DefaultDeviceID is the node's device id when Config.DeviceID is zero.
func DefaultDeviceID() common.Hash {
	return sha256.Sum256([]byte("cvmdeploy local cloud / node 1 / device id"))
}

func (c Config) withDefaults() Config {
	if c.KMSSlug == "" {
		c.KMSSlug = DefaultKMSSlug
	}
	if c.KMSURL == "" {
		c.KMSURL = "https://" + c.KMSSlug + ".kms.local.invalid"
	}
	if c.KMSVersion == "" {
		c.KMSVersion = "v0.5.5"
	}
	if c.KMSSecret == nil && c.RootKey != nil {
		c.KMSSecret = secretFrom(c.RootKey)
	}
	if c.DeviceID == (common.Hash{}) {
		c.DeviceID = DefaultDeviceID()
	}
	if c.OSImageName == "" {
		c.OSImageName = DefaultOSImageName
	}
	if c.NodeID == 0 {
		c.NodeID = 1
	}
	if c.NodeName == "" {
		c.NodeName = DefaultNodeName
	}
	if c.BootStep == 0 {
		c.BootStep = DefaultBootStep
	}
	if c.ProvisionTTL == 0 {
		c.ProvisionTTL = DefaultProvisionTTL
	}
	if c.PortalURL == "" {
		c.PortalURL = DefaultPortalURL
	}
	if c.PathPrefix == "" {
		c.PathPrefix = DefaultPathPrefix
	}
	if c.DefaultVersion == "" {
		c.DefaultVersion = Version20251028
	}
	if c.Log == nil {
		c.Log = io.Discard
	}
	return c
}

// Server is the emulated cloud. Create it with New; it is safe for
// concurrent use.
type Server struct {
	cfg    Config
	log    *slog.Logger
	keys   *keyring       // the KMS the cloud serves (the rogue one in rogue-kms)
	kms    common.Address // the DstackKms the cloud serves and boots against
	onKMS  *kmsEntry      // the on-chain KMS
	phKMS  *kmsEntry      // the cloud (PHALA) KMS
	mux    *http.ServeMux
	ctx    context.Context // cancelled by Close; ends boots and streams
	cancel context.CancelFunc
	wg     sync.WaitGroup

	rngMu sync.Mutex
	rng   *rand.Rand

	mu         sync.Mutex
	provisions map[string]*provision // by compose hash
	tokens     map[string]*provision // same-path provisions by commit token
	usedTokens map[string]usedToken  // committed tokens, for idempotent replays
	cvms       []*cvm
	nextID     int64
	updates    map[string]*pendingUpdate // by commit token
	changed    chan struct{}             // closed and replaced on every CVM change

	httpMu  sync.Mutex
	httpSrv *http.Server
	baseURL string
	// fresh holds the connections that have not sent a request yet: see
	// Close.
	fresh map[net.Conn]struct{}
}

// New checks cfg, verifies that the chain answers with ChainID and that the
// KMS contract's root key is cfg.RootKey's, and returns a server that is not
// yet listening (use Handler or Start).
func New(ctx context.Context, cfg Config) (*Server, error) {
	if err := cfg.Check(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	sctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		cfg:        cfg,
		log:        slog.New(slog.NewTextHandler(cfg.Log, &slog.HandlerOptions{Level: slog.LevelDebug})),
		keys:       &keyring{root: cfg.RootKey, signer: cfg.RootKey, secret: cfg.KMSSecret},
		kms:        cfg.KMSContract,
		ctx:        sctx,
		cancel:     cancel,
		rng:        rand.New(rand.NewSource(cfg.Seed)),
		provisions: map[string]*provision{},
		tokens:     map[string]*provision{},
		usedTokens: map[string]usedToken{},
		updates:    map[string]*pendingUpdate{},
		nextID:     1,
		changed:    make(chan struct{}),
	}
	chainID := cfg.ChainID
	contract := cfg.KMSContract
	gateway := (*string)(nil)
	if cfg.GatewayAppID != "" {
		g := cfg.GatewayAppID
		gateway = &g
	}
	s.onKMS = &kmsEntry{ID: cfg.KMSSlug, Slug: cfg.KMSSlug, URL: cfg.KMSURL, Version: cfg.KMSVersion,
		ChainID: &chainID, Contract: &contract, GatewayAppID: gateway, OnChain: true}
	s.phKMS = &kmsEntry{ID: CloudKMSSlug, Slug: CloudKMSSlug, URL: "https://kms.phala.local.invalid", Version: cfg.KMSVersion}
	if err := s.verifyChain(ctx); err != nil {
		cancel()
		return nil, err
	}
	if err := s.becomeAdversary(ctx); err != nil {
		cancel()
		return nil, err
	}
	s.routes()
	return s, nil
}

// RootPublicKey returns the 33-byte compressed public key of the root of
// the KMS the cloud serves (the rogue KMS's in the rogue-kms mode).
func (s *Server) RootPublicKey() []byte { return s.keys.rootPublicKey() }

// KMSContract returns the DstackKms the cloud names in kms_info and boots
// against: Config.KMSContract, or Config.RogueKMSContract in the rogue-kms
// mode.
func (s *Server) KMSContract() common.Address { return s.kms }

// Adversary returns the adversary mode ("" when honest).
func (s *Server) Adversary() string { return s.cfg.Adversary }

// DeviceID returns the node's device id.
func (s *Server) DeviceID() common.Hash { return s.cfg.DeviceID }

// KMSSlug returns the on-chain KMS's slug (also its id).
func (s *Server) KMSSlug() string { return s.cfg.KMSSlug }

// Handler serves the API under the configured path prefix.
func (s *Server) Handler() http.Handler { return s.mux }

// Start listens on addr (e.g. "127.0.0.1:0") and serves until Close.
func (s *Server) Start(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("cloud: listen %s: %w", addr, err)
	}
	srv := &http.Server{Handler: s.mux, ReadHeaderTimeout: 10 * time.Second, ConnState: s.trackConn}
	s.httpMu.Lock()
	s.httpSrv = srv
	s.fresh = map[net.Conn]struct{}{}
	s.baseURL = "http://" + ln.Addr().String()
	s.httpMu.Unlock()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("http server stopped", "err", err)
		}
	}()
	s.log.Info("cloud listening", "api_prefix", s.baseURL+s.cfg.PathPrefix, "kms", s.cfg.KMSSlug,
		"kms_contract", s.kms.Hex(), "chain_id", s.cfg.ChainID)
	return nil
}

// URL returns "http://host:port" once Start has run.
func (s *Server) URL() string {
	s.httpMu.Lock()
	defer s.httpMu.Unlock()
	return s.baseURL
}

// APIPrefix returns the URL clients use as PHALA_CLOUD_API_PREFIX.
func (s *Server) APIPrefix() string { return s.URL() + s.cfg.PathPrefix }

// Close stops serving, ends running boots and event streams, and waits for them.
func (s *Server) Close() error {
	s.cancel()
	s.httpMu.Lock()
	srv := s.httpSrv
	s.httpMu.Unlock()
	var err error
	if srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		done := make(chan error, 1)
		go func() { done <- srv.Shutdown(ctx) }()
		// Shutdown waits up to 5 s for a connection that has sent nothing
		// yet, and an HTTP client that dialled one in parallel, then served
		// its request on another, leaves exactly that (seen as a 5 s exit
		// of deploy --dev --batch). Such a connection carries no request to
		// finish, so it is dropped, again and again until Shutdown is done.
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for waiting := true; waiting; {
			s.closeFresh()
			select {
			case err = <-done:
				waiting = false
			case <-tick.C:
			}
		}
	}
	s.wg.Wait()
	return err
}

// trackConn keeps s.fresh: connections in http.StateNew.
func (s *Server) trackConn(c net.Conn, st http.ConnState) {
	s.httpMu.Lock()
	defer s.httpMu.Unlock()
	if st == http.StateNew {
		s.fresh[c] = struct{}{}
	} else {
		delete(s.fresh, c)
	}
}

func (s *Server) closeFresh() {
	s.httpMu.Lock()
	defer s.httpMu.Unlock()
	for c := range s.fresh {
		c.Close()
		delete(s.fresh, c)
	}
}

// notifyLocked wakes every state watcher; s.mu must be held.
func (s *Server) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// ---- routing and middleware ----

type ctxKey int

const versionKey ctxKey = 1

func versionOf(r *http.Request) string {
	v, _ := r.Context().Value(versionKey).(string)
	return v
}

// parseVersion maps an X-Phala-Version value to a known version.
func parseVersion(v string) (string, bool) {
	v = strings.TrimSpace(v)
	for _, known := range Versions {
		if v == known {
			return v, true
		}
	}
	if strings.EqualFold(v, "latest") {
		return Versions[len(Versions)-1], true
	}
	return "", false
}

func (s *Server) routes() {
	api := http.NewServeMux()
	api.HandleFunc("POST /cvms/provision", s.handleProvision)
	api.HandleFunc("POST /cvms", s.handlePostCVMs)
	api.HandleFunc("GET /cvms", s.handleListCVMs)
	api.HandleFunc("GET /cvms/{id}", s.handleGetCVM)
	api.HandleFunc("GET /cvms/{id}/state", s.handleState)
	api.HandleFunc("GET /cvms/{id}/compose_file", s.handleComposeFile)
	api.HandleFunc("GET /cvms/{id}/attestation", s.handleAttestation)
	api.HandleFunc("POST /cvms/{id}/restart", s.handleRestart)
	api.HandleFunc("PATCH /cvms/{id}", s.handlePatch)
	api.HandleFunc("POST /cvms/{id}/commit-update", s.handleCommitUpdate)
	api.HandleFunc("POST /cvms/{id}/is-allowed", s.handleIsAllowed)
	api.HandleFunc("GET /kms", s.handleListKMS)
	api.HandleFunc("GET /kms/{kms}", s.handleGetKMS)
	api.HandleFunc("GET /kms/{kms}/pubkey/{app_id}", s.handlePubkey)
	api.HandleFunc("GET /kms/{kms}/nodes", s.handleKMSNodes)

	root := http.NewServeMux()
	root.Handle(s.cfg.PathPrefix+"/", http.StripPrefix(s.cfg.PathPrefix, s.middleware(api)))
	root.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { writeDetail(w, http.StatusNotFound, "Not Found") })
	s.mux = root
}

// statusRecorder remembers the status for the request log line.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

// Flush lets SSE handlers flush through the recorder.
func (r *statusRecorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// middleware applies, in order: latency, fault injection, authentication,
// the version header, and FastAPI-style 404/405 answers. Faults are injected
// before the handler runs, so a faulted request never changes state.
func (s *Server) middleware(api *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &statusRecorder{ResponseWriter: w}
		start := time.Now()
		defer func() {
			s.log.Debug("request", "method", r.Method, "path", s.cfg.PathPrefix+r.URL.Path, "status", rec.status,
				"ms", time.Since(start).Milliseconds())
		}()
		if s.cfg.Latency > 0 {
			t := time.NewTimer(s.cfg.Latency)
			select {
			case <-t.C:
			case <-r.Context().Done():
				t.Stop()
				return
			}
		}
		if fault := s.fault(); fault != 0 {
			if fault == http.StatusTooManyRequests {
				rec.Header().Set("Retry-After", "1")
				writeDetail(rec, fault, "Rate limit exceeded. Please retry later.")
			} else {
				writeDetail(rec, fault, "Service temporarily unavailable (injected fault)")
			}
			s.log.Info("injected fault", "method", r.Method, "path", s.cfg.PathPrefix+r.URL.Path, "status", fault)
			return
		}
		key := r.Header.Get("X-API-Key")
		if key == "" {
			writeDetail(rec, http.StatusUnauthorized, "Not authenticated: missing X-API-Key header")
			return
		}
		if !constantTimeEqual(key, s.cfg.APIKey) {
			writeDetail(rec, http.StatusUnauthorized, "Invalid API key")
			return
		}
		version := s.cfg.DefaultVersion
		if h := r.Header.Get("X-Phala-Version"); h != "" {
			v, ok := parseVersion(h)
			if !ok {
				writeDetail(rec, http.StatusBadRequest, fmt.Sprintf("Unsupported API version %q in X-Phala-Version; supported: %s, latest",
					h, strings.Join(Versions, ", ")))
				return
			}
			version = v
		}
		if _, pattern := api.Handler(r); pattern == "" {
			// The mux would answer in plain text; FastAPI answers JSON.
			if methodExists(api, r) {
				writeDetail(rec, http.StatusMethodNotAllowed, "Method Not Allowed")
			} else {
				writeDetail(rec, http.StatusNotFound, "Not Found")
			}
			return
		}
		api.ServeHTTP(rec, r.WithContext(context.WithValue(r.Context(), versionKey, version)))
	})
}

// methodExists reports whether the path is served under another method.
func methodExists(api *http.ServeMux, r *http.Request) bool {
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPatch} {
		if m == r.Method {
			continue
		}
		probe := r.Clone(r.Context())
		probe.Method = m
		if _, p := api.Handler(probe); p != "" {
			return true
		}
	}
	return false
}

func (s *Server) fault() int {
	if s.cfg.Rate429 == 0 && s.cfg.Rate5xx == 0 {
		return 0
	}
	s.rngMu.Lock()
	x := s.rng.Float64()
	s.rngMu.Unlock()
	switch {
	case x < s.cfg.Rate429:
		return http.StatusTooManyRequests
	case x < s.cfg.Rate429+s.cfg.Rate5xx:
		return http.StatusServiceUnavailable
	}
	return 0
}

// constantTimeEqual compares digests so neither content nor length leaks
// through timing.
func constantTimeEqual(a, b string) bool {
	ha, hb := sha256.Sum256([]byte(a)), sha256.Sum256([]byte(b))
	return subtle.ConstantTimeCompare(ha[:], hb[:]) == 1
}

// Counts is how much state the cloud holds; tests use it to check that a
// rejected request stored nothing.
type Counts struct {
	Provisions int // cached provisions (unexpired)
	CVMs       int
	Updates    int // pending compose updates (commit tokens)
	Tokens     int // unused same-path commit tokens
}

// Counts returns the current state sizes.
func (s *Server) Counts() Counts {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dropExpiredLocked(time.Now())
	return Counts{Provisions: len(s.provisions), CVMs: len(s.cvms), Updates: len(s.updates), Tokens: len(s.tokens)}
}
