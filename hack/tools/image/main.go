// Command image assembles a single-layer OCI image with go-containerregistry
// and writes it as an OCI image layout directory, so images can be built
// without a Docker engine or a registry. hack/build-image.sh prepares the
// layer and packs the layout into an archive that `ctr images import` reads.
//
//	image -layer rootfs.tar -name clearance.local/x:1 -entrypoint '["/x"]' -user 65532:65532 -label k=v -o layout/
//
// It prints the manifest digest on standard output. Timestamps come from
// -created (Unix seconds), so the same inputs always give the same digest.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// keyValues is a repeatable key=value flag.
type keyValues map[string]string

func (kv keyValues) String() string { return fmt.Sprint(map[string]string(kv)) }

func (kv keyValues) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("want key=value, got %q", s)
	}
	kv[k] = v
	return nil
}

// stringList is a repeatable string flag.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

type options struct {
	layer, name, user, workdir, out string
	entrypoint, cmd                 string
	created                         int64
	labels                          keyValues
	env                             stringList
}

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	o := options{labels: keyValues{}}
	fs := flag.NewFlagSet("image", flag.ContinueOnError)
	fs.StringVar(&o.layer, "layer", "", "uncompressed layer `tar`")
	fs.StringVar(&o.name, "name", "", "fully qualified image `reference` recorded in the layout")
	fs.StringVar(&o.entrypoint, "entrypoint", "", "entrypoint as a JSON array")
	fs.StringVar(&o.cmd, "cmd", "", "command as a JSON array")
	fs.StringVar(&o.user, "user", "", "user[:group] the container runs as")
	fs.StringVar(&o.workdir, "workdir", "/", "working directory")
	fs.Int64Var(&o.created, "created", 0, "creation time in Unix `seconds` (SOURCE_DATE_EPOCH)")
	fs.Var(o.labels, "label", "image label `key=value` (repeatable)")
	fs.Var(&o.env, "env", "environment `NAME=value` (repeatable)")
	fs.StringVar(&o.out, "o", "", "OCI layout `directory` to create")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if o.layer == "" || o.name == "" || o.out == "" {
		return errors.New("-layer, -name and -o are required")
	}
	img, err := build(o)
	if err != nil {
		return err
	}
	return write(o, img)
}

func build(o options) (v1.Image, error) {
	layer, err := tarball.LayerFromFile(o.layer, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, err
	}
	created := v1.Time{Time: time.Unix(o.created, 0).UTC()}
	img, err := mutate.Append(mutate.MediaType(empty.Image, types.OCIManifestSchema1), mutate.Addendum{
		Layer:     layer,
		MediaType: types.OCILayer,
		History:   v1.History{Created: created, CreatedBy: "hack/build-image.sh", Comment: o.name},
	})
	if err != nil {
		return nil, err
	}
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)

	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.Architecture, cf.OS = "amd64", "linux"
	cf.Created = created
	cf.Config.User = o.user
	cf.Config.WorkingDir = o.workdir
	cf.Config.Labels = o.labels
	cf.Config.Env = o.env
	if cf.Config.Entrypoint, err = jsonList(o.entrypoint); err != nil {
		return nil, fmt.Errorf("-entrypoint: %w", err)
	}
	if cf.Config.Cmd, err = jsonList(o.cmd); err != nil {
		return nil, fmt.Errorf("-cmd: %w", err)
	}
	return mutate.ConfigFile(img, cf)
}

func jsonList(s string) ([]string, error) {
	if s == "" {
		return nil, nil
	}
	var l []string
	return l, json.Unmarshal([]byte(s), &l)
}

func write(o options, img v1.Image) error {
	p, err := layout.Write(o.out, empty.Index)
	if err != nil {
		return err
	}
	tag := o.name[strings.LastIndex(o.name, ":")+1:]
	// containerd names the imported image after io.containerd.image.name;
	// the OCI ref.name annotation carries the tag, as the spec suggests.
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{
		"io.containerd.image.name":          o.name,
		"org.opencontainers.image.ref.name": tag,
	})); err != nil {
		return err
	}
	d, err := img.Digest()
	if err != nil {
		return err
	}
	_, err = fmt.Println(d)
	return err
}
