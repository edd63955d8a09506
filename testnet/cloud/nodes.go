package cloud

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/ethereum/go-ethereum/common"
)

// Node is one node (teepod) of the local cloud: a TDX host with its own
// device id, which an app's AppAuth must allow (or allowAnyDevice) for the
// KMS to release the app's keys to a CVM there.
type Node struct {
	ID       int64
	Name     string
	DeviceID common.Hash
}

// ExtraNodes is how many nodes the cloud adds after node 1 when
// Config.Nodes is empty, so that replicas on other nodes (other device ids)
// can be rehearsed.
const ExtraNodes = 2

// DefaultNodeDeviceID is the device id of default node n (1-based); node 1's
// is DefaultDeviceID.
func DefaultNodeDeviceID(n int) common.Hash {
	if n == 1 {
		return DefaultDeviceID()
	}
	return sha256.Sum256([]byte("cvmdeploy local cloud / node " + strconv.Itoa(n) + " / device id"))
}

// checkNodes reports duplicate or incomplete nodes in c.Nodes, and a
// NodeID/NodeName/DeviceID that contradicts node 1 (Nodes[0]).
func (c Config) checkNodes() []error {
	var errs []error
	ids := map[int64]bool{}
	devices := map[common.Hash]bool{}
	for i, n := range c.Nodes {
		switch {
		case n.ID <= 0:
			errs = append(errs, fmt.Errorf("cloud: Nodes[%d] has id %d; node ids start at 1", i, n.ID))
		case ids[n.ID]:
			errs = append(errs, fmt.Errorf("cloud: node id %d appears twice in Nodes", n.ID))
		}
		ids[n.ID] = true
		switch {
		case n.DeviceID == (common.Hash{}):
			errs = append(errs, fmt.Errorf("cloud: node %d has no device id", n.ID))
		case devices[n.DeviceID]:
			errs = append(errs, fmt.Errorf("cloud: device id %x appears on two nodes; each node is its own TDX host", n.DeviceID[:]))
		}
		devices[n.DeviceID] = true
	}
	if len(c.Nodes) > 0 {
		first := c.Nodes[0]
		if (c.NodeID != 0 && c.NodeID != first.ID) || (c.NodeName != "" && first.Name != "" && c.NodeName != first.Name) ||
			(c.DeviceID != (common.Hash{}) && c.DeviceID != first.DeviceID) {
			errs = append(errs, errors.New("cloud: NodeID, NodeName and DeviceID describe node 1 and must agree with Nodes[0] when both are set"))
		}
	}
	return errs
}

// nodesWithDefaults fills c.Nodes: node 1 from NodeID/NodeName/DeviceID
// (already defaulted) followed by ExtraNodes more, unless the caller listed
// the nodes; then NodeID/NodeName/DeviceID describe Nodes[0].
func (c Config) nodesWithDefaults() Config {
	if len(c.Nodes) == 0 {
		c.Nodes = []Node{{ID: c.NodeID, Name: c.NodeName, DeviceID: c.DeviceID}}
		next := c.NodeID
		for n := 2; n <= 1+ExtraNodes; n++ {
			next++
			dev := DefaultNodeDeviceID(n)
			if dev == c.DeviceID { // a caller chose node 1's device as one of ours
				dev = sha256.Sum256(append(dev[:], 'x'))
			}
			c.Nodes = append(c.Nodes, Node{ID: next, Name: fmt.Sprintf("local-node-%d", n), DeviceID: dev})
		}
		return c
	}
	c.Nodes = append([]Node(nil), c.Nodes...)
	for i := range c.Nodes {
		if c.Nodes[i].Name == "" {
			c.Nodes[i].Name = fmt.Sprintf("local-node-%d", c.Nodes[i].ID)
		}
	}
	c.NodeID, c.NodeName, c.DeviceID = c.Nodes[0].ID, c.Nodes[0].Name, c.Nodes[0].DeviceID
	return c
}

// Nodes returns the cloud's nodes; the first is node 1, where CVMs go when
// a request names no node.
func (s *Server) Nodes() []Node { return append([]Node(nil), s.cfg.Nodes...) }

// node returns the node with id, or nil.
func (s *Server) node(id int64) *Node {
	for i := range s.cfg.Nodes {
		if s.cfg.Nodes[i].ID == id {
			return &s.cfg.Nodes[i]
		}
	}
	return nil
}

// defaultNode is where a request that names no node goes.
func (s *Server) defaultNode() *Node { return &s.cfg.Nodes[0] }

func (s *Server) writeNodeNotFound(w http.ResponseWriter, id int64) {
	ids := make([]string, len(s.cfg.Nodes))
	for i, n := range s.cfg.Nodes {
		ids[i] = fmt.Sprintf("%d (%s)", n.ID, n.Name)
	}
	writeStructured(w, http.StatusNotFound, apiError{ErrorCode: codeNodeNotFound,
		Message:     fmt.Sprintf("node %d not found", id),
		Details:     []detailItem{{Field: "node_id", Value: id}},
		Suggestions: []string{"Available nodes: " + strings.Join(ids, ", ") + " (GET /teepods/available)"}})
}

// handleAvailableNodes serves GET /teepods/available in the shape of the
// SDK's getAvailableNodes: {tier, capacity, nodes:[{teepod_id, name,
// listed, resource_score, remaining_vcpu, remaining_memory,
// remaining_cvm_slots, images, support_onchain_kms, fmspc, device_id,
// region_identifier}], kms_list}. device_id is what a replica's 465 names
// for that node, so clients can tell which node a device is.
func (s *Server) handleAvailableNodes(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	load := map[int64]int{}
	for _, c := range s.cvms {
		load[c.node.ID]++
	}
	s.mu.Unlock()
	image := map[string]any{"name": s.cfg.OSImageName, "is_dev": false, "version": imageVersion(s.cfg.OSImageName),
		"os_image_hash": hex.EncodeToString(s.cfg.OSImageHash[:])}
	nodes := make([]map[string]any, 0, len(s.cfg.Nodes))
	for _, n := range s.cfg.Nodes {
		nodes = append(nodes, map[string]any{
			"teepod_id":           n.ID,
			"name":                n.Name,
			"listed":              true,
			"resource_score":      1.0,
			"remaining_vcpu":      64 - load[n.ID],
			"remaining_memory":    262144 - 2048*load[n.ID],
			"remaining_cvm_slots": 64 - load[n.ID],
			"images":              []any{image},
			"support_onchain_kms": true,
			"fmspc":               "B0C06F000000",
			"device_id":           hex.EncodeToString(n.DeviceID[:]),
			"region_identifier":   "local",
		})
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"tier":     "local",
		"capacity": map[string]any{"max_instances": 64, "max_vcpu": 64, "max_memory": 262144, "max_disk": 2048},
		"nodes":    nodes,
		"kms_list": []any{s.onKMS.info(), s.phKMS.info()},
	})
}

// imageVersion is the [major, minor, patch] of "dstack-0.5.5" (zeros when
// the name carries no version).
func imageVersion(name string) []int {
	v := []int{0, 0, 0}
	var a, b, c int
	if _, err := fmt.Sscanf(name, "dstack-%d.%d.%d", &a, &b, &c); err == nil {
		v = []int{a, b, c}
	}
	return v
}
