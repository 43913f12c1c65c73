// Command golister lists a ZIP or a gzipped tar the way Go's standard library reads it.
//
// It is a test reader for signery's parser-differential tests: it prints one JSON document on stdout,
//
//	{"entries": [{"name": ..., "name_hex": ..., "type": "file|dir|symlink|other", "mode": ..., "sha256": ..., "link": ...}]}
//
// where name_hex holds the exact name bytes (JSON would replace bytes that are not UTF-8), mode is a Unix mode
// (type bits included), sha256 is the hex digest of a file's content (or of a link's target) and null otherwise,
// and link is a link's target. Every file's content is read in full, so Go checks its CRC-32 (ZIP) or its size
// (tar). On any error it prints {"error": "..."} and exits 1. Standard library only.
//
// Usage: golister zip|tar FILE
package main

import (
	"archive/tar"
	"archive/zip"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
)

type entry struct {
	Name    string  `json:"name"`
	NameHex string  `json:"name_hex"`
	Type    string  `json:"type"`
	Mode    uint32  `json:"mode"`
	SHA256  *string `json:"sha256"`
	Link    *string `json:"link"`
}

const (
	sIFREG  = 0o100000
	sIFDIR  = 0o040000
	sIFLNK  = 0o120000
	sIFIFO  = 0o010000
	sIFSOCK = 0o140000
	sIFCHR  = 0o020000
	sIFBLK  = 0o060000
)

// unixMode turns Go's FileMode (its own bit layout) back into a Unix st_mode.
func unixMode(m fs.FileMode) uint32 {
	u := uint32(m.Perm())
	if m&fs.ModeSetuid != 0 {
		u |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		u |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		u |= 0o1000
	}
	switch {
	case m&fs.ModeDir != 0:
		u |= sIFDIR
	case m&fs.ModeSymlink != 0:
		u |= sIFLNK
	case m&fs.ModeNamedPipe != 0:
		u |= sIFIFO
	case m&fs.ModeSocket != 0:
		u |= sIFSOCK
	case m&fs.ModeCharDevice != 0:
		u |= sIFCHR
	case m&fs.ModeDevice != 0:
		u |= sIFBLK
	case m.IsRegular():
		u |= sIFREG
	}
	return u
}

func digest(r io.Reader) (string, []byte, error) {
	h := sha256.New()
	// Keep the first bytes: a symbolic link's content is its target.
	var head []byte
	buf := make([]byte, 32*1024)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			h.Write(buf[:n])
			if len(head) < 4096 {
				head = append(head, buf[:n]...)
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return "", nil, err
		}
	}
	return hex.EncodeToString(h.Sum(nil)), head, nil
}

func listZip(path string) ([]entry, error) {
	r, err := zip.OpenReader(path)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	out := []entry{}
	for _, f := range r.File {
		mode := f.Mode()
		e := entry{Name: f.Name, NameHex: hex.EncodeToString([]byte(f.Name)), Mode: unixMode(mode)}
		switch {
		case f.FileInfo().IsDir():
			e.Type = "dir"
		case mode&fs.ModeSymlink != 0:
			e.Type = "symlink"
		case mode.IsRegular():
			e.Type = "file"
		default:
			e.Type = "other"
		}
		if e.Type != "dir" {
			rc, err := f.Open()
			if err != nil {
				return nil, fmt.Errorf("%s: %w", f.Name, err)
			}
			sum, head, err := digest(rc)
			rc.Close()
			if err != nil {
				return nil, fmt.Errorf("%s: %w", f.Name, err)
			}
			if e.Type == "symlink" {
				target := string(head)
				e.Link = &target
			}
			if e.Type != "other" {
				e.SHA256 = &sum
			}
		}
		out = append(out, e)
	}
	return out, nil
}

func listTar(path string) ([]entry, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	gz, err := gzip.NewReader(fh) // multistream, Go's default (as Mattermost reads plugin bundles)
	if err != nil {
		return nil, err
	}
	defer gz.Close()
	tr := tar.NewReader(gz)
	out := []entry{}
	seen := map[string]string{} // regular files read so far: name -> digest (a hard link's content)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		perm := uint32(hdr.Mode) & 0o7777
		e := entry{Name: hdr.Name, NameHex: hex.EncodeToString([]byte(hdr.Name))}
		switch hdr.Typeflag {
		case tar.TypeReg, tar.TypeRegA, tar.TypeGNUSparse, tar.TypeCont:
			e.Type, e.Mode = "file", perm|sIFREG
			sum, _, err := digest(tr)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", hdr.Name, err)
			}
			e.SHA256 = &sum
			seen[hdr.Name] = sum
		case tar.TypeDir:
			e.Type, e.Mode = "dir", perm|sIFDIR
		case tar.TypeSymlink:
			e.Type, e.Mode = "symlink", perm|sIFLNK
			target := hdr.Linkname
			sum := sha256.Sum256([]byte(target))
			s := hex.EncodeToString(sum[:])
			e.Link, e.SHA256 = &target, &s
		case tar.TypeLink:
			// A hard link extracts as a second name for an earlier file: the same content.
			e.Type, e.Mode = "file", perm|sIFREG
			target := hdr.Linkname
			e.Link = &target
			if sum, ok := seen[target]; ok {
				e.SHA256 = &sum
			}
		default:
			e.Type, e.Mode = "other", perm
			if _, err := io.Copy(io.Discard, tr); err != nil {
				return nil, fmt.Errorf("%s: %w", hdr.Name, err)
			}
		}
		out = append(out, e)
	}
	return out, nil
}

func fail(err error) {
	doc, _ := json.Marshal(map[string]string{"error": err.Error()})
	os.Stdout.Write(append(doc, '\n'))
	os.Exit(1)
}

func main() {
	if len(os.Args) != 3 || (os.Args[1] != "zip" && os.Args[1] != "tar") {
		fail(fmt.Errorf("usage: golister zip|tar FILE"))
	}
	var entries []entry
	var err error
	if os.Args[1] == "zip" {
		entries, err = listZip(os.Args[2])
	} else {
		entries, err = listTar(os.Args[2])
	}
	if err != nil {
		fail(err)
	}
	doc, err := json.Marshal(map[string][]entry{"entries": entries})
	if err != nil {
		fail(err)
	}
	os.Stdout.Write(append(doc, '\n'))
}
