package rulediff

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
)

// Key names a dump by the command that printed it ("iptables-nft-save",
// "nft-list-table-ip-kube-proxy", "ipvsadm-ln"): the two sides of a comparison are the
// datapaths whose descriptors name the same Dump command.
func Key(argv []string) string {
	words := strings.Fields(strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' {
			return r
		}
		return ' '
	}, strings.ToLower(strings.Join(argv, " "))))
	for i, w := range words {
		words[i] = strings.TrimLeft(w, "-") // flags: "ipvsadm -Ln" is ipvsadm-ln
	}
	return strings.Join(words, "-")
}

// recording is the JSON beside a recorded dump: its format and the names
// of the cluster state it was recorded in.
type recording struct {
	Format Format   `json:"format"`
	Names  jsonName `json:"names"`
}

type jsonName struct {
	Namespace string            `json:"namespace"`
	Addrs     map[string]string `json:"addrs"`
	Foreign   []string          `json:"foreign"`
}

// WriteRecording stores one side's raw dump (<side>-<key>.txt) and what
// normalises it (<side>-<key>.json) in dir.
func WriteRecording(dir string, side Side, key string, f Format, dump string, n Names) error {
	base := filepath.Join(dir, string(side)+"-"+key)
	r := recording{Format: f, Names: jsonName{Namespace: n.Namespace, Addrs: n.Addrs}}
	for _, p := range n.Foreign {
		r.Names.Foreign = append(r.Names.Foreign, p.String())
	}
	meta, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(base+".txt", []byte(dump), 0o644); err != nil {
		return fmt.Errorf("record %s: %w", base, err)
	}
	if err := os.WriteFile(base+".json", append(meta, '\n'), 0o644); err != nil {
		return fmt.Errorf("record %s: %w", base, err)
	}
	return nil
}

// ReadRecording returns the normalised lines of one side's recording in
// dir; a missing one is an error wrapping fs.ErrNotExist.
func ReadRecording(dir string, side Side, key string) ([]string, error) {
	base := filepath.Join(dir, string(side)+"-"+key)
	dump, err := os.ReadFile(base + ".txt")
	if err != nil {
		return nil, fmt.Errorf("recording of %s's %s: %w", side, key, err)
	}
	meta, err := os.ReadFile(base + ".json")
	if err != nil {
		return nil, fmt.Errorf("recording of %s's %s: %w", side, key, err)
	}
	var r recording
	if err := json.Unmarshal(meta, &r); err != nil {
		return nil, fmt.Errorf("recording of %s's %s: %w", side, key, err)
	}
	n := Names{Namespace: r.Names.Namespace, Addrs: r.Names.Addrs}
	for _, s := range r.Names.Foreign {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("recording of %s's %s: %w", side, key, err)
		}
		n.Foreign = append(n.Foreign, p)
	}
	return Normalise(r.Format, string(dump), n)
}
